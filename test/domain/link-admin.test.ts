import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createAuditTrail } from "../../src/audit/audit-trail.js";
import { hashLinkToken, newLinkToken } from "../../src/crypto/link-token.js";
import { createPageTokenCodec } from "../../src/crypto/page-token.js";
import { internalCall, type Call } from "../../src/domain/call.js";
import { AuthlinkError, type Reason } from "../../src/domain/errors.js";
import { tombstoneOf, type LinkRecord } from "../../src/domain/link.js";
import { LinkAdmin, MAX_PAGE_SIZE, type LinkView, type ListLinksInput } from "../../src/domain/link-admin.js";
import type { GenerateLinkInput } from "../../src/domain/link-requests.js";
import type { GeneratedLink } from "../../src/domain/link-service.js";
import type { LinkSettings } from "../../src/domain/link-settings.js";
import type { LinkType } from "../../src/domain/link-type.js";
import type { RateLimitSettings } from "../../src/domain/rate-limiter.js";
import type { Store } from "../../src/domain/store.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { HOUR, makeLinkService, TEST_LINK_SETTINGS, type LinkServiceFixture, generateInput as input, tokenOf } from "../support/link-service-fixture.js";
import { openTestStore, useTestDatabase } from "../support/mongo.js";

// The operators' use cases on links (domain/link-admin.ts and
// LinkService.reissue), on the embedded store and on MongoDB: the state of a
// link as GetLink tells it, listing with filters, a state filter and page
// tokens, revocation by hash and by user, and re-issuing under the rules of
// GenerateLink.

interface AdminFixture extends LinkServiceFixture {
  readonly admin: LinkAdmin;
  /** Every log line of the admin's audit trail. */
  readonly lines: string[];
}

let counter = 0;
const uniqueEmail = (label: string) => `${label}-${++counter}-${randomBytes(3).toString("hex")}@example.com`;
const BACKEND = "spiffe://example.org/backend";
const OPERATOR = "key:ops";
const backend = () => internalCall("GenerateLink", { serviceIdentity: BACKEND, callerName: BACKEND });
const operator = (method: string): Call => internalCall(method, { serviceIdentity: OPERATOR, callerName: OPERATOR });



const listInput = (overrides: Partial<ListLinksInput>): ListLinksInput => ({
  userId: "",
  email: "",
  type: undefined,
  state: undefined,
  issuedBy: "",
  issuedAfter: undefined,
  issuedBefore: undefined,
  pageSize: 0,
  pageToken: "",
  ...overrides,
});

async function rejects(promise: Promise<unknown>, reason: Reason, field?: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof AuthlinkError, `expected AuthlinkError, got ${String(error)}`);
    assert.equal(error.reason, reason, error.message);
    if (field !== undefined) assert.deepEqual(error.violations.map((v) => v.field), [field]);
    return true;
  });
}

