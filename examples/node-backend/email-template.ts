import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Mail } from "./mailer.js";

// Email templates: `NAME.txt` (first line `Subject: …`, a blank line, then
// the text part) and `NAME.html` (the HTML part), with `{{placeholder}}`s.
// Values are HTML-escaped in the HTML part; a placeholder without a value is
// an error (a typo in a template must not send "{{code}}" to a person).

export type TemplateValues = Readonly<Record<string, string>>;

export interface EmailTemplate {
  render(to: string, values: TemplateValues): Mail;
}

export async function loadEmailTemplate(dir: string, name: string): Promise<EmailTemplate> {
  const [text, html] = await Promise.all([readFile(join(dir, `${name}.txt`), "utf8"), readFile(join(dir, `${name}.html`), "utf8")]);
  const match = /^Subject: (.+)\r?\n\r?\n/.exec(text);
  if (!match) throw new Error(`${name}.txt must start with "Subject: …" and a blank line`);
  const subject = match[1] ?? "";
  const body = text.slice(match[0].length);
  return {
    render(to, values) {
      return {
        to,
        subject: fill(subject, values, (v) => v),
        text: fill(body, values, (v) => v),
        html: fill(html, values, escapeHtml),
      };
    },
  };
}

function fill(template: string, values: TemplateValues, escape: (value: string) => string): string {
  return template.replace(/\{\{\s*([a-z_]+)\s*\}\}/g, (_, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`email template: no value for {{${key}}}`);
    return escape(value);
  });
}

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** "Mar 3, 2026, 14:05 UTC": a moment as the email states it. */
export function formatExpiry(at: Date, timeZone = "UTC"): string {
  const formatted = new Intl.DateTimeFormat("en-US", {
    dateStyle: "medium",
    timeStyle: "short",
    hourCycle: "h23",
    timeZone,
  }).format(at);
  return `${formatted} ${timeZone}`;
}

/** "60 minutes", "2 hours", "1 day": how long from now, rounded. */
export function formatDuration(ms: number): string {
  const minutes = Math.max(1, Math.round(ms / 60_000));
  const unit = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (minutes < 120) return unit(minutes, "minute");
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? unit(hours, "hour") : unit(Math.floor(hours / 24), "day");
}
