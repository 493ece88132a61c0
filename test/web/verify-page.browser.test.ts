import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import type { Browser, Page } from "playwright-core";
import { LinkState, LinkType, type GenerateLinkResponse } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import type { Clock } from "../../src/domain/clock.js";
import type { LinkType as DomainLinkType } from "../../src/domain/link-type.js";
import { launchChromium, openPage, screenshotDir, type WatchedPage } from "../support/browser.js";
import { Code, connectClient, rejection } from "../support/clients.js";
import { rawRequest } from "../support/http.js";
import { linkParams } from "../support/links.js";
import { ManualClock } from "../support/manual-clock.js";
import { useTestDatabase, type TestDatabase } from "../support/mongo.js";
import { freePort } from "../support/ports.js";
import { startRelyingApp, type RelyingApp } from "../support/relying-app.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// The verify page in a real browser (Debian's Chromium, driven by
// playwright-core) against a real authlink: what a person sees for each state
// of a link, that only their click redeems it, where they go afterwards (a
// relying app on another origin, which verifies the assertion against the
// JWKS), that mail scanners consume nothing, that hostile link parameters
// run nothing, and CORS as a browser enforces it.
//
// A screenshot of every state goes to AUTHLINK_TEST_SCREENSHOTS/verify-page
// when that is set (to look at), else to a temporary directory.

const PRODUCT = "Acme Notes";
const database = await useTestDatabase("verify_page_browser");
const shots = await screenshotDir("verify-page");

let browser: Browser;
/** The relying app: an allowed redirect target and an allowed CORS origin. */
let app: RelyingApp;
/** Another origin: an allowed redirect target but not a CORS origin. */
let stranger: RelyingApp;

before(async () => {
  browser = await launchChromium();
  app = await startRelyingApp();
  stranger = await startRelyingApp();
});
after(async () => {
  await browser?.close();
  await app?.close();
  await stranger?.close();
  await shots.cleanup();
});

interface PageServerOptions {
  readonly database?: TestDatabase;
  readonly clock?: Clock;
  readonly env?: Readonly<Record<string, string>>;
  /** A path for AUTHLINK_PUBLIC_URL, e.g. /auth. */
  readonly basePath?: string;
}

/** authlink whose public URL is its own address, so its action links open in the browser. */
async function startPageServer(options: PageServerOptions = {}): Promise<TestServer> {
  const port = await freePort();
  return startTestServer({
    database: options.database,
    clock: options.clock,
    env: {
      AUTHLINK_ADDR: `127.0.0.1:${port}`,
      AUTHLINK_PUBLIC_URL: `http://127.0.0.1:${port}${options.basePath ?? ""}`,
      AUTHLINK_REDIRECT_ALLOW_LIST: `${app.origin}/**,${stranger.origin}/**`,
      AUTHLINK_CORS_ORIGINS: app.origin,
      AUTHLINK_PAGE_TITLE: PRODUCT,
      AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "off",
      ...options.env,
    },
  });
}

const DOMAIN_TYPE: Readonly<Partial<Record<LinkType, DomainLinkType>>> = {
  [LinkType.SIGNUP]: "signup",
  [LinkType.MAGICLINK]: "magiclink",
  [LinkType.RECOVERY]: "recovery",
  [LinkType.INVITE]: "invite",
  [LinkType.EMAIL_CHANGE]: "email_change",
};

function generate(
  server: TestServer,
  type: LinkType,
  email: string,
  extra: { redirectTo?: string; password?: string; newEmail?: string } = {},
): Promise<GenerateLinkResponse> {
  return connectClient(server.url, { key: server.serviceKey }).generateLink({ type, email, ...extra });
}

function tokenOf(generated: { actionLink: string }): string {
  return linkParams(generated.actionLink).get("token") ?? "";
}

/** Whether the link is still stored and redeemable (read from the store, consuming nothing). */
async function isLive(server: TestServer, generated: GenerateLinkResponse, email: string, now = new Date()): Promise<boolean> {
  const type = DOMAIN_TYPE[generated.verificationType];
  assert.ok(type);
  const links = await server.store.links.findLiveByEmail(email, type, now, 10);
  return links.some((link) => link.tokenHash === generated.hashedToken);
}

function redeem(server: TestServer, type: LinkType, token: string) {
  return connectClient(server.url, { protocol: "connect" }).verifyLink({ type, credential: { case: "token", value: token } });
}

