import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AuthlinkError } from "../../src/domain/errors.js";
import type { LinkSettings } from "../../src/domain/link-settings.js";
import { FINISH_WINDOW_MS } from "../../src/domain/link-redemption.js";
import type { GeneratedLink } from "../../src/domain/link-service.js";
import { internalCall } from "../../src/domain/call.js";
import type { GenerateLinkInput, VerifyLinkInput } from "../../src/domain/link-requests.js";
import type { LinkType } from "../../src/domain/link-type.js";
import { createOtpCodec } from "../../src/crypto/otp.js";
import { newLinkToken } from "../../src/crypto/link-token.js";
import { Secret } from "../../src/crypto/secret.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { StoreUnavailableError, type Store } from "../../src/domain/store.js";
import { linkParams } from "../support/links.js";
import { HOUR, makeLinkService, type LinkServiceFixture, generateInput as input, redeems, tokenOf } from "../support/link-service-fixture.js";
import { openTestStore, useTestDatabase } from "../support/mongo.js";

// The behaviour table of DESIGN.md, expiry at its exact boundary, code attempt
// limits, secure email change, link replacement and revocation, and recovery
// from a fault mid-redemption. Runs on the embedded store and on MongoDB.

/** The behaviour table runs with secure email change on (TEST_LINK_SETTINGS). */
function makeService(store: Store, overrides: Partial<LinkSettings> = {}): LinkServiceFixture {
  return makeLinkService(store, { settings: overrides });
}

let counter = 0;
const uniqueEmail = (label: string) => `${label}-${++counter}-${Date.now().toString(36)}@example.com`;


const byToken = (type: LinkType, token: string): VerifyLinkInput => ({ type, credential: { kind: "token", token } });
const byCode = (type: LinkType, email: string, otp: string): VerifyLinkInput => ({
  type,
  credential: { kind: "email_otp", email, otp },
});
const wrongCode = (otp: string) => String((Number(otp) + 1) % 1_000_000).padStart(6, "0");

async function rejects(promise: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof AuthlinkError, `expected AuthlinkError, got ${String(error)}`);
    assert.equal(error.reason, reason);
    return true;
  });
}

const usable = (f: LinkServiceFixture, type: LinkType, generated: GeneratedLink): Promise<boolean> => redeems(f.links, type, tokenOf(generated.link));

