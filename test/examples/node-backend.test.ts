import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createHash } from "node:crypto";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { decodeJwt, SignJWT, generateKeyPair } from "jose";
import { LinkState, LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { escapeHtml, formatExpiry } from "../../examples/node-backend/email-template.js";
import { connectClient } from "../support/clients.js";
import { EXAMPLE_APP_NAME, startExampleStack, type ExampleStack } from "../support/example-stack.js";
import { linkParams } from "../support/links.js";
import type { ReceivedMail } from "../support/mail-message.js";
import { useTestDatabase } from "../support/mongo.js";

// The example backend (examples/node-backend) over HTTP against a real
// authlink on both stores, with its sign-in emails sent over real SMTP to a
// local sink: the email's text and HTML parts (link, code, expiry,
// instructions), sign-in by code, the assertion gate of /session (forged,
// replayed, foreign and non-sign-in assertions refused), the session cookie,
// and the refusals (cross-origin posts, bad addresses, the admin API for
// non-administrators). The browser flow is in node-backend.browser.test.ts.

const database = await useTestDatabase("example_backend");

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly location: string | null;
  readonly cookies: string[];
}

async function request(
  stack: ExampleStack,
  path: string,
  options: { method?: string; form?: Record<string, string>; json?: unknown; cookie?: string; origin?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  let body: string | undefined;
  if (options.form) {
    headers["content-type"] = "application/x-www-form-urlencoded";
    body = new URLSearchParams(options.form).toString();
  } else if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  if (options.cookie) headers.cookie = options.cookie;
  if (options.origin) headers.origin = options.origin;
  const response = await fetch(`${stack.app.url}${path}`, {
    method: options.method ?? (body === undefined ? "GET" : "POST"),
    headers,
    body,
    redirect: "manual",
  });
  return { status: response.status, body: await response.text(), location: response.headers.get("location"), cookies: response.headers.getSetCookie() };
}

/** name=value of the session cookie a response set. */
function sessionCookie(answer: Answer): string {
  const cookie = answer.cookies.find((c) => c.startsWith("example_session=") && !c.startsWith("example_session=;"));
  assert.ok(cookie, `a session cookie was set (got ${JSON.stringify(answer.cookies)})`);
  return cookie.split(";", 1)[0] ?? "";
}

function codeOf(mail: ReceivedMail): string {
  const code = /^ {4}(\d{6,10})$/m.exec(mail.text)?.[1];
  assert.ok(code, "the text part shows the code on its own line");
  return code;
}

function linkOf(mail: ReceivedMail): string {
  const link = /^(http:\/\/\S+\/verify#\S+)$/m.exec(mail.text)?.[1];
  assert.ok(link, "the text part shows the link on its own line");
  return link;
}

/** A real assertion: a link generated and redeemed directly (as the verify page would). */
async function redeemedAssertion(stack: ExampleStack, email: string, type = LinkType.MAGICLINK): Promise<string> {
  const key = stack.authlink.serviceKey;
  const link = await connectClient(stack.authlink.url, { key }).generateLink({ type, email });
  const token = linkParams(link.actionLink).get("token") ?? "";
  const answer = await connectClient(stack.authlink.url, { protocol: "connect" }).verifyLink({ type, credential: { case: "token", value: token } });
  return answer.assertion;
}

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`example backend (${backend} store)`, () => {
    let stack: ExampleStack;
    before(async () => {
      stack = await startExampleStack({ database: backend === "MongoDB" ? database : undefined, adminEmails: ["admin@example.com"] });
    });
    after(() => stack?.close());

    test("POST /signin mails the link and the code over SMTP: text and HTML from the templates, with the expiry and instructions", async () => {
      const answer = await request(stack, "/signin", { form: { email: "Ann@Example.com" } });
      assert.equal(answer.status, 200);
      assert.match(answer.body, /Check your email/);
      assert.match(answer.body, /ann@example\.com/);

      const mail = await stack.sink.nextMailTo("ann@example.com");
      assert.equal(mail.subject, `Your sign-in link for ${EXAMPLE_APP_NAME}`);
      assert.match(mail.headers.get("from") ?? "", /no-reply@acme\.example/);

      const link = linkOf(mail);
      const code = codeOf(mail);
      const params = linkParams(link);
      assert.ok(link.startsWith(`${stack.authlink.url}/verify#`), "the link opens authlink's verify page");
      assert.equal(params.get("type"), "magiclink");
      assert.equal(params.get("redirect_to"), `${stack.app.url}/callback`, "and comes back to the app's /callback");
      const token = params.get("token") ?? "";

      // The expiry in the email is authlink's own, as PreviewLink states it (consuming nothing).
      const preview = await connectClient(stack.authlink.url, { protocol: "connect" }).previewLink({ type: LinkType.MAGICLINK, token });
      assert.equal(preview.state, LinkState.VALID);
      assert.ok(preview.expiresAt);
      const expiry = formatExpiry(timestampDate(preview.expiresAt));
      assert.match(expiry, /^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{2}:\d{2} UTC$/);

      assert.ok(mail.text.includes(`You asked to sign in to ${EXAMPLE_APP_NAME} as ann@example.com.`));
      assert.ok(mail.text.includes('open this link and press "Sign in"'));
      assert.ok(mail.text.includes(`go to ${stack.app.url}/signin/code and enter this code`));
      assert.ok(mail.text.includes(`until ${expiry} (in 60 minutes)`), mail.text);
      assert.ok(mail.text.includes("If you did not ask for this, ignore this email"));

      assert.ok(mail.html.includes(`<a href="${escapeHtml(link)}"`), "the HTML part's button is the link (HTML-escaped)");
      assert.ok(mail.html.includes(`>${code}</p>`), "the HTML part shows the code");
      assert.ok(mail.html.includes(`until <strong>${escapeHtml(expiry)}</strong> (in 60 minutes)`));
      assert.ok(mail.html.includes("If you did not ask for this, ignore this email"));
      assert.ok(mail.html.includes(`<strong>ann@example.com</strong>`));
      assert.doesNotMatch(mail.html + mail.text, /\{\{/, "every placeholder was filled");

      // The link in the mail is the one authlink stored (by its hash), for this address.
      const hash = createHash("sha256").update(token).digest("hex");
      const live = await stack.authlink.store.links.findLiveByEmail("ann@example.com", "magiclink", new Date(), 10);
      assert.deepEqual(
        live.map((l) => l.tokenHash),
        [hash],
      );
    });

    test("the code from the email signs in (VerifyLink by code): a signed HttpOnly cookie, and the home page says who", async () => {
      await request(stack, "/signin", { form: { email: "bea@example.com" } });
      const code = codeOf(await stack.sink.nextMailTo("bea@example.com"));

      const wrong = await request(stack, "/signin/code", { form: { email: "bea@example.com", code: code === "000000" ? "111111" : "000000" } });
      assert.equal(wrong.status, 401);
      assert.match(wrong.body, /That code is not valid/);
      assert.deepEqual(wrong.cookies, []);

      const signedIn = await request(stack, "/signin/code", { form: { email: "bea@example.com", code } });
      assert.equal(signedIn.status, 303);
      assert.equal(signedIn.location, "/");
      const setCookie = signedIn.cookies.find((c) => c.startsWith("example_session=")) ?? "";
      assert.match(setCookie, /; HttpOnly/);
      assert.match(setCookie, /; SameSite=Lax/);
      assert.doesNotMatch(setCookie, /; Secure/, "plain http on loopback: no Secure flag");
      const cookie = sessionCookie(signedIn);

      const home = await request(stack, "/", { cookie });
      assert.match(home.body, /Signed in as <strong>bea@example\.com<\/strong>/);
      assert.match(home.body, /<dt>Signed in with<\/dt><dd>otp<\/dd>/);
      assert.doesNotMatch(home.body, /admin link generator/, "not an administrator");

      const again = await request(stack, "/signin/code", { form: { email: "bea@example.com", code } });
      assert.equal(again.status, 401, "a code works once");

      // An altered cookie is no session.
      const [name, value] = cookie.split("=");
      const [payload, signature] = (value ?? "").split(".");
      const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload ?? "", "base64url").toString()), email: "admin@example.com" })).toString("base64url");
      const altered = await request(stack, "/", { cookie: `${name}=${forged}.${signature}` });
      assert.match(altered.body, /Send me a sign-in link/);

      const signedOut = await request(stack, "/signout", { form: {}, cookie });
      assert.equal(signedOut.status, 303);
      assert.ok(signedOut.cookies.some((c) => c.startsWith("example_session=;") && c.includes("Max-Age=0")));
    });

    test("POST /session accepts a real assertion once, and refuses forged, replayed, foreign and non-sign-in ones", async () => {
      const assertion = await redeemedAssertion(stack, "cy@example.com");
      const accepted = await request(stack, "/session", { json: { assertion } });
      assert.equal(accepted.status, 200);
      assert.deepEqual(JSON.parse(accepted.body), { email: "cy@example.com" });
      const home = await request(stack, "/", { cookie: sessionCookie(accepted) });
      assert.match(home.body, /Signed in as <strong>cy@example\.com<\/strong>/);
      assert.match(home.body, /<dd>magiclink<\/dd>/);

      const replayed = await request(stack, "/session", { json: { assertion } });
      assert.equal(replayed.status, 401, "an assertion is accepted once");
      assert.deepEqual(replayed.cookies, []);

      const fresh = await redeemedAssertion(stack, "cy@example.com");
      const [header, payload, signature] = fresh.split(".");
      const flipped = `${header}.${payload}.${signature?.startsWith("A") ? "B" : "A"}${signature?.slice(1)}`;
      assert.equal((await request(stack, "/session", { json: { assertion: flipped } })).status, 401, "a bad signature");

      // The same claims signed by a key authlink does not publish.
      const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
      const foreign = await new SignJWT({ ...decodeJwt(fresh) }).setProtectedHeader({ alg: "EdDSA", kid: "someone-else" }).sign(privateKey);
      assert.equal((await request(stack, "/session", { json: { assertion: foreign } })).status, 401, "another signer");

      // A recovery link proves the mailbox; it is not a sign-in this app asked for.
      await connectClient(stack.authlink.url, { key: stack.authlink.serviceKey }).generateLink({ type: LinkType.MAGICLINK, email: "dee@example.com" });
      const recovery = await redeemedAssertion(stack, "dee@example.com", LinkType.RECOVERY);
      assert.equal((await request(stack, "/session", { json: { assertion: recovery } })).status, 401);
      assert.ok(stack.appLogs.some((line) => line.includes("a recovery link does not sign anyone in here")));

      assert.equal((await request(stack, "/session", { json: { assertion: "" } })).status, 401);
      assert.equal((await request(stack, "/session", { form: { assertion: fresh } })).status, 415, "JSON only");
    });

    test("refusals: another origin's POST, an address authlink rejects, the admin API for others than administrators", async () => {
      const before = stack.sink.messages.length;
      const crossSite = await request(stack, "/signin", { form: { email: "eve@example.com" }, origin: "https://evil.example" });
      assert.equal(crossSite.status, 403);

      const bad = await request(stack, "/signin", { form: { email: "not an address" } });
      assert.equal(bad.status, 400);
      assert.match(bad.body, /does not look like an email address/);
      assert.equal(stack.sink.messages.length, before, "nothing was mailed");

      const anonymous = await request(stack, "/admin/api/generate", { json: { type: "magiclink", email: "x@example.com" } });
      assert.equal(anonymous.status, 403);
      const me = await request(stack, "/admin/api/me", { json: {} });
      assert.deepEqual(JSON.parse(me.body), { email: "", admin: false });

      const assertion = await redeemedAssertion(stack, "fay@example.com");
      const cookie = sessionCookie(await request(stack, "/session", { json: { assertion } }));
      const notAdmin = await request(stack, "/admin/api/generate", { json: { type: "magiclink", email: "x@example.com" }, cookie });
      assert.equal(notAdmin.status, 403);
      assert.match(notAdmin.body, /administrator/);
      const notJson = await request(stack, "/admin/api/generate", { form: { type: "magiclink", email: "x@example.com" }, cookie });
      assert.equal(notJson.status, 415);

      // What the app answered and logged never held its service key.
      assert.ok(stack.appLogs.every((line) => !line.includes(stack.authlink.serviceKey)));
    });

    test("the admin API generates for an administrator, and answers authlink's errors as JSON with their reason", async () => {
      const assertion = await redeemedAssertion(stack, "admin@example.com");
      const cookie = sessionCookie(await request(stack, "/session", { json: { assertion } }));
      const me = await request(stack, "/admin/api/me", { json: {}, cookie });
      assert.deepEqual(JSON.parse(me.body), { email: "admin@example.com", admin: true });

      const generated = await request(stack, "/admin/api/generate", { json: { type: "invite", email: "gus@example.com" }, cookie });
      assert.equal(generated.status, 200, generated.body);
      const link = JSON.parse(generated.body) as Record<string, string>;
      assert.equal(link.type, "invite");
      assert.equal(link.email, "gus@example.com");
      assert.match(link.emailOtp ?? "", /^\d{6}$/);
      assert.match(link.hashedToken ?? "", /^[0-9a-f]{64}$/);
      assert.equal(linkParams(link.actionLink ?? "").get("redirect_to"), `${stack.app.url}/callback`);
      assert.ok(!Number.isNaN(Date.parse(link.expiresAt ?? "")));

      // hal has confirmed the address (by redeeming a magic link): not invitable.
      await redeemedAssertion(stack, "hal@example.com");
      const exists = await request(stack, "/admin/api/generate", { json: { type: "invite", email: "hal@example.com" }, cookie });
      assert.equal(exists.status, 409);
      assert.deepEqual(JSON.parse(exists.body).error.reason, "email_exists");

      const bad = await request(stack, "/admin/api/generate", { json: { type: "invite", email: "nope" }, cookie });
      assert.equal(bad.status, 400);
      assert.equal(JSON.parse(bad.body).error.code, "invalid_argument");
      assert.deepEqual(JSON.parse(bad.body).error.fields, ["email"]);

      const badType = await request(stack, "/admin/api/generate", { json: { type: "recovery", email: "gus@example.com" }, cookie });
      assert.equal(badType.status, 400);
      const unknown = await request(stack, "/admin/api/constructor", { json: {}, cookie });
      assert.equal(unknown.status, 404);
      assert.ok(![generated, exists, bad].some((a) => a.body.includes(stack.authlink.serviceKey)));
    });
  });
}