async function heading(page: Page, text: string | RegExp): Promise<void> {
  await page.locator("#app h1", { hasText: text }).waitFor({ timeout: 10_000 });
}

async function cardText(page: Page): Promise<string> {
  return page.locator("main").innerText();
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(shots.dir, `${name}.png`), fullPage: true });
}

/** No dialog, no script error, no console error but failed loads (HTTP errors of refused calls). */
function assertNothingRan(watched: WatchedPage): void {
  assert.deepEqual(watched.dialogs, [], "no dialog opened");
  assert.deepEqual(watched.pageErrors, [], "no script error");
  assert.deepEqual(
    watched.consoleErrors.filter((m) => !/^Failed to load resource/.test(m)),
    [],
    "no console error (CSP violations would show here)",
  );
}

async function withPage<T>(run: (watched: WatchedPage) => Promise<T>, options?: Parameters<typeof openPage>[1]): Promise<T> {
  const watched = await openPage(browser, options);
  try {
    return await run(watched);
  } finally {
    await watched.close();
  }
}

for (const store of ["embedded", "mongodb"] as const) {
  describe(`the main flow on the ${store} store`, () => {
    let server: TestServer;
    /** Where the main flow's click landed, and the link behind it (for the assertion test). */
    let landed: { url: URL; generated: GenerateLinkResponse; email: string } | undefined;

    before(async () => {
      server = await startPageServer(store === "mongodb" ? { database } : {});
    });
    after(() => server.close());

    test("open → what the link does, the masked address, one button, nothing consumed; click → the relying app on another origin; open again → already used", async () => {
      const email = `main-${store}@example.com`;
      const generated = await generate(server, LinkType.MAGICLINK, email, { redirectTo: `${app.origin}/callback?from=email` });
      const token = tokenOf(generated);
      const preview = await connectClient(server.url, { protocol: "connect" }).previewLink({ type: LinkType.MAGICLINK, token });
      assert.equal(preview.state, LinkState.VALID);

      await withPage(async (watched) => {
        const { page } = watched;
        await page.goto(generated.actionLink);
        await heading(page, `Sign in to ${PRODUCT}`);
        const text = await cardText(page);
        assert.ok(text.includes(`This link is for ${preview.maskedEmail}.`), text);
        assert.match(preview.maskedEmail, /^m\*+@example\.com$/);
        assert.ok(!text.includes(email), "the full address is not shown");
        assert.ok(text.includes(`continue to ${preview.redirectHost}`), text);
        assert.equal(await page.locator("#app button.primary").count(), 1, "one button");
        assert.equal(page.url(), `${server.url}/verify`, "the token left the address bar");
        assert.ok(await isLive(server, generated, email), "loading the page consumed nothing");
        await shot(page, `${store}-01-valid`);

        const [callback] = await Promise.all([
          page.waitForURL(`${app.origin}/callback**`),
          page.getByRole("button", { name: "Sign in" }).click(),
        ]);
        void callback;
        const url = new URL(page.url());
        landed = { url, generated, email };
        assert.equal(url.origin, app.origin);
        assert.equal(url.search, "?from=email", "the target's own query is kept, nothing added to it");
        assert.ok(app.requests.includes("/callback?from=email"));
        assert.ok(!app.requests.some((r) => r.includes("authlink_assertion")), "the assertion never reached a server");
        assert.equal(await isLive(server, generated, email), false, "the click redeemed the link");
        await shot(page, `${store}-02-relying-app`);
        assertNothingRan(watched);
      });

      await withPage(async (watched) => {
        await watched.page.goto(generated.actionLink);
        await heading(watched.page, "This link was already used");
        assert.match(await cardText(watched.page), /This link was already used (at|on) .*\d{1,2}:\d{2}.*\./);
        await shot(watched.page, `${store}-03-already-used`);
        assertNothingRan(watched);
      });
    });

    test("the relying app verifies the assertion from its fragment against the JWKS with jose", async () => {
      assert.ok(landed, "the main flow landed on the relying app");
      const { url, generated, email } = landed;
      const fragment = new URLSearchParams(url.hash.slice(1));
      assert.deepEqual([...fragment.keys()], ["authlink_assertion"], `the fragment holds the assertion and nothing else: ${url.hash}`);
      const assertion = fragment.get("authlink_assertion") ?? "";
      const jwks = createRemoteJWKSet(new URL(`${server.url}/.well-known/jwks.json`));
      const { payload } = await jwtVerify(assertion, jwks, { issuer: server.url, audience: server.url });
      assert.equal(payload.sub, generated.user?.id);
      assert.equal(payload.email, email);
      assert.equal(payload.email_verified, true);
      assert.equal(payload.authlink_type, "magiclink");
      assert.deepEqual(payload.amr, ["magiclink"]);
      assert.ok(typeof payload.jti === "string" && payload.jti.length >= 16);
      assert.ok(decodeProtectedHeader(assertion).kid);
      for (const secret of [tokenOf(generated), generated.hashedToken, generated.emailOtp]) assert.ok(!assertion.includes(secret));
    });

    test("mail scanners: GET, HEAD, OPTIONS of the link, Connect GETs of both methods, and a browser that runs the script and clicks like a script, consume nothing; the link then redeems exactly once", async () => {
      const email = `scanner-${store}@example.com`;
      const generated = await generate(server, LinkType.MAGICLINK, email, { redirectTo: `${app.origin}/callback` });
      const token = tokenOf(generated);
      const legacy = `${server.url}/verify?token=${encodeURIComponent(token)}&type=magiclink`;
      for (const url of [generated.actionLink, legacy]) {
        for (const method of ["GET", "HEAD", "OPTIONS"]) {
          const response = await rawRequest(url, { method });
          assert.ok([200, 405].includes(response.status), `${method} ${url}: ${response.status}`);
        }
      }
      const message = JSON.stringify({ type: "LINK_TYPE_MAGICLINK", token });
      for (const method of ["VerifyLink", "PreviewLink"]) {
        const url = `${server.url}/authlink.v1.AdminAuthService/${method}?connect=v1&encoding=json&message=${encodeURIComponent(message)}`;
        for (const verb of ["GET", "HEAD"]) {
          const response = await rawRequest(url, { method: verb });
          assert.notEqual(response.status, 200, `Connect ${verb} ${method} is refused`);
        }
      }
      assert.ok(await isLive(server, generated, email));

      await withPage(async (watched) => {
        const { page } = watched;
        await page.goto(generated.actionLink);
        await heading(page, `Sign in to ${PRODUCT}`);
        // What a scanner that "presses" things from script does: untrusted clicks and submits.
        await page.evaluate(`document.querySelector("#app button.primary").click()`);
        await page.evaluate(`document.querySelector("#app button.primary").dispatchEvent(new MouseEvent("click", { bubbles: true }))`);
        await page.waitForTimeout(500);
        await heading(page, `Sign in to ${PRODUCT}`);
        assert.equal(page.url(), `${server.url}/verify`, "no redirect happened");
        assertNothingRan(watched);
      });
      await withPage(async (watched) => {
        await watched.page.goto(legacy); // an old ?token= link, fetched and run the same way
        await heading(watched.page, `Sign in to ${PRODUCT}`);
        assert.equal(watched.page.url(), `${server.url}/verify`, "the query left the address bar too");
      });
      assert.ok(await isLive(server, generated, email), "nothing consumed the link");

      const verified = await redeem(server, LinkType.MAGICLINK, token);
      assert.equal(verified.user?.email, email);
      const again = await rejection(redeem(server, LinkType.MAGICLINK, token));
      assert.equal(again.code, Code.PermissionDenied);
    });
  });
}

