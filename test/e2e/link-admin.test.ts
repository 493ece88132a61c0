import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { toJsonString } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { LinkState, LinkType, type GenerateLinkResponse } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { LinkAdminService } from "../../gen/authlink/v1/link_admin_service_pb.js";
import { hashLinkToken } from "../../src/crypto/link-token.js";
import { serviceKeyIdentity } from "../../src/identity/service-keys.js";
import { Code, connectClient, fieldViolationsOf, reasonOf, rejection, type AdminClient } from "../support/clients.js";
import { linkParams } from "../support/links.js";
import { ManualClock } from "../support/manual-clock.js";
import { useTestDatabase } from "../support/mongo.js";
import { GRPC_JS_LISTENER, grpcUrlOf, startTestServer, type TestServer } from "../support/test-server.js";

// LinkAdminService's GetLink, ListLinks, RevokeLinks and ReissueLink end to
// end, on MongoDB and on the embedded store, over real sockets: gRPC and
// Connect on the main port, and gRPC on the grpc-js listener. Every state a
// link can be in (expiry on an injected clock), listing filters and pages
// with links issued between pages, bad page tokens, the page size cap,
// revocation as the verify page sees it, re-issue (the expired invite of
// supabase/auth#2180), refusals without or with a wrong key, and no secret
// in any answer or log line.

const database = await useTestDatabase("link_admin_e2e");

type LinkAdminClient = Client<typeof LinkAdminService>;
type Protocol = "grpc" | "connect";

let emailCounter = 0;
const email = (label: string) => `${label}-${++emailCounter}-${randomBytes(3).toString("hex")}@example.com`;
const tokenOf = (link: { actionLink: string }) => linkParams(link.actionLink).get("token") ?? "";

