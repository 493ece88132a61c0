import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, test } from "node:test";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GenerateLinkRequestSchema } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { linkParams } from "../support/links.js";
import { Code, connectClient, fieldViolationsOf, reasonOf, rejection, type AdminClient } from "../support/clients.js";
import { connectJson, rawRequest } from "../support/http.js";
import { ManualClock } from "../support/manual-clock.js";
import { useTestDatabase } from "../support/mongo.js";
import { mongoHostPort, startTcpProxy, viaProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { GRPC_JS_LISTENER, GRPC_LISTENERS, grpcUrlOf, startTestServer, type GrpcListener, type TestServer } from "../support/test-server.js";
import { eventually } from "../support/eventually.js";

// A hostile caller's view of authlink, through real clients and the MongoDB
// store. Every case asserts the status code, the reason, and that nothing was
// stored or consumed. Groups: authentication, input validation, token
// handling, faults, leakage. (Certificate attacks are in tls.test.ts.)

const database = await useTestDatabase("adversarial");
const db = database.client.db(database.name);
const clock = new ManualClock(new Date());
let proxy: TcpProxy;
let server: TestServer;

before(async () => {
  const { host, port } = mongoHostPort(database.uri);
  proxy = await startTcpProxy(host, port);
  server = await startTestServer({
    database,
    databaseUri: viaProxy(database.uri, proxy),
    dbTimeoutMs: 1_000,
    clock,
    env: {
      ...GRPC_JS_LISTENER,
      AUTHLINK_TRUSTED_PROXIES: "127.0.0.1",
      AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "3/1h",
      AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "10/1m",
      AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL: "8/1h",
      AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL_AND_CLIENT: "3/1h",
      AUTHLINK_OTP_MAX_ATTEMPTS: "5",
    },
  });
});
after(async () => {
  await server.close();
  await proxy.close();
});

// Each test speaks from its own client address (through the trusted proxy
// 127.0.0.1) so per-address limits of one test never touch another.
let addressCounter = 0;
// (198.18.0.0/15, the benchmarking range: room for every test of both runs.)
const nextAddress = () => {
  const n = ++addressCounter;
  return `198.18.${Math.floor(n / 250)}.${(n % 250) + 1}`;
};
let emailCounter = 0;
const email = (label: string) => `${label}-${++emailCounter}@example.com`;

// The behaviour suites run once per gRPC listener: on connect-node's main port
// (service calls over Connect, public calls over gRPC) and on the grpc-js
// listener (everything over gRPC). Tests that speak raw HTTP or the Connect
// protocol run on the main port only.
let listener: GrpcListener = "connect-node";
const admin = (address = nextAddress(), key: string | null = server.serviceKey): AdminClient =>
  listener === "connect-node"
    ? connectClient(server.url, { protocol: "connect", key, headers: { "x-forwarded-for": address } })
    : connectClient(grpcUrlOf(server, listener), { protocol: "grpc", key, headers: { "x-forwarded-for": address } });
const anyone = (address = nextAddress()): AdminClient =>
  connectClient(grpcUrlOf(server, listener), { protocol: "grpc", headers: { "x-forwarded-for": address } });

type Generate = MessageInitShape<typeof GenerateLinkRequestSchema>;

async function refused(call: Promise<unknown>, code: Code, reason: string) {
  const error = await rejection(call);
  assert.equal(Code[error.code], Code[code], error.message);
  assert.equal(reasonOf(error), reason);
  return error;
}

async function storedFor(address: string): Promise<{ users: number; links: number }> {
  return {
    users: await db.collection("users").countDocuments({ email: address }),
    links: await db.collection("link_tokens").countDocuments({ email: address }),
  };
}

async function assertNothingStored(address: string) {
  assert.deepEqual(await storedFor(address), { users: 0, links: 0 }, `nothing may be stored for ${address}`);
}

const tokenOf = (link: { actionLink: string }) => linkParams(link.actionLink).get("token") ?? "";
const byToken = (type: LinkType, token: string) => ({ type, credential: { case: "token" as const, value: token } });
const byCode = (type: LinkType, address: string, otp: string) => ({
  type,
  credential: { case: "emailOtp" as const, value: { email: address, otp } },
});

async function magic(address: string) {
  const generated = await admin().generateLink({ type: LinkType.MAGICLINK, email: address });
  return { generated, token: tokenOf(generated) };
}

async function stillWorks(type: LinkType, token: string): Promise<void> {
  const verified = await anyone().verifyLink(byToken(type, token));
  assert.ok(verified.user?.id, "the link was not consumed and still works");
}

for (const on of GRPC_LISTENERS) {
describe(`over the ${on} listener`, () => {
  before(() => {
    listener = on;
  });

  describe("authentication", () => {
    test("no credential: UNAUTHENTICATED credentials_missing, nothing stored", async () => {
      const target = email("nocred");
      await refused(admin(undefined, null).generateLink({ type: LinkType.MAGICLINK, email: target }), Code.Unauthenticated, "credentials_missing");
      await assertNothingStored(target);
    });

    test("an unknown key: UNAUTHENTICATED credentials_invalid", async () => {
      const target = email("badkey");
      await refused(admin(undefined, "x".repeat(48)).generateLink({ type: LinkType.MAGICLINK, email: target }), Code.Unauthenticated, "credentials_invalid");
      await assertNothingStored(target);
    });

    test("the real key with a suffix, without its first character, or upper-cased: credentials_invalid", async () => {
      for (const key of [`${server.serviceKey}x`, server.serviceKey.slice(1), server.serviceKey.toUpperCase()]) {
        const target = email("nearkey");
        await refused(admin(undefined, key).generateLink({ type: LinkType.MAGICLINK, email: target }), Code.Unauthenticated, "credentials_invalid");
        await assertNothingStored(target);
      }
    });

    if (on === "connect-node") test("other schemes, an empty key, and two keys in one header: credentials_invalid", async () => {
      for (const authorization of [`Basic ${server.serviceKey}`, "Bearer ", `Bearer ${server.serviceKey}, Bearer ${server.serviceKey}`, `Token ${server.serviceKey}`]) {
        const target = email("scheme");
        const response = await connectJson(server.url, "GenerateLink", { type: "LINK_TYPE_MAGICLINK", email: target }, { authorization });
        assert.equal(response.status, 401, authorization);
        assert.equal((JSON.parse(response.body) as { code: string }).code, "unauthenticated");
        await assertNothingStored(target);
      }
    });

    if (on === "connect-node") test("a key in another header or in the URL is not a credential: credentials_missing", async () => {
      const target = email("elsewhere");
      const response = await rawRequest(`${server.url}/authlink.v1.AdminAuthService/GenerateLink?key=${server.serviceKey}`, {
        headers: { "content-type": "application/json", "x-api-key": server.serviceKey, apikey: server.serviceKey },
        body: JSON.stringify({ type: "LINK_TYPE_MAGICLINK", email: target }),
      });
      assert.equal(response.status, 401);
      assert.match(response.body, /credentials_missing|Y3JlZGVudGlhbHNfbWlzc2luZ/);
      await assertNothingStored(target);
    });

    if (on === "connect-node") test("the scheme name is case-insensitive, the key is not", async () => {
      const target = email("lowercase");
      const response = await connectJson(server.url, "GenerateLink", { type: "LINK_TYPE_MAGICLINK", email: target }, {
        authorization: `bearer ${server.serviceKey}`,
      });
      assert.equal(response.status, 200);
    });

    test("every refused call is audited with the caller and the reason", async () => {
      const address = nextAddress();
      const target = email("audited");
      await refused(admin(address, null).generateLink({ type: LinkType.MAGICLINK, email: target }), Code.Unauthenticated, "credentials_missing");
      await refused(admin(address, "y".repeat(40)).generateLink({ type: LinkType.MAGICLINK, email: target }), Code.Unauthenticated, "credentials_invalid");
      const events = await db.collection("audit_events").find({ clientAddress: address }).sort({ at: 1 }).toArray();
      assert.deepEqual(
        events.map((e) => [e.method, e.caller, e.outcome]),
        [
          ["GenerateLink", "anonymous", "credentials_missing"],
          ["GenerateLink", "unknown", "credentials_invalid"],
        ],
      );
    });
  });

  describe("input validation", () => {
    const openRedirects = [
      "//evil.example.net/",
      "https:evil.example.net",
      "https:/evil.example.net/",
      "https://app.example.com\\@evil.example.net/",
      "https://app.example.com\\.evil.example.net/",
      "https://app.example.com@evil.example.net/",
      "https://user:pass@app.example.com/",
      "https://app.example.com.evil.example.net/",
      "https://evilapp.example.com/",
      "http://2130706433:3000/",
      "http://0x7f.0.0.1:3000/",
      "http://127.1:3000/",
      "javascript:alert(document.cookie)",
      "JAVASCRIPT://app.example.com/%0aalert(1)",
      "data:text/html,<script>alert(1)</script>",
      "http://app.example.com/",
      "https://app.example.com%2f@evil.example.net/",
      "https://app.example.com:443@evil.example.net/",
      " https://app.example.com/",
      "https://app.example.com/\n",
      "/relative/path",
      "https://аpp.example.com/",
      "https://app.example.com./",
    ];
    for (const redirectTo of openRedirects) {
      test(`open redirect ${JSON.stringify(redirectTo)}: INVALID_ARGUMENT redirect_not_allowed, nothing stored`, async () => {
        const target = email("redirect");
        const error = await refused(
          admin().generateLink({ type: LinkType.MAGICLINK, email: target, redirectTo }),
          Code.InvalidArgument,
          "redirect_not_allowed",
        );
        assert.deepEqual(fieldViolationsOf(error), ["redirect_to"]);
        await assertNothingStored(target);
      });
    }

    test("an allowed redirect is kept, normalized, in the link and the response", async () => {
      const generated = await admin().generateLink({ type: LinkType.MAGICLINK, email: email("okredirect"), redirectTo: "https://APP.example.com/a/b?x=1#frag" });
      assert.equal(generated.redirectTo, "https://app.example.com/a/b?x=1#frag");
      assert.equal(linkParams(generated.actionLink).get("redirect_to"), "https://app.example.com/a/b?x=1#frag");
    });

    const badRequests: [string, (target: string) => Generate, string, string[]][] = [
      ["an unknown link type", (t) => ({ type: 42 as LinkType, email: t }), "validation_failed", ["type"]],
      ["no link type", (t) => ({ email: t }), "validation_failed", ["type"]],
      ["a password on a magic link", (t) => ({ type: LinkType.MAGICLINK, email: t, password: "s3cret-passw0rd" }), "validation_failed", ["password"]],
      ["a signup without a password", (t) => ({ type: LinkType.SIGNUP, email: t }), "validation_failed", ["password"]],
      ["a weak signup password", (t) => ({ type: LinkType.SIGNUP, email: t, password: "password123" }), "weak_password", ["password"]],
      ["new_email on an invite", (t) => ({ type: LinkType.INVITE, email: t, newEmail: "other@example.com" }), "validation_failed", ["new_email"]],
      ["an email change without new_email", (t) => ({ type: LinkType.EMAIL_CHANGE, email: t }), "validation_failed", ["new_email"]],
      ["data on a recovery link", (t) => ({ type: LinkType.RECOVERY, email: t, data: { admin: true } }), "validation_failed", ["data"]],
      ["data over 8 KiB", (t) => ({ type: LinkType.INVITE, email: t, data: { blob: "x".repeat(8200) } }), "validation_failed", ["data"]],
      ["expires_in below the minimum", (t) => ({ type: LinkType.MAGICLINK, email: t, expiresIn: { seconds: 5n } }), "validation_failed", ["expires_in"]],
      ["a negative expires_in", (t) => ({ type: LinkType.MAGICLINK, email: t, expiresIn: { seconds: -3600n } }), "validation_failed", ["expires_in"]],
      ["expires_in beyond the maximum", (t) => ({ type: LinkType.MAGICLINK, email: t, expiresIn: { seconds: 8n * 86_400n } }), "validation_failed", ["expires_in"]],
    ];
    for (const [name, build, reason, fields] of badRequests) {
      test(`${name}: INVALID_ARGUMENT ${reason} on ${fields.join(", ")}, nothing stored`, async () => {
        const target = email("bad");
        const error = await refused(admin().generateLink(build(target)), Code.InvalidArgument, reason);
        assert.deepEqual(fieldViolationsOf(error), fields);
        await assertNothingStored(target);
      });
    }

    test("every malformed field is reported at once", async () => {
      const error = await refused(
        admin().generateLink({ type: LinkType.INVITE, email: "not an email", password: "x", newEmail: "y@example.com", expiresIn: { seconds: 1n } }),
        Code.InvalidArgument,
        "validation_failed",
      );
      assert.deepEqual(fieldViolationsOf(error).sort(), ["email", "expires_in", "new_email", "password"]);
    });

    test("Unicode look-alikes of an existing address are refused, never matched to it", async () => {
      const kate = "kate@example.com";
      await admin().generateLink({ type: LinkType.MAGICLINK, email: kate });
      for (const lookalike of ["\u212Aate@example.com", "kate@ex\u0430mple.com", "\uFF4Bate@example.com", "kate@example.\u0441om", "ka\u0131te@example.com", "KATE@EXAMPLE.COM\u200B"]) {
        await refused(admin().generateLink({ type: LinkType.RECOVERY, email: lookalike }), Code.InvalidArgument, "validation_failed");
      }
      // ASCII case is the one folding there is: it reaches the same, stored, address.
      const upper = await admin().generateLink({ type: LinkType.RECOVERY, email: "KATE@Example.COM" });
      assert.equal(upper.user?.email, kate);
    });

    test("malformed and over-long addresses: validation_failed, nothing stored", async () => {
      for (const address of ["", "plain", "a@b", "a@@example.com", ".a@example.com", "a..b@example.com", `${"a".repeat(65)}@example.com`, `a@${"b".repeat(250)}.com`, "a b@example.com", "a@example..com"]) {
        await refused(admin().generateLink({ type: LinkType.MAGICLINK, email: address }), Code.InvalidArgument, "validation_failed");
      }
      assert.equal(await db.collection("users").countDocuments({ email: { $in: ["plain", "a@b"] } }), 0);
    });

    if (on === "connect-node") test("a request over the size limit is refused before any database work", async () => {
      const target = email("huge");
      const response = await connectJson(server.url, "GenerateLink", { type: "LINK_TYPE_INVITE", email: target, data: { blob: "x".repeat(70_000) } }, {
        authorization: `Bearer ${server.serviceKey}`,
      });
      assert.equal(response.status, 429, response.body); // Connect's HTTP status for resource_exhausted
      assert.equal((JSON.parse(response.body) as { code: string }).code, "resource_exhausted");
      await assertNothingStored(target);
    });

    test("VerifyLink without a credential, with a malformed token or a short code: validation_failed", async () => {
      await refused(anyone().verifyLink({ type: LinkType.MAGICLINK }), Code.InvalidArgument, "validation_failed");
      await refused(anyone().verifyLink(byToken(LinkType.MAGICLINK, "short")), Code.InvalidArgument, "validation_failed");
      await refused(anyone().verifyLink(byToken(LinkType.MAGICLINK, `${"A".repeat(42)}=`)), Code.InvalidArgument, "validation_failed");
      await refused(anyone().verifyLink(byCode(LinkType.MAGICLINK, "a@example.com", "12345")), Code.InvalidArgument, "validation_failed");
      await refused(anyone().verifyLink(byCode(LinkType.MAGICLINK, "a@example.com", "12345a")), Code.InvalidArgument, "validation_failed");
    });

    if (on === "connect-node") test("VerifyLink with both a token and a code is refused and consumes nothing", async () => {
      const target = email("both");
      const { generated, token } = await magic(target);
      const response = await connectJson(server.url, "VerifyLink", {
        type: "LINK_TYPE_MAGICLINK",
        token,
        emailOtp: { email: target, otp: generated.emailOtp },
      });
      assert.equal(response.status, 400);
      assert.equal((JSON.parse(response.body) as { code: string }).code, "invalid_argument");
      await stillWorks(LinkType.MAGICLINK, token);
    });
  });

  describe("token handling", () => {
    if (on === "connect-node") test("a forged Host, X-Forwarded-Host or :authority does not change the link's origin", async () => {
      const viaHost = await connectJson(server.url, "GenerateLink", { type: "LINK_TYPE_MAGICLINK", email: email("host") }, {
        authorization: `Bearer ${server.serviceKey}`,
        host: "evil.example.net",
        "x-forwarded-host": "evil.example.net",
        "x-forwarded-proto": "http",
        forwarded: "host=evil.example.net;proto=http",
      });
      assert.equal(viaHost.status, 200, viaHost.body);
      assert.equal(new URL((JSON.parse(viaHost.body) as { actionLink: string }).actionLink).origin, "https://auth.example.com");

      const session = http2.connect(server.url);
      after(() => session.close());
      const stream = session.request({
        ":method": "POST",
        ":path": "/authlink.v1.AdminAuthService/GenerateLink",
        ":authority": "evil.example.net",
        "content-type": "application/json",
        authorization: `Bearer ${server.serviceKey}`,
      });
      stream.end(JSON.stringify({ type: "LINK_TYPE_MAGICLINK", email: email("authority") }));
      let body = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => (body += chunk));
      await new Promise((resolve) => stream.on("end", resolve));
      assert.equal(new URL((JSON.parse(body) as { actionLink: string }).actionLink).origin, "https://auth.example.com");
    });

    test("type confusion: a magic link presented as any other type is refused and not consumed", async () => {
      const { token } = await magic(email("confusion"));
      for (const type of [LinkType.SIGNUP, LinkType.RECOVERY, LinkType.INVITE, LinkType.EMAIL_CHANGE]) {
        await refused(anyone().verifyLink(byToken(type, token)), Code.PermissionDenied, "link_invalid_or_expired");
      }
      await refused(anyone().verifyLink(byToken(LinkType.UNSPECIFIED, token)), Code.InvalidArgument, "validation_failed");
      await stillWorks(LinkType.MAGICLINK, token);
    });

    test("cross-user code: Alice's code with Bob's address fails, and Alice's link still works", async () => {
      const alice = await magic(email("alice"));
      const bobAddress = email("bob");
      await magic(bobAddress);
      await refused(anyone().verifyLink(byCode(LinkType.MAGICLINK, bobAddress, alice.generated.emailOtp)), Code.PermissionDenied, "link_invalid_or_expired");
      await stillWorks(LinkType.MAGICLINK, alice.token);
    });

    test("a new link of a type revokes the old one, of that type only", async () => {
      const target = email("revoke");
      const first = await magic(target);
      const invite = await admin().generateLink({ type: LinkType.INVITE, email: email("invitee") });
      clock.advance(1);
      const second = await magic(target);
      await refused(anyone().verifyLink(byToken(LinkType.MAGICLINK, first.token)), Code.PermissionDenied, "link_invalid_or_expired");
      await refused(anyone().verifyLink(byCode(LinkType.MAGICLINK, target, first.generated.emailOtp)), Code.PermissionDenied, "link_invalid_or_expired");
      await stillWorks(LinkType.MAGICLINK, second.token);
      await stillWorks(LinkType.INVITE, tokenOf(invite));
    });

    if (on === "connect-node") test("unknown, used, expired and wrong-type links are indistinguishable", async () => {
      const used = await magic(email("used"));
      await anyone().verifyLink(byToken(LinkType.MAGICLINK, used.token));
      const expiring = await admin().generateLink({ type: LinkType.MAGICLINK, email: email("expired"), expiresIn: { seconds: 60n } });
      const wrongType = await magic(email("wrongtype"));
      clock.advance(60_000);
      const bodies = [];
      for (const [type, token] of [
        ["LINK_TYPE_MAGICLINK", "Z".repeat(43)],
        ["LINK_TYPE_MAGICLINK", used.token],
        ["LINK_TYPE_MAGICLINK", tokenOf(expiring)],
        ["LINK_TYPE_RECOVERY", wrongType.token],
      ] as const) {
        const response = await connectJson(server.url, "VerifyLink", { type, token }, { "x-forwarded-for": nextAddress() });
        bodies.push(`${response.status} ${response.body}`);
      }
      assert.equal(new Set(bodies).size, 1, bodies.join("\n"));
      assert.match(bodies[0] ?? "", /^403 .*link_invalid_or_expired/);
    });

    test("expiry is exact: the instant before works, the instant of expiry does not", async () => {
      const early = await admin().generateLink({ type: LinkType.MAGICLINK, email: email("edge1"), expiresIn: { seconds: 120n } });
      const late = await admin().generateLink({ type: LinkType.MAGICLINK, email: email("edge2"), expiresIn: { seconds: 120n } });
      clock.advance(120_000 - 1);
      await stillWorks(LinkType.MAGICLINK, tokenOf(early));
      clock.advance(1);
      await refused(anyone().verifyLink(byToken(LinkType.MAGICLINK, tokenOf(late))), Code.PermissionDenied, "link_invalid_or_expired");
    });

    test("50-way concurrent redemption of one link: exactly one wins", async () => {
      const { token } = await magic(email("fifty"));
      const outcomes = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          (on === "connect-node"
            ? connectClient(server.url, { protocol: i % 2 ? "grpc" : "connect", key: server.serviceKey })
            : connectClient(grpcUrlOf(server, on), { protocol: "grpc", key: server.serviceKey }))
            .verifyLink(byToken(LinkType.MAGICLINK, token))
            .then(() => "ok", (e: unknown) => reasonOf(e as never) ?? "?"),
        ),
      );
      assert.equal(outcomes.filter((o) => o === "ok").length, 1);
      assert.equal(outcomes.filter((o) => o === "link_invalid_or_expired").length, 49);
    });

    test("code attempts under concurrency: 20 parallel wrong codes cannot buy a sixth try", async () => {
      const target = email("guess");
      const { generated, token } = await magic(target);
      const right = Number(generated.emailOtp);
      const wrong = Array.from({ length: 20 }, (_, i) => String((right + 1 + i) % 1_000_000).padStart(6, "0"));
      const outcomes = await Promise.all(
        wrong.map((otp) =>
          anyone().verifyLink(byCode(LinkType.MAGICLINK, target, otp)).then(
            () => "ok",
            (e: unknown) => reasonOf(e as never) ?? "?",
          ),
        ),
      );
      assert.ok(outcomes.every((o) => o === "link_invalid_or_expired" || o === "over_rate_limit"), outcomes.join());
      // Five attempts are used up (the rest were refused or rate limited): even
      // the right code is refused now, from anywhere — but the link itself, by
      // its token, still works (wrong codes must not let a stranger kill it).
      const rightCode = await rejection(anyone().verifyLink(byCode(LinkType.MAGICLINK, target, generated.emailOtp)));
      assert.ok(["link_invalid_or_expired", "over_rate_limit"].includes(reasonOf(rightCode) ?? ""), reasonOf(rightCode));
      await stillWorks(LinkType.MAGICLINK, token);
    });

    test("code budget per address and client: one stranger cannot spend the person's whole budget", async () => {
      const target = email("budget");
      const { generated } = await magic(target);
      const wrong = String((Number(generated.emailOtp) + 1) % 1_000_000).padStart(6, "0");
      const stranger = nextAddress();
      for (let i = 0; i < 3; i++) {
        await refused(anyone(stranger).verifyLink(byCode(LinkType.MAGICLINK, target, wrong)), Code.PermissionDenied, "link_invalid_or_expired");
      }
      await refused(anyone(stranger).verifyLink(byCode(LinkType.MAGICLINK, target, wrong)), Code.ResourceExhausted, "over_rate_limit");
      // The person, from their own address, still signs in with the code.
      await anyone(nextAddress()).verifyLink(byCode(LinkType.MAGICLINK, target, generated.emailOtp));
    });

    if (on === "connect-node") test("GET on an action link does not consume it (mail scanners pre-fetch links)", async () => {
      const { generated, token } = await magic(email("scanner"));
      const path = new URL(generated.actionLink);
      // The page is served (200), the token never reaches the server (it is in
      // the fragment), and the link is still redeemable afterwards.
      for (const method of ["GET", "HEAD", "OPTIONS"]) {
        await rawRequest(`${server.url}${path.pathname}${path.search}`, { method });
      }
      await stillWorks(LinkType.MAGICLINK, token);
    });

    test("redeeming a recovery link revokes every other link of the user", async () => {
      const target = email("recovery");
      const old = await magic(target);
      const recovery = await admin().generateLink({ type: LinkType.RECOVERY, email: target });
      await anyone().verifyLink(byToken(LinkType.RECOVERY, tokenOf(recovery)));
      await refused(anyone().verifyLink(byToken(LinkType.MAGICLINK, old.token)), Code.PermissionDenied, "link_invalid_or_expired");
    });
  });

  describe("rate limits", () => {
    test("GenerateLink per address and type: RESOURCE_EXHAUSTED with a retry delay; the last link stays valid", async () => {
      const target = email("limited");
      let last;
      for (let i = 0; i < 3; i++) last = await magic(target);
      const error = await refused(admin().generateLink({ type: LinkType.MAGICLINK, email: target }), Code.ResourceExhausted, "over_rate_limit");
      const retry = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
      assert.ok(retry && retry.seconds > 0n, "a retry delay is given");
      assert.equal((await storedFor(target)).links, 1, "nothing new stored");
      await stillWorks(LinkType.MAGICLINK, last!.token);
      // Another type for the same address has its own budget.
      await admin().generateLink({ type: LinkType.RECOVERY, email: target });
    });

    test("VerifyLink per client address: over the limit a valid token is not consumed", async () => {
      const { token } = await magic(email("addr"));
      const address = nextAddress();
      for (let i = 0; i < 10; i++) {
        await refused(anyone(address).verifyLink(byToken(LinkType.MAGICLINK, "Q".repeat(43))), Code.PermissionDenied, "link_invalid_or_expired");
      }
      await refused(anyone(address).verifyLink(byToken(LinkType.MAGICLINK, token)), Code.ResourceExhausted, "over_rate_limit");
      await stillWorks(LinkType.MAGICLINK, token); // from another address
    });

    test("VerifyLink by code per address the code was sent to: refused before the code is tried", async () => {
      const target = email("codes");
      const { generated } = await magic(target);
      const wrong = String((Number(generated.emailOtp) + 1) % 1_000_000).padStart(6, "0");
      // Eight tries (the limit) from eight addresses; the code is disabled after five.
      for (let i = 0; i < 8; i++) {
        await refused(anyone().verifyLink(byCode(LinkType.MAGICLINK, target, wrong)), Code.PermissionDenied, "link_invalid_or_expired");
      }
      const fresh = await magic(target); // a new link: the address's budget is still spent
      await refused(anyone().verifyLink(byCode(LinkType.MAGICLINK, target, fresh.generated.emailOtp)), Code.ResourceExhausted, "over_rate_limit");
      await stillWorks(LinkType.MAGICLINK, fresh.token); // the limit consumed nothing
    });

    test("X-Forwarded-For is believed only from a trusted proxy, right to left", async () => {
      // Through the trusted proxy (127.0.0.1) a forged left-most hop is ignored:
      // the client is the right-most untrusted address.
      const spoofed = "192.0.2.77";
      const real = nextAddress();
      for (let i = 0; i < 10; i++) {
        await anyone(`${spoofed}, ${real}`).verifyLink(byToken(LinkType.MAGICLINK, "R".repeat(43))).catch(() => undefined);
      }
      await refused(anyone(real).verifyLink(byToken(LinkType.MAGICLINK, "R".repeat(43))), Code.ResourceExhausted, "over_rate_limit");
      await refused(anyone(spoofed).verifyLink(byToken(LinkType.MAGICLINK, "R".repeat(43))), Code.PermissionDenied, "link_invalid_or_expired");
    });
  });

  describe("faults", () => {
    test("a deadline that passes mid-call leaves no usable orphan link", async () => {
      const target = email("deadline");
      proxy.stall();
      const call = admin().generateLink({ type: LinkType.MAGICLINK, email: target }, { timeoutMs: 300 });
      const error = await rejection(call);
      assert.equal(Code[error.code], Code[Code.DeadlineExceeded]);
      proxy.unstall();
      // Give the abandoned call every chance to run on; it must not leave a link behind.
      await eventually(async () => {
        await admin().generateLink({ type: LinkType.MAGICLINK, email: email("probe") });
      });
      assert.equal((await storedFor(target)).links, 0);
    });

    test("the database stops mid-run: UNAVAILABLE, then recovery without a restart and nothing lost", async () => {
      const before = await magic(email("outage-before"));
      const unredeemed = await magic(email("outage-kept"));
      await proxy.cut();
      try {
        const down1 = await refused(admin().generateLink({ type: LinkType.MAGICLINK, email: email("outage-during") }), Code.Unavailable, "store_unavailable");
        const down2 = await refused(anyone().verifyLink(byToken(LinkType.MAGICLINK, before.token)), Code.Unavailable, "store_unavailable");
        for (const error of [down1, down2]) {
          assert.doesNotMatch(error.message, /Mongo|ECONNREFUSED|127\.0\.0\.1|topology|selection/i, "no driver message leaks");
        }
      } finally {
        await proxy.restore();
      }
      await eventually(() => anyone().verifyLink(byToken(LinkType.MAGICLINK, before.token)));
      await stillWorks(LinkType.MAGICLINK, unredeemed.token);
      await admin().generateLink({ type: LinkType.MAGICLINK, email: email("outage-after") });
    });
  });
});
}