describe("every state of a link (embedded store)", () => {
  let server: TestServer;
  let clock: ManualClock;
  let clockServer: TestServer;

  before(async () => {
    server = await startPageServer();
    // Starts three hours ago; set to the present to let links expire.
    clock = new ManualClock(new Date(Date.now() - 3 * 3_600_000));
    clockServer = await startPageServer({ clock });
  });
  after(async () => {
    await server.close();
    await clockServer.close();
  });

  test("each type says what it does", async () => {
    const cases = [
      { type: LinkType.SIGNUP, heading: "Confirm your address", button: "Confirm my address", extra: { password: "correct horse battery staple 42" } },
      { type: LinkType.INVITE, heading: "Accept the invitation", button: "Accept the invitation", extra: {} },
      { type: LinkType.RECOVERY, heading: "Set a new password", button: "Continue", extra: {}, needsUser: true },
      { type: LinkType.EMAIL_CHANGE, heading: "Confirm your new address", button: "Confirm the change", extra: { newEmail: "types-new@example.com" }, needsUser: true },
    ];
    for (const c of cases) {
      const email = `types-${LinkType[c.type].toLowerCase()}@example.com`;
      if (c.needsUser) await generate(server, LinkType.MAGICLINK, email);
      const generated = await generate(server, c.type, email, c.extra);
      // An email change's top-level link goes to the new address.
      const sentTo = c.extra.newEmail ?? email;
      await withPage(async (watched) => {
        await watched.page.goto(generated.actionLink);
        await heading(watched.page, c.heading);
        assert.equal(await watched.page.locator("#app button.primary").innerText(), c.button);
        await shot(watched.page, `type-${LinkType[c.type].toLowerCase()}`);
        assertNothingRan(watched);
      });
      assert.ok(await isLive(server, generated, sentTo), LinkType[c.type]);
    }
  });

  test("the token is left in no history entry", async () => {
    const generated = await generate(server, LinkType.MAGICLINK, "history@example.com");
    await withPage(async (watched) => {
      const { page } = watched;
      await page.goto(generated.actionLink);
      await heading(page, `Sign in to ${PRODUCT}`);
      assert.equal(await page.evaluate("history.length"), 2, "about:blank and this page: no entry was added");
      await page.goBack();
      assert.equal(page.url(), "about:blank");
      await page.goForward();
      assert.equal(page.url(), `${server.url}/verify`, "the entry of the page holds no fragment");
      await heading(page, "This link is not valid");
    });
  });

  test("a link without a redirect: the click shows a done view", async () => {
    const email = "done@example.com";
    const generated = await generate(server, LinkType.INVITE, email);
    await withPage(async (watched) => {
      await watched.page.goto(generated.actionLink);
      await heading(watched.page, "Accept the invitation");
      await watched.page.getByRole("button", { name: "Accept the invitation" }).click();
      await heading(watched.page, "Invitation accepted");
      assert.equal(watched.page.url(), `${server.url}/verify`);
      await shot(watched.page, "done-invite");
      assertNothingRan(watched);
    });
    assert.equal(await isLive(server, generated, email), false);
  });

  test("expired (clock injected): says when, and what to do", async () => {
    const email = "expired@example.com";
    const generated = await generate(clockServer, LinkType.MAGICLINK, email);
    clock.set(new Date()); // two hours after the link's one-hour lifetime ended
    await withPage(async (watched) => {
      await watched.page.goto(generated.actionLink);
      await heading(watched.page, "This link has expired");
      const text = await cardText(watched.page);
      assert.match(text, /This link expired (at|on) .*\d{1,2}:\d{2}.*\./);
      assert.match(text, /Ask for a new link\./);
      await shot(watched.page, "expired");
      assertNothingRan(watched);
    });
  });

  test("replaced by a newer link", async () => {
    const email = "replaced@example.com";
    const older = await generate(server, LinkType.MAGICLINK, email);
    const newer = await generate(server, LinkType.MAGICLINK, email);
    await withPage(async (watched) => {
      await watched.page.goto(older.actionLink);
      await heading(watched.page, "A newer link was sent");
      assert.match(await cardText(watched.page), /Use the link in the most recent email/);
      await shot(watched.page, "replaced");
      assertNothingRan(watched);
    });
    assert.ok(await isLive(server, newer, email));
  });

  test("revoked (a recovery redeemed since)", async () => {
    const email = "revoked@example.com";
    const magic = await generate(server, LinkType.MAGICLINK, email);
    const recovery = await generate(server, LinkType.RECOVERY, email);
    await redeem(server, LinkType.RECOVERY, tokenOf(recovery));
    await withPage(async (watched) => {
      await watched.page.goto(magic.actionLink);
      await heading(watched.page, "This link was cancelled");
      await shot(watched.page, "revoked");
      assertNothingRan(watched);
    });
  });

  test("the code form: a wrong code says so, the right one redeems the link", async () => {
    const email = "code@example.com";
    const generated = await generate(server, LinkType.MAGICLINK, email);
    const wrong = generated.emailOtp === "000000" ? "111111" : "000000";
    await withPage(async (watched) => {
      const { page } = watched;
      await page.goto(generated.actionLink);
      await heading(page, `Sign in to ${PRODUCT}`);
      await page.getByRole("button", { name: "Enter the code from the email instead" }).click();
      await heading(page, "Enter your code");
      assert.equal(await page.locator("#code-type").count(), 0, "the type is known from the link");
      await page.getByLabel("Email address").fill(email);
      await page.getByLabel("Code", { exact: true }).fill(wrong);
      await shot(page, "code-form");
      await page.getByRole("button", { name: "Continue" }).click();
      await page.locator(".status.error", { hasText: "That code did not work" }).waitFor();
      await shot(page, "code-form-wrong-code");
      assert.ok(await isLive(server, generated, email), "one wrong code does not kill the link");

      await page.getByLabel("Code", { exact: true }).fill(generated.emailOtp);
      await page.getByRole("button", { name: "Continue" }).click();
      await heading(page, "You are signed in");
      await shot(page, "code-form-done");
    });
    assert.equal(await isLive(server, generated, email), false);
  });

  test("the code form without a link asks what the code is for", async () => {
    const email = "code-bare@example.com";
    const generated = await generate(server, LinkType.INVITE, email);
    await withPage(async (watched) => {
      const { page } = watched;
      await page.goto(`${server.url}/verify`);
      await heading(page, "This link is not valid");
      await page.getByRole("button", { name: "Enter the code from the email instead" }).click();
      await page.getByLabel("Email address").fill(email);
      await page.getByLabel("Code", { exact: true }).fill(generated.emailOtp);
      await page.getByLabel("What is the code for?").selectOption("invite");
      await shot(page, "code-form-with-type");
      await page.getByRole("button", { name: "Continue" }).click();
      await heading(page, "Invitation accepted");
      assertNothingRan(watched);
    });
    assert.equal(await isLive(server, generated, email), false);
  });

  test("redeemed elsewhere between loading and the click: the click says the link was already used", async () => {
    const email = "raced@example.com";
    const generated = await generate(server, LinkType.MAGICLINK, email);
    await withPage(async (watched) => {
      const { page } = watched;
      await page.goto(generated.actionLink);
      await heading(page, `Sign in to ${PRODUCT}`);
      await redeem(server, LinkType.MAGICLINK, tokenOf(generated)); // e.g. the code, in another tab
      await page.getByRole("button", { name: "Sign in" }).click();
      await heading(page, "This link was already used");
      await shot(page, "used-after-load");
    });
  });

  test("an unknown (well-formed) token: the generic view", async () => {
    await withPage(async (watched) => {
      await watched.page.goto(`${server.url}/verify#token=${"A".repeat(43)}&type=magiclink`);
      await heading(watched.page, "This link is not valid");
      assertNothingRan(watched);
    });
  });

  test("without JavaScript: an explanation, and nothing to submit", async () => {
    const generated = await generate(server, LinkType.MAGICLINK, "nojs@example.com");
    await withPage(
      async (watched) => {
        await watched.page.goto(generated.actionLink);
        assert.match(await cardText(watched.page), /JavaScript is needed/);
        assert.equal(await watched.page.locator("form, button, input").count(), 0);
        await shot(watched.page, "no-javascript");
      },
      { javaScriptEnabled: false },
    );
    assert.ok(await isLive(server, generated, "nojs@example.com"));
  });

  test("in dark mode", async () => {
    const generated = await generate(server, LinkType.MAGICLINK, "dark@example.com", { redirectTo: `${app.origin}/callback` });
    await withPage(
      async (watched) => {
        await watched.page.goto(generated.actionLink);
        await heading(watched.page, `Sign in to ${PRODUCT}`);
        await shot(watched.page, "valid-dark");
      },
      { colorScheme: "dark" },
    );
  });

  test("on a phone-sized screen", async () => {
    const generated = await generate(server, LinkType.MAGICLINK, "phone@example.com", { redirectTo: `${app.origin}/callback` });
    await withPage(
      async (watched) => {
        await watched.page.goto(generated.actionLink);
        await heading(watched.page, `Sign in to ${PRODUCT}`);
        const width = await watched.page.evaluate("document.documentElement.scrollWidth");
        assert.ok(Number(width) <= 375, `no horizontal scrolling (${String(width)}px)`);
        await shot(watched.page, "valid-phone");
      },
      { viewport: { width: 375, height: 700 } },
    );
  });

  test("under a base path: the page and its assets at /auth/verify, its calls at the root", async () => {
    const based = await startPageServer({ basePath: "/auth" });
    try {
      const generated = await generate(based, LinkType.MAGICLINK, "based@example.com");
      assert.equal(new URL(generated.actionLink).pathname, "/auth/verify");
      await withPage(async (watched) => {
        await watched.page.goto(generated.actionLink);
        await heading(watched.page, `Sign in to ${PRODUCT}`);
        assert.equal(watched.page.url(), `${based.url}/auth/verify`);
        assertNothingRan(watched);
      });
    } finally {
      await based.close();
    }
  });
});

