import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createAuditTrail } from "../../src/audit/audit-trail.js";
import { createArgon2Hasher, DEFAULT_ARGON2_PARAMS } from "../../src/crypto/passwords.js";
import { internalCall, type Call } from "../../src/domain/call.js";
import { AuthlinkError } from "../../src/domain/errors.js";
import type { LinkType } from "../../src/domain/link-type.js";
import { RateLimiter, type RateLimitSettings } from "../../src/domain/rate-limiter.js";
import { StoreUnavailableError, type Store } from "../../src/domain/store.js";
import { UserAdmin } from "../../src/domain/user-admin.js";
import type { CreateUserInput, UpdateUserInput } from "../../src/domain/user-admin-requests.js";
import { MAX_METADATA_DEPTH } from "../../src/domain/user-metadata.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { HOUR, makeLinkService, NO_RATE_LIMITS, TEST_LINK_SETTINGS, generateInput as generate, TEST_PASSWORD, tokenOf, redeems } from "../support/link-service-fixture.js";
import { openTestStore, useTestDatabase } from "../support/mongo.js";

// The UserAdmin use cases on the embedded store and on MongoDB: GenerateLink's
// rules (validation, email_exists, limits), metadata merge, revocation on a
// new password or address, deletion and a link racing it, InviteUser as
// GenerateLink INVITE, the shared rate limit, a fault half way, and the audit
// events (never a password).

const passwords = createArgon2Hasher(DEFAULT_ARGON2_PARAMS);
const PASSWORD = TEST_PASSWORD;

let counter = 0;
const uniqueEmail = (label: string) => `${label}-${++counter}-${Date.now().toString(36)}@example.com`;
const as = (method: string): Call => internalCall(method, { serviceIdentity: "key:test-admin", callerName: "key:test-admin" });

function makeAdmin(store: Store, rateLimits: RateLimitSettings = NO_RATE_LIMITS) {
  const f = makeLinkService(store, { rateLimits });
  const { logger, lines } = createCapturedLogger();
  const admin = new UserAdmin({
    store,
    clock: f.clock,
    audit: createAuditTrail({ store: store.audit, logger, retentionMs: 30 * 24 * HOUR }),
    passwords,
    settings: TEST_LINK_SETTINGS,
    links: f.links,
    rateLimiter: new RateLimiter(store.rateLimits, f.clock),
    rateLimits,
  });
  return { ...f, admin, logs: lines };
}
type Fixture = ReturnType<typeof makeAdmin>;

const create = (email: string, extra: Partial<CreateUserInput> = {}): CreateUserInput => ({
  email,
  password: "",
  userMetadata: undefined,
  emailConfirm: false,
  ...extra,
});
const update = (id: string, extra: Partial<UpdateUserInput> = {}): UpdateUserInput => ({
  id,
  userMetadata: undefined,
  password: "",
  email: "",
  emailConfirm: false,
  ...extra,
});
/** deepStrictEqual on the defined parts (a store may return `{ a: undefined }` for `{}`). */
function same(actual: unknown, expected: unknown, message?: string): void {
  const defined = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;
  assert.deepStrictEqual(defined(actual), defined(expected), message);
}


async function rejects(promise: Promise<unknown>, reason: string, fields?: string[]): Promise<AuthlinkError> {
  let caught: unknown;
  await assert.rejects(promise, (error: unknown) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof AuthlinkError, `expected AuthlinkError, got ${String(caught)}`);
  assert.equal(caught.reason, reason, caught.message);
  if (fields) assert.deepEqual(caught.violations.map((v) => v.field).sort(), [...fields].sort());
  return caught;
}

const redeemable = (f: Fixture, type: LinkType, token: string): Promise<boolean> => redeems(f.links, type, token);