function suite(name: string, openStore: () => Promise<Store>): void {
  describe(name, () => {
    let store: Store;
    before(async () => {
      store = await openStore();
    });
    after(() => store.close());
    const fixture = (overrides?: Partial<LinkSettings>) => makeService(store, overrides);

    describe("SIGNUP", () => {
      test("creates an unconfirmed user with an argon2id password; redeeming confirms", async () => {
        const f = fixture();
        const email = uniqueEmail("signup");
        const generated = await f.links.generate(input("signup", email, { data: { plan: "pro" } }));
        assert.equal(generated.user.emailConfirmedAt, undefined);
        assert.deepEqual(generated.user.userMetadata, { plan: "pro" });
        const stored = await store.users.findByEmail(email);
        assert.match(stored?.passwordHash ?? "", /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
        f.clock.advance(1000);
        const verified = await f.links.verify(byToken("signup", tokenOf(generated.link)));
        assert.deepEqual(verified.user.emailConfirmedAt, f.clock.now());
      });

      test("re-issue for an unconfirmed user merges data, replaces the password and the old link", async () => {
        const f = fixture();
        const email = uniqueEmail("resignup");
        const first = await f.links.generate(input("signup", email, { data: { plan: "free", source: "ad" } }));
        f.clock.advance(1);
        const second = await f.links.generate(
          input("signup", email, { data: { plan: "pro" }, password: "another long passphrase" }),
        );
        assert.equal(second.user.id, first.user.id);
        assert.deepEqual(second.user.userMetadata, { plan: "pro", source: "ad" });
        assert.notEqual((await store.users.findById(first.user.id))?.passwordHash, undefined);
        assert.equal(await usable(f, "signup", first), false, "the first link was replaced");
        assert.equal(await usable(f, "signup", second), true);
      });

      test("a confirmed user is ALREADY_EXISTS email_exists", async () => {
        const f = fixture();
        const email = uniqueEmail("confirmed");
        const generated = await f.links.generate(input("signup", email));
        await f.links.verify(byToken("signup", tokenOf(generated.link)));
        await rejects(f.links.generate(input("signup", email)), "email_exists");
      });

      test("two concurrent signups for one address make one user, and exactly one link survives", async () => {
        const f = fixture();
        const email = uniqueEmail("race");
        const [a, b] = await Promise.all([
          f.links.generate(input("signup", email)),
          f.links.generate(input("signup", email)),
        ]);
        assert.equal(a.user.id, b.user.id);
        const results = [await usable(f, "signup", a), await usable(f, "signup", b)];
        assert.deepEqual(results.filter(Boolean).length, 1, `usable: ${results}`);
      });
    });

    describe("MAGICLINK", () => {
      test("creates a missing user and the link stays a magic link", async () => {
        const f = fixture();
        const email = uniqueEmail("magic");
        const generated = await f.links.generate(input("magiclink", email, { data: { from: "magic" } }));
        assert.equal(generated.type, "magiclink");
        assert.equal(linkParams(generated.link.actionLink).get("type"), "magiclink");
        assert.deepEqual(generated.user.userMetadata, { from: "magic" });
        await rejects(f.links.verify(byToken("signup", tokenOf(generated.link))), "link_invalid_or_expired");
        const verified = await f.links.verify(byToken("magiclink", tokenOf(generated.link)));
        assert.ok(verified.user.emailConfirmedAt, "confirms the address");
      });

      test("issues for confirmed users without touching their metadata", async () => {
        const f = fixture();
        const email = uniqueEmail("magic2");
        const first = await f.links.generate(input("magiclink", email, { data: { a: 1 } }));
        await f.links.verify(byToken("magiclink", tokenOf(first.link)));
        const second = await f.links.generate(input("magiclink", email, { data: { a: 2 } }));
        assert.deepEqual(second.user.userMetadata, { a: 1 });
        assert.ok(second.user.emailConfirmedAt);
        assert.equal(await usable(f, "magiclink", second), true);
      });
    });

    describe("RECOVERY", () => {
      test("a missing user is NOT_FOUND user_not_found and nothing is created", async () => {
        const f = fixture();
        const email = uniqueEmail("nobody");
        await rejects(f.links.generate(input("recovery", email)), "user_not_found");
        assert.equal(await store.users.findByEmail(email), undefined);
      });

      test("redeeming revokes every other outstanding link of the user", async () => {
        const f = fixture();
        const email = uniqueEmail("recover");
        const magic = await f.links.generate(input("magiclink", email));
        const invite = await f.links.generate(input("invite", uniqueEmail("bystander")));
        const recovery = await f.links.generate(input("recovery", email));
        const verified = await f.links.verify(byToken("recovery", tokenOf(recovery.link)));
        assert.ok(verified.user.emailConfirmedAt, "receiving the mail proves the address");
        assert.equal(await usable(f, "magiclink", magic), false, "the magic link was revoked");
        assert.equal(await usable(f, "invite", invite), true, "another user's links are untouched");
      });
    });

    describe("INVITE", () => {
      test("creates the user with invited_at and data; re-issue refreshes invited_at; confirmed is email_exists", async () => {
        const f = fixture();
        const email = uniqueEmail("invite");
        const first = await f.links.generate(input("invite", email, { data: { team: "red" } }));
        assert.deepEqual(first.user.invitedAt, f.clock.now());
        assert.deepEqual(first.user.userMetadata, { team: "red" });
        assert.equal(first.expiresAt.getTime() - f.clock.now().getTime(), 24 * HOUR, "per-type default expiry");
        f.clock.advance(5000);
        const second = await f.links.generate(input("invite", email));
        assert.deepEqual(second.user.invitedAt, f.clock.now());
        await f.links.verify(byToken("invite", tokenOf(second.link)));
        await rejects(f.links.generate(input("invite", email)), "email_exists");
      });
    });

    describe("EMAIL_CHANGE", () => {
      async function confirmedUser(f: LinkServiceFixture, label: string) {
        const email = uniqueEmail(label);
        const g = await f.links.generate(input("magiclink", email));
        await f.links.verify(byToken("magiclink", tokenOf(g.link)));
        return email;
      }

      test("secure mode needs both addresses, in either order, then swaps and revokes other links", async () => {
        for (const order of [["new", "current"], ["current", "new"]] as const) {
          const f = fixture();
          const email = await confirmedUser(f, `change-${order[0]}`);
          const newEmail = uniqueEmail("moved");
          const magic = await f.links.generate(input("magiclink", email));
          const generated = await f.links.generate(input("email_change", email, { newEmail }));
          assert.equal(generated.user.emailChange?.newEmail, newEmail);
          assert.ok(generated.currentAddressLink, "secure mode issues a link for the current address");
          const links = { new: generated.link, current: generated.currentAddressLink };

          const firstStep = await f.links.verify(byToken("email_change", tokenOf(links[order[0]])));
          assert.equal(firstStep.emailChangePending, true);
          assert.equal(firstStep.user.email, email, "not changed after one confirmation");

          const secondStep = await f.links.verify(byToken("email_change", tokenOf(links[order[1]])));
          assert.equal(secondStep.emailChangePending, false);
          assert.equal(secondStep.user.email, newEmail);
          assert.equal(secondStep.user.emailChange, undefined);
          assert.equal(await store.users.findByEmail(email), undefined, "the old address is free");
          assert.equal(await usable(f, "magiclink", magic), false, "other links are revoked");
        }
      });

      test("codes work too: each code with the address it was sent to", async () => {
        const f = fixture();
        const email = await confirmedUser(f, "codes");
        const newEmail = uniqueEmail("codes-new");
        const generated = await f.links.generate(input("email_change", email, { newEmail }));
        const current = generated.currentAddressLink;
        assert.ok(current);
        await rejects(f.links.verify(byCode("email_change", email, generated.link.otp)), "link_invalid_or_expired");
        await f.links.verify(byCode("email_change", newEmail, generated.link.otp));
        const done = await f.links.verify(byCode("email_change", email, current.otp));
        assert.equal(done.user.email, newEmail);
      });

      test("without secure mode one confirmation of the new address is enough", async () => {
        const f = fixture({ secureEmailChange: false });
        const email = await confirmedUser(f, "insecure");
        const newEmail = uniqueEmail("insecure-new");
        const generated = await f.links.generate(input("email_change", email, { newEmail }));
        assert.equal(generated.currentAddressLink, undefined);
        const done = await f.links.verify(byToken("email_change", tokenOf(generated.link)));
        assert.equal(done.user.email, newEmail);
      });

      test("missing user, taken address, and an address taken before completion", async () => {
        const f = fixture();
        await rejects(f.links.generate(input("email_change", uniqueEmail("ghost"), { newEmail: uniqueEmail("x") })), "user_not_found");
        const email = await confirmedUser(f, "taken");
        const other = await confirmedUser(f, "holder");
        await rejects(f.links.generate(input("email_change", email, { newEmail: other })), "email_exists");

        const newEmail = uniqueEmail("contested");
        const generated = await f.links.generate(input("email_change", email, { newEmail }));
        await f.links.verify(byToken("email_change", tokenOf(generated.link)));
        await f.links.generate(input("magiclink", newEmail)); // someone else takes the address
        const current = generated.currentAddressLink;
        assert.ok(current);
        await rejects(f.links.verify(byToken("email_change", tokenOf(current))), "email_exists");
        const user = await store.users.findByEmail(email);
        assert.equal(user?.emailChange, undefined, "the impossible change is dropped");
      });

      test("a newer email change makes the older change's links useless", async () => {
        const f = fixture({ secureEmailChange: false });
        const email = await confirmedUser(f, "twice");
        const first = await f.links.generate(input("email_change", email, { newEmail: uniqueEmail("first") }));
        f.clock.advance(1);
        const secondTarget = uniqueEmail("second");
        const second = await f.links.generate(input("email_change", email, { newEmail: secondTarget }));
        await rejects(f.links.verify(byToken("email_change", tokenOf(first.link))), "link_invalid_or_expired");
        assert.equal((await f.links.verify(byToken("email_change", tokenOf(second.link)))).user.email, secondTarget);
      });
    });

    describe("expiry", () => {
      test("a link works until the instant before expires_at and not at it", async () => {
        const f = fixture();
        const a = await f.links.generate(input("magiclink", uniqueEmail("edge-a"), { expiresInMs: 10 * 60_000 }));
        const b = await f.links.generate(input("magiclink", uniqueEmail("edge-b"), { expiresInMs: 10 * 60_000 }));
        assert.equal(a.expiresAt.getTime(), f.clock.now().getTime() + 10 * 60_000);
        f.clock.set(new Date(a.expiresAt.getTime() - 1));
        await f.links.verify(byToken("magiclink", tokenOf(a.link)));
        f.clock.set(a.expiresAt);
        await rejects(f.links.verify(byToken("magiclink", tokenOf(b.link))), "link_invalid_or_expired");
        await rejects(
          f.links.verify(byCode("magiclink", b.user.email, b.link.otp)),
          "link_invalid_or_expired",
        );
      });
    });

    describe("one-time codes", () => {
      test("redeeming the code consumes the link token too, and the other way round", async () => {
        const f = fixture();
        const one = await f.links.generate(input("magiclink", uniqueEmail("both-a")));
        await f.links.verify(byCode("magiclink", one.user.email, one.link.otp));
        await rejects(f.links.verify(byToken("magiclink", tokenOf(one.link))), "link_invalid_or_expired");
        const two = await f.links.generate(input("magiclink", uniqueEmail("both-b")));
        await f.links.verify(byToken("magiclink", tokenOf(two.link)));
        await rejects(f.links.verify(byCode("magiclink", two.user.email, two.link.otp)), "link_invalid_or_expired");
      });

      test("four wrong codes then the right one works; five wrong codes disable the code, never the link", async () => {
        const f = fixture();
        const survivor = await f.links.generate(input("magiclink", uniqueEmail("attempts-ok")));
        for (let i = 0; i < 4; i++) {
          await rejects(f.links.verify(byCode("magiclink", survivor.user.email, wrongCode(survivor.link.otp))), "link_invalid_or_expired");
        }
        await f.links.verify(byCode("magiclink", survivor.user.email, survivor.link.otp));

        const victim = await f.links.generate(input("magiclink", uniqueEmail("attempts-dead")));
        for (let i = 0; i < 5; i++) {
          await rejects(f.links.verify(byCode("magiclink", victim.user.email, wrongCode(victim.link.otp))), "link_invalid_or_expired");
        }
        await rejects(f.links.verify(byCode("magiclink", victim.user.email, victim.link.otp)), "link_invalid_or_expired");
        // Anyone who knows the address can spend the code's attempts; the
        // token, which only the person holds, still works.
        await f.links.verify(byToken("magiclink", tokenOf(victim.link)));
      });

      test("30 concurrent wrong guesses cannot buy more than the limit", async () => {
        const f = fixture();
        const target = await f.links.generate(input("magiclink", uniqueEmail("burst")));
        const guesses = Array.from({ length: 30 }, (_, i) =>
          f.links.verify(byCode("magiclink", target.user.email, wrongCode(String(Number(target.link.otp) + i)))).then(
            () => "ok",
            (e: unknown) => (e instanceof AuthlinkError ? e.reason : String(e)),
          ),
        );
        const outcomes = await Promise.all(guesses);
        assert.ok(outcomes.every((o) => o === "link_invalid_or_expired"), outcomes.join(","));
        await rejects(f.links.verify(byCode("magiclink", target.user.email, target.link.otp)), "link_invalid_or_expired");
      });

      test("a code never redeems another user's link, nor a link of another type", async () => {
        const f = fixture();
        const alice = await f.links.generate(input("magiclink", uniqueEmail("alice")));
        const bob = await f.links.generate(input("magiclink", uniqueEmail("bob")));
        await rejects(f.links.verify(byCode("magiclink", bob.user.email, alice.link.otp)), "link_invalid_or_expired");
        await rejects(f.links.verify(byCode("recovery", alice.user.email, alice.link.otp)), "link_invalid_or_expired");
        await f.links.verify(byCode("magiclink", alice.user.email, alice.link.otp));
      });
    });

    describe("links of a type", () => {
      test("a new link replaces the user's older link of that type only", async () => {
        const f = fixture();
        const email = uniqueEmail("replace");
        const magic1 = await f.links.generate(input("magiclink", email));
        const invite = await f.links.generate(input("invite", email));
        f.clock.advance(1);
        const magic2 = await f.links.generate(input("magiclink", email));
        assert.equal(await usable(f, "magiclink", magic1), false);
        assert.equal(await usable(f, "invite", invite), true);
        assert.equal(await usable(f, "magiclink", magic2), true);
      });

      test("within one millisecond, the later of sequential links still wins", async () => {
        const f = fixture();
        const email = uniqueEmail("same-ms");
        const issued = [];
        for (let i = 0; i < 6; i++) issued.push(await f.links.generate(input("magiclink", email))); // the clock stands still
        const usableNow = [];
        for (const link of issued) usableNow.push(await usable(f, "magiclink", link));
        assert.deepEqual(usableNow, [false, false, false, false, false, true]);
      });

      test("a token tried with the wrong type is refused and not consumed", async () => {
        const f = fixture();
        const magic = await f.links.generate(input("magiclink", uniqueEmail("confuse")));
        for (const type of ["signup", "recovery", "invite", "email_change"] as const) {
          await rejects(f.links.verify(byToken(type, tokenOf(magic.link))), "link_invalid_or_expired");
        }
        assert.equal(await usable(f, "magiclink", magic), true);
      });
    });

    describe("bad input", () => {
      test("is refused before anything is read or written", async () => {
        const f = fixture();
        const email = uniqueEmail("nothing");
        const bad: GenerateLinkInput[] = [
          input("signup", email, { password: "" }),
          input("signup", email, { password: "password" }),
          input("magiclink", email, { password: "x" }),
          input("magiclink", email, { redirectTo: "https://evil.example.net/" }),
          input("magiclink", email, { expiresInMs: 1 }),
          input("magiclink", email, { data: { blob: "x".repeat(9000) } }),
          input("invite", email, { newEmail: uniqueEmail("n") }),
          input(undefined as unknown as LinkType, email),
        ];
        for (const request of bad) {
          await assert.rejects(f.links.generate(request), (e: unknown) => e instanceof AuthlinkError && e.kind === "invalid_argument");
        }
        assert.equal(await store.users.findByEmail(email), undefined);
      });
    });

    describe("faults: an error answer hides no effect a retry cannot finish", () => {
      /** `store` with `fail(name)` throwing StoreUnavailableError while it returns true. */
      function flaky(fail: (operation: string) => boolean): Store {
        const wrap = <T extends object>(prefix: string, sub: T): T =>
          Object.fromEntries(
            Object.entries(sub).map(([name, method]) => [
              name,
              (...args: unknown[]) => {
                if (fail(`${prefix}.${name}`)) return Promise.reject(new StoreUnavailableError(`${prefix}.${name} failed`));
                return (method as (...a: unknown[]) => unknown).apply(sub, args);
              },
            ]),
          ) as T;
        return {
          ...store,
          users: wrap("users", store.users),
          links: wrap("links", store.links),
          tombstones: wrap("tombstones", store.tombstones),
          claims: wrap("claims", store.claims),
        };
      }
      /** Fails `operation` the first `times` times it is called. */
      const failing = (operation: string, times = 1) => (name: string) => name === operation && times-- > 0;
      const as = (requestId: string) => internalCall("VerifyLink", { requestId });

      for (const operation of ["tombstones.record", "users.confirmEmail", "claims.hold"]) {
        test(`${operation} fails during a redemption: UNAVAILABLE, then the next call with the token succeeds once`, async () => {
          const f = fixture();
          const generated = await f.links.generate(input("magiclink", uniqueEmail("fault")));
          const service = makeService(flaky(failing(operation)));
          await assert.rejects(service.links.verify(byToken("magiclink", tokenOf(generated.link))), StoreUnavailableError);
          const verified = await service.links.verify(byToken("magiclink", tokenOf(generated.link)));
          assert.equal(verified.user.id, generated.user.id);
          assert.ok(verified.user.emailConfirmedAt, "the effect is there");
          await rejects(service.links.verify(byToken("magiclink", tokenOf(generated.link))), "link_invalid_or_expired");
        });
      }

      test("the same, by code: the code finds the claimed link and finishes it", async () => {
        const f = fixture();
        const generated = await f.links.generate(input("magiclink", uniqueEmail("fault-code")));
        const service = makeService(flaky(failing("claims.hold")));
        const code = byCode("magiclink", generated.user.email, generated.link.otp);
        await assert.rejects(service.links.verify(code), StoreUnavailableError);
        assert.equal((await service.links.verify(code)).user.id, generated.user.id);
        await rejects(service.links.verify(code), "link_invalid_or_expired");
        await rejects(service.links.verify(byToken("magiclink", tokenOf(generated.link))), "link_invalid_or_expired");
      });

      test("a redemption that finished but whose answer was lost is answered again under its request id, and only under it", async () => {
        const f = fixture();
        const generated = await f.links.generate(input("magiclink", uniqueEmail("replay")));
        const token = byToken("magiclink", tokenOf(generated.link));
        const first = await f.links.verify(token, as("req-replay-1"));
        const again = await f.links.verify(token, as("req-replay-1"));
        assert.equal(again.user.id, first.user.id);
        assert.equal(again.hashedToken, first.hashedToken);
        await rejects(f.links.verify(token, as("req-replay-2")), "link_invalid_or_expired");
        await rejects(f.links.verify(byCode("magiclink", generated.user.email, generated.link.otp), as("req-replay-3")), "link_invalid_or_expired");
      });

      test("of 20 concurrent calls finishing one claimed redemption, exactly one succeeds", async () => {
        const f = fixture();
        const generated = await f.links.generate(input("magiclink", uniqueEmail("finish-race")));
        const service = makeService(flaky(failing("claims.hold")));
        await assert.rejects(service.links.verify(byToken("magiclink", tokenOf(generated.link))), StoreUnavailableError);
        const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => f.links.verify(byToken("magiclink", tokenOf(generated.link)))));
        assert.equal(outcomes.filter((o) => o.status === "fulfilled").length, 1);
      });

      test("a claim left behind can be finished until the link's expiry, or 15 minutes after the claim if that is later", async () => {
        const f = fixture();
        const generated = await f.links.generate(input("magiclink", uniqueEmail("late"), { expiresInMs: 60_000 }));
        const service = makeService(flaky(failing("users.confirmEmail")));
        service.clock.set(f.clock.now());
        await assert.rejects(service.links.verify(byToken("magiclink", tokenOf(generated.link))), StoreUnavailableError);
        service.clock.advance(FINISH_WINDOW_MS - 1);
        assert.ok(await service.links.verify(byToken("magiclink", tokenOf(generated.link))), "after the link expired, within the window");

        const other = await f.links.generate(input("magiclink", uniqueEmail("too-late"), { expiresInMs: 60_000 }));
        const late = makeService(flaky(failing("users.confirmEmail")));
        late.clock.set(f.clock.now());
        await assert.rejects(late.links.verify(byToken("magiclink", tokenOf(other.link))), StoreUnavailableError);
        late.clock.advance(FINISH_WINDOW_MS);
        await rejects(late.links.verify(byToken("magiclink", tokenOf(other.link))), "link_invalid_or_expired");
      });

      test("recovery: a fault after the other links were revoked; the retry finishes, and they stay revoked", async () => {
        const f = fixture();
        const email = uniqueEmail("recovery-fault");
        const magic = await f.links.generate(input("magiclink", email));
        const recovery = await f.links.generate(input("recovery", email));
        const service = makeService(flaky(failing("claims.hold")));
        await assert.rejects(service.links.verify(byToken("recovery", tokenOf(recovery.link))), StoreUnavailableError);
        assert.equal(await usable(f, "magiclink", magic), false, "revoked by the claimed recovery");
        assert.ok(await service.links.verify(byToken("recovery", tokenOf(recovery.link))));
        await rejects(f.links.verify(byToken("recovery", tokenOf(recovery.link))), "link_invalid_or_expired");
      });

      test("secure email change: the call that completed the change failed before answering; its retry answers the change as complete", async () => {
        const f = fixture();
        const email = uniqueEmail("change-fault");
        await f.links.verify(byToken("magiclink", tokenOf((await f.links.generate(input("magiclink", email))).link)));
        const newEmail = uniqueEmail("change-fault-new");
        const generated = await f.links.generate(input("email_change", email, { newEmail }));
        assert.equal((await f.links.verify(byToken("email_change", tokenOf(generated.link)))).emailChangePending, true);
        const service = makeService(flaky(failing("claims.hold")));
        const current = byToken("email_change", tokenOf(generated.currentAddressLink!));
        await assert.rejects(service.links.verify(current), StoreUnavailableError);
        assert.equal((await store.users.findById(generated.user.id))?.email, newEmail, "the change itself completed");
        const retried = await service.links.verify(current);
        assert.equal(retried.emailChangePending, false);
        assert.equal(retried.user.email, newEmail);
        await rejects(service.links.verify(current), "link_invalid_or_expired");
      });

      for (const operation of ["links.findByUser", "tombstones.record", "links.markIssued"]) {
        test(`${operation} fails during a GenerateLink: UNAVAILABLE, nothing usable left, the earlier link still works or is replaced; the retry issues one that works`, async () => {
          const f = fixture();
          const email = uniqueEmail("generate-fault");
          const earlier = await f.links.generate(input("magiclink", email));
          f.clock.advance(1);
          const service = makeService(flaky(failing(operation)));
          service.clock.set(f.clock.now());
          await assert.rejects(service.links.generate(input("magiclink", email)), StoreUnavailableError);
          const stored = await store.links.findByUser(earlier.user.id, "magiclink");
          const others = stored.filter((l) => l.tokenHash !== earlier.link.hashedToken);
          assert.deepEqual(others, [], "the failed call's link was withdrawn");
          const earlierState = (await f.links.preview({ type: "magiclink", token: tokenOf(earlier.link) })).state;
          assert.equal(earlierState, operation === "tombstones.record" || operation === "links.findByUser" ? "valid" : "replaced");
          service.clock.advance(1);
          const retried = await service.links.generate(input("magiclink", email));
          assert.equal(await usable(f, "magiclink", earlier), false, "the retry replaced the earlier link");
          assert.equal(await usable(f, "magiclink", retried), true);
        });
      }

      test("a pending link (its GenerateLink has not answered, or failed and could not withdraw it) cannot be redeemed, by token or code, nor previewed", async () => {
        const f = fixture();
        const email = uniqueEmail("leftover");
        const issued = await f.links.generate(input("magiclink", email));
        const { token, tokenHash } = newLinkToken();
        const code = "123456";
        const now = f.clock.now();
        await store.links.insert([
          {
            tokenHash,
            otpHash: createOtpCodec(new Secret("s".repeat(32)), 6).hash("magiclink", email, code),
            type: "magiclink",
            userId: issued.user.id,
            email,
            issueId: "leftover",
            issuedAt: now,
            expiresAt: new Date(now.getTime() + HOUR),
            retainUntil: new Date(now.getTime() + 2 * HOUR),
            pending: true,
          },
        ]);
        await rejects(f.links.verify(byToken("magiclink", token)), "link_invalid_or_expired");
        await rejects(f.links.verify(byCode("magiclink", email, code)), "link_invalid_or_expired");
        assert.deepEqual(await f.links.preview({ type: "magiclink", token }), { state: "unknown" });
        assert.equal(await store.tombstones.find(tokenHash, now), undefined, "nothing was claimed");
        assert.equal(await usable(f, "magiclink", issued), true, "the issued link is untouched");
      });
    });
  });
}

suite("embedded store", async () => createMemoryStore());
const database = await useTestDatabase("link_service");
suite("MongoDB store", () => openTestStore(database));