describe("bad input on the page (embedded store)", () => {
  let server: TestServer;

  before(async () => {
    server = await startPageServer();
  });
  after(() => server.close());

  test("missing token, unknown type, oversized values, script in redirect_to: the generic view, nothing run, nothing called, nothing consumed", async () => {
    const email = "hostile@example.com";
    const generated = await generate(server, LinkType.MAGICLINK, email);
    const token = tokenOf(generated);
    const page = `${server.url}/verify`;
    const fragment = (params: Record<string, string>) => `${page}#${new URLSearchParams(params).toString()}`;
    const cases: Record<string, string> = {
      "nothing": page,
      "missing-token": fragment({ type: "magiclink" }),
      "unknown-type": fragment({ token, type: "superuser" }),
      "missing-type": fragment({ token }),
      "script-in-token": `${page}#token=<script>alert(1)</script>&type=magiclink`,
      "markup-in-query": `${page}?token=${encodeURIComponent('"><img src=x onerror=alert(1)>')}&type=magiclink`,
      "javascript-redirect": fragment({ token, type: "magiclink", redirect_to: "javascript:alert(document.domain)" }),
      "script-in-redirect": fragment({ token, type: "magiclink", redirect_to: `${app.origin}/"><script>alert(1)</script>` }),
      "data-redirect": fragment({ token, type: "magiclink", redirect_to: "data:text/html,<script>alert(1)</script>" }),
      "oversized-redirect": fragment({ token, type: "magiclink", redirect_to: `${app.origin}/${"a".repeat(5000)}` }),
      "oversized-token": fragment({ token: token.repeat(5), type: "magiclink" }),
      "repeated-token": `${page}#token=${token}&token=${token}&type=magiclink`,
      "html-type": `${page}#token=${token}&type=${encodeURIComponent("<b>magiclink</b>")}`,
    };
    for (const [name, url] of Object.entries(cases)) {
      await withPage(async (watched) => {
        const calls: string[] = [];
        watched.page.on("request", (request) => {
          if (request.url().includes("AdminAuthService")) calls.push(request.url());
        });
        await watched.page.goto(url);
        await heading(watched.page, "This link is not valid");
        const text = await cardText(watched.page);
        assert.match(text, /ask for a new link/i, name);
        assert.ok(!text.includes("alert"), `${name}: nothing from the URL is shown`);
        assert.equal(await watched.page.locator("script").count(), 1, `${name}: only the page's own script`);
        assert.equal(await watched.page.locator("img, iframe, object, embed").count(), 0, name);
        assert.equal(watched.page.url(), page, `${name}: the address bar is cleared`);
        assert.deepEqual(calls, [], `${name}: nothing was asked of the server`);
        assertNothingRan(watched);
        if (name === "nothing" || name === "script-in-redirect") await shot(watched.page, `invalid-${name}`);
      });
    }
    assert.ok(await isLive(server, generated, email), "the real link inside the hostile ones was not consumed");
    assert.equal((await redeem(server, LinkType.MAGICLINK, token)).user?.email, email);
  });

  test("a link to a valid token that claims another type: not valid, and not consumed", async () => {
    const email = "wrong-type@example.com";
    const generated = await generate(server, LinkType.MAGICLINK, email);
    await withPage(async (watched) => {
      await watched.page.goto(`${server.url}/verify#token=${tokenOf(generated)}&type=recovery`);
      await heading(watched.page, "This link is not valid");
      assertNothingRan(watched);
    });
    assert.ok(await isLive(server, generated, email));
  });
});

