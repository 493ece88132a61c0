import { pino, type Logger } from "pino";

// One JSON line per event on stdout. Nothing secret is ever passed to the
// logger; as a second line of defence the paths that could hold one are
// redacted.

export type { Logger };

let lastTimeMs = Number.NaN;
let lastTimeField = "";

/**
 * pino's isoTime, the same text, formatted once per millisecond rather than
 * once per line: a busy server writes several lines a millisecond (the audit
 * line of every call), and Date#toISOString was about 1 µs of each.
 */
function isoTime(): string {
  const now = Date.now();
  if (now !== lastTimeMs) {
    lastTimeMs = now;
    lastTimeField = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTimeField;
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "authlink" },
      timestamp: isoTime,
      redact: {
        paths: ["password", "token", "otp", "email_otp", "authorization", "*.password", "*.token", "*.otp", "*.authorization"],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
