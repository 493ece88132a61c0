import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

// A real Chromium (Debian's package; Playwright cannot download browsers
// here) driven by playwright-core, and what a test needs around it: a page
// that records every dialog, script error and console error, and screenshots.

export const CHROMIUM_PATH = process.env.AUTHLINK_TEST_CHROMIUM ?? "/usr/bin/chromium";

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`Chromium not found at ${CHROMIUM_PATH}: apt-get install chromium (or set AUTHLINK_TEST_CHROMIUM)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

export interface WatchedPage {
  readonly page: Page;
  readonly context: BrowserContext;
  /** alert/confirm/prompt messages (each dismissed): any is code run from somewhere it should not. */
  readonly dialogs: string[];
  /** Uncaught exceptions in the page. */
  readonly pageErrors: string[];
  /** console.error messages, including the browser's own (CSP violations, failed loads). */
  readonly consoleErrors: string[];
  close(): Promise<void>;
}

export interface PageOptions {
  readonly viewport?: { readonly width: number; readonly height: number };
  readonly colorScheme?: "light" | "dark";
  readonly javaScriptEnabled?: boolean;
}

export async function openPage(browser: Browser, options: PageOptions = {}): Promise<WatchedPage> {
  const context = await browser.newContext({
    viewport: options.viewport ?? { width: 760, height: 640 },
    locale: "en-US",
    timezoneId: "UTC",
    colorScheme: options.colorScheme ?? "light",
    javaScriptEnabled: options.javaScriptEnabled ?? true,
  });
  const page = await context.newPage();
  const dialogs: string[] = [];
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];
  page.on("dialog", (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  return { page, context, dialogs, pageErrors, consoleErrors, close: () => context.close() };
}

/**
 * Where screenshots go: AUTHLINK_TEST_SCREENSHOTS (kept, to look at), else a
 * temporary directory removed when `cleanup` runs. Never in the repository.
 */
export async function screenshotDir(label: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const kept = process.env.AUTHLINK_TEST_SCREENSHOTS;
  if (kept) {
    const dir = join(kept, label);
    await mkdir(dir, { recursive: true });
    return { dir, cleanup: async () => {} };
  }
  const dir = await mkdtemp(join(tmpdir(), `authlink-${label}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