describe("when calls fail", () => {
  test("rate limited: too many attempts, with the wait from RetryInfo", async () => {
    const server = await startPageServer({ env: { AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "3/1m" } });
    try {
      const generated = await generate(server, LinkType.MAGICLINK, "limited@example.com");
      for (let i = 0; i < 3; i++) await rejection(redeem(server, LinkType.MAGICLINK, "x".repeat(43)));
      await withPage(async (watched) => {
        const { page } = watched;
        await page.goto(generated.actionLink);
        await page.locator("#app h1").waitFor();
        if ((await page.locator("#app h1").innerText()) !== "Too many attempts") {
          // PreviewLink has its own budget here: the limit shows on the click.
          await page.getByRole("button", { name: "Sign in" }).click();
          await page.locator(".status.error").waitFor();
        }
        assert.match(await cardText(page), /Too many attempts[\s\S]*[Tt]ry again in \d+ (seconds?|minutes?)\./);
        await shot(page, "rate-limited");
        assertNothingRan(watched);
      });
      assert.ok(await isLive(server, generated, "limited@example.com"));
    } finally {
      await server.close();
    }
  });

  test("the server is gone when the button is pressed: try again", async () => {
    const server = await startPageServer();
    let closed = false;
    try {
      const generated = await generate(server, LinkType.MAGICLINK, "unavailable@example.com");
      await withPage(async (watched) => {
        const { page } = watched;
        await page.goto(generated.actionLink);
        await heading(page, `Sign in to ${PRODUCT}`);
        await server.close();
        closed = true;
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.locator(".status.error", { hasText: "We could not reach the server" }).waitFor();
        assert.equal(await page.getByRole("button", { name: "Sign in" }).isEnabled(), true, "the button can be pressed again");
        await shot(page, "unavailable");
      });
    } finally {
      if (!closed) await server.close();
    }
  });
});