async function refused(call: Promise<unknown>, code: Code, reason: string, field?: string) {
  const error = await rejection(call);
  assert.equal(Code[error.code], Code[code], error.message);
  assert.equal(reasonOf(error), reason);
  if (field !== undefined) assert.deepEqual(fieldViolationsOf(error), [field]);
  return error;
}

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    const clock = new ManualClock(new Date());
    const otherKey = `other-key-${randomBytes(24).toString("base64url")}`;
    let server: TestServer;
    /** Every answer of the link admin calls, as JSON, to search for secrets at the end. */
    const answers: string[] = [];
    /** Every secret handed out (tokens, codes) or stored (code HMACs). */
    const secrets: string[] = [];

    before(async () => {
      const key = `test-key-${randomBytes(24).toString("base64url")}`;
      server = await startTestServer({
        database: backend === "MongoDB" ? database : undefined,
        clock,
        env: { ...GRPC_JS_LISTENER, AUTHLINK_SERVICE_KEYS: `${key},${otherKey}` },
      });
    });
    after(() => server.close());

    /** A LinkAdminService client that records every answer. */
    function links(protocol: Protocol, key: string | null = server.serviceKey, baseUrl = server.url): LinkAdminClient {
      const keyAndRecord: Interceptor = (next) => async (req) => {
        if (key) req.header.set("authorization", `Bearer ${key}`);
        const res = await next(req);
        if (!res.stream) answers.push(toJsonString(res.method.output, res.message));
        return res;
      };
      const transportOptions = { baseUrl, interceptors: [keyAndRecord] };
      const transport =
        protocol === "grpc" ? createGrpcTransport(transportOptions) : createConnectTransport({ ...transportOptions, httpVersion: "1.1" });
      return createClient(LinkAdminService, transport);
    }
    const admin = (key = server.serviceKey): AdminClient => connectClient(server.url, { protocol: "connect", key });
    const anyone = (): AdminClient => connectClient(server.url, { protocol: "grpc" });

    async function issue(type: LinkType, address: string, extra: { redirectTo?: string; expiresIn?: { seconds: bigint }; key?: string } = {}) {
      const { key, ...rest } = extra;
      const generated = await admin(key).generateLink({ type, email: address, ...rest, ...(type === LinkType.SIGNUP ? { password: "correct horse battery staple" } : {}) });
      await remember(generated);
      return generated;
    }
    /** The secrets of a generated link, and its code's HMAC as stored. */
    async function remember(generated: GenerateLinkResponse): Promise<void> {
      for (const link of [generated, ...(generated.currentEmailConfirmation ? [generated.currentEmailConfirmation] : [])]) {
        secrets.push(tokenOf(link), link.emailOtp);
        const stored = await server.store.links.find(link.hashedToken, clock.now());
        assert.ok(stored, "the link is stored");
        secrets.push(stored.otpHash);
      }
    }
    const redeem = (type: LinkType, link: { actionLink: string }) =>
      anyone().verifyLink({ type, credential: { case: "token", value: tokenOf(link) } });
    const preview = (type: LinkType, link: { actionLink: string }) => anyone().previewLink({ type, token: tokenOf(link) });

    for (const protocol of ["grpc", "connect"] as const) {
      describe(`over ${protocol}`, () => {
        test("GetLink: a valid link, everything but a secret", async () => {
          const address = email("ann");
          const generated = await issue(LinkType.MAGICLINK, address, { redirectTo: "https://app.example.com/welcome" });
          const { link } = await links(protocol).getLink({ hashedToken: generated.hashedToken });
          assert.ok(link);
          assert.equal(link.hashedToken, generated.hashedToken);
          assert.equal(link.type, LinkType.MAGICLINK);
          assert.equal(link.state, LinkState.VALID);
          assert.equal(link.userId, generated.user!.id);
          assert.equal(link.email, address);
          assert.equal(link.maskedEmail, "a***@example.com");
          assert.deepEqual(timestampDate(link.issuedAt!), clock.now());
          assert.deepEqual(link.expiresAt, generated.expiresAt);
          assert.equal(link.stateChangedAt, undefined);
          assert.equal(link.redirectTo, "https://app.example.com/welcome");
          assert.equal(link.issuedBy, serviceKeyIdentity(server.serviceKey));
          assert.deepEqual([link.otpAttemptsUsed, link.otpAttemptsMax], [0, server.config.links.otpMaxAttempts]);
          assert.equal(link.emailChangeAddress, "");
        });

        test("GetLink: USED, REPLACED, REVOKED with when; EXPIRED on the clock; unknown NOT_FOUND; malformed INVALID_ARGUMENT", async () => {
          const client = links(protocol);
          const address = email("states");
          const first = await issue(LinkType.MAGICLINK, address);
          clock.advance(1_000);
          const second = await issue(LinkType.MAGICLINK, address);
          const replaced = (await client.getLink({ hashedToken: first.hashedToken })).link!;
          assert.deepEqual([replaced.state, timestampDate(replaced.stateChangedAt!)], [LinkState.REPLACED, clock.now()]);

          clock.advance(1_000);
          await redeem(LinkType.MAGICLINK, second);
          const used = (await client.getLink({ hashedToken: second.hashedToken })).link!;
          assert.deepEqual([used.state, timestampDate(used.stateChangedAt!)], [LinkState.USED, clock.now()]);

          const recovery = await issue(LinkType.RECOVERY, address);
          await client.revokeLinks({ target: { case: "hashedTokens", value: { hashedTokens: [recovery.hashedToken] } } });
          assert.equal((await client.getLink({ hashedToken: recovery.hashedToken })).link!.state, LinkState.REVOKED);

          const expiring = await issue(LinkType.INVITE, email("expiring"), { expiresIn: { seconds: 60n } });
          clock.advance(59_999);
          assert.equal((await client.getLink({ hashedToken: expiring.hashedToken })).link!.state, LinkState.VALID);
          clock.advance(1);
          const expired = (await client.getLink({ hashedToken: expiring.hashedToken })).link!;
          assert.deepEqual([expired.state, expired.stateChangedAt], [LinkState.EXPIRED, undefined]);

          await refused(client.getLink({ hashedToken: hashLinkToken("never issued") }), Code.NotFound, "link_not_found");
          await refused(client.getLink({ hashedToken: tokenOf(first) }), Code.InvalidArgument, "validation_failed", "hashed_token");
        });

        test("ListLinks: filters by user, address, type, state, issuing caller and issue time; newest first", async () => {
          const client = links(protocol);
          const address = email("lister");
          const start = clock.now();
          const magic1 = await issue(LinkType.MAGICLINK, address);
          clock.advance(1_000);
          const recovery = await issue(LinkType.RECOVERY, address, { key: otherKey });
          clock.advance(1_000);
          const magic2 = await issue(LinkType.MAGICLINK, address);
          const userId = magic1.user!.id;
          const hashes = async (filters: Parameters<LinkAdminClient["listLinks"]>[0]) =>
            (await client.listLinks(filters)).links.map((l) => l.hashedToken);

          assert.deepEqual(await hashes({ userId }), [magic2, recovery, magic1].map((g) => g.hashedToken));
          assert.deepEqual(await hashes({ email: address.toUpperCase() }), [magic2, recovery, magic1].map((g) => g.hashedToken));
          assert.deepEqual(await hashes({ userId, type: LinkType.MAGICLINK }), [magic2, magic1].map((g) => g.hashedToken));
          assert.deepEqual(await hashes({ userId, state: LinkState.REPLACED }), [magic1.hashedToken]);
          assert.deepEqual(await hashes({ userId, state: LinkState.VALID }), [magic2, recovery].map((g) => g.hashedToken));
          assert.deepEqual(await hashes({ userId, issuedBy: serviceKeyIdentity(otherKey) }), [recovery.hashedToken]);
          const window = { issuedAfter: timestampFromDate(new Date(start.getTime() + 1_000)), issuedBefore: timestampFromDate(new Date(start.getTime() + 2_000)) };
          assert.deepEqual(await hashes({ userId, ...window }), [recovery.hashedToken]);
          await refused(client.listLinks({ state: LinkState.UNKNOWN }), Code.InvalidArgument, "validation_failed", "state");
          await refused(client.listLinks({ email: "not an address" }), Code.InvalidArgument, "validation_failed", "email");
        });

        test("ListLinks pages: every link that existed once, in order, while links are issued between pages", async () => {
          const client = links(protocol);
          const address = email("pager");
          const issued: { hash: string; at: number }[] = [];
          for (let i = 0; i < 10; i++) {
            if (i % 3 === 0) clock.advance(1); // several links per millisecond
            const type = i % 2 === 0 ? LinkType.MAGICLINK : LinkType.RECOVERY; // most of them replaced (tombstones)
            issued.push({ hash: (await issue(type, address)).hashedToken, at: clock.now().getTime() });
          }
          const userId = (await client.getLink({ hashedToken: issued[0]!.hash })).link!.userId;
          const expected = [...issued].sort((a, b) => b.at - a.at || (a.hash < b.hash ? 1 : -1)).map((e) => e.hash);
          const seen: string[] = [];
          let pageToken = "";
          for (let page = 0; page < 20; page++) {
            const result = await client.listLinks({ userId, pageSize: 3, pageToken });
            assert.ok(result.links.length <= 3);
            seen.push(...result.links.map((l) => l.hashedToken));
            if (!result.nextPageToken) break;
            pageToken = result.nextPageToken;
            await issue(LinkType.MAGICLINK, address); // newer: never in a later page
          }
          const existed = new Set(expected);
          assert.deepEqual(seen.filter((h) => existed.has(h)), expected);
          assert.equal(new Set(seen).size, seen.length, "nothing twice");
        });

        test("ListLinks page tokens: forged, from another query, or expired are INVALID_ARGUMENT on page_token", async () => {
          const client = links(protocol);
          const address = email("tokens");
          await issue(LinkType.MAGICLINK, address);
          await issue(LinkType.RECOVERY, address);
          const first = await client.listLinks({ email: address, pageSize: 1 });
          assert.equal(first.links.length, 1);
          assert.ok(first.nextPageToken);
          const [body, signature] = first.nextPageToken.split(".");
          const forged = `${Buffer.from(Buffer.from(body!, "base64url").toString().replace(/"p":\[\d/, '"p":[9')).toString("base64url")}.${signature}`;
          await refused(client.listLinks({ email: address, pageSize: 1, pageToken: forged }), Code.InvalidArgument, "validation_failed", "page_token");
          await refused(client.listLinks({ email: email("else"), pageSize: 1, pageToken: first.nextPageToken }), Code.InvalidArgument, "validation_failed", "page_token");
          await refused(client.listLinks({ email: address, type: LinkType.RECOVERY, pageToken: first.nextPageToken }), Code.InvalidArgument, "validation_failed", "page_token");
          const second = await client.listLinks({ email: address, pageSize: 1, pageToken: first.nextPageToken });
          assert.deepEqual([second.links.length, second.nextPageToken], [1, ""]);
          clock.advance(60 * 60_000);
          await refused(client.listLinks({ email: address, pageSize: 1, pageToken: first.nextPageToken }), Code.InvalidArgument, "validation_failed", "page_token");
        });

        test("RevokeLinks by hashed tokens: how many; again 0; unknown 0; the verify page then says REVOKED", async () => {
          const client = links(protocol);
          const address = email("revoke");
          const magic = await issue(LinkType.MAGICLINK, address);
          const recovery = await issue(LinkType.RECOVERY, address);
          const unknown = hashLinkToken(`unknown-${address}`);
          const revoke = (hashedTokens: string[]) => client.revokeLinks({ target: { case: "hashedTokens", value: { hashedTokens } } });
          const first = await revoke([magic.hashedToken, unknown]);
          assert.deepEqual([first.revokedCount, first.hashedTokens], [1, [magic.hashedToken]]);
          assert.equal((await revoke([magic.hashedToken])).revokedCount, 0, "idempotent");
          assert.equal((await revoke([unknown])).revokedCount, 0);
          await refused(redeem(LinkType.MAGICLINK, magic), Code.PermissionDenied, "link_invalid_or_expired");
          assert.equal((await preview(LinkType.MAGICLINK, magic)).state, LinkState.REVOKED);
          assert.equal((await preview(LinkType.RECOVERY, recovery)).state, LinkState.VALID, "only the named link");
          await refused(revoke(["nope"]), Code.InvalidArgument, "validation_failed", "hashed_tokens.hashed_tokens[0]");
          await refused(client.revokeLinks({}), Code.InvalidArgument, "validation_failed", "target");
        });

        test("RevokeLinks by user: by address with some types, by id with all; unknown user 0; again 0", async () => {
          const client = links(protocol);
          const address = email("user-revoke");
          const magic = await issue(LinkType.MAGICLINK, address);
          const recovery = await issue(LinkType.RECOVERY, address);
          const some = await client.revokeLinks({ target: { case: "user", value: { email: address, types: [LinkType.RECOVERY] } } });
          assert.deepEqual([some.revokedCount, some.hashedTokens], [1, [recovery.hashedToken]]);
          assert.equal((await preview(LinkType.MAGICLINK, magic)).state, LinkState.VALID);
          const all = await client.revokeLinks({ target: { case: "user", value: { userId: magic.user!.id } } });
          assert.deepEqual([all.revokedCount, all.hashedTokens], [1, [magic.hashedToken]]);
          assert.equal((await client.revokeLinks({ target: { case: "user", value: { userId: magic.user!.id } } })).revokedCount, 0);
          assert.equal((await client.revokeLinks({ target: { case: "user", value: { email: email("nobody") } } })).revokedCount, 0);
          assert.equal((await preview(LinkType.MAGICLINK, magic)).state, LinkState.REVOKED);
          await refused(redeem(LinkType.RECOVERY, recovery), Code.PermissionDenied, "link_invalid_or_expired");
          await refused(client.revokeLinks({ target: { case: "user", value: { userId: "x", email: address } } }), Code.InvalidArgument, "validation_failed", "user");
        });

        test("ReissueLink: the old link REPLACED and dead, the new one redeemable; used FAILED_PRECONDITION; unknown NOT_FOUND", async () => {
          const client = links(protocol);
          const address = email("reissue");
          const old = await issue(LinkType.MAGICLINK, address, { redirectTo: "https://app.example.com/again" });
          clock.advance(1_000);
          const reissued = await client.reissueLink({ hashedToken: old.hashedToken });
          const fresh = reissued.link!;
          await remember(fresh);
          assert.equal(reissued.replacedHashedToken, old.hashedToken);
          assert.notEqual(fresh.hashedToken, old.hashedToken);
          assert.deepEqual([fresh.verificationType, fresh.user!.id, fresh.redirectTo], [LinkType.MAGICLINK, old.user!.id, "https://app.example.com/again"]);
          assert.ok(tokenOf(fresh).length === 43 && /^\d{6}$/.test(fresh.emailOtp), "new secrets, handed out once");
          assert.equal((await client.getLink({ hashedToken: old.hashedToken })).link!.state, LinkState.REPLACED);
          await refused(redeem(LinkType.MAGICLINK, old), Code.PermissionDenied, "link_invalid_or_expired");
          assert.equal((await redeem(LinkType.MAGICLINK, fresh)).user!.id, old.user!.id);
          await refused(client.reissueLink({ hashedToken: fresh.hashedToken }), Code.FailedPrecondition, "link_already_used");
          await refused(client.reissueLink({ hashedToken: hashLinkToken("never issued") }), Code.NotFound, "link_not_found");
          await refused(client.reissueLink({ hashedToken: "" }), Code.InvalidArgument, "validation_failed", "hashed_token");
        });

        test("ReissueLink: resending an expired invite just works (supabase/auth#2180)", async () => {
          const client = links(protocol);
          const address = email("invitee");
          const invite = await issue(LinkType.INVITE, address, { expiresIn: { seconds: 3_600n } });
          clock.advance(2 * 3_600_000);
          assert.equal((await preview(LinkType.INVITE, invite)).state, LinkState.EXPIRED);
          const resent = (await client.reissueLink({ hashedToken: invite.hashedToken })).link!;
          await remember(resent);
          assert.deepEqual(timestampDate(resent.expiresAt!), new Date(clock.now().getTime() + 3_600_000), "the same lifetime");
          const verified = await redeem(LinkType.INVITE, resent);
          assert.ok(verified.user?.emailConfirmedAt, "the invite is accepted");
          await refused(client.reissueLink({ hashedToken: invite.hashedToken }), Code.AlreadyExists, "email_exists");
        });

        test("without the service key every method is UNAUTHENTICATED credentials_missing; with a wrong key credentials_invalid", async () => {
          const hash = hashLinkToken("anything");
          const calls = (client: LinkAdminClient) => [
            () => client.getLink({ hashedToken: hash }),
            () => client.listLinks({}),
            () => client.revokeLinks({ target: { case: "hashedTokens", value: { hashedTokens: [hash] } } }),
            () => client.reissueLink({ hashedToken: hash }),
          ];
          for (const call of calls(links(protocol, null))) await refused(call(), Code.Unauthenticated, "credentials_missing");
          for (const call of calls(links(protocol, `${server.serviceKey}x`))) await refused(call(), Code.Unauthenticated, "credentials_invalid");
        });
      });
    }

    test("the grpc-js listener serves the same methods behind the same boundary", async () => {
      const client = links("grpc", server.serviceKey, grpcUrlOf(server, "grpc-js"));
      const generated = await issue(LinkType.MAGICLINK, email("grpcjs"));
      assert.equal((await client.getLink({ hashedToken: generated.hashedToken })).link!.state, LinkState.VALID);
      assert.equal((await client.listLinks({ userId: generated.user!.id })).links.length, 1);
      const reissued = (await client.reissueLink({ hashedToken: generated.hashedToken })).link!;
      await remember(reissued);
      assert.equal((await client.revokeLinks({ target: { case: "hashedTokens", value: { hashedTokens: [reissued.hashedToken] } } })).revokedCount, 1);
      await refused(links("grpc", null, grpcUrlOf(server, "grpc-js")).listLinks({}), Code.Unauthenticated, "credentials_missing");
    });

    test("ListLinks page size: 0 is 50, more than 500 is 500", async () => {
      const client = links("connect");
      const address = email("many");
      const { user } = await issue(LinkType.MAGICLINK, address);
      // 503 more links of the user, stored as an issue leaves them (issuing them one by one would only take longer).
      const now = clock.now();
      const template = (await server.store.links.find((await client.listLinks({ userId: user!.id })).links[0]!.hashedToken, now))!;
      await server.store.links.insert(
        Array.from({ length: 503 }, (_, i) => ({ ...template, tokenHash: hashLinkToken(`${address}-${i}`), issueId: `bulk-${i}`, pending: undefined })),
      );
      assert.equal((await client.listLinks({ userId: user!.id })).links.length, 50);
      const capped = await client.listLinks({ userId: user!.id, pageSize: 100_000 });
      assert.equal(capped.links.length, 500);
      const rest = await client.listLinks({ userId: user!.id, pageSize: 100_000, pageToken: capped.nextPageToken });
      assert.deepEqual([rest.links.length, rest.nextPageToken], [4, ""]);
    });

    test("no secret (token, code, code HMAC) in any answer or log line", async () => {
      assert.ok(secrets.length > 20, "the tests above handed out secrets");
      assert.ok(answers.length > 20, "and their answers were recorded");
      const logged = server.logs.join("\n");
      assert.ok(logged.includes("GetLink") && logged.includes("ListLinks") && logged.includes("ReissueLink"), "the calls were logged");
      let reissues = 0;
      for (const answer of answers) {
        // A ReissueLink answer hands out its new link's secrets, once; nothing else may carry any.
        const handedOut = new Set<string>();
        const parsed = JSON.parse(answer) as { link?: { actionLink?: string; emailOtp?: string } };
        if (parsed.link?.actionLink) {
          reissues++;
          handedOut.add(tokenOf({ actionLink: parsed.link.actionLink }));
          handedOut.add(parsed.link.emailOtp ?? "");
        }
        for (const secret of secrets.filter((s) => !handedOut.has(s))) {
          assert.ok(!answer.includes(/^\d+$/.test(secret) ? `"${secret}"` : secret), `a secret is in an answer: ${answer.slice(0, 80)}…`);
        }
      }
      assert.ok(reissues >= 3, "ReissueLink answers were checked too");
      for (const secret of secrets) {
        const needle = /^\d+$/.test(secret) ? `"${secret}"` : secret;
        assert.ok(!logged.includes(needle), `a secret is in the log: ${needle.slice(0, 4)}…`);
      }
    });
  });
}