describe("leakage", () => {
  before(() => {
    listener = "connect-node";
  });

  test("responses are not cached and send no referrer", async () => {
    const response = await connectJson(server.url, "GenerateLink", { type: "LINK_TYPE_MAGICLINK", email: email("headers") }, {
      authorization: `Bearer ${server.serviceKey}`,
    });
    assert.equal(response.headers["cache-control"], "no-store");
    assert.equal(response.headers["referrer-policy"], "no-referrer");
    const error = await connectJson(server.url, "VerifyLink", { type: "LINK_TYPE_MAGICLINK", token: "W".repeat(43) });
    assert.equal(error.headers["cache-control"], "no-store");
  });

  test("errors never echo the submitted password, key or token", async () => {
    const password = "Password123";
    const weak = await connectJson(server.url, "GenerateLink", { type: "LINK_TYPE_SIGNUP", email: email("echo"), password }, {
      authorization: `Bearer ${server.serviceKey}`,
    });
    assert.equal(weak.status, 400);
    assert.ok(!weak.body.includes(password) && !Buffer.from(weak.body).includes(Buffer.from(password)));
    const wrongKey = "z".repeat(44);
    const denied = await connectJson(server.url, "GenerateLink", { type: "LINK_TYPE_MAGICLINK", email: email("echo") }, { authorization: `Bearer ${wrongKey}` });
    assert.ok(!denied.body.includes(wrongKey));
    const token = "V".repeat(43);
    const invalid = await connectJson(server.url, "VerifyLink", { type: "LINK_TYPE_MAGICLINK", token });
    assert.ok(!invalid.body.includes(token));
  });

  test("nothing secret in the database or in any log line of this whole suite", async () => {
    const password = "a genuinely long passphrase";
    const signup = await admin().generateLink({ type: LinkType.SIGNUP, email: email("scan"), password });
    const secrets = [server.serviceKey, server.config.otp.secret.reveal(), password, tokenOf(signup)];
    const docs: string[] = [];
    for (const { name } of await db.listCollections().toArray()) {
      docs.push(JSON.stringify(await db.collection(name).find().toArray()));
    }
    const everything = `${docs.join("\n")}\n${server.logs.join("\n")}`;
    assert.ok(everything.includes(signup.hashedToken), "the scan covers the stored data");
    for (const secret of secrets) assert.ok(!everything.includes(secret), `leaked: ${secret.slice(0, 3)}…`);
    assert.ok(!everything.includes(`"${signup.emailOtp}"`), "the code leaked");
  });
});
