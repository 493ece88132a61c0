import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium, openPage, screenshotDir, type WatchedPage } from "../support/browser.js";
import { signInThroughEmail, linkInMail } from "../support/example-browser.js";
import { EXAMPLE_APP_NAME, startExampleStack, type ExampleStack } from "../support/example-stack.js";

// The example backend's sign-in, in Chromium against a real authlink
// (embedded store): the form, the email over SMTP (its HTML part rendered
// too), authlink's verify page, the person's click, /callback (the assertion
// read from the fragment, checked by the backend with jose), and the page
// that shows who is signed in. Screenshots go to
// AUTHLINK_TEST_SCREENSHOTS/example-backend when that is set.

const shots = await screenshotDir("example-backend");
let browser: Browser;
let stack: ExampleStack;

before(async () => {
  browser = await launchChromium();
  stack = await startExampleStack();
});
after(async () => {
  await browser?.close();
  await stack?.close();
  await shots.cleanup();
});

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(shots.dir, `${name}.png`), fullPage: true });
}

function assertNoScriptTrouble(watched: WatchedPage): void {
  assert.deepEqual(watched.pageErrors, [], "no script error");
  assert.deepEqual(watched.dialogs, []);
  assert.deepEqual(
    watched.consoleErrors.filter((m) => !/^Failed to load resource/.test(m)),
    [],
    "no console error (a CSP violation would show here)",
  );
}

test("request a link, receive the email, open it, click, come back signed in", async () => {
  const watched = await openPage(browser, { viewport: { width: 900, height: 700 } });
  const { page } = watched;
  const appRequests: string[] = [];
  page.on("request", (r) => {
    if (r.url().startsWith(stack.app.url)) appRequests.push(`${r.method()} ${r.url()} ${r.postData() ?? ""}`);
  });
  try {
    await page.goto(`${stack.app.url}/`);
    await shot(page, "1-sign-in-form");

    const mail = await signInThroughEmail(page, stack, "ann@example.com", {
      afterForm: async () => {
        assert.match(await page.locator("main").innerText(), /We sent a sign-in link and a code to ann@example\.com/);
        await shot(page, "2-check-your-email");
      },
      onVerifyPage: async () => {
        const text = await page.locator("main").innerText();
        assert.match(text, new RegExp(`Sign in to ${EXAMPLE_APP_NAME}`));
        assert.match(text, /Afterwards you will continue to 127\.0\.0\.1:\d+/);
        await shot(page, "4-verify-page");
      },
    });

    // Back home: the app's own session, and no assertion left in the address bar.
    assert.equal(page.url(), `${stack.app.url}/`);
    const home = await page.locator("main").innerText();
    assert.match(home, /Signed in as ann@example\.com/);
    assert.match(home, /Signed in with\s+magiclink/);
    await shot(page, "5-signed-in");
    const cookies = await watched.context.cookies(stack.app.url);
    const session = cookies.find((c) => c.name === "example_session");
    assert.ok(session?.httpOnly, "the session cookie is HttpOnly");
    assert.equal(session?.sameSite, "Lax");

    // The assertion reached the backend only in a POST body, never in a URL.
    const callback = appRequests.find((r) => r.startsWith("GET ") && r.includes("/callback"));
    assert.ok(callback, "the verify page sent the browser to /callback");
    assert.doesNotMatch(callback, /authlink_assertion/);
    assert.ok(appRequests.some((r) => r.startsWith(`POST ${stack.app.url}/session {"assertion":"ey`)));
    assertNoScriptTrouble(watched);

    // What the person saw in their mailbox (the HTML part, rendered).
    const mailPage = await openPage(browser, { viewport: { width: 640, height: 700 }, javaScriptEnabled: false });
    try {
      await mailPage.page.setContent(mail.html);
      const text = await mailPage.page.locator("body").innerText();
      assert.match(text, /Sign in to Acme Notes/);
      assert.match(text, /\b\d{6}\b/);
      assert.equal(await mailPage.page.getByRole("link", { name: `Sign in to ${EXAMPLE_APP_NAME}` }).getAttribute("href"), linkInMail(mail));
      await mailPage.page.screenshot({ path: join(shots.dir, "3-email-html.png"), fullPage: true });
    } finally {
      await mailPage.close();
    }

    // The link works once: opened again, the verify page says it was used.
    await page.goto(linkInMail(mail));
    await page.getByRole("heading", { name: "This link was already used" }).waitFor({ timeout: 10_000 });
    await shot(page, "6-link-used");

    // Signing out ends the session.
    await page.goto(`${stack.app.url}/`);
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("button", { name: "Send me a sign-in link" }).waitFor();
  } finally {
    await watched.close();
  }
});

test("/callback without an assertion, or with a refused one, says so and starts no session", async () => {
  const watched = await openPage(browser);
  try {
    const { page } = watched;
    await page.goto(`${stack.app.url}/callback`);
    await page.getByRole("heading", { name: "Nothing to sign in with" }).waitFor();

    await page.goto(`${stack.app.url}/callback#authlink_assertion=eyJhbGciOiJFZERTQSJ9.e30.AAAA`);
    await page.getByRole("heading", { name: "We could not sign you in" }).waitFor();
    assert.match(await page.locator("main").innerText(), /Ask for a new one/);
    assert.equal(new URL(page.url()).hash, "", "the fragment was removed from the address bar");
    await shot(page, "7-callback-refused");
    assert.deepEqual(await watched.context.cookies(stack.app.url), []);
    assert.deepEqual(watched.pageErrors, []);
  } finally {
    await watched.close();
  }
});
