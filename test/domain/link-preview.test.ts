import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { hashLinkToken } from "../../src/crypto/link-token.js";
import { internalCall } from "../../src/domain/call.js";
import { AuthlinkError } from "../../src/domain/errors.js";
import { maskEmail, type LinkPreview } from "../../src/domain/link-preview.js";
import type { VerifyLinkInput } from "../../src/domain/link-requests.js";
import type { GeneratedLink } from "../../src/domain/link-service.js";
import type { LinkType } from "../../src/domain/link-type.js";
import type { RateLimitSettings } from "../../src/domain/rate-limiter.js";
import { StoreUnavailableError, type Store } from "../../src/domain/store.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { linkParams } from "../support/links.js";
import { makeLinkService, NO_RATE_LIMITS, TEST_LINK_SETTINGS, type LinkServiceFixture, generateInput as input } from "../support/link-service-fixture.js";
import { openTestStore, useTestDatabase } from "../support/mongo.js";

// PreviewLink through the use case, on the embedded store and on MongoDB,
// with the clock injected: every state a holder can be told (valid, expired
// at its exact boundary, used, replaced, revoked, unknown), that a preview
// never consumes, the masked address and redirect host, how long a state is
// remembered (expiry plus the grace period), validation, the shared
// per-address limit, the audit event, and faults around the tombstones.

const GRACE = TEST_LINK_SETTINGS.tombstoneGraceMs;

function makeService(store: Store, rateLimits: RateLimitSettings = NO_RATE_LIMITS): LinkServiceFixture {
  return makeLinkService(store, { settings: { secureEmailChange: false }, rateLimits });
}

let counter = 0;
const uniqueEmail = (label: string) => `${label}-${++counter}-${randomBytes(3).toString("hex")}@example.com`;


const tokenOf = (link: GeneratedLink) => linkParams(link.link.actionLink).get("token") ?? "";
const byToken = (type: LinkType, token: string): VerifyLinkInput => ({ type, credential: { kind: "token", token } });
const byCode = (type: LinkType, email: string, otp: string): VerifyLinkInput => ({ type, credential: { kind: "email_otp", email, otp } });
const wrongCode = (otp: string) => String((Number(otp) + 1) % 1_000_000).padStart(6, "0");
const randomToken = () => randomBytes(32).toString("base64url");

async function rejects(promise: Promise<unknown>, reason: string): Promise<AuthlinkError> {
  let caught: unknown;
  await assert.rejects(promise, (error: unknown) => {
    caught = error;
    return error instanceof AuthlinkError && error.reason === reason;
  });
  return caught as AuthlinkError;
}

