import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { LinkState, LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { Code, connectClient, fieldViolationsOf, reasonOf, rejection, type AdminClient } from "../support/clients.js";
import { rawRequest, type RawResponse } from "../support/http.js";
import { linkParams } from "../support/links.js";
import { ManualClock } from "../support/manual-clock.js";
import { useTestDatabase } from "../support/mongo.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// PreviewLink end to end, on MongoDB and on the embedded store: over Connect
// JSON (HTTP/1.1, as a browser speaks it) and gRPC, from anonymous callers;
// every state a holder can be told; a Connect GET of PreviewLink or
// VerifyLink is refused and consumes nothing; the per-address limit shared
// with VerifyLink; the audit event; no secret in any log line.

const database = await useTestDatabase("preview");

const SERVICE = "/authlink.v1.AdminAuthService";
let addressCounter = 0;
/** Each client speaks from its own address (through the trusted proxy 127.0.0.1), so per-address limits never cross tests. */
const nextAddress = () => `203.0.113.${++addressCounter % 250}`;
let emailCounter = 0;
const email = (label: string) => `${label}-${++emailCounter}@example.com`;

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    const clock = new ManualClock(new Date());
    let server: TestServer;

    before(async () => {
      server = await startTestServer({
        database: backend === "MongoDB" ? database : undefined,
        clock,
        env: {
          AUTHLINK_TRUSTED_PROXIES: "127.0.0.1",
          AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "5/1m",
          AUTHLINK_OTP_MAX_ATTEMPTS: "3",
        },
      });
    });
    after(() => server.close());

    const admin = (): AdminClient => connectClient(server.url, { protocol: "connect", key: server.serviceKey });
    /** Anonymous callers: no key at all. */
    const grpcAnyone = (address = nextAddress()): AdminClient =>
      connectClient(server.url, { protocol: "grpc", headers: { "x-forwarded-for": address } });
    const connectAnyone = (address = nextAddress()): AdminClient =>
      connectClient(server.url, { protocol: "connect", httpVersion: "1.1", headers: { "x-forwarded-for": address } });

    async function issue(type: LinkType, address: string, extra: { redirectTo?: string; expiresIn?: { seconds: bigint } } = {}) {
      const generated = await admin().generateLink({ type, email: address, ...extra });
      return { generated, token: linkParams(generated.actionLink).get("token") ?? "" };
    }

    /** A hand-made Connect JSON call (what a browser's fetch sends). */
    const connectJson = (method: string, body: unknown, address = nextAddress()): Promise<RawResponse> =>
      rawRequest(`${server.url}${SERVICE}/${method}`, {
        headers: { "content-type": "application/json", "connect-protocol-version": "1", "x-forwarded-for": address },
        body: JSON.stringify(body),
      });

    test("Connect JSON over HTTP/1.1, anonymous: a valid link's type, masked address, expiry and redirect host", async () => {
      const target = email("ann");
      const { generated, token } = await issue(LinkType.MAGICLINK, target, { redirectTo: "https://app.example.com/welcome" });
      const response = await connectJson("PreviewLink", { type: "LINK_TYPE_MAGICLINK", token });
      assert.equal(response.status, 200, response.body);
      assert.match(String(response.headers["content-type"]), /^application\/json/);
      assert.deepEqual(JSON.parse(response.body), {
        state: "LINK_STATE_VALID",
        type: "LINK_TYPE_MAGICLINK",
        maskedEmail: "a***@example.com",
        expiresAt: new Date(timestampDate(generated.expiresAt!)).toISOString(),
        redirectHost: "app.example.com",
      });
      assert.equal(response.headers["cache-control"], "no-store");
      assert.ok(!response.body.includes(token) && !response.body.includes(target), "neither the token nor the address comes back");
    });

    test("gRPC, anonymous, through the typed client: the same answer", async () => {
      const { generated, token } = await issue(LinkType.INVITE, email("bob"));
      const preview = await grpcAnyone().previewLink({ type: LinkType.INVITE, token });
      assert.equal(preview.state, LinkState.VALID);
      assert.equal(preview.type, LinkType.INVITE);
      assert.equal(preview.maskedEmail, "b***@example.com");
      assert.equal(preview.redirectHost, "");
      assert.deepEqual(preview.expiresAt, generated.expiresAt);
      assert.equal(preview.stateChangedAt, undefined);
      // Connect's typed client too (HTTP/1.1 JSON).
      assert.equal((await connectAnyone().previewLink({ type: LinkType.INVITE, token })).state, LinkState.VALID);
    });

    test("USED with when, REPLACED, REVOKED (recovery), EXPIRED, UNKNOWN; too many wrong codes leave the link VALID", async () => {
      const target = email("states");
      const magic = await issue(LinkType.MAGICLINK, target);
      clock.advance(1_000);
      const replacing = await issue(LinkType.MAGICLINK, target);
      const replacedAt = clock.now();
      assert.equal((await grpcAnyone().previewLink({ type: LinkType.MAGICLINK, token: magic.token })).state, LinkState.REPLACED);
      const replaced = await connectAnyone().previewLink({ type: LinkType.MAGICLINK, token: magic.token });
      assert.deepEqual(timestampDate(replaced.stateChangedAt!), replacedAt);

      clock.advance(1_000);
      await grpcAnyone().verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: replacing.token } });
      const used = await grpcAnyone().previewLink({ type: LinkType.MAGICLINK, token: replacing.token });
      assert.equal(used.state, LinkState.USED);
      assert.deepEqual(timestampDate(used.stateChangedAt!), clock.now());
      assert.equal(used.maskedEmail, "s***@example.com");

      const invite = await issue(LinkType.INVITE, email("other"));
      const outstanding = await issue(LinkType.MAGICLINK, target);
      const recovery = await issue(LinkType.RECOVERY, target);
      await grpcAnyone().verifyLink({ type: LinkType.RECOVERY, credential: { case: "token", value: recovery.token } });
      assert.equal((await grpcAnyone().previewLink({ type: LinkType.MAGICLINK, token: outstanding.token })).state, LinkState.REVOKED);
      assert.equal((await grpcAnyone().previewLink({ type: LinkType.RECOVERY, token: recovery.token })).state, LinkState.USED);
      assert.equal((await grpcAnyone().previewLink({ type: LinkType.INVITE, token: invite.token })).state, LinkState.VALID, "another user's link");

      const guessed = await issue(LinkType.MAGICLINK, email("guessed"));
      const wrong = String((Number(guessed.generated.emailOtp) + 1) % 1_000_000).padStart(6, "0");
      for (let i = 0; i < 3; i++) {
        await rejection(grpcAnyone().verifyLink({ type: LinkType.MAGICLINK, credential: { case: "emailOtp", value: { email: guessed.generated.user!.email, otp: wrong } } }));
      }
      assert.equal((await grpcAnyone().previewLink({ type: LinkType.MAGICLINK, token: guessed.token })).state, LinkState.VALID, "wrong codes disable the code, not the link");

      const expiring = await issue(LinkType.MAGICLINK, email("expiring"), { expiresIn: { seconds: 60n } });
      clock.advance(59_999);
      assert.equal((await grpcAnyone().previewLink({ type: LinkType.MAGICLINK, token: expiring.token })).state, LinkState.VALID);
      clock.advance(1);
      const expired = await connectAnyone().previewLink({ type: LinkType.MAGICLINK, token: expiring.token });
      assert.equal(expired.state, LinkState.EXPIRED);
      assert.deepEqual(expired.expiresAt, expiring.generated.expiresAt);

      // UNKNOWN: only the state, for a token never issued and for a real one asked about as another type.
      const stranger = Buffer.alloc(32, 7).toString("base64url");
      const unknown = await connectJson("PreviewLink", { type: "LINK_TYPE_MAGICLINK", token: stranger });
      assert.deepEqual(JSON.parse(unknown.body), { state: "LINK_STATE_UNKNOWN" });
      const wrongType = await grpcAnyone().previewLink({ type: LinkType.SIGNUP, token: invite.token });
      assert.equal(wrongType.state, LinkState.UNKNOWN);
      assert.equal(wrongType.type, LinkType.UNSPECIFIED);
      assert.equal(wrongType.maskedEmail, "");
      assert.equal(wrongType.expiresAt, undefined);
    });

    test("previews consume nothing: ten of them, then the link redeems exactly once", async () => {
      const { token } = await issue(LinkType.MAGICLINK, email("looked"));
      for (let i = 0; i < 10; i++) {
        const client = i % 2 ? grpcAnyone() : connectAnyone();
        assert.equal((await client.previewLink({ type: LinkType.MAGICLINK, token })).state, LinkState.VALID);
      }
      await grpcAnyone().verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
      const again = await rejection(grpcAnyone().verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } }));
      assert.equal(reasonOf(again), "link_invalid_or_expired");
    });

    test("a Connect GET of PreviewLink or VerifyLink is refused and consumes nothing", async () => {
      const { token } = await issue(LinkType.MAGICLINK, email("scanner"));
      const message = encodeURIComponent(JSON.stringify({ type: "LINK_TYPE_MAGICLINK", token }));
      for (const method of ["PreviewLink", "VerifyLink"]) {
        for (const verb of ["GET", "HEAD"]) {
          const response = await rawRequest(`${server.url}${SERVICE}/${method}?connect=v1&encoding=json&message=${message}`, {
            method: verb,
            headers: { "x-forwarded-for": nextAddress() },
          });
          // Connect serves GET only for NO_SIDE_EFFECTS methods, which these are not.
          assert.equal(response.status, 405, `${verb} ${method}`);
          assert.ok(!response.body.includes("LINK_STATE"), "no answer");
        }
      }
      assert.equal((await grpcAnyone().previewLink({ type: LinkType.MAGICLINK, token })).state, LinkState.VALID, "still valid");
      await grpcAnyone().verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
    });

    test("bad input: INVALID_ARGUMENT validation_failed with the fields", async () => {
      const error = await rejection(grpcAnyone().previewLink({ type: LinkType.UNSPECIFIED, token: "nope" }));
      assert.equal(Code[error.code], Code[Code.InvalidArgument]);
      assert.equal(reasonOf(error), "validation_failed");
      assert.deepEqual(fieldViolationsOf(error).sort(), ["token", "type"]);
    });

    test("rate limited per client address, with VerifyLink's budget; other addresses and the service role are not", async () => {
      const { token } = await issue(LinkType.MAGICLINK, email("limited"));
      const address = nextAddress();
      for (let i = 0; i < 4; i++) await connectAnyone(address).previewLink({ type: LinkType.MAGICLINK, token });
      await rejection(grpcAnyone(address).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: "Q".repeat(43) } }));
      const limited = await rejection(connectAnyone(address).previewLink({ type: LinkType.MAGICLINK, token }));
      assert.equal(Code[limited.code], Code[Code.ResourceExhausted]);
      assert.equal(reasonOf(limited), "over_rate_limit");
      const limitedVerify = await rejection(grpcAnyone(address).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } }));
      assert.equal(reasonOf(limitedVerify), "over_rate_limit");
      assert.equal((await connectAnyone().previewLink({ type: LinkType.MAGICLINK, token })).state, LinkState.VALID, "another address");
      const service = connectClient(server.url, { protocol: "connect", key: server.serviceKey, headers: { "x-forwarded-for": address } });
      assert.equal((await service.previewLink({ type: LinkType.MAGICLINK, token })).state, LinkState.VALID, "the service role is exempt");
      await grpcAnyone().verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } }); // nothing was consumed
    });

    test("audited as PreviewLink with the state answered and the link's age; nothing secret in any log line", async () => {
      const target = email("audited");
      const { generated, token } = await issue(LinkType.MAGICLINK, target);
      clock.advance(7_000);
      const address = nextAddress();
      await connectAnyone(address).previewLink({ type: LinkType.MAGICLINK, token });
      const events = await server.store.audit.find({ userId: generated.user!.id }, 20);
      const previewed = events.find((e) => e.method === "PreviewLink");
      assert.ok(previewed, JSON.stringify(events));
      assert.equal(previewed.outcome, "ok");
      assert.equal(previewed.linkState, "valid");
      assert.equal(previewed.caller, "anonymous");
      assert.equal(previewed.clientAddress, address);
      assert.equal(previewed.linkType, "magiclink");
      assert.equal(previewed.email, target);
      assert.deepEqual(previewed.hashedTokens, [generated.hashedToken]);
      assert.equal(previewed.linkAgeMs, 7_000);
      const line = server.logs.find((l) => l.includes('"method":"PreviewLink"') && l.includes(generated.hashedToken));
      assert.ok(line, "the audit line is logged");
      assert.match(line, /"linkState":"valid"/);

      for (const secret of [token, server.serviceKey, server.config.otp.secret.reveal()]) {
        assert.ok(!server.logs.join("\n").includes(secret), `leaked: ${secret.slice(0, 3)}…`);
      }
      assert.ok(!server.logs.join("\n").includes(`"${generated.emailOtp}"`), "the code leaked");
    });
  });
}
