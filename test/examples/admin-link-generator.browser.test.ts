import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium, openPage, screenshotDir, type WatchedPage } from "../support/browser.js";
import { signInThroughEmail } from "../support/example-browser.js";
import { startExampleStack, type ExampleStack } from "../support/example-stack.js";
import { linkParams } from "../support/links.js";

// The admin link generator (examples/admin-link-generator, React built by
// Vite, served by the example backend) in Chromium against a real authlink
// (embedded store): an administrator signs in through the email, picks a
// type, enters an address, generates, copies the link and the code (read
// back from the clipboard), lists the address's links and revokes one —
// and the browser never holds the service key nor talks to authlink.
// Screenshots go to AUTHLINK_TEST_SCREENSHOTS/example-admin when set.

const ADMIN = "admin@example.com";
const shots = await screenshotDir("example-admin");
let browser: Browser;
let stack: ExampleStack;

before(async () => {
  browser = await launchChromium();
  stack = await startExampleStack({ adminEmails: [ADMIN] });
});
after(async () => {
  await browser?.close();
  await stack?.close();
  await shots.cleanup();
});

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(shots.dir, `${name}.png`), fullPage: true });
}

/** Every request the page made, and every answer body it got. */
function recordTraffic(page: Page): { urls: string[]; bodies: Promise<string>[] } {
  const traffic = { urls: [] as string[], bodies: [] as Promise<string>[] };
  page.on("request", (r) => traffic.urls.push(r.url()));
  page.on("response", (r) => traffic.bodies.push(r.text().catch(() => "")));
  return traffic;
}

function assertNoScriptTrouble(watched: WatchedPage): void {
  assert.deepEqual(watched.pageErrors, [], "no script error");
  assert.deepEqual(
    watched.consoleErrors.filter((m) => !/^Failed to load resource/.test(m)),
    [],
    "no console error (a CSP violation would show here)",
  );
}

test("without an administrator's session the page says to sign in, and generates nothing", async () => {
  const watched = await openPage(browser);
  try {
    const { page } = watched;
    await page.goto(`${stack.app.url}/admin/`);
    await page.getByRole("alert").filter({ hasText: "You are not signed in." }).waitFor();
    await shot(page, "0-not-signed-in");
    assert.equal(await page.getByRole("button", { name: "Generate link" }).count(), 0);

    await signInThroughEmail(page, stack, "bob@example.com");
    await page.goto(`${stack.app.url}/admin/`);
    await page.getByRole("alert").filter({ hasText: "bob@example.com is not an administrator." }).waitFor();
    assertNoScriptTrouble(watched);
  } finally {
    await watched.close();
  }
});

/** A browser page on /admin/, signed in as the administrator through the email, with clipboard access. */
async function openAdminPage(): Promise<WatchedPage> {
  const watched = await openPage(browser, { viewport: { width: 1000, height: 800 } });
  await watched.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: stack.app.url });
  await signInThroughEmail(watched.page, stack, ADMIN);
  await watched.page.getByRole("link", { name: "Open the admin link generator" }).click();
  await watched.page.getByRole("heading", { name: "Generate a link" }).waitFor();
  return watched;
}

async function generate(page: Page, type: RegExp, email: string): Promise<void> {
  await page.getByRole("radio", { name: type }).check();
  await page.getByLabel("Email address", { exact: true }).fill(email);
  await page.getByRole("button", { name: "Generate link" }).click();
}