describe("Connect-web from other origins (CORS in a real browser)", () => {
  let server: TestServer;

  before(async () => {
    server = await startPageServer();
  });
  after(() => server.close());

  type CallResult = { answer?: Record<string, unknown>; error?: { code: number; message: string } };

  function callFrom(page: Page, method: string, request: unknown, headers: Record<string, string> = {}): Promise<CallResult> {
    return page.evaluate(
      ([baseUrl, m, r, h]) =>
        (globalThis as unknown as { authlinkCall(b: string, m: string, r: unknown, h: unknown): Promise<CallResult> }).authlinkCall(
          baseUrl as string,
          m as string,
          r,
          h,
        ),
      [server.url, method, request, headers] as const,
    );
  }

  test("a page on an allowed origin previews and redeems a link", async () => {
    const email = "cors-allowed@example.com";
    const generated = await generate(server, LinkType.MAGICLINK, email);
    const token = tokenOf(generated);
    await withPage(async (watched) => {
      await watched.page.goto(`${app.origin}/client`);
      const preview = await callFrom(watched.page, "previewLink", { type: LinkType.MAGICLINK, token });
      assert.equal(preview.answer?.state, "LINK_STATE_VALID", JSON.stringify(preview));
      const verified = await callFrom(watched.page, "verifyLink", { type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
      assert.equal((verified.answer?.user as { email?: string } | undefined)?.email, email, JSON.stringify(verified));
      assertNothingRan(watched);
    });
    assert.equal(await isLive(server, generated, email), false);
  });

  test("a page on another origin is blocked by the browser, and the link is untouched", async () => {
    const email = "cors-stranger@example.com";
    const generated = await generate(server, LinkType.MAGICLINK, email);
    const token = tokenOf(generated);
    await withPage(async (watched) => {
      await watched.page.goto(`${stranger.origin}/client`);
      const verified = await callFrom(watched.page, "verifyLink", { type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
      assert.ok(verified.error, JSON.stringify(verified));
      assert.ok(
        watched.consoleErrors.some((m) => /blocked by CORS policy/.test(m)),
        `the browser says why: ${watched.consoleErrors.join(" | ")}`,
      );
    });
    assert.ok(await isLive(server, generated, email), "the preflight failed, so the call was never sent");
  });

  test("even on an allowed origin, a service-role method is blocked by the browser", async () => {
    await withPage(async (watched) => {
      await watched.page.goto(`${app.origin}/client`);
      const generated = await callFrom(
        watched.page,
        "generateLink",
        { type: LinkType.MAGICLINK, email: "cors-generate@example.com" },
        { authorization: `Bearer ${server.serviceKey}` },
      );
      assert.ok(generated.error, JSON.stringify(generated));
      assert.ok(watched.consoleErrors.some((m) => /blocked by CORS policy/.test(m)));
    });
    const live = await server.store.links.findLiveByEmail("cors-generate@example.com", "magiclink", new Date(), 10);
    assert.equal(live.length, 0, "the call never reached the server");
  });
});