function suite(name: string, openStore: () => Promise<Store>): void {
  describe(name, () => {
    let store: Store;
    before(async () => {
      store = await openStore();
    });
    after(() => store.close());

    /** Preview `generated` as `type` (default: its own). */
    const preview = (f: LinkServiceFixture, generated: GeneratedLink, type: LinkType = generated.type): Promise<LinkPreview> =>
      f.links.preview({ type, token: tokenOf(generated) });
    const stateOf = async (f: LinkServiceFixture, generated: GeneratedLink, type?: LinkType) => (await preview(f, generated, type)).state;

    test("VALID: type, masked address, expiry and redirect host, no state change time", async () => {
      const f = makeService(store);
      const generated = await f.links.generate(
        input("magiclink", uniqueEmail("ann"), { redirectTo: "https://app.example.com/welcome?next=1" }),
      );
      assert.deepEqual(await preview(f, generated), {
        state: "valid",
        type: "magiclink",
        maskedEmail: "a***@example.com",
        expiresAt: generated.expiresAt,
        redirectHost: "app.example.com",
        stateChangedAt: undefined,
      });
    });

    test("a link without redirect has no redirect host", async () => {
      const f = makeService(store);
      const generated = await f.links.generate(input("invite", uniqueEmail("invitee")));
      const seen = await preview(f, generated);
      assert.equal(seen.state, "valid");
      assert.equal(seen.redirectHost, undefined);
    });

    test("EXPIRED exactly at expiresAt (valid the millisecond before), remembered until expiry plus the grace period", async () => {
      const f = makeService(store);
      const generated = await f.links.generate(input("magiclink", uniqueEmail("expiry"), { expiresInMs: 10 * 60_000 }));
      f.clock.set(new Date(generated.expiresAt.getTime() - 1));
      assert.equal(await stateOf(f, generated), "valid");
      f.clock.set(generated.expiresAt);
      const expired = await preview(f, generated);
      assert.equal(expired.state, "expired");
      assert.deepEqual(expired.expiresAt, generated.expiresAt);
      assert.equal(expired.stateChangedAt, undefined);
      await rejects(f.links.verify(byToken("magiclink", tokenOf(generated))), "link_invalid_or_expired");
      f.clock.set(new Date(generated.expiresAt.getTime() + GRACE - 1));
      assert.equal(await stateOf(f, generated), "expired", "still known the millisecond before the grace period ends");
      f.clock.set(new Date(generated.expiresAt.getTime() + GRACE));
      assert.equal(await stateOf(f, generated), "unknown", "forgotten once it ends");
    });

    test("USED, with when; remembered until the link's expiry plus the grace period", async () => {
      const f = makeService(store);
      const generated = await f.links.generate(input("magiclink", uniqueEmail("used")));
      f.clock.advance(90_000);
      const usedAt = f.clock.now();
      await f.links.verify(byToken("magiclink", tokenOf(generated)));
      f.clock.advance(60_000);
      const seen = await preview(f, generated);
      assert.equal(seen.state, "used");
      assert.deepEqual(seen.stateChangedAt, usedAt);
      assert.deepEqual(seen.expiresAt, generated.expiresAt);
      assert.equal(seen.type, "magiclink");
      f.clock.set(new Date(generated.expiresAt.getTime() + GRACE - 1));
      assert.equal(await stateOf(f, generated), "used", "after the link would have expired, still used (not expired)");
      f.clock.set(new Date(generated.expiresAt.getTime() + GRACE));
      assert.equal(await stateOf(f, generated), "unknown");
    });

    test("USED by its code too", async () => {
      const f = makeService(store);
      const generated = await f.links.generate(input("magiclink", uniqueEmail("usedcode")));
      await f.links.verify(byCode("magiclink", generated.user.email, generated.link.otp));
      assert.equal(await stateOf(f, generated), "used");
    });

    test("REPLACED by a newer link of the type, with when; the newer one is valid", async () => {
      const f = makeService(store);
      const email = uniqueEmail("replaced");
      const first = await f.links.generate(input("magiclink", email));
      const other = await f.links.generate(input("invite", uniqueEmail("bystander")));
      f.clock.advance(5_000);
      const second = await f.links.generate(input("magiclink", email));
      const seen = await preview(f, first);
      assert.equal(seen.state, "replaced");
      assert.deepEqual(seen.stateChangedAt, f.clock.now());
      assert.equal(await stateOf(f, second), "valid");
      assert.equal(await stateOf(f, other), "valid");
    });

    test("REVOKED after a recovery redemption (the recovery link itself is USED)", async () => {
      const f = makeService(store);
      const email = uniqueEmail("recovered");
      const magic = await f.links.generate(input("magiclink", email));
      const recovery = await f.links.generate(input("recovery", email));
      f.clock.advance(1_000);
      await f.links.verify(byToken("recovery", tokenOf(recovery)));
      const seen = await preview(f, magic);
      assert.equal(seen.state, "revoked");
      assert.deepEqual(seen.stateChangedAt, f.clock.now());
      assert.equal(await stateOf(f, recovery), "used");
    });

    test("REVOKED after a completed email change", async () => {
      const f = makeService(store);
      const email = uniqueEmail("mover");
      const first = await f.links.generate(input("magiclink", email));
      await f.links.verify(byToken("magiclink", tokenOf(first)));
      const magic = await f.links.generate(input("magiclink", email));
      const change = await f.links.generate(input("email_change", email, { newEmail: uniqueEmail("moved") }));
      await f.links.verify(byToken("email_change", tokenOf(change)));
      assert.equal(await stateOf(f, magic), "revoked");
      assert.equal(await stateOf(f, change), "used");
    });

    test("still VALID after too many wrong codes: they disable the code, not the link", async () => {
      const f = makeService(store);
      const victim = await f.links.generate(input("magiclink", uniqueEmail("guessed")));
      for (let i = 0; i < 4; i++) {
        await rejects(f.links.verify(byCode("magiclink", victim.user.email, wrongCode(victim.link.otp))), "link_invalid_or_expired");
        assert.equal(await stateOf(f, victim), "valid", `after ${i + 1} wrong codes`);
      }
      await rejects(f.links.verify(byCode("magiclink", victim.user.email, wrongCode(victim.link.otp))), "link_invalid_or_expired");
      assert.equal(await stateOf(f, victim), "valid");
      await rejects(f.links.verify(byCode("magiclink", victim.user.email, victim.link.otp)), "link_invalid_or_expired");
      await f.links.verify(byToken("magiclink", tokenOf(victim)));
      assert.equal(await stateOf(f, victim), "used");
    });

    test("a link that expired before it was replaced reads as expired (its first fate)", async () => {
      const f = makeService(store);
      const email = uniqueEmail("late-replace");
      const first = await f.links.generate(input("magiclink", email, { expiresInMs: 60_000 }));
      f.clock.advance(2 * 60_000);
      await f.links.generate(input("magiclink", email));
      assert.equal(await stateOf(f, first), "expired");
    });

    test("UNKNOWN: a token never issued, and a real token asked about as another type (which stays valid)", async () => {
      const f = makeService(store);
      assert.deepEqual(await f.links.preview({ type: "magiclink", token: randomToken() }), { state: "unknown" });
      const generated = await f.links.generate(input("magiclink", uniqueEmail("typed")));
      for (const type of ["signup", "recovery", "invite", "email_change"] as const) {
        assert.deepEqual(await preview(f, generated, type), { state: "unknown" }, type);
      }
      await f.links.verify(byToken("magiclink", tokenOf(generated)));
      assert.deepEqual(await preview(f, generated, "recovery"), { state: "unknown" }, "a used link asked about as another type");
    });

    test("a preview never consumes: ten previews, then the link redeems exactly once", async () => {
      const f = makeService(store);
      const generated = await f.links.generate(input("signup", uniqueEmail("looked"), { password: "correct horse battery staple" }));
      for (let i = 0; i < 10; i++) assert.equal(await stateOf(f, generated), "valid");
      const verified = await f.links.verify(byToken("signup", tokenOf(generated)));
      assert.ok(verified.user.emailConfirmedAt);
      await rejects(f.links.verify(byToken("signup", tokenOf(generated))), "link_invalid_or_expired");
      assert.equal(await stateOf(f, generated), "used");
    });

    test("bad input: INVALID_ARGUMENT validation_failed with each bad field, nothing read", async () => {
      const f = makeService(store);
      const error = await rejects(f.links.preview({ type: undefined, token: "not a token" }), "validation_failed");
      assert.equal(error.kind, "invalid_argument");
      assert.deepEqual(error.violations.map((v) => v.field), ["type", "token"]);
      for (const token of ["", "x".repeat(42), "x".repeat(44), `${"x".repeat(42)}=`]) {
        const bad = await rejects(f.links.preview({ type: "magiclink", token }), "validation_failed");
        assert.deepEqual(bad.violations.map((v) => v.field), ["token"]);
      }
    });

    test("rate limited per client address with VerifyLink's rule (one budget for both); service-role callers are exempt", async () => {
      const f = makeService(store, { ...NO_RATE_LIMITS, verifyPerAddress: { limit: 3, windowMs: 60_000 } });
      const generated = await f.links.generate(input("magiclink", uniqueEmail("limited")));
      const from = (clientAddress: string, serviceIdentity?: string) =>
        internalCall("PreviewLink", { clientAddress, serviceIdentity });
      const address = `198.51.100.${counter % 250}`;
      await f.links.preview({ type: "magiclink", token: tokenOf(generated) }, from(address));
      await f.links.preview({ type: "magiclink", token: randomToken() }, from(address));
      await rejects(f.links.verify(byToken("magiclink", randomToken()), internalCall("VerifyLink", { clientAddress: address })), "link_invalid_or_expired");
      const limited = await rejects(f.links.preview({ type: "magiclink", token: tokenOf(generated) }, from(address)), "over_rate_limit");
      assert.equal(limited.rateLimitRule, "verify-address");
      await rejects(f.links.preview({ type: "magiclink", token: "bad" }, from(address)), "over_rate_limit"); // malformed floods count too
      assert.equal((await f.links.preview({ type: "magiclink", token: tokenOf(generated) }, from(address, "spiffe://backend"))).state, "valid");
      assert.equal((await f.links.preview({ type: "magiclink", token: tokenOf(generated) }, from("198.51.100.251"))).state, "valid");
    });

    test("audited: PreviewLink, outcome, the state answered, hashed token, user, type and the link's age", async () => {
      const f = makeService(store);
      const generated = await f.links.generate(input("magiclink", uniqueEmail("audited")));
      f.clock.advance(42_000);
      await f.links.preview({ type: "magiclink", token: tokenOf(generated) }, internalCall("PreviewLink", { requestId: "req-preview", clientAddress: "192.0.2.7" }));
      f.clock.advance(1_000);
      await f.links.preview({ type: "recovery", token: tokenOf(generated) });
      const events = (await store.audit.find({ userId: generated.user.id }, 10)).filter((e) => e.method === "PreviewLink");
      assert.equal(events.length, 2);
      const [wrongType, valid] = events;
      assert.equal(valid?.outcome, "ok");
      assert.equal(valid?.linkState, "valid");
      assert.equal(valid?.requestId, "req-preview");
      assert.equal(valid?.clientAddress, "192.0.2.7");
      assert.deepEqual(valid?.hashedTokens, [generated.link.hashedToken]);
      assert.equal(valid?.email, generated.user.email);
      assert.equal(valid?.linkType, "magiclink");
      assert.equal(valid?.linkAgeMs, 42_000, "time since issue: a redemption seconds after issue with no preview is a scanner");
      assert.equal(wrongType?.linkState, "unknown");
      assert.equal(wrongType?.linkType, "recovery", "the type asked about");
      assert.equal(wrongType?.linkAgeMs, 43_000);

      const token = randomToken();
      await f.links.preview({ type: "invite", token });
      await rejects(f.links.preview({ type: "invite", token: "short" }), "validation_failed");
      const all = await store.audit.find({}, 10_000);
      const unknown = all.find((e) => e.method === "PreviewLink" && e.hashedTokens.includes(hashLinkToken(token)));
      assert.equal(unknown?.linkState, "unknown");
      assert.equal(unknown?.userId, undefined);
      assert.equal(unknown?.linkAgeMs, undefined);
      assert.ok(all.some((e) => e.method === "PreviewLink" && e.outcome === "validation_failed" && e.linkState === undefined));
      assert.ok(!JSON.stringify(all).includes(tokenOf(generated)), "no token in the audit trail");
    });

    describe("faults", () => {
      /** The store with tombstone writes failing. */
      const withoutTombstones = (): Store => ({
        ...store,
        tombstones: {
          ...store.tombstones,
          record: async () => {
            throw new StoreUnavailableError("tombstones are down");
          },
        },
      });

      test("a tombstone is a link's fate: when none can be written, the redemption or replacement that needs one fails and changes nothing", async () => {
        const f = makeService(withoutTombstones());
        const email = uniqueEmail("lost-tombstones");
        const first = await f.links.generate(input("magiclink", email)); // nothing to replace: no tombstone needed
        f.clock.advance(1);
        await assert.rejects(f.links.generate(input("magiclink", email)), StoreUnavailableError);
        await assert.rejects(f.links.verify(byToken("magiclink", tokenOf(first))), StoreUnavailableError);
        assert.equal(await stateOf(f, first), "valid", "the first link is untouched");
        const healthy = makeService(store);
        healthy.clock.set(f.clock.now());
        await healthy.links.verify(byToken("magiclink", tokenOf(first)));
        assert.equal(await stateOf(healthy, first), "used");
      });

      test("a fault while applying a redeemed link leaves it claimed (USED); the next call finishes it, once", async () => {
        let failures = 1;
        const flaky: Store = {
          ...store,
          users: {
            ...store.users,
            confirmEmail: async (...args) => {
              if (failures-- > 0) throw new StoreUnavailableError("database went away");
              return store.users.confirmEmail(...args);
            },
          },
        };
        const f = makeService(flaky);
        const generated = await f.links.generate(input("magiclink", uniqueEmail("claimed")));
        await assert.rejects(f.links.verify(byToken("magiclink", tokenOf(generated))), StoreUnavailableError);
        assert.equal(await stateOf(f, generated), "used", "claimed: nobody else can redeem it first");
        await f.links.verify(byToken("magiclink", tokenOf(generated)));
        await rejects(f.links.verify(byToken("magiclink", tokenOf(generated))), "link_invalid_or_expired");
        assert.equal(await stateOf(f, generated), "used");
      });
    });
  });
}

describe("maskEmail", () => {
  test("keeps the first character of the local part and the whole domain; always three stars", () => {
    assert.equal(maskEmail("ann@example.com"), "a***@example.com");
    assert.equal(maskEmail("anastasia.longname+tag@mail.example.org"), "a***@mail.example.org");
    assert.equal(maskEmail("abc@x.io"), "a***@x.io");
  });

  test("local parts shorter than three characters show no character", () => {
    assert.equal(maskEmail("ab@example.com"), "***@example.com");
    assert.equal(maskEmail("a@example.com"), "***@example.com");
  });

  test("a non-ASCII first character is kept whole", () => {
    assert.equal(maskEmail("émile@exemple.fr"), "é***@exemple.fr");
    assert.equal(maskEmail("𝒜lice@example.com"), "𝒜***@example.com");
    assert.equal(maskEmail("𝒜b@example.com"), "***@example.com", "two code points");
  });
});

suite("embedded store", async () => createMemoryStore());
const database = await useTestDatabase("link_preview");
suite("MongoDB store", () => openTestStore(database));