test("an administrator picks a type, enters an address, generates, and copies the link and the code", async () => {
  const watched = await openAdminPage();
  try {
    const { page } = watched;
    const traffic = recordTraffic(page);
    await page.reload();
    await page.getByRole("heading", { name: "Generate a link" }).waitFor();
    assert.match(await page.locator("header").innerText(), /Signed in as admin@example\.com/);
    await shot(page, "1-form");

    await page.getByRole("radio", { name: /^Invitation/ }).check();
    await generate(page, /^Magic link/, "carol@example.com");
    await page.getByRole("heading", { name: "Magic link for carol@example.com" }).waitFor();

    const link = await page.getByLabel("Link", { exact: true }).inputValue();
    const code = (await page.locator("#email-otp").innerText()).trim();
    assert.ok(link.startsWith(`${stack.authlink.url}/verify#token=`), link);
    assert.equal(linkParams(link).get("type"), "magiclink");
    assert.equal(linkParams(link).get("redirect_to"), `${stack.app.url}/callback`);
    assert.match(code, /^\d{6}$/);
    assert.match(await page.locator("main").innerText(), /It works once, until [A-Z][a-z]{2} \d{1,2}, \d{4}/);

    // Copy: what lands on the clipboard is what is shown.
    await page.getByRole("button", { name: "Copy link" }).click();
    await page.getByRole("status").filter({ hasText: "Link copied to the clipboard." }).waitFor();
    assert.equal(await page.evaluate<string>("navigator.clipboard.readText()"), link);
    await shot(page, "2-generated-link-copied");
    await page.getByRole("button", { name: "Copy code" }).click();
    await page.getByRole("status").filter({ hasText: "Code copied to the clipboard." }).waitFor();
    assert.equal(await page.evaluate<string>("navigator.clipboard.readText()"), code);

    // The generated link is real: authlink's verify page shows it valid (PreviewLink consumes nothing).
    const preview = await openPage(browser);
    try {
      await preview.page.goto(link);
      await preview.page.getByRole("heading", { name: /^Sign in to / }).waitFor({ timeout: 10_000 });
    } finally {
      await preview.close();
    }

    // An invitation for an address that already has a confirmed account: the page explains.
    await generate(page, /^Invitation/, ADMIN);
    await page.getByRole("alert").filter({ hasText: "already has a confirmed account" }).waitFor();
    await shot(page, "3-invite-refused");

    // The browser never talked to authlink, and no answer it got held the service key.
    assert.ok(traffic.urls.some((url) => url === `${stack.app.url}/admin/api/generate`));
    assert.deepEqual(
      traffic.urls.filter((url) => !url.startsWith(`${stack.app.url}/`)),
      [],
      "every request went to the example backend",
    );
    for (const body of await Promise.all(traffic.bodies)) assert.ok(!body.includes(stack.authlink.serviceKey), "no answer holds the key");
    assertNoScriptTrouble(watched);
  } finally {
    await watched.close();
  }
});

test("the address's links are listed with their state; revoking one (or all) shows them revoked, and the verify page agrees", async () => {
  const watched = await openAdminPage();
  try {
    const { page } = watched;
    // Two magic links: the second replaces the first; both are listed, newest first.
    await generate(page, /^Magic link/, "erin@example.com");
    await page.getByRole("heading", { name: "Magic link for erin@example.com" }).waitFor();
    const firstLink = await page.getByLabel("Link", { exact: true }).inputValue();
    await generate(page, /^Magic link/, "erin@example.com");
    await page.waitForFunction(`document.getElementById("action-link")?.value !== ${JSON.stringify(firstLink)}`);
    const secondLink = await page.getByLabel("Link", { exact: true }).inputValue();
    await page.getByRole("heading", { name: "Links for erin@example.com" }).waitFor();
    await assertRows(page, ["Magic link Valid", "Magic link Replaced"]);
    await shot(page, "4-listed");

    // Revoke the outstanding one: the list says revoked, and so does the verify page.
    await page.locator("table tbody tr").first().getByRole("button", { name: "Revoke" }).click();
    await page.getByRole("status").filter({ hasText: "Revoked 1 link." }).waitFor();
    await assertRows(page, ["Magic link Revoked", "Magic link Replaced"]);
    assert.equal(await page.getByRole("button", { name: "Revoke", exact: true }).count(), 0, "nothing left to revoke");
    // The card of the link just generated (the one revoked) says so, and copies it no more.
    await page.getByRole("alert").filter({ hasText: "This link was revoked: it no longer works." }).waitFor();
    assert.equal(await page.getByRole("button", { name: "Copy link" }).isDisabled(), true);
    await shot(page, "5-revoked");

    const revoked = await openPage(browser);
    try {
      await revoked.page.goto(secondLink);
      await revoked.page.getByRole("heading", { name: "This link was cancelled" }).waitFor({ timeout: 10_000 });
    } finally {
      await revoked.close();
    }

    // "Revoke all outstanding" for another address.
    await generate(page, /^Invitation/, "dan@example.com");
    await page.getByRole("heading", { name: "Links for dan@example.com" }).waitFor();
    await assertRows(page, ["Invitation Valid"]);
    await page.getByRole("button", { name: "Revoke all outstanding" }).click();
    await page.getByRole("status").filter({ hasText: "Revoked 1 link." }).waitFor();
    await assertRows(page, ["Invitation Revoked"]);
    assertNoScriptTrouble(watched);
  } finally {
    await watched.close();
  }
});

/** The link table's rows as "type state", waiting until they read so (the list reloads after each change). */
async function assertRows(page: Page, expected: readonly string[]): Promise<void> {
  const read = async () =>
    (await page.locator("table tbody tr").evaluateAll((trs) =>
      trs.map((tr) => [...tr.querySelectorAll("td")].slice(0, 2).map((td) => td.querySelector(".state")?.textContent ?? td.textContent ?? "").join(" ")),
    )) as string[];
  const deadline = Date.now() + 10_000;
  let rows = await read();
  while (JSON.stringify(rows) !== JSON.stringify(expected) && Date.now() < deadline) {
    await page.waitForTimeout(100);
    rows = await read();
  }
  assert.deepEqual(rows, expected);
}