function suite(name: string, openStore: () => Promise<Store>): void {
  describe(name, () => {
    let store: Store;
    before(async () => {
      store = await openStore();
    });
    after(() => store.close());

    describe("CreateUser", () => {
      test("normalizes the address, hashes the password with argon2id, keeps metadata, confirms on request", async () => {
        const f = makeAdmin(store);
        const raw = uniqueEmail("Create").replace("create", "CrEaTe");
        const user = await f.admin.create(create(raw, { password: PASSWORD, userMetadata: { plan: "pro", n: 1 }, emailConfirm: true }), as("CreateUser"));
        assert.equal(user.email, raw.toLowerCase());
        assert.match(user.passwordHash ?? "", /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
        assert.ok(await passwords.verify(user.passwordHash!, PASSWORD));
        assert.deepEqual(user.emailConfirmedAt, f.clock.now());
        assert.equal(user.invitedAt, undefined);
        assert.deepEqual(user.userMetadata, { plan: "pro", n: 1 });
        const stored = await store.users.findByEmail(raw.toLowerCase());
        assert.equal(stored?.id, user.id);
        assert.equal(stored?.passwordHash, user.passwordHash);

        const plain = await f.admin.create(create(uniqueEmail("plain")), as("CreateUser"));
        assert.equal(plain.passwordHash, undefined);
        assert.equal(plain.emailConfirmedAt, undefined);
        assert.deepEqual(plain.userMetadata, {});
      });

      test("an existing address (in any case) is email_exists, and the user stays as it was", async () => {
        const f = makeAdmin(store);
        const email = uniqueEmail("exists");
        const first = await f.admin.create(create(email, { userMetadata: { first: true } }), as("CreateUser"));
        await rejects(f.admin.create(create(email.toUpperCase(), { password: PASSWORD }), as("CreateUser")), "email_exists");
        same(await store.users.findByEmail(email), first);
      });

      test("GenerateLink's rules: every malformed field listed at once, then weak_password; nothing stored", async () => {
        const f = makeAdmin(store);
        let deep: Record<string, unknown> = {};
        for (let i = 0; i < MAX_METADATA_DEPTH + 1; i++) deep = { d: deep };
        await rejects(
          f.admin.create(create("not an address", { password: "x".repeat(257), userMetadata: deep as never }), as("CreateUser")),
          "validation_failed",
          ["email", "password", "user_metadata"],
        );
        await rejects(
          f.admin.create(create(uniqueEmail("big"), { userMetadata: { blob: "x".repeat(TEST_LINK_SETTINGS.maxUserDataBytes) } }), as("CreateUser")),
          "validation_failed",
          ["user_metadata"],
        );
        for (const weak of ["short", "password123", "aaaaaaaaaaaa"]) {
          const email = uniqueEmail("weak");
          await rejects(f.admin.create(create(email, { password: weak }), as("CreateUser")), "weak_password", ["password"]);
          assert.equal(await store.users.findByEmail(email), undefined);
        }
        const self = uniqueEmail("selfpass");
        await rejects(f.admin.create(create(self, { password: self }), as("CreateUser")), "weak_password");
      });
    });

    describe("GetUser", () => {
      test("by id, and by address (normalized); unknown ones are user_not_found; no key is validation_failed", async () => {
        const f = makeAdmin(store);
        const email = uniqueEmail("get");
        const user = await f.admin.create(create(email), as("CreateUser"));
        same(await f.admin.get({ kind: "id", id: user.id }, as("GetUser")), user);
        same(await f.admin.get({ kind: "email", email: email.toUpperCase() }, as("GetUser")), user);
        const byId = await rejects(f.admin.get({ kind: "id", id: crypto.randomUUID() }, as("GetUser")), "user_not_found");
        assert.equal(byId.message, "no user has this id");
        await rejects(f.admin.get({ kind: "email", email: uniqueEmail("nobody") }, as("GetUser")), "user_not_found");
        await rejects(f.admin.get({ kind: "none" }, as("GetUser")), "validation_failed", ["key"]);
        await rejects(f.admin.get({ kind: "email", email: "nope" }, as("GetUser")), "validation_failed", ["email"]);
        await rejects(f.admin.get({ kind: "id", id: "" }, as("GetUser")), "validation_failed", ["id"]);
        await rejects(f.admin.get({ kind: "id", id: "x".repeat(500) }, as("GetUser")), "validation_failed", ["id"]);
      });
    });

    describe("UpdateUser", () => {
      test("metadata is merged: given keys replace, null removes, others stay; no link is revoked", async () => {
        const f = makeAdmin(store);
        const user = await f.admin.create(create(uniqueEmail("merge"), { userMetadata: { keep: 1, replace: "old", drop: true } }), as("CreateUser"));
        const magic = await f.links.generate(generate("magiclink", user.email));
        f.clock.advance(1_000);
        const { user: updated, revokedLinks } = await f.admin.update(
          update(user.id, { userMetadata: { replace: { now: ["new"] }, drop: null, added: 2 } }),
          as("UpdateUser"),
        );
        assert.deepEqual(updated.userMetadata, { keep: 1, replace: { now: ["new"] }, added: 2 });
        assert.deepEqual(updated.updatedAt, f.clock.now());
        assert.equal(revokedLinks, 0);
        assert.deepEqual((await store.users.findById(user.id))?.userMetadata, updated.userMetadata);
        assert.equal(await redeemable(f, "magiclink", tokenOf(magic.link)), true, "metadata does not touch links");
      });

      test("a new password is hashed and revokes every outstanding link of the user", async () => {
        const f = makeAdmin(store);
        const user = await f.admin.create(create(uniqueEmail("newpass"), { password: PASSWORD }), as("CreateUser"));
        const magic = await f.links.generate(generate("magiclink", user.email));
        const recovery = await f.links.generate(generate("recovery", user.email));
        const other = await f.links.generate(generate("magiclink", uniqueEmail("bystander")));
        const { user: updated, revokedLinks } = await f.admin.update(update(user.id, { password: "another fine passphrase" }), as("UpdateUser"));
        assert.equal(revokedLinks, 2);
        assert.notEqual(updated.passwordHash, user.passwordHash);
        assert.ok(await passwords.verify(updated.passwordHash!, "another fine passphrase"));
        assert.equal((await store.tombstones.find(magic.link.hashedToken, f.clock.now()))?.ending, "revoked");
        assert.equal(await redeemable(f, "magiclink", tokenOf(magic.link)), false);
        assert.equal(await redeemable(f, "recovery", tokenOf(recovery.link)), false);
        assert.equal(await redeemable(f, "magiclink", tokenOf(other.link)), true, "another user's link stays");
        const events = await store.audit.find({ userId: user.id }, 20);
        const event = events.find((e) => e.method === "UpdateUser");
        assert.deepEqual([...(event?.hashedTokens ?? [])].sort(), [magic.link.hashedToken, recovery.link.hashedToken].sort());
      });

      test("a new address: effective at once, pending email change cancelled, links revoked, old address free", async () => {
        const f = makeAdmin(store);
        const user = await f.admin.create(create(uniqueEmail("move"), { emailConfirm: true }), as("CreateUser"));
        const change = await f.links.generate(generate("email_change", user.email, { newEmail: uniqueEmail("pending") }));
        const magic = await f.links.generate(generate("magiclink", user.email));
        const target = uniqueEmail("Target");
        const { user: moved, revokedLinks } = await f.admin.update(update(user.id, { email: target.toUpperCase() }), as("UpdateUser"));
        assert.equal(moved.email, target.toLowerCase());
        assert.equal(moved.emailChange, undefined, "the pending change is cancelled");
        assert.deepEqual(moved.emailConfirmedAt, user.emailConfirmedAt, "the administrator vouches: confirmation kept");
        assert.equal(revokedLinks, 3, "magic link and both email-change links");
        assert.equal(await redeemable(f, "email_change", tokenOf(change.link)), false);
        assert.equal(await redeemable(f, "magiclink", tokenOf(magic.link)), false);
        assert.equal(await store.users.findByEmail(user.email), undefined);
        assert.equal((await f.admin.create(create(user.email), as("CreateUser"))).email, user.email, "the old address is free");
        // A magic link to the new address works and signs the same user in.
        const fresh = await f.links.generate(generate("magiclink", target));
        assert.equal(fresh.user.id, user.id);
        assert.equal(await redeemable(f, "magiclink", tokenOf(fresh.link)), true);
      });

      test("an address another user holds is email_exists, and nothing changes (links stay)", async () => {
        const f = makeAdmin(store);
        const holder = await f.admin.create(create(uniqueEmail("holder")), as("CreateUser"));
        const user = await f.admin.create(create(uniqueEmail("mover"), { userMetadata: { a: 1 } }), as("CreateUser"));
        const magic = await f.links.generate(generate("magiclink", user.email));
        await rejects(
          f.admin.update(update(user.id, { email: holder.email, password: "another fine passphrase", userMetadata: { a: 2 }, emailConfirm: true }), as("UpdateUser")),
          "email_exists",
        );
        same(await store.users.findById(user.id), user);
        same(await store.users.findById(holder.id), holder);
        assert.equal(await redeemable(f, "magiclink", tokenOf(magic.link)), true);
      });

      test("bad input changes nothing: malformed fields, metadata too large once merged, a password weak for the new address", async () => {
        const f = makeAdmin(store);
        const user = await f.admin.create(create(uniqueEmail("bad"), { userMetadata: { big: "x".repeat(5000) } }), as("CreateUser"));
        await rejects(f.admin.update(update("", { email: "nope", password: "y".repeat(300) }), as("UpdateUser")), "validation_failed", ["id", "email", "password"]);
        const merged = await rejects(
          f.admin.update(update(user.id, { userMetadata: { more: "y".repeat(5000) }, password: "another fine passphrase" }), as("UpdateUser")),
          "validation_failed",
          ["user_metadata"],
        );
        assert.match(merged.violations[0]?.description ?? "", /once merged/);
        const target = uniqueEmail("weakfor");
        await rejects(f.admin.update(update(user.id, { email: target, password: target }), as("UpdateUser")), "weak_password", ["password"]);
        same(await store.users.findById(user.id), user);
        assert.equal(await store.users.findByEmail(target), undefined);
        await rejects(f.admin.update(update(crypto.randomUUID(), { userMetadata: { a: 1 } }), as("UpdateUser")), "user_not_found");
      });

      test("email_confirm sets emailConfirmedAt once; the same address or nothing given is no change", async () => {
        const f = makeAdmin(store);
        const user = await f.admin.create(create(uniqueEmail("confirm")), as("CreateUser"));
        const magic = await f.links.generate(generate("magiclink", user.email));
        f.clock.advance(5_000);
        const first = await f.admin.update(update(user.id, { emailConfirm: true, email: user.email.toUpperCase() }), as("UpdateUser"));
        assert.deepEqual(first.user.emailConfirmedAt, f.clock.now());
        assert.equal(first.revokedLinks, 0, "the same address is no address change");
        f.clock.advance(5_000);
        const again = await f.admin.update(update(user.id, { emailConfirm: true }), as("UpdateUser"));
        assert.deepEqual(again.user.emailConfirmedAt, first.user.emailConfirmedAt, "kept");
        const nothing = await f.admin.update(update(user.id), as("UpdateUser"));
        same(nothing.user, again.user);
        assert.equal(await redeemable(f, "magiclink", tokenOf(magic.link)), true);
      });

      test("a fault after the address moved: UNAVAILABLE, the links are already revoked, and a retry finishes the rest", async () => {
        const f = makeAdmin(store);
        const user = await f.admin.create(create(uniqueEmail("fault")), as("CreateUser"));
        const magic = await f.links.generate(generate("magiclink", user.email));
        let failures = 1;
        const flaky: Store = {
          ...store,
          users: {
            ...store.users,
            update: (...args) => (failures-- > 0 ? Promise.reject(new StoreUnavailableError("users.update failed")) : store.users.update(...args)),
          },
        };
        const g = makeAdmin(flaky);
        const target = uniqueEmail("faulted");
        const request = update(user.id, { email: target, userMetadata: { after: true } });
        await assert.rejects(g.admin.update(request, as("UpdateUser")), StoreUnavailableError);
        assert.equal((await store.users.findById(user.id))?.email, target, "the address moved before the fault");
        assert.equal(await redeemable(f, "magiclink", tokenOf(magic.link)), false, "and the links were revoked before it");
        const retried = await g.admin.update(request, as("UpdateUser"));
        assert.deepEqual(retried.user.userMetadata, { after: true });
        assert.equal(retried.user.email, target);
      });
    });

    describe("DeleteUser", () => {
      test("revokes every outstanding link, deletes the user, frees the address; the audit keeps the history", async () => {
        const f = makeAdmin(store);
        const email = uniqueEmail("delete");
        const user = await f.admin.create(create(email, { password: PASSWORD }), as("CreateUser"));
        const magic = await f.links.generate(generate("magiclink", email));
        const recovery = await f.links.generate(generate("recovery", email));
        const { revokedLinks } = await f.admin.delete({ id: user.id }, as("DeleteUser"));
        assert.equal(revokedLinks, 2);
        assert.equal(await store.users.findById(user.id), undefined);
        assert.equal(await redeemable(f, "magiclink", tokenOf(magic.link)), false);
        assert.equal(await redeemable(f, "recovery", tokenOf(recovery.link)), false);
        await rejects(f.admin.delete({ id: user.id }, as("DeleteUser")), "user_not_found");
        await rejects(f.admin.get({ kind: "id", id: user.id }, as("GetUser")), "user_not_found");
        const again = await f.admin.create(create(email), as("CreateUser"));
        assert.notEqual(again.id, user.id, "the address is free for a new user");
        const methods = (await store.audit.find({ userId: user.id }, 50)).map((e) => e.method);
        for (const method of ["CreateUser", "GenerateLink", "DeleteUser"]) assert.ok(methods.includes(method), `${method} in ${methods.join(",")}`);
        await rejects(f.admin.delete({ id: "" }, as("DeleteUser")), "validation_failed", ["id"]);
      });

      for (const type of ["magiclink", "recovery", "invite", "signup", "email_change"] as const) {
        test(`a ${type} link issued to a user deleted a moment later cannot be redeemed`, async () => {
          // The race: the link is issued after DeleteUser revoked the user's
          // links and before the user is gone, so no revocation ends it.
          const f = makeAdmin(store);
          const email = uniqueEmail(`race-${type}`);
          if (type === "recovery" || type === "email_change") await f.admin.create(create(email), as("CreateUser"));
          const issued = await f.links.generate(generate(type, email, type === "email_change" ? { newEmail: uniqueEmail("race-new") } : {}));
          assert.equal(await store.users.delete(issued.user.id), true);
          assert.equal(await redeemable(f, type, tokenOf(issued.link)), false);
          assert.equal(await store.users.findByEmail(email), undefined, "the redemption did not bring the user back");
        });
      }
    });

    describe("InviteUser", () => {
      test("is GenerateLink INVITE under this call: the same result, audited as InviteUser", async () => {
        const f = makeAdmin(store);
        const email = uniqueEmail("invite");
        const invited = await f.admin.invite({ email, redirectTo: "https://app.example.com/welcome", data: { team: "a" }, expiresInMs: 2 * HOUR }, as("InviteUser"));
        assert.equal(invited.type, "invite");
        assert.deepEqual(invited.user.invitedAt, f.clock.now());
        assert.deepEqual(invited.user.userMetadata, { team: "a" });
        assert.equal(invited.redirectTo, "https://app.example.com/welcome");
        assert.deepEqual(invited.expiresAt, new Date(f.clock.now().getTime() + 2 * HOUR));
        const events = await store.audit.find({ userId: invited.user.id }, 10);
        assert.deepEqual(events.map((e) => [e.method, e.outcome, e.linkType, e.caller]), [["InviteUser", "ok", "invite", "key:test-admin"]]);
        assert.deepEqual(events[0]?.hashedTokens, [invited.link.hashedToken]);

        f.clock.advance(1_000);
        const again = await f.admin.invite({ email, redirectTo: "", data: undefined, expiresInMs: undefined }, as("InviteUser"));
        assert.equal(again.user.id, invited.user.id, "re-invite of an unconfirmed user");
        assert.equal(await redeemable(f, "invite", tokenOf(invited.link)), false, "the first invite is replaced");
        assert.equal(await redeemable(f, "invite", tokenOf(again.link)), true);
        await rejects(f.admin.invite({ email, redirectTo: "", data: undefined, expiresInMs: undefined }, as("InviteUser")), "email_exists");
        await rejects(f.admin.invite({ email: "bad", redirectTo: "", data: undefined, expiresInMs: 1 }, as("InviteUser")), "validation_failed", ["email", "expires_in"]);
      });
    });

    describe("rate limit and audit", () => {
      test("CreateUser, UpdateUser and DeleteUser share the caller's generate-caller budget; bad input and GetUser spend none", async () => {
        const f = makeAdmin(store, { ...NO_RATE_LIMITS, generatePerCaller: { limit: 3, windowMs: 60_000 } });
        // Another caller, so earlier tests' budgets are not this one's.
        const call = (method: string) => internalCall(method, { serviceIdentity: `key:rate-${counter}`, callerName: "key:rate" });
        await rejects(f.admin.create(create("bad"), call("CreateUser")), "validation_failed");
        const user = await f.admin.create(create(uniqueEmail("rate")), call("CreateUser"));
        for (let i = 0; i < 5; i++) await f.admin.get({ kind: "id", id: user.id }, call("GetUser"));
        await f.admin.update(update(user.id, { userMetadata: { a: 1 } }), call("UpdateUser"));
        await f.links.generate(generate("magiclink", user.email), call("GenerateLink"));
        const refused = await rejects(f.admin.delete({ id: user.id }, call("DeleteUser")), "over_rate_limit");
        assert.equal(refused.rateLimitRule, "generate-caller");
        assert.ok(await store.users.findById(user.id), "the refused delete did nothing");
        const events = await store.audit.find({ userId: user.id }, 20);
        assert.ok(events.some((e) => e.method === "DeleteUser" && e.outcome === "over_rate_limit" && e.rateLimitRule === "generate-caller"));
      });

      test("every call is audited with its subject and outcome, never a password or its hash", async () => {
        const f = makeAdmin(store);
        const email = uniqueEmail("audited");
        const user = await f.admin.create(create(email, { password: PASSWORD }), as("CreateUser"));
        // (The clock moves between calls, so the events' order is their times'.)
        f.clock.advance(1);
        await f.admin.get({ kind: "email", email }, as("GetUser"));
        f.clock.advance(1);
        await rejects(f.admin.update(update(user.id, { password: "short" }), as("UpdateUser")), "weak_password");
        f.clock.advance(1);
        await f.admin.update(update(user.id, { password: "another fine passphrase" }), as("UpdateUser"));
        f.clock.advance(1);
        await f.admin.delete({ id: user.id }, as("DeleteUser"));
        const events = await store.audit.find({ userId: user.id }, 20);
        assert.deepEqual(
          events.map((e) => `${e.method}:${e.outcome}`).reverse(),
          ["CreateUser:ok", "GetUser:ok", "UpdateUser:weak_password", "UpdateUser:ok", "DeleteUser:ok"],
        );
        for (const event of events) {
          assert.equal(event.email, email);
          assert.equal(event.caller, "key:test-admin");
        }
        const text = JSON.stringify(events) + f.logs.join("\n");
        for (const secret of [PASSWORD, "another fine passphrase", "short", "$argon2id", user.passwordHash!]) {
          assert.ok(!text.includes(secret), `${secret} must not appear in audit events or logs`);
        }
      });
    });
  });
}

suite("embedded store", async () => createMemoryStore());
const database = await useTestDatabase("user_admin");
suite("MongoDB store", () => openTestStore(database));