function suite(name: string, openStore: () => Promise<Store>): void {
  describe(name, () => {
    let store: Store;
    before(async () => {
      store = await openStore();
    });
    after(() => store.close());

    function fixture(options: { settings?: Partial<LinkSettings>; rateLimits?: RateLimitSettings } = {}): AdminFixture {
      const f = makeLinkService(store, options);
      const { logger, lines } = createCapturedLogger();
      const admin = new LinkAdmin({
        store,
        clock: f.clock,
        audit: createAuditTrail({ store: store.audit, logger, retentionMs: 30 * 24 * HOUR }),
        links: f.links,
        pageTokens: createPageTokenCodec(randomBytes(32)),
        settings: { ...TEST_LINK_SETTINGS, ...options.settings },
      });
      return { ...f, admin, lines };
    }

    const get = (f: AdminFixture, hashedToken: string) => f.admin.get({ hashedToken }, operator("GetLink"));
    const generate = (f: AdminFixture, type: LinkType, email: string, extra: Partial<GenerateLinkInput> = {}) =>
      f.links.generate(input(type, email, extra), backend());
    const redeem = (f: AdminFixture, type: LinkType, link: { actionLink: string }) =>
      f.links.verify({ type, credential: { kind: "token", token: tokenOf(link) } });
    const reissue = (f: AdminFixture, hashedToken: string, expiresInMs?: number) =>
      f.admin.reissue({ hashedToken, expiresInMs }, operator("ReissueLink"));
    /** Every page of a listing, following the page tokens. */
    async function listAll(f: AdminFixture, overrides: Partial<ListLinksInput>): Promise<{ links: LinkView[]; pages: number }> {
      const links: LinkView[] = [];
      let pageToken = "";
      for (let pages = 1; pages < 100; pages++) {
        const page = await f.admin.list(listInput({ ...overrides, pageToken }), operator("ListLinks"));
        links.push(...page.links);
        if (page.nextPageToken === "") return { links, pages };
        pageToken = page.nextPageToken;
      }
      throw new Error("more than 100 pages");
    }

    describe("GetLink", () => {
      test("a valid link: everything but a secret, issued by the calling service", async () => {
        const f = fixture();
        const email = uniqueEmail("ann");
        const issued = await generate(f, "magiclink", email, { redirectTo: "https://app.example.com/home" });
        const view = await get(f, issued.link.hashedToken);
        assert.deepEqual(view, {
          hashedToken: issued.link.hashedToken,
          type: "magiclink",
          state: "valid",
          userId: issued.user.id,
          email,
          maskedEmail: `a***@example.com`,
          issuedAt: f.clock.now(),
          expiresAt: issued.expiresAt,
          stateChangedAt: undefined,
          redirectTo: "https://app.example.com/home",
          issuedBy: BACKEND,
          otpAttemptsUsed: 0,
          otpAttemptsMax: 5,
          emailChangeAddress: undefined,
        });
        const stored = await store.links.find(issued.link.hashedToken, f.clock.now());
        const text = JSON.stringify(view);
        assert.ok(stored && !text.includes(stored.otpHash), "not the code's HMAC");
        assert.ok(!text.includes(tokenOf(issued.link)) && !text.includes(issued.link.otp), "not the token or the code");
      });

      test("code attempts used are counted (and still shown once the link has expired)", async () => {
        const f = fixture();
        const email = uniqueEmail("guess");
        const issued = await generate(f, "magiclink", email);
        const wrong = String((Number(issued.link.otp) + 1) % 1_000_000).padStart(6, "0");
        for (let i = 0; i < 2; i++) {
          await rejects(f.links.verify({ type: "magiclink", credential: { kind: "email_otp", email, otp: wrong } }), "link_invalid_or_expired");
        }
        assert.equal((await get(f, issued.link.hashedToken)).otpAttemptsUsed, 2);
        f.clock.advance(HOUR);
        const expired = await get(f, issued.link.hashedToken);
        assert.deepEqual([expired.state, expired.otpAttemptsUsed], ["expired", 2]);
      });

      test("each state: replaced, used, revoked (with when), expired; the tombstone wins over a document still there", async () => {
        const f = fixture();
        const email = uniqueEmail("states");
        const first = await generate(f, "magiclink", email);
        f.clock.advance(1_000);
        const second = await generate(f, "magiclink", email);
        const replaced = await get(f, first.link.hashedToken);
        assert.deepEqual([replaced.state, replaced.stateChangedAt], ["replaced", f.clock.now()]);

        f.clock.advance(1_000);
        await redeem(f, "magiclink", second.link);
        const used = await get(f, second.link.hashedToken);
        assert.deepEqual([used.state, used.stateChangedAt], ["used", f.clock.now()]);

        const recovery = await generate(f, "recovery", email);
        f.clock.advance(1_000);
        await f.admin.revoke({ kind: "hashed_tokens", hashedTokens: [recovery.link.hashedToken] }, operator("RevokeLinks"));
        const revoked = await get(f, recovery.link.hashedToken);
        assert.deepEqual([revoked.state, revoked.stateChangedAt, revoked.type], ["revoked", f.clock.now(), "recovery"]);

        const expiring = await generate(f, "invite", uniqueEmail("expiring"), { expiresInMs: 60_000 });
        f.clock.advance(59_999);
        assert.equal((await get(f, expiring.link.hashedToken)).state, "valid");
        f.clock.advance(1);
        const expired = await get(f, expiring.link.hashedToken);
        assert.deepEqual([expired.state, expired.stateChangedAt], ["expired", undefined]);

        // A revocation records the tombstone first and deletes the document after.
        const live = await generate(f, "magiclink", uniqueEmail("between"));
        const document = (await store.links.find(live.link.hashedToken, f.clock.now()))!;
        await store.tombstones.record([tombstoneOf(document, "revoked", f.clock.now())]);
        assert.equal((await get(f, live.link.hashedToken)).state, "revoked");
      });

      test("email change links say which address they confirm", async () => {
        const f = fixture();
        const email = uniqueEmail("mover");
        await generate(f, "magiclink", email);
        const change = await generate(f, "email_change", email, { newEmail: uniqueEmail("moved") });
        assert.equal((await get(f, change.link.hashedToken)).emailChangeAddress, "new");
        assert.equal((await get(f, change.currentAddressLink!.hashedToken)).emailChangeAddress, "current");
        assert.equal((await get(f, change.currentAddressLink!.hashedToken)).email, email);
      });

      test("unknown and pending links are link_not_found; a malformed hash is validation_failed; old links show issuedBy \"\"", async () => {
        const f = fixture();
        await rejects(get(f, hashLinkToken("never issued")), "link_not_found");
        const pending = newRecord(f, { pending: true });
        await store.links.insert([pending]);
        await rejects(get(f, pending.tokenHash), "link_not_found");
        for (const bad of ["", "ABC", hashLinkToken("x").toUpperCase(), `${hashLinkToken("x")}0`]) {
          await rejects(get(f, bad), "validation_failed", "hashed_token");
        }
        const old = newRecord(f, { issuedBy: undefined });
        await store.links.insert([old]);
        assert.equal((await get(f, old.tokenHash)).issuedBy, "");
        assert.equal((await f.admin.get({ hashedToken: (await generate(f, "magiclink", uniqueEmail("in"))).link.hashedToken }, operator("GetLink"))).issuedBy, BACKEND);
        const internal = await f.links.generate(input("magiclink", uniqueEmail("internal")));
        assert.equal((await get(f, internal.link.hashedToken)).issuedBy, "internal", "no service identity: the caller's name");
      });

      test("audited: method, caller, the link's hash, user and address; failures with their reason", async () => {
        const f = fixture();
        const email = uniqueEmail("audited");
        const magic = await generate(f, "magiclink", email);
        await get(f, magic.link.hashedToken);
        const events = await store.audit.find({ email }, 20);
        const event = events.find((e) => e.method === "GetLink");
        assert.ok(event, JSON.stringify(events));
        assert.deepEqual(
          [event.caller, event.outcome, event.userId, event.linkType, event.hashedTokens],
          [OPERATOR, "ok", magic.user.id, "magiclink", [magic.link.hashedToken]],
        );
        const unknown = hashLinkToken(`unknown-${randomUUID()}`);
        await rejects(get(f, unknown), "link_not_found");
        assert.ok(f.lines.some((line) => line.includes(unknown) && line.includes("link_not_found")), "the failure is audited");
      });
    });

    describe("ListLinks", () => {
      test("filters: user, address, type, state, issuing caller, issue time; newest first", async () => {
        const f = fixture();
        const email = uniqueEmail("lister");
        const start = f.clock.now();
        const magic1 = await generate(f, "magiclink", email);
        f.clock.advance(1_000);
        const invite = await f.links.generate(input("invite", uniqueEmail("other")), internalCall("GenerateLink", { serviceIdentity: "other-svc", callerName: "other-svc" }));
        const recovery = await generate(f, "recovery", email);
        f.clock.advance(1_000);
        const magic2 = await generate(f, "magiclink", email); // replaces magic1
        const userId = magic1.user.id;
        const hashes = (links: readonly LinkView[]) => links.map((l) => l.hashedToken);

        assert.deepEqual(hashes((await listAll(f, { userId })).links), [magic2, recovery, magic1].map((l) => l.link.hashedToken));
        assert.deepEqual(hashes((await listAll(f, { email: email.toUpperCase() })).links), [magic2, recovery, magic1].map((l) => l.link.hashedToken), "the address is normalized");
        assert.deepEqual(hashes((await listAll(f, { userId, type: "magiclink" })).links), [magic2, magic1].map((l) => l.link.hashedToken));
        assert.deepEqual(hashes((await listAll(f, { userId, state: "replaced" })).links), [magic1.link.hashedToken]);
        assert.deepEqual(hashes((await listAll(f, { userId, state: "valid" })).links), [magic2, recovery].map((l) => l.link.hashedToken));
        assert.deepEqual(hashes((await listAll(f, { issuedBy: "other-svc" })).links).filter((h) => h === invite.link.hashedToken), [invite.link.hashedToken]);
        assert.deepEqual(hashes((await listAll(f, { userId, issuedBy: "other-svc" })).links), []);
        const window = { issuedAfter: new Date(start.getTime() + 1_000), issuedBefore: new Date(start.getTime() + 2_000) };
        assert.deepEqual(hashes((await listAll(f, { userId, ...window })).links), [recovery.link.hashedToken]);
        const listed = (await listAll(f, { userId })).links;
        assert.deepEqual(listed.map((l) => l.state), ["valid", "valid", "replaced"]);
        assert.ok(!JSON.stringify(listed).includes(magic2.link.otp) && !JSON.stringify(listed).includes(tokenOf(magic2.link)));
      });

      test("pending links are not listed; a hash with both a document and a tombstone is listed once, as its tombstone says", async () => {
        const f = fixture();
        const issued = await generate(f, "magiclink", uniqueEmail("once"));
        const userId = issued.user.id;
        await store.links.insert([newRecord(f, { userId, pending: true, issuedAt: new Date(f.clock.now().getTime() + 1) })]);
        const document = (await store.links.find(issued.link.hashedToken, f.clock.now()))!;
        await store.tombstones.record([tombstoneOf(document, "revoked", f.clock.now())]);
        const { links } = await listAll(f, { userId });
        assert.deepEqual(links.map((l) => [l.hashedToken, l.state]), [[issued.link.hashedToken, "revoked"]]);
      });

      test("pages: every link once, in order, while links are issued between pages; a state filter that matches little still pages through", async () => {
        const f = fixture();
        const email = uniqueEmail("pager");
        const invite = await generate(f, "invite", email); // the oldest, still valid
        const magics: { issued: GeneratedLink; at: number }[] = [];
        for (let i = 0; i < 24; i++) {
          if (i % 5 === 0) f.clock.advance(1); // several links per millisecond
          magics.push({ issued: await generate(f, "magiclink", email), at: f.clock.now().getTime() }); // each replaces the one before
        }
        const userId = invite.user.id;
        // Newest first; within a millisecond by hash, descending.
        const expected = [...magics]
          .sort((a, b) => b.at - a.at || (a.issued.link.hashedToken < b.issued.link.hashedToken ? 1 : -1))
          .map((m) => m.issued.link.hashedToken)
          .concat(invite.link.hashedToken);
        const newestMagic = magics.at(-1)!.issued;

        const seen: string[] = [];
        let pageToken = "";
        for (let page = 0; page < 50; page++) {
          const result = await f.admin.list(listInput({ userId, pageSize: 4, pageToken }), operator("ListLinks"));
          assert.ok(result.links.length <= 4);
          seen.push(...result.links.map((l) => l.hashedToken));
          if (!result.nextPageToken) break;
          pageToken = result.nextPageToken;
          // Issued between pages: newer than anything listed, never in a later page.
          await generate(f, "recovery", email);
        }
        const existed = new Set(expected);
        assert.deepEqual(seen.filter((h) => existed.has(h)), expected, "every link that existed, once, in order");
        assert.equal(new Set(seen).size, seen.length, "nothing twice");

        // VALID: the newest magic link, then 23 replaced ones to read past before the invite.
        const valid = await listAll(f, { userId, state: "valid", type: undefined, pageSize: 1 });
        assert.deepEqual(
          valid.links.map((l) => l.hashedToken).filter((h) => existed.has(h)),
          [newestMagic.link.hashedToken, invite.link.hashedToken],
        );
      });

      test("page size: 0 means 50, more than 500 is 500", async () => {
        const f = fixture();
        const userId = randomUUID();
        await store.links.insert(Array.from({ length: MAX_PAGE_SIZE + 3 }, (_, i) => newRecord(f, { userId, issueId: `i${i}` })));
        const defaultPage = await f.admin.list(listInput({ userId }), operator("ListLinks"));
        assert.equal(defaultPage.links.length, 50);
        const clamped = await f.admin.list(listInput({ userId, pageSize: 100_000 }), operator("ListLinks"));
        assert.equal(clamped.links.length, MAX_PAGE_SIZE);
        const rest = await f.admin.list(listInput({ userId, pageSize: 100_000, pageToken: clamped.nextPageToken }), operator("ListLinks"));
        assert.deepEqual([rest.links.length, rest.nextPageToken], [3, ""]);
      });

      test("page tokens: forged, from another query, or expired are validation_failed on page_token", async () => {
        const f = fixture();
        const email = uniqueEmail("tokens");
        await generate(f, "magiclink", email);
        await generate(f, "recovery", email);
        const first = await f.admin.list(listInput({ email, pageSize: 1 }), operator("ListLinks"));
        assert.ok(first.nextPageToken);
        const follow = (overrides: Partial<ListLinksInput>) => f.admin.list(listInput({ email, pageSize: 1, ...overrides }), operator("ListLinks"));
        const forged = first.nextPageToken.slice(0, -2) + (first.nextPageToken.endsWith("AA") ? "BB" : "AA");
        await rejects(follow({ pageToken: forged }), "validation_failed", "page_token");
        await rejects(follow({ pageToken: "not-a-token" }), "validation_failed", "page_token");
        await rejects(follow({ pageToken: first.nextPageToken, type: "magiclink" }), "validation_failed", "page_token");
        await rejects(follow({ pageToken: first.nextPageToken, email: uniqueEmail("else") }), "validation_failed", "page_token");
        assert.equal((await follow({ pageToken: first.nextPageToken, pageSize: 7 })).links.length, 1, "another page size is the same query");
        f.clock.advance(HOUR);
        await rejects(follow({ pageToken: first.nextPageToken }), "validation_failed", "page_token");
      });

      test("bad filters are validation_failed, each field named", async () => {
        const f = fixture();
        await rejects(f.admin.list(listInput({ email: "not an address" }), operator("ListLinks")), "validation_failed", "email");
        await rejects(f.admin.list(listInput({ type: "invalid" }), operator("ListLinks")), "validation_failed", "type");
        await rejects(f.admin.list(listInput({ state: "invalid" }), operator("ListLinks")), "validation_failed", "state");
        await rejects(f.admin.list(listInput({ issuedAfter: new Date(NaN) }), operator("ListLinks")), "validation_failed", "issued_after");
        const at = f.clock.now();
        await rejects(f.admin.list(listInput({ issuedAfter: at, issuedBefore: at }), operator("ListLinks")), "validation_failed", "issued_before");
      });
    });

    describe("RevokeLinks", () => {
      test("by hashed tokens: counts what this call revoked; again is 0; unknown is 0; PreviewLink then says revoked", async () => {
        const f = fixture();
        const email = uniqueEmail("revoke");
        const magic = await generate(f, "magiclink", email);
        const recovery = await generate(f, "recovery", email);
        const unknown = hashLinkToken(`nobody-${randomUUID()}`);
        const revoke = (hashedTokens: string[]) => f.admin.revoke({ kind: "hashed_tokens", hashedTokens }, operator("RevokeLinks"));
        const first = await revoke([magic.link.hashedToken, unknown, magic.link.hashedToken]);
        assert.deepEqual(first.hashedTokens, [magic.link.hashedToken]);
        assert.deepEqual((await revoke([magic.link.hashedToken])).hashedTokens, [], "idempotent");
        assert.deepEqual((await revoke([unknown])).hashedTokens, []);
        const preview = await f.links.preview({ type: "magiclink", token: tokenOf(magic.link) });
        assert.equal(preview.state, "revoked");
        await rejects(redeem(f, "magiclink", magic.link), "link_invalid_or_expired");
        assert.equal((await get(f, recovery.link.hashedToken)).state, "valid", "only the one named");
      });

      test("by user (id or address), all types or some; an unknown user revokes 0", async () => {
        const f = fixture();
        const email = uniqueEmail("user-revoke");
        const magic = await generate(f, "magiclink", email);
        const recovery = await generate(f, "recovery", email);
        const invite = await generate(f, "invite", uniqueEmail("bystander"));
        const byUser = (target: { userId?: string; email?: string; types?: LinkType[] }) =>
          f.admin.revoke({ kind: "user", userId: target.userId ?? "", email: target.email ?? "", types: target.types ?? [] }, operator("RevokeLinks"));
        assert.deepEqual((await byUser({ email: email.toUpperCase(), types: ["recovery"] })).hashedTokens, [recovery.link.hashedToken]);
        assert.equal((await get(f, magic.link.hashedToken)).state, "valid");
        const again = await generate(f, "recovery", email);
        const all = await byUser({ userId: magic.user.id });
        assert.deepEqual(new Set(all.hashedTokens), new Set([magic.link.hashedToken, again.link.hashedToken]));
        assert.deepEqual((await byUser({ userId: magic.user.id })).hashedTokens, [], "idempotent");
        assert.deepEqual((await byUser({ email: uniqueEmail("nobody") })).hashedTokens, []);
        assert.deepEqual((await byUser({ userId: randomUUID() })).hashedTokens, []);
        assert.equal((await get(f, invite.link.hashedToken)).state, "valid", "another user's link");
        const event = (await store.audit.find({ userId: magic.user.id }, 50)).find((e) => e.method === "RevokeLinks" && e.hashedTokens.length === 2);
        assert.ok(event, "audited with the user and the links it revoked");
      });

      test("bad targets are validation_failed", async () => {
        const f = fixture();
        const revoke = (target: Parameters<LinkAdmin["revoke"]>[0]) => f.admin.revoke(target, operator("RevokeLinks"));
        await rejects(revoke({ kind: "none" }), "validation_failed", "target");
        await rejects(revoke({ kind: "hashed_tokens", hashedTokens: [] }), "validation_failed", "hashed_tokens.hashed_tokens");
        await rejects(revoke({ kind: "hashed_tokens", hashedTokens: Array.from({ length: 1_001 }, (_, i) => hashLinkToken(String(i))) }), "validation_failed", "hashed_tokens.hashed_tokens");
        await rejects(revoke({ kind: "hashed_tokens", hashedTokens: [hashLinkToken("a"), "nope"] }), "validation_failed", "hashed_tokens.hashed_tokens[1]");
        await rejects(revoke({ kind: "user", userId: "", email: "", types: [] }), "validation_failed", "user");
        await rejects(revoke({ kind: "user", userId: "u", email: "a@example.com", types: [] }), "validation_failed", "user");
        await rejects(revoke({ kind: "user", userId: "", email: "bad", types: [] }), "validation_failed", "user.email");
        await rejects(revoke({ kind: "user", userId: "u", email: "", types: ["invalid"] }), "validation_failed", "user.types");
        assert.deepEqual((await revoke({ kind: "hashed_tokens", hashedTokens: Array.from({ length: 1_000 }, (_, i) => hashLinkToken(String(i))) })).hashedTokens, [], "1,000 is allowed");
      });
    });

    describe("ReissueLink", () => {
      test("a valid link: a new one for the same user, type and redirect and lifetime; the old one is replaced and dead", async () => {
        const f = fixture();
        const email = uniqueEmail("again");
        const old = await generate(f, "magiclink", email, { redirectTo: "https://app.example.com/x", expiresInMs: 10 * 60_000 });
        f.clock.advance(60_000);
        const { link, replacedHashedToken } = await reissue(f, old.link.hashedToken);
        assert.equal(replacedHashedToken, old.link.hashedToken);
        assert.notEqual(link.link.hashedToken, old.link.hashedToken);
        assert.deepEqual([link.type, link.user.id, link.redirectTo], ["magiclink", old.user.id, "https://app.example.com/x"]);
        assert.deepEqual(link.expiresAt, new Date(f.clock.now().getTime() + 10 * 60_000), "the earlier link's lifetime");
        assert.equal((await get(f, old.link.hashedToken)).state, "replaced");
        await rejects(redeem(f, "magiclink", old.link), "link_invalid_or_expired");
        assert.equal((await redeem(f, "magiclink", link.link)).user.id, old.user.id);
        assert.equal((await get(f, link.link.hashedToken)).issuedBy, OPERATOR, "issued by the caller of ReissueLink");
        const event = (await store.audit.find({ email }, 50)).find((e) => e.method === "ReissueLink");
        assert.deepEqual(event?.hashedTokens, [old.link.hashedToken, link.link.hashedToken], "audited with the old and the new hash");
      });

      test("expires_in replaces the lifetime, within the configured bounds; a long earlier lifetime is cut to today's maximum", async () => {
        const f = fixture();
        const old = await generate(f, "invite", uniqueEmail("lifetime"), { expiresInMs: 7 * 24 * HOUR });
        const shorter = await reissue(f, old.link.hashedToken, 5 * 60_000);
        assert.deepEqual(shorter.link.expiresAt, new Date(f.clock.now().getTime() + 5 * 60_000));
        await rejects(reissue(f, shorter.link.link.hashedToken, 1_000), "validation_failed", "expires_in");
        const g = fixture({ settings: { expiry: { ...TEST_LINK_SETTINGS.expiry, maxMs: 2 * HOUR } } });
        const capped = await reissue(g, old.link.hashedToken);
        assert.deepEqual(capped.link.expiresAt, new Date(g.clock.now().getTime() + 2 * HOUR));
      });

      test("resending an expired invite just works (supabase/auth#2180); once the user has confirmed it is email_exists", async () => {
        const f = fixture();
        const email = uniqueEmail("invitee");
        const invite = await generate(f, "invite", email);
        f.clock.advance(25 * HOUR);
        assert.equal((await get(f, invite.link.hashedToken)).state, "expired");
        const resent = await reissue(f, invite.link.hashedToken);
        assert.deepEqual(resent.link.expiresAt, new Date(f.clock.now().getTime() + 24 * HOUR));
        assert.deepEqual(resent.link.user.invitedAt, f.clock.now(), "invited again");
        assert.equal((await get(f, invite.link.hashedToken)).state, "expired", "an expired link stays expired");
        const redeemed = await redeem(f, "invite", resent.link.link);
        assert.ok(redeemed.user.emailConfirmedAt);
        await rejects(reissue(f, resent.link.link.hashedToken), "link_already_used");
        await rejects(reissue(f, invite.link.hashedToken), "email_exists");
      });

      test("a signup link is issued again without asking the password again", async () => {
        const f = fixture();
        const email = uniqueEmail("signup");
        const signup = await generate(f, "signup", email);
        const again = await reissue(f, signup.link.hashedToken);
        assert.equal(again.link.type, "signup");
        const verified = await redeem(f, "signup", again.link.link);
        assert.ok(verified.user.emailConfirmedAt);
        const stored = await store.users.findById(signup.user.id);
        assert.ok(stored?.passwordHash?.startsWith("$argon2id$"), "the password set at signup stays");
      });

      test("revoked and replaced links may be issued again; used ones are link_already_used; unknown or pending ones link_not_found", async () => {
        const f = fixture();
        const email = uniqueEmail("fates");
        await generate(f, "magiclink", email);
        const recovery = await generate(f, "recovery", email);
        await f.admin.revoke({ kind: "hashed_tokens", hashedTokens: [recovery.link.hashedToken] }, operator("RevokeLinks"));
        const fromRevoked = await reissue(f, recovery.link.hashedToken);
        const replacing = await generate(f, "recovery", email);
        assert.equal((await get(f, fromRevoked.link.link.hashedToken)).state, "replaced");
        const fromReplaced = await reissue(f, fromRevoked.link.link.hashedToken);
        assert.equal((await get(f, replacing.link.hashedToken)).state, "replaced");
        await redeem(f, "recovery", fromReplaced.link.link);
        await rejects(reissue(f, fromReplaced.link.link.hashedToken), "link_already_used");
        await rejects(reissue(f, hashLinkToken(`never-${randomUUID()}`)), "link_not_found");
        const pending = newRecord(f, { pending: true });
        await store.links.insert([pending]);
        await rejects(reissue(f, pending.tokenHash), "link_not_found");
        await rejects(reissue(f, "nope"), "validation_failed", "hashed_token");
      });

      test("a link of a user who is gone is user_not_found; a redirect no longer allowed is redirect_not_allowed", async () => {
        const f = fixture();
        const orphan = newRecord(f, { type: "recovery" });
        await store.links.insert([orphan]);
        await rejects(reissue(f, orphan.tokenHash), "user_not_found");
        const owner = await generate(f, "magiclink", uniqueEmail("redirect"));
        const stale = newRecord(f, { userId: owner.user.id, email: owner.user.email, redirectTo: "https://gone.example.net/" });
        await store.links.insert([stale]);
        await rejects(reissue(f, stale.tokenHash), "redirect_not_allowed", "redirect_to");
      });

      test("email change: both links again for the pending change, which then completes; a superseded change is email_change_not_pending", async () => {
        const f = fixture();
        const email = uniqueEmail("changer");
        const newEmail = uniqueEmail("changed");
        await generate(f, "magiclink", email);
        const change = await generate(f, "email_change", email, { newEmail });
        const again = await reissue(f, change.currentAddressLink!.hashedToken);
        assert.ok(again.link.currentAddressLink, "secure mode: both addresses again");
        assert.equal((await get(f, change.link.hashedToken)).state, "replaced");
        assert.equal((await get(f, again.link.link.hashedToken)).email, newEmail);
        await redeem(f, "email_change", again.link.link);
        const done = await redeem(f, "email_change", again.link.currentAddressLink!);
        assert.equal(done.user.email, newEmail);
        await rejects(reissue(f, change.link.hashedToken), "email_change_not_pending");

        const later = await generate(f, "email_change", newEmail, { newEmail: uniqueEmail("third") });
        await generate(f, "email_change", newEmail, { newEmail: uniqueEmail("fourth") });
        await rejects(reissue(f, later.link.hashedToken), "email_change_not_pending");
      });

      test("rate limits apply as for GenerateLink", async () => {
        const f = fixture({
          rateLimits: {
            generatePerCaller: { limit: 0, windowMs: 60_000 },
            generatePerEmail: { limit: 1, windowMs: 60_000 },
            verifyPerAddress: { limit: 0, windowMs: 60_000 },
            verifyCodePerEmailAndClient: { limit: 0, windowMs: 60_000 },
            verifyCodePerEmail: { limit: 0, windowMs: 60_000 },
          },
        });
        const issued = await generate(f, "magiclink", uniqueEmail("limited"));
        await rejects(reissue(f, issued.link.hashedToken), "over_rate_limit");
        f.clock.advance(120_000); // a sliding window: two windows on
        await reissue(f, issued.link.hashedToken);
      });
    });

    /** A link record as a store holds it (for states no call leaves behind for long). */
    function newRecord(f: AdminFixture, overrides: Partial<LinkRecord> = {}): LinkRecord {
      const now = f.clock.now();
      const expiresAt = new Date(now.getTime() + HOUR);
      return {
        tokenHash: newLinkToken().tokenHash,
        otpHash: "hmac",
        type: "magiclink",
        userId: randomUUID(),
        email: uniqueEmail("record"),
        issueId: randomUUID(),
        issuedAt: now,
        expiresAt,
        retainUntil: new Date(expiresAt.getTime() + 24 * HOUR),
        issuedBy: "test",
        ...overrides,
      };
    }
  });
}

suite("embedded store", async () => createMemoryStore());
const database = await useTestDatabase("link_admin");
suite("MongoDB store", () => openTestStore(database));
