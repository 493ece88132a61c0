import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import type { ExampleStack } from "./example-stack.js";
import type { ReceivedMail } from "./mail-message.js";

// A person signing in to the example app in Chromium, the whole way: the
// form, the email (from the SMTP sink), the link on authlink's verify page,
// the click, /callback, and back home signed in.

export function linkInMail(mail: ReceivedMail): string {
  const link = /^(http:\/\/\S+\/verify#\S+)$/m.exec(mail.text)?.[1];
  assert.ok(link, "the email's text part shows the link on its own line");
  return link;
}

export interface SignInSteps {
  /** After the form: the app's "check your email" page. */
  readonly afterForm?: () => Promise<void>;
  /** On authlink's verify page, before the click. */
  readonly onVerifyPage?: () => Promise<void>;
}

export async function signInThroughEmail(page: Page, stack: ExampleStack, email: string, steps: SignInSteps = {}): Promise<ReceivedMail> {
  await page.goto(`${stack.app.url}/`);
  await page.getByLabel("Email address").fill(email);
  await page.getByRole("button", { name: "Send me a sign-in link" }).click();
  await page.getByRole("heading", { name: "Check your email" }).waitFor();
  await steps.afterForm?.();

  const mail = await stack.sink.nextMailTo(email);
  await page.goto(linkInMail(mail));
  await page.getByRole("heading", { name: /^Sign in to / }).waitFor({ timeout: 10_000 });
  await steps.onVerifyPage?.();
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${stack.app.url}/`, { timeout: 10_000 });
  await page.getByRole("heading", { name: "You are signed in" }).waitFor();
  return mail;
}
