import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";
import type { AuditEvent, StoredAuditEvent } from "../../src/domain/audit-event.js";
import { auditIdFloor, auditIdTime } from "../../src/domain/audit-event-id.js";
import { tombstoneOf, type LinkEnding, type LinkRecord } from "../../src/domain/link.js";
import type { PendingEmailChange, User } from "../../src/domain/user.js";
import type { AuditPosition, AuditQuery, LinkListQuery, Store } from "../../src/domain/store.js";
import type { LinkType } from "../../src/domain/link-type.js";

// One contract for every store: the embedded one and MongoDB run these same
// tests (memory-store.test.ts, mongo-store.test.ts), so they cannot drift
// apart. It speaks only through the Store interface (store/store.ts, whose
// doc comments are the contract) and knows nothing of any database.
//
// Every test gets a store of its own (for MongoDB: a database of its own), so
// counts are exact and no test sees another's data. Times are fixed instants
// around T0; nothing sleeps. The concurrency cases are the point: single use,
// code attempt limits and rate limits rest on them.

/** A freshly opened, empty store; `cleanup` (if any) runs after the store is closed. */
export interface OpenedStore {
  readonly store: Store;
  readonly cleanup?: () => Promise<void>;
}

export type OpenStore = () => Promise<OpenedStore>;

const T0 = new Date("2030-06-01T12:00:00.000Z");
const at = (ms: number): Date => new Date(T0.getTime() + ms);
const HOUR = 3_600_000;
/** The tombstone grace these tests give links by default. */
const GRACE = 24 * HOUR;

/**
 * Values without their undefined properties: `{ a: undefined }` and `{}` mean
 * the same to the domain, and stores may return either.
 */
function defined<T>(value: T): T {
  if (Array.isArray(value)) return value.map(defined) as T;
  if (value instanceof Set) return new Set([...value].map(defined)) as T;
  if (value !== null && typeof value === "object" && !(value instanceof Date)) {
    return Object.fromEntries(
      Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, defined(v)]),
    ) as T;
  }
  return value;
}

/** deepStrictEqual on the defined parts. */
function same(actual: unknown, expected: unknown, message?: string): void {
  assert.deepStrictEqual(defined(actual), defined(expected), message);
}

/**
 * `n` calls started together (none awaits another before starting). Waits for
 * all of them even when one fails, so that no call outlives its test.
 */
async function concurrently<T>(n: number, call: (i: number) => Promise<T>): Promise<T[]> {
  const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => call(i)));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

const count = <T>(values: readonly T[], predicate: (value: T) => boolean): number => values.filter(predicate).length;

let serial = 0;
const unique = (label: string): string => `${label}-${++serial}-${randomUUID().slice(0, 8)}`;
const newEmail = (label = "user"): string => `${unique(label)}@example.com`;

export function newUser(overrides: Partial<User> = {}): User {
  return {
    id: randomUUID(),
    email: newEmail(),
    createdAt: T0,
    updatedAt: T0,
    userMetadata: {},
    ...overrides,
  };
}

export function newChange(overrides: Partial<PendingEmailChange> = {}): PendingEmailChange {
  return { id: unique("change"), newEmail: newEmail("new"), requireCurrent: false, requestedAt: at(1), ...overrides };
}

/** A link; retainUntil defaults to its expiry plus GRACE. */
export function newLink(overrides: Partial<LinkRecord> = {}): LinkRecord {
  const expiresAt = overrides.expiresAt ?? at(HOUR);
  return {
    tokenHash: unique("hash"),
    otpHash: unique("otp"),
    type: "magiclink",
    userId: randomUUID(),
    email: newEmail("to"),
    issueId: unique("issue"),
    issuedAt: T0,
    expiresAt,
    retainUntil: new Date(expiresAt.getTime() + GRACE),
    ...overrides,
  };
}

const byHash = <T extends { tokenHash: string }>(values: readonly T[]): T[] =>
  [...values].sort((x, y) => x.tokenHash.localeCompare(y.tokenHash));

export function runStoreContract(name: string, open: OpenStore): void {
  /** A test with a fresh store, closed (and cleaned up) afterwards whatever happens. */
  const it = (title: string, body: (store: Store) => Promise<void>) =>
    test(title, async () => {
      const { store, cleanup } = await open();
      try {
        await body(store);
      } finally {
        await store.close();
        await cleanup?.();
      }
    });

  /** Is the link still stored (and live at T0)? Asked without consuming it. */
  const stored = async (store: Store, link: LinkRecord): Promise<boolean> =>
    (await store.links.findLiveByEmail(link.email, link.type, T0, 100)).some((l) => l.tokenHash === link.tokenHash);

  describe(`${name}: store contract`, () => {
    test("kind and needsPurge are declared", async () => {
      const { store, cleanup } = await open();
      try {
        assert.equal(typeof store.kind, "string");
        assert.ok(store.kind.length > 0);
        assert.equal(typeof store.needsPurge, "boolean");
      } finally {
        await store.close();
        await cleanup?.();
      }
    });

    describe("users", () => {
      it("insert, then findById and findByEmail return every field intact", async (store) => {
        const user = newUser({
          passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
          emailConfirmedAt: at(1),
          invitedAt: at(2),
          createdAt: at(-5),
          updatedAt: at(3),
          userMetadata: {
            plan: "pro",
            "dotted.key": 1,
            $dollar: true,
            "a.$b": { "$in": ["x"], "c.d": null },
            nested: { list: [1, "two", null, false, 2.5, -7, { deep: "ü✓ 日本語 🚀" }], empty: {}, none: [] },
            "ключ": "значение",
          },
          emailChange: { id: "change-1", newEmail: "next@example.com", requireCurrent: true, requestedAt: at(4) },
        });
        assert.equal(await store.users.insert(user), "inserted");
        same(await store.users.findById(user.id), user);
        same(await store.users.findByEmail(user.email), user);
        assert.equal(await store.users.findById(randomUUID()), undefined);
        assert.equal(await store.users.findByEmail(newEmail("nobody")), undefined);
      });

      it("a user with only the required fields comes back without the optional ones", async (store) => {
        const user = newUser();
        assert.equal(await store.users.insert(user), "inserted");
        const found = await store.users.findById(user.id);
        same(found, user);
        assert.equal(found?.passwordHash, undefined);
        assert.equal(found?.emailConfirmedAt, undefined);
        assert.equal(found?.invitedAt, undefined);
        assert.equal(found?.emailChange, undefined);
      });

      it("an address belongs to one user: a second insert is email_taken and changes nothing", async (store) => {
        const first = newUser({ userMetadata: { first: true } });
        assert.equal(await store.users.insert(first), "inserted");
        const second = newUser({ email: first.email, userMetadata: { other: true } });
        assert.equal(await store.users.insert(second), "email_taken");
        same(await store.users.findByEmail(first.email), first);
        same(await store.users.findById(first.id), first);
        assert.equal(await store.users.findById(second.id), undefined, "the loser was not stored");
      });

      it("20 concurrent inserts of one address: exactly one is inserted, and it is the one stored", async (store) => {
        const email = newEmail("race");
        const candidates = Array.from({ length: 20 }, () => newUser({ email }));
        const results = await concurrently(20, (i) => store.users.insert(candidates[i]!));
        assert.equal(count(results, (r) => r === "inserted"), 1);
        assert.equal(count(results, (r) => r === "email_taken"), 19);
        const winner = candidates[results.indexOf("inserted")]!;
        same(await store.users.findByEmail(email), winner);
        for (const loser of candidates.filter((c) => c !== winner)) {
          assert.equal(await store.users.findById(loser.id), undefined);
        }
      });

      it("update applies the given fields only and returns the user after them", async (store) => {
        const user = newUser({
          passwordHash: "old",
          emailConfirmedAt: at(1),
          userMetadata: { a: 1, keep: { x: [1] } },
          emailChange: newChange(),
        });
        await store.users.insert(user);

        const touched = await store.users.update(user.id, { updatedAt: at(9) });
        same(touched, { ...user, updatedAt: at(9) }, "only updatedAt given");

        const updated = await store.users.update(user.id, { updatedAt: at(10), userMetadata: { a: 2, "b.c": 3 } });
        same(updated, { ...user, updatedAt: at(10), userMetadata: { a: 2, "b.c": 3 } }, "metadata is replaced, not merged");
        same(await store.users.findById(user.id), updated);

        const change = newChange({ requireCurrent: true, requestedAt: at(11) });
        const all = await store.users.update(user.id, { updatedAt: at(11), emailChange: change, invitedAt: at(11), passwordHash: "new" });
        same(all, { ...user, updatedAt: at(11), userMetadata: { a: 2, "b.c": 3 }, emailChange: change, invitedAt: at(11), passwordHash: "new" });
        same(await store.users.findById(user.id), all);
        same(await store.users.findByEmail(user.email), all);
      });

      it("update: a change left undefined is not applied", async (store) => {
        // UserChanges' optional fields may be present as undefined (a caller
        // passing a variable through); that is "not given", not "clear it".
        const user = newUser({ passwordHash: "hash", invitedAt: at(1), userMetadata: { a: 1 }, emailChange: newChange() });
        await store.users.insert(user);
        const updated = await store.users.update(user.id, {
          updatedAt: at(5),
          passwordHash: undefined,
          userMetadata: undefined,
          invitedAt: undefined,
          emailChange: undefined,
        });
        same(updated, { ...user, updatedAt: at(5) });
        same(await store.users.findById(user.id), { ...user, updatedAt: at(5) });
      });

      it("update: a new email change replaces the pending one", async (store) => {
        const user = newUser({ emailChange: newChange() });
        await store.users.insert(user);
        const next = newChange({ requireCurrent: true, requestedAt: at(7) });
        same((await store.users.update(user.id, { updatedAt: at(7), emailChange: next }))?.emailChange, next);
        same((await store.users.findById(user.id))?.emailChange, next);
      });

      it("update of a missing user is undefined and creates nothing", async (store) => {
        const id = randomUUID();
        assert.equal(await store.users.update(id, { updatedAt: at(12), userMetadata: { a: 1 } }), undefined);
        assert.equal(await store.users.findById(id), undefined);
      });

      it("confirmEmail sets the time once: a second call keeps the first and changes nothing", async (store) => {
        const user = newUser();
        await store.users.insert(user);
        const confirmed = await store.users.confirmEmail(user.id, at(5));
        same(confirmed, { ...user, emailConfirmedAt: at(5), updatedAt: at(5) });
        same(await store.users.findById(user.id), confirmed);
        same(await store.users.confirmEmail(user.id, at(9)), confirmed, "the second call returns the user as it is");
        same(await store.users.findById(user.id), confirmed, "and changes nothing");
        assert.equal(await store.users.confirmEmail(randomUUID(), at(5)), undefined);
      });

      it("20 concurrent confirmEmail calls: every one returns the user confirmed, one time is kept", async (store) => {
        const user = newUser();
        await store.users.insert(user);
        const results = await concurrently(20, (i) => store.users.confirmEmail(user.id, at(100 + i)));
        const final = await store.users.findById(user.id);
        const kept = final?.emailConfirmedAt?.getTime();
        assert.ok(kept !== undefined && kept >= at(100).getTime() && kept < at(120).getTime(), "one of the given times");
        for (const result of results) assert.ok(result?.emailConfirmedAt, "each caller sees the user confirmed");
        same((await store.users.confirmEmail(user.id, at(500)))?.emailConfirmedAt, final?.emailConfirmedAt);
      });

      it("completeEmailChange moves the user, frees the old address, clears the change, confirms, and remembers the change", async (store) => {
        const change = newChange({ requireCurrent: true });
        const user = newUser({ passwordHash: "h", userMetadata: { m: 1 }, emailChange: change });
        await store.users.insert(user);
        const moved = await store.users.completeEmailChange(user.id, change, at(20));
        const expected = {
          ...user,
          email: change.newEmail,
          emailConfirmedAt: at(20),
          updatedAt: at(20),
          emailChange: undefined,
          completedEmailChange: { id: change.id, previousEmail: user.email },
        };
        same(moved, expected);
        same(await store.users.findById(user.id), expected);
        same(await store.users.findByEmail(change.newEmail), expected);
        assert.equal(await store.users.findByEmail(user.email), undefined, "the old address no longer finds the user");
        assert.equal(await store.users.insert(newUser({ email: user.email })), "inserted", "the old address is free");
        assert.equal(await store.users.insert(newUser({ email: change.newEmail })), "email_taken", "the new one is taken");
      });

      it("completeEmailChange of an already confirmed user confirms the new address at the given time", async (store) => {
        const change = newChange();
        const user = newUser({ emailConfirmedAt: at(1), emailChange: change });
        await store.users.insert(user);
        const moved = await store.users.completeEmailChange(user.id, change, at(30));
        same(moved, {
          ...user,
          email: change.newEmail,
          emailConfirmedAt: at(30),
          updatedAt: at(30),
          emailChange: undefined,
          completedEmailChange: { id: change.id, previousEmail: user.email },
        });
        const next = newChange();
        same(
          await store.users.update(user.id, { updatedAt: at(31), emailChange: next }),
          { ...(moved as User), updatedAt: at(31), emailChange: next },
          "a new change keeps the completed one on record",
        );
      });

      it("completeEmailChange is email_taken when another user holds the address, and changes nothing", async (store) => {
        const holder = newUser();
        await store.users.insert(holder);
        const change = newChange({ newEmail: holder.email });
        const user = newUser({ emailChange: change });
        await store.users.insert(user);
        assert.equal(await store.users.completeEmailChange(user.id, change, at(2)), "email_taken");
        same(await store.users.findById(user.id), user, "the mover is unchanged (change still pending)");
        same(await store.users.findById(holder.id), holder, "the holder is unchanged");
        same(await store.users.findByEmail(holder.email), holder);
        same(await store.users.findByEmail(user.email), user);
      });

      it("completeEmailChange is undefined when the change is not the pending one, and changes nothing", async (store) => {
        const change = newChange();
        const user = newUser({ emailChange: change });
        await store.users.insert(user);
        assert.equal(await store.users.completeEmailChange(user.id, { id: "stale", newEmail: change.newEmail }, at(2)), undefined, "stale id");
        assert.equal(await store.users.completeEmailChange(user.id, { id: change.id, newEmail: newEmail("other") }, at(2)), undefined, "other address");
        same(await store.users.findById(user.id), user);
        assert.equal(await store.users.findByEmail(change.newEmail), undefined);
        const plain = newUser();
        await store.users.insert(plain);
        assert.equal(await store.users.completeEmailChange(plain.id, change, at(2)), undefined, "no change pending");
        same(await store.users.findById(plain.id), plain);
        assert.equal(await store.users.completeEmailChange(randomUUID(), change, at(2)), undefined, "no such user");
        assert.equal(await store.users.findByEmail(change.newEmail), undefined);
      });

      it("completeEmailChange of a change that is no longer pending is undefined even when its address is taken", async (store) => {
        // "undefined when the change is no longer pending": whoever holds the
        // address, there is nothing left to complete.
        const holder = newUser();
        await store.users.insert(holder);
        const user = newUser({ emailChange: newChange() });
        await store.users.insert(user);
        assert.equal(await store.users.completeEmailChange(user.id, { id: "stale", newEmail: holder.email }, at(2)), undefined, "stale change");
        assert.equal(await store.users.completeEmailChange(randomUUID(), { id: "x", newEmail: holder.email }, at(2)), undefined, "no such user");
        same(await store.users.findById(user.id), user);
        same(await store.users.findById(holder.id), holder);
      });

      it("completeEmailChange twice: the second finds nothing pending", async (store) => {
        const change = newChange();
        const user = newUser({ emailChange: change });
        await store.users.insert(user);
        const moved = await store.users.completeEmailChange(user.id, change, at(3));
        assert.ok(moved && moved !== "email_taken");
        assert.equal(await store.users.completeEmailChange(user.id, change, at(4)), undefined);
        same(await store.users.findById(user.id), moved, "the first completion stands");
      });

      it("10 users completing a change to one address at once: exactly one gets it, the others are email_taken and unchanged", async (store) => {
        const target = newEmail("contested");
        const movers = Array.from({ length: 10 }, () => newUser({ emailChange: newChange({ newEmail: target }) }));
        for (const user of movers) await store.users.insert(user);
        const results = await concurrently(10, (i) => store.users.completeEmailChange(movers[i]!.id, movers[i]!.emailChange!, at(50)));
        assert.equal(count(results, (r) => typeof r === "object"), 1, `results: ${JSON.stringify(results.map((r) => (typeof r === "object" ? "user" : r ?? "undefined")))}`);
        assert.equal(count(results, (r) => r === "email_taken"), 9);
        const winner = movers[results.findIndex((r) => typeof r === "object")]!;
        assert.equal((await store.users.findByEmail(target))?.id, winner.id);
        for (const loser of movers.filter((m) => m !== winner)) same(await store.users.findById(loser.id), loser);
      });

      it("an insert and an email change racing for one address: exactly one gets it", async (store) => {
        const rounds = await concurrently(10, async () => {
          const target = newEmail("contested");
          const mover = newUser({ emailChange: newChange({ newEmail: target }) });
          await store.users.insert(mover);
          const newcomer = newUser({ email: target });
          const [moving, inserting] = await Promise.allSettled([
            store.users.completeEmailChange(mover.id, mover.emailChange!, at(60)),
            store.users.insert(newcomer),
          ]);
          if (moving.status === "rejected") throw moving.reason;
          if (inserting.status === "rejected") throw inserting.reason;
          const [moved, inserted] = [moving.value, inserting.value];
          const holder = await store.users.findByEmail(target);
          return { moved: typeof moved === "object", inserted: inserted === "inserted", taken: moved === "email_taken", holder: holder?.id, mover, newcomer };
        });
        for (const round of rounds) {
          assert.equal(Number(round.moved) + Number(round.inserted), 1, JSON.stringify(round));
          assert.equal(round.holder, round.moved ? round.mover.id : round.newcomer.id);
          if (round.inserted) assert.ok(round.taken, "the mover learns the address is taken");
          else assert.equal(await store.users.findById(round.newcomer.id), undefined);
        }
      });

      it("cancelEmailChange drops only the matching change", async (store) => {
        const change = newChange({ requireCurrent: true });
        const user = newUser({ emailChange: change, userMetadata: { m: 1 } });
        await store.users.insert(user);
        await store.users.cancelEmailChange(user.id, "stale", at(2));
        same(await store.users.findById(user.id), user, "a stale id changes nothing at all");
        await store.users.cancelEmailChange(user.id, change.id, at(3));
        same(await store.users.findById(user.id), { ...user, emailChange: undefined, updatedAt: at(3) });
        assert.equal(await store.users.completeEmailChange(user.id, change, at(4)), undefined, "a cancelled change cannot complete");
        await store.users.cancelEmailChange(randomUUID(), change.id, at(3)); // no such user: nothing to do
      });

      it("returned users are copies, and so is what was stored", async (store) => {
        const user = newUser({ userMetadata: { a: 1, nested: { list: [1] } }, emailChange: newChange(), emailConfirmedAt: at(1) });
        const original = structuredClone(user);
        await store.users.insert(user);
        // Mutating the caller's own object after the insert.
        ((user.userMetadata.nested as Record<string, unknown>).list as unknown[]).push(2);
        (user.emailChange as { newEmail: string }).newEmail = "mutated@example.com";
        same(await store.users.findById(user.id), original, "the inserted object was copied");

        const found = (await store.users.findById(user.id))!;
        (found.userMetadata as Record<string, unknown>).a = 999;
        ((found.userMetadata.nested as Record<string, unknown>).list as unknown[]).push(3);
        (found.emailChange as { id: string }).id = "tampered";
        found.emailConfirmedAt!.setTime(0);
        (found as { email: string }).email = "tampered@example.com";
        same(await store.users.findById(user.id), original, "findById returned a copy");
        same(await store.users.findByEmail(original.email), original, "findByEmail still finds the original");

        const metadata = { b: { c: [1] } };
        const updated = (await store.users.update(user.id, { updatedAt: at(2), userMetadata: metadata }))!;
        metadata.b.c.push(2);
        (updated.userMetadata as Record<string, unknown>).b = "tampered";
        same((await store.users.findById(user.id))?.userMetadata, { b: { c: [1] } }, "update copied its input and returned a copy");

        const confirmed = (await store.users.confirmEmail(user.id, at(3)))!;
        (confirmed.userMetadata as Record<string, unknown>).x = 1;
        same((await store.users.findById(user.id))?.userMetadata, { b: { c: [1] } }, "confirmEmail returned a copy");
      });
    });

    describe("users: an administrator's changes (changeEmail, delete)", () => {
      it("changeEmail moves the user at once, drops the pending change, keeps every other field, frees the old address", async (store) => {
        const user = newUser({
          passwordHash: "h",
          emailConfirmedAt: at(1),
          invitedAt: at(2),
          userMetadata: { m: 1 },
          emailChange: newChange({ requireCurrent: true }),
          completedEmailChange: { id: "earlier", previousEmail: newEmail("earlier") },
        });
        await store.users.insert(user);
        const target = newEmail("moved");
        const moved = await store.users.changeEmail(user.id, target, at(7));
        const expected = { ...user, email: target, emailChange: undefined, updatedAt: at(7) };
        same(moved, expected);
        same(await store.users.findById(user.id), expected);
        same(await store.users.findByEmail(target), expected);
        assert.equal(await store.users.findByEmail(user.email), undefined, "the old address no longer finds the user");
        assert.equal(await store.users.insert(newUser({ email: user.email })), "inserted", "the old address is free");
        assert.equal(await store.users.insert(newUser({ email: target })), "email_taken", "the new one is taken");
        assert.equal(await store.users.completeEmailChange(user.id, user.emailChange!, at(8)), undefined, "the dropped change cannot complete");
      });

      it("changeEmail to an address another user holds is email_taken and changes nothing", async (store) => {
        const holder = newUser();
        const user = newUser({ emailChange: newChange() });
        await store.users.insert(holder);
        await store.users.insert(user);
        assert.equal(await store.users.changeEmail(user.id, holder.email, at(3)), "email_taken");
        same(await store.users.findById(user.id), user, "the mover is unchanged (its pending change too)");
        same(await store.users.findByEmail(user.email), user);
        same(await store.users.findById(holder.id), holder);
        same(await store.users.findByEmail(holder.email), holder);
      });

      it("changeEmail of a missing user is undefined and takes no address", async (store) => {
        const target = newEmail("ghost");
        assert.equal(await store.users.changeEmail(randomUUID(), target, at(3)), undefined);
        assert.equal(await store.users.findByEmail(target), undefined);
        assert.equal(await store.users.insert(newUser({ email: target })), "inserted");
      });

      it("changeEmail to the user's own address keeps it and drops the pending change", async (store) => {
        const user = newUser({ emailChange: newChange() });
        await store.users.insert(user);
        same(await store.users.changeEmail(user.id, user.email, at(4)), { ...user, emailChange: undefined, updatedAt: at(4) });
        same((await store.users.findByEmail(user.email))?.id, user.id);
      });

      it("10 users moving to one address at once: exactly one gets it, the others are email_taken and unchanged", async (store) => {
        const target = newEmail("contested");
        const movers = Array.from({ length: 10 }, () => newUser());
        for (const user of movers) await store.users.insert(user);
        const results = await concurrently(10, (i) => store.users.changeEmail(movers[i]!.id, target, at(50)));
        assert.equal(count(results, (r) => typeof r === "object"), 1, `results: ${JSON.stringify(results.map((r) => (typeof r === "object" ? "user" : r ?? "undefined")))}`);
        assert.equal(count(results, (r) => r === "email_taken"), 9);
        const winner = movers[results.findIndex((r) => typeof r === "object")]!;
        assert.equal((await store.users.findByEmail(target))?.id, winner.id);
        for (const loser of movers.filter((m) => m !== winner)) {
          same(await store.users.findById(loser.id), loser);
          same(await store.users.findByEmail(loser.email), loser);
        }
      });

      it("an insert and a changeEmail racing for one address: exactly one gets it", async (store) => {
        const rounds = await concurrently(10, async () => {
          const target = newEmail("contested");
          const mover = newUser();
          await store.users.insert(mover);
          const newcomer = newUser({ email: target });
          const [moving, inserting] = await Promise.allSettled([store.users.changeEmail(mover.id, target, at(60)), store.users.insert(newcomer)]);
          if (moving.status === "rejected") throw moving.reason;
          if (inserting.status === "rejected") throw inserting.reason;
          const holder = await store.users.findByEmail(target);
          return { moved: typeof moving.value === "object", inserted: inserting.value === "inserted", holder: holder?.id, mover, newcomer };
        });
        for (const round of rounds) {
          assert.equal(Number(round.moved) + Number(round.inserted), 1, JSON.stringify(round));
          assert.equal(round.holder, round.moved ? round.mover.id : round.newcomer.id);
          if (round.inserted) same(await store.users.findById(round.mover.id), round.mover, "the mover kept its address");
        }
      });

      it("delete removes the user and frees its address; a second delete is false", async (store) => {
        const user = newUser({ passwordHash: "h", emailChange: newChange() });
        const other = newUser();
        await store.users.insert(user);
        await store.users.insert(other);
        assert.equal(await store.users.delete(user.id), true);
        assert.equal(await store.users.findById(user.id), undefined);
        assert.equal(await store.users.findByEmail(user.email), undefined);
        assert.equal(await store.users.delete(user.id), false, "already gone");
        assert.equal(await store.users.delete(randomUUID()), false, "never existed");
        assert.equal(await store.users.update(user.id, { updatedAt: at(2), userMetadata: { a: 1 } }), undefined, "nothing to update");
        assert.equal(await store.users.confirmEmail(user.id, at(2)), undefined, "nothing to confirm");
        assert.equal(await store.users.findById(user.id), undefined, "and nothing was recreated");
        const reuse = newUser({ email: user.email });
        assert.equal(await store.users.insert(reuse), "inserted", "the address is free for a new user");
        same(await store.users.findByEmail(user.email), reuse);
        same(await store.users.findById(other.id), other, "another user is untouched");
      });

      it("delete of a user who moved address frees the new address, not the old one's new holder", async (store) => {
        const user = newUser();
        await store.users.insert(user);
        const target = newEmail("moved");
        await store.users.changeEmail(user.id, target, at(1));
        const newcomer = newUser({ email: user.email });
        assert.equal(await store.users.insert(newcomer), "inserted");
        assert.equal(await store.users.delete(user.id), true);
        assert.equal(await store.users.findByEmail(target), undefined);
        same(await store.users.findByEmail(user.email), newcomer);
      });

      it("10 concurrent deletes of one user: exactly one deleted it", async (store) => {
        const user = newUser();
        await store.users.insert(user);
        const results = await concurrently(10, () => store.users.delete(user.id));
        assert.equal(count(results, (r) => r), 1);
        assert.equal(await store.users.findById(user.id), undefined);
      });

      it("an address passed from user to user: each lookup finds its holder of the moment, a freed address is free", async (store) => {
        const a = newUser();
        await store.users.insert(a);
        const x = a.email;
        const y = newEmail("away");
        assert.ok(typeof (await store.users.changeEmail(a.id, y, at(1))) === "object");
        const b = newUser({ email: x });
        assert.equal(await store.users.insert(b), "inserted", "x was left, so it is free");
        assert.equal(await store.users.changeEmail(a.id, x, at(2)), "email_taken", "b holds x now");
        same((await store.users.findByEmail(x))?.id, b.id);
        assert.equal(await store.users.delete(b.id), true);
        assert.equal(await store.users.findByEmail(x), undefined);
        const back = await store.users.changeEmail(a.id, x, at(3));
        assert.ok(typeof back === "object" && back.email === x, "x is free again: a moves back");
        same((await store.users.findByEmail(x))?.id, a.id);
        assert.equal(await store.users.findByEmail(y), undefined);
        assert.equal(await store.users.insert(newUser({ email: y })), "inserted", "y was left");
        same((await store.users.confirmEmail(a.id, at(4)))?.email, x, "confirming keeps the address");
        same((await store.users.findByEmail(x))?.emailConfirmedAt, at(4));
      });
    });

    describe("links", () => {
      it("insert then find: every field intact, pending until markIssued", async (store) => {
        const link = newLink({
          type: "email_change",
          redirectTo: "https://app.example.com/x?y=1",
          emailChange: { changeId: "c1", address: "current" },
          pending: true,
          issuedBy: "spiffe://example.org/backend",
        });
        await store.links.insert([link]);
        same(await store.links.find(link.tokenHash, T0), link);
        await store.links.markIssued([link.tokenHash]);
        same(await store.links.find(link.tokenHash, T0), { ...link, pending: undefined });
        assert.equal((await store.links.find(link.tokenHash, T0))?.pending, undefined, "issued: the flag is gone");
        await store.links.markIssued([link.tokenHash, unique("no-such-hash")]); // again, and an unknown hash: nothing to do
        same(await store.links.find(link.tokenHash, T0), { ...link, pending: undefined });
        await store.links.markIssued([]);
      });

      it("insert of two links (one issue): each is stored with its own fields and issued together", async (store) => {
        const issueId = unique("issue");
        const changeId = unique("change");
        const a = newLink({ type: "email_change", issueId, pending: true, emailChange: { changeId, address: "new" } });
        const b = newLink({ type: "email_change", issueId, pending: true, userId: a.userId, emailChange: { changeId, address: "current" } });
        await store.links.insert([a, b]);
        same(await store.links.find(a.tokenHash, T0), a);
        same(await store.links.find(b.tokenHash, T0), b);
        await store.links.markIssued([a.tokenHash, b.tokenHash]);
        same(byHash(await store.links.findByUser(a.userId, undefined)), byHash([a, b].map((l) => ({ ...l, pending: undefined }))));
      });

      it("insert of a link whose hash is already stored fails and keeps the stored one", async (store) => {
        const link = newLink();
        await store.links.insert([link]);
        const clash = newLink({ tokenHash: link.tokenHash, userId: randomUUID(), otpHash: "other" });
        await assert.rejects(store.links.insert([clash]));
        same(await store.links.find(link.tokenHash, T0), link);
      });

      it("findLiveByEmail: that address, that type, issued live ones only, at most `limit`, every field intact", async (store) => {
        const email = newEmail("otp");
        const a = newLink({ email, expiresAt: at(HOUR), redirectTo: "https://a.example.com/" });
        const b = newLink({ email, expiresAt: at(2 * HOUR) });
        const c = newLink({ email, expiresAt: at(3 * HOUR) });
        const pending = newLink({ email, pending: true });
        await store.links.insert([a, b]);
        await store.links.insert([c]);
        await store.links.insert([pending]);
        await store.links.insert([
          newLink({ email, expiresAt: at(10) }), // expired at at(10)
          newLink({ email, type: "recovery" }),
          newLink({ email: newEmail("other") }),
          newLink({ email: email.toUpperCase() }), // addresses are compared as given (normalized upstream)
        ]);
        same(byHash(await store.links.findLiveByEmail(email, "magiclink", at(10), 10)), byHash([a, b, c]), "not the pending one");
        const two = await store.links.findLiveByEmail(email, "magiclink", at(10), 2);
        assert.equal(two.length, 2);
        assert.ok(two.every((l) => [a, b, c].some((x) => x.tokenHash === l.tokenHash)));
        same(byHash(await store.links.findLiveByEmail(email, "magiclink", at(HOUR), 10)), byHash([b, c]), "a expires at at(HOUR)");
        same(await store.links.findLiveByEmail(email, "invite", at(10), 10), []);
        same(await store.links.findLiveByEmail(newEmail("nobody"), "magiclink", at(10), 10), []);
        await store.links.markIssued([pending.tokenHash]);
        same(byHash(await store.links.findLiveByEmail(email, "magiclink", at(10), 10)), byHash([a, b, c, { ...pending, pending: undefined }]), "once issued");
      });

      it("findLiveByEmail: live until the millisecond before expiresAt", async (store) => {
        const expiresAt = at(1000);
        const link = newLink({ expiresAt });
        await store.links.insert([link]);
        same(await store.links.findLiveByEmail(link.email, link.type, at(999), 10), [link], "one millisecond before");
        same(await store.links.findLiveByEmail(link.email, link.type, expiresAt, 10), [], "not at expiresAt");
      });

      it("findLiveByEmail with limit 0 finds nothing", async (store) => {
        const email = newEmail("limit");
        await store.links.insert([newLink({ email }), newLink({ email })]);
        same(await store.links.findLiveByEmail(email, "magiclink", T0, 0), []);
      });

      it("findByUser: every stored link of the user (of one type, or all), pending and expired ones too, every field intact", async (store) => {
        const userId = randomUUID();
        const magic = newLink({ userId, issuedAt: at(1), issueId: "a", redirectTo: "https://app.example.com/" });
        const expired = newLink({ userId, expiresAt: at(-1), retainUntil: at(HOUR) });
        const pending = newLink({ userId, pending: true, issueId: "b" });
        const recovery = newLink({ userId, type: "recovery" });
        const change = newLink({ userId, type: "email_change", emailChange: { changeId: "c", address: "new" } });
        await store.links.insert([magic, expired, pending]);
        await store.links.insert([recovery, change, newLink(), newLink({ type: "recovery" })]);
        same(byHash(await store.links.findByUser(userId, "magiclink")), byHash([magic, expired, pending]));
        same(byHash(await store.links.findByUser(userId, "email_change")), [change]);
        same(byHash(await store.links.findByUser(userId, undefined)), byHash([magic, expired, pending, recovery, change]));
        same(await store.links.findByUser(userId, "invite"), []);
        same(await store.links.findByUser(randomUUID(), undefined), []);
      });

      it("delete removes one link and nothing else, and says whether it did; deleting a missing link is fine", async (store) => {
        const link = newLink();
        const other = newLink({ email: link.email, userId: link.userId });
        await store.links.insert([link, other]);
        assert.equal(await store.links.delete(link.tokenHash), true, "this call deleted it");
        assert.equal(await store.links.find(link.tokenHash, T0), undefined);
        assert.equal(await store.links.delete(link.tokenHash), false, "already gone");
        assert.equal(await store.links.delete(unique("no-such-hash")), false);
        same(await store.links.find(other.tokenHash, T0), other);
      });

      it("20 concurrent deletes of one link: exactly one reports it", async (store) => {
        const link = newLink();
        await store.links.insert([link]);
        const results = await concurrently(20, () => store.links.delete(link.tokenHash));
        assert.equal(count(results, Boolean), 1);
      });

      it("returned links are copies, and so is what was stored", async (store) => {
        const link = newLink({ type: "email_change", emailChange: { changeId: "x", address: "new" } });
        const original = structuredClone(link);
        await store.links.insert([link]);
        (link.emailChange as { changeId: string }).changeId = "mutated-input";
        link.expiresAt.setTime(0);
        const [found] = await store.links.findLiveByEmail(original.email, original.type, T0, 1);
        assert.ok(found, "the inserted object was copied (still live)");
        (found.emailChange as { changeId: string }).changeId = "tampered";
        found.issuedAt.setTime(0);
        (found as { userId: string }).userId = "tampered";
        same(await store.links.findLiveByEmail(original.email, original.type, T0, 1), [original]);
        const [byUser] = await store.links.findByUser(original.userId, undefined);
        assert.ok(byUser);
        byUser.expiresAt.setTime(0);
        same(await store.links.findByUser(original.userId, undefined), [original]);
      });
    });

    describe("one-time code attempts (claims)", () => {
      it("the first claim of a key wins, later ones lose", async (store) => {
        const key = unique("claim");
        assert.equal(await store.claims.claim(key, at(HOUR)), true);
        assert.equal(await store.claims.claim(key, at(HOUR)), false);
        assert.equal(await store.claims.claim(key, at(2 * HOUR)), false, "a different expiry is still the same key");
        assert.equal(await store.claims.claim(unique("claim"), at(HOUR)), true, "another key");
      });

      it("50 concurrent claims of one key: exactly one wins", async (store) => {
        const key = unique("claim-race");
        const results = await concurrently(50, () => store.claims.claim(key, at(HOUR)));
        assert.equal(count(results, Boolean), 1);
      });

      it("50 concurrent code attempts with a limit of 5 (attempts 1..5 are keys): exactly 5 get one, each a different one", async (store) => {
        // How the domain counts attempts: a caller takes the first free
        // attempt number of the link; when all five are taken it is refused.
        const tokenHash = unique("hash");
        const maxAttempts = 5;
        const reserve = async (): Promise<number | undefined> => {
          for (let attempt = 1; attempt <= maxAttempts; attempt++) {
            if (await store.claims.claim(`otp:${tokenHash}:${attempt}`, at(HOUR))) return attempt;
          }
          return undefined;
        };
        const results = await concurrently(50, reserve);
        const granted = results.filter((r): r is number => r !== undefined).sort();
        same(granted, [1, 2, 3, 4, 5]);
        assert.equal(await reserve(), undefined, "refused once all are used");
        const keys = Array.from({ length: maxAttempts }, (_, i) => `otp:${tokenHash}:${i + 1}`);
        assert.equal((await store.claims.claimed(keys, T0)).size, maxAttempts, "the attempt count is 5");
      });

      it("hold: the first holder of a key wins and every caller learns who it is; holderOf tells without recording", async (store) => {
        const key = unique("held");
        assert.equal(await store.claims.holderOf(key, T0), undefined, "nobody yet");
        assert.equal(await store.claims.hold(key, "call-a", at(HOUR)), "call-a", "recorded");
        assert.equal(await store.claims.hold(key, "call-b", at(2 * HOUR)), "call-a", "the first holder stays");
        assert.equal(await store.claims.hold(key, "call-a", at(HOUR)), "call-a", "the holder again");
        assert.equal(await store.claims.holderOf(key, T0), "call-a");
        assert.equal(await store.claims.holderOf(key, at(HOUR)), undefined, "expired at expiresAt");
        assert.equal(await store.claims.claim(key, at(HOUR)), false, "a held key is claimed");
        const claimed = unique("claimed");
        await store.claims.claim(claimed, at(HOUR));
        assert.equal(await store.claims.holderOf(claimed, T0), "", "a key recorded by claim() is held by nobody in particular");
        assert.equal(await store.claims.hold(claimed, "call-c", at(HOUR)), "");
        same(await store.claims.claimed([key, claimed], T0), new Set([key, claimed]));
      });

      it("30 concurrent holds of one key: one holder recorded, and all 30 callers name it", async (store) => {
        const key = unique("hold-race");
        const results = await concurrently(30, (i) => store.claims.hold(key, `call-${i}`, at(HOUR)));
        assert.equal(new Set(results).size, 1, JSON.stringify(results));
        assert.equal(await store.claims.holderOf(key, T0), results[0]);
      });

      it("release: only the holder on record frees a key, expired or not; the key can then be held again", async (store) => {
        const key = unique("released");
        assert.equal(await store.claims.release(key, "call-a"), false, "nothing recorded");
        await store.claims.hold(key, "call-a", at(HOUR));
        assert.equal(await store.claims.release(key, "call-b"), false, "another holder's record stays");
        assert.equal(await store.claims.holderOf(key, T0), "call-a");
        assert.equal(await store.claims.release(key, "call-a"), true);
        assert.equal(await store.claims.holderOf(key, T0), undefined, "forgotten");
        assert.equal(await store.claims.release(key, "call-a"), false, "released once");
        assert.equal(await store.claims.hold(key, "call-b", at(10)), "call-b", "free again");
        assert.equal(await store.claims.holderOf(key, at(10)), undefined, "expired (not purged)");
        assert.equal(await store.claims.hold(key, "call-c", at(HOUR)), "call-b", "an expired record still holds the key");
        assert.equal(await store.claims.release(key, "call-b"), true, "an expired record is released by its holder");
        assert.equal(await store.claims.hold(key, "call-c", at(HOUR)), "call-c");
        const claimed = unique("claimed-release");
        await store.claims.claim(claimed, at(HOUR));
        assert.equal(await store.claims.release(claimed, "call-a"), false);
        assert.equal(await store.claims.release(claimed, ""), true, "a claim() key is held by \"\"");
        assert.equal(await store.claims.claim(claimed, at(HOUR)), true);
      });

      it("20 concurrent releases of one held key: exactly one removes it", async (store) => {
        const key = unique("release-race");
        await store.claims.hold(key, "call-a", at(HOUR));
        const results = await concurrently(20, () => store.claims.release(key, "call-a"));
        assert.equal(results.filter(Boolean).length, 1, JSON.stringify(results));
        assert.equal(await store.claims.holderOf(key, T0), undefined);
      });

      it("claimed reports recorded keys that have not expired (expiresAt > now)", async (store) => {
        const [a, b, c] = [unique("a"), unique("b"), unique("c")];
        await store.claims.claim(a, at(HOUR));
        await store.claims.claim(b, at(10));
        same(await store.claims.claimed([a, b, c], T0), new Set([a, b]));
        same(await store.claims.claimed([a, b, c], at(9)), new Set([a, b]));
        same(await store.claims.claimed([a, b, c], at(10)), new Set([a]), "expired at expiresAt");
        same(await store.claims.claimed([], T0), new Set());
        same(await store.claims.claimed([c], T0), new Set());
      });
    });

    describe("rate limits", () => {
      const window = at(0);

      it("a slot is taken once per bucket and window; the highest taken slot is the window's count", async (store) => {
        const bucket = unique("bucket");
        const rl = store.rateLimits;
        assert.equal(await rl.highestSlot(bucket, window), 0);
        assert.equal(await rl.slotTaken(bucket, window, 1), false);
        assert.equal(await rl.takeSlot(bucket, window, 1, at(HOUR)), true);
        assert.equal(await rl.slotTaken(bucket, window, 1), true);
        assert.equal(await rl.takeSlot(bucket, window, 1, at(HOUR)), false, "taken already");
        assert.equal(await rl.takeSlot(bucket, window, 2, at(HOUR)), true);
        assert.equal(await rl.highestSlot(bucket, window), 2);
        assert.equal(await rl.takeSlot(bucket, window, 5, at(HOUR)), true, "slots need not be taken in order");
        assert.equal(await rl.highestSlot(bucket, window), 5);
        assert.equal(await rl.slotTaken(bucket, window, 3), false);
        assert.equal(await rl.highestSlot(bucket, at(60_000)), 0, "another window");
        assert.equal(await rl.slotTaken(bucket, at(60_000), 1), false, "another window");
        assert.equal(await rl.highestSlot(unique("other"), window), 0, "another bucket");
        assert.equal(await rl.takeSlot(bucket, at(60_000), 1, at(HOUR)), true, "a new window starts empty");
      });

      it("40 concurrent takes of one slot: exactly one wins", async (store) => {
        const bucket = unique("bucket-race");
        const results = await concurrently(40, () => store.rateLimits.takeSlot(bucket, window, 1, at(HOUR)));
        assert.equal(count(results, Boolean), 1);
        assert.equal(await store.rateLimits.highestSlot(bucket, window), 1);
      });

      it("40 concurrent takes of distinct slots: every one is stored", async (store) => {
        const bucket = unique("bucket-burst");
        const results = await concurrently(40, (i) => store.rateLimits.takeSlot(bucket, window, i + 1, at(HOUR)));
        assert.equal(count(results, (r) => !r), 0, "refused takes");
        assert.equal(await store.rateLimits.highestSlot(bucket, window), 40);
      });
    });

    describe("audit", () => {
      const event = (n: number, fields: Partial<AuditEvent> = {}): AuditEvent => ({
        at: at(n),
        method: "VerifyLink",
        caller: "anonymous",
        clientAddress: "192.0.2.1",
        linkType: "magiclink",
        hashedTokens: [`h${n}`, `h${n}b`],
        outcome: "ok",
        durationMs: n,
        ...fields,
      });

      it("events are appended and found by address, by user or both, newest first, at most `limit`", async (store) => {
        const email = newEmail("audit");
        const userId = randomUUID();
        const e1 = event(1, { userId, email });
        const e2 = event(2, { userId, email, outcome: "link_invalid_or_expired", linkType: "recovery" });
        const e3 = event(3, { email }); // the address, before a user existed
        const e4 = event(4, { userId, email: newEmail("moved") });
        const bare: AuditEvent = { at: at(5), method: "GenerateLink", caller: "anonymous", clientAddress: "", hashedTokens: [], outcome: "credentials_missing", durationMs: 0 };
        for (const e of [e1, e2, e3, e4, bare]) await store.audit.append(e, at(HOUR));
        same(await store.audit.find({ email }, 10), [e3, e2, e1]);
        same(await store.audit.find({ userId }, 10), [e4, e2, e1]);
        same(await store.audit.find({ userId }, 2), [e4, e2]);
        same(await store.audit.find({ email, userId }, 10), [e2, e1]);
        same(await store.audit.find({ email: newEmail("nobody") }, 10), []);
      });

      it("newest first means by `at`, whatever order the events were appended in", async (store) => {
        // Calls end in any order: a slow call's event (earlier `at`) may be
        // appended after a fast one's.
        const email = newEmail("audit-order");
        const [early, middle, late] = [event(1, { email }), event(2, { email }), event(3, { email })];
        await store.audit.append(middle, at(HOUR));
        await store.audit.append(late, at(HOUR));
        await store.audit.append(early, at(HOUR));
        same(await store.audit.find({ email }, 10), [late, middle, early]);
      });

      it("found events are copies", async (store) => {
        const email = newEmail("audit-copy");
        const e = event(1, { email });
        await store.audit.append(e, at(HOUR));
        (e.hashedTokens as string[]).push("mutated-input");
        const [found] = await store.audit.find({ email }, 1);
        assert.ok(found);
        (found.hashedTokens as string[]).push("tampered");
        same(await store.audit.find({ email }, 1), [event(1, { email })]);
      });

      /** The event as appended, with the id the store gave it. */
      const withId = (e: AuditEvent, id: string): StoredAuditEvent => ({ ...e, id });
      const ids = (events: readonly StoredAuditEvent[]) => events.map((e) => e.id);

      it("list: every filter, the time range (since inclusive, until exclusive), newest first by `at`, each event with its id", async (store) => {
        const userId = randomUUID();
        const email = newEmail("list");
        const all = [
          event(1, { userId, email, caller: "key:ops", method: "GenerateLink" }),
          event(2, { userId, email, caller: "key:app", method: "VerifyLink", outcome: "link_invalid_or_expired" }),
          event(3, { email, caller: "key:ops", method: "PreviewLink" }),
          event(4, { userId, caller: "key:ops", method: "VerifyLink" }),
          event(5, { caller: "anonymous", method: "GenerateLink", outcome: "credentials_missing", hashedTokens: [], linkType: undefined }),
        ];
        for (const e of all) await store.audit.append(e, at(HOUR));
        const listed = await store.audit.list({}, undefined, 10);
        same(listed, [...all].reverse().map((e, i) => withId(e, listed[i]?.id ?? "")));
        assert.equal(new Set(ids(listed)).size, 5, "ids are unique");
        for (const id of ids(listed)) assert.equal(typeof auditIdTime(id), "number", `${id} is an event id`);
        const durations = async (query: AuditQuery) => (await store.audit.list(query, undefined, 10)).map((e) => e.durationMs);
        assert.deepEqual(await durations({ userId }), [4, 2, 1]);
        assert.deepEqual(await durations({ email }), [3, 2, 1]);
        assert.deepEqual(await durations({ caller: "key:ops" }), [4, 3, 1]);
        assert.deepEqual(await durations({ method: "VerifyLink" }), [4, 2]);
        assert.deepEqual(await durations({ outcome: "ok" }), [4, 3, 1]);
        assert.deepEqual(await durations({ outcome: "credentials_missing" }), [5]);
        assert.deepEqual(await durations({ userId, email, method: "VerifyLink", outcome: "link_invalid_or_expired", caller: "key:app" }), [2]);
        assert.deepEqual(await durations({ since: at(2), until: at(4) }), [3, 2]);
        assert.deepEqual(await durations({ since: at(5) }), [5]);
        assert.deepEqual(await durations({ until: at(1) }), []);
        assert.deepEqual(await durations({ caller: "key:ops", since: at(3) }), [4, 3]);
        assert.deepEqual(await durations({ email: newEmail("nobody") }), []);
        same(await store.audit.list({}, undefined, 2), listed.slice(0, 2));
        same(await store.audit.list({}, undefined, 0), []);
      });

      it("list: pages after (at, id) cover every event once, ties on `at` included, however events are appended meanwhile", async (store) => {
        const email = newEmail("pages");
        // Three events share each instant: the id orders them.
        for (let n = 1; n <= 12; n++) await store.audit.append(event(Math.ceil(n / 3), { email, durationMs: n }), at(HOUR));
        const seen: StoredAuditEvent[] = [];
        let after: AuditPosition | undefined;
        for (let page = 0; page < 10; page++) {
          const events = await store.audit.list({ email }, after, 5);
          seen.push(...events);
          // Written between pages: newer ones never shift a page.
          await store.audit.append(event(100 + page, { email, durationMs: 100 + page }), at(HOUR));
          const last = events.at(-1);
          if (events.length < 5 || !last) break;
          after = { at: last.at, id: last.id };
        }
        assert.deepEqual(
          seen.map((e) => e.durationMs).sort((x, y) => x - y),
          Array.from({ length: 12 }, (_, i) => i + 1),
          "each of the 12 events once",
        );
        for (let i = 1; i < seen.length; i++) {
          const [prev, next] = [seen[i - 1] as StoredAuditEvent, seen[i] as StoredAuditEvent];
          assert.ok(prev.at > next.at || (prev.at.getTime() === next.at.getTime() && prev.id > next.id), "newest first by (at, id)");
        }
      });

      it("storedAfter: events stored after an id, in id order, filtered, at most `limit`; ids follow the storage clock", async (store) => {
        const email = newEmail("stored");
        const before = Date.now();
        for (let n = 1; n <= 4; n++) await store.audit.append(event(10 - n, { email, durationMs: n, method: n === 3 ? "PreviewLink" : "VerifyLink" }), at(HOUR));
        await store.audit.append(event(1, { email: newEmail("other") }), at(HOUR));
        const afterAppend = Date.now();
        const stored = await store.audit.storedAfter({ email }, auditIdFloor(before), 10);
        assert.deepEqual(stored.map((e) => e.durationMs).sort(), [1, 2, 3, 4]);
        assert.deepEqual(ids(stored), [...ids(stored)].sort(), "in id order");
        for (const e of stored) {
          const time = auditIdTime(e.id) as number;
          assert.ok(time >= before && time <= afterAppend, "the id carries the storage time");
        }
        same(stored.find((e) => e.durationMs === 2), withId(event(8, { email, durationMs: 2, method: "VerifyLink" }), stored.find((e) => e.durationMs === 2)?.id ?? ""));
        same(await store.audit.storedAfter({ email }, auditIdFloor(afterAppend + 1), 10), []);
        same(await store.audit.storedAfter({ email }, stored[1]?.id ?? "", 10), stored.slice(2));
        same(await store.audit.storedAfter({ email }, auditIdFloor(before), 2), stored.slice(0, 2));
        assert.deepEqual((await store.audit.storedAfter({ email, method: "PreviewLink" }, auditIdFloor(before), 10)).map((e) => e.durationMs), [3]);
        const last = stored.at(-1) as StoredAuditEvent;
        await store.audit.append(event(0, { email, durationMs: 5 }), at(HOUR));
        assert.deepEqual((await store.audit.storedAfter({ email }, last.id, 10)).map((e) => e.durationMs), [5], "what is stored later comes after");
      });

      it("appendMany: every event stored with its own expiry, ids in the order given, found and listed like appended ones", async (store) => {
        const email = newEmail("batch");
        const before = Date.now();
        // `at` out of order on purpose: the ids follow the order given, not `at`.
        const batch = [3, 1, 4, 2, 5].map((n) => event(n, { email, durationMs: n }));
        const failed = await store.audit.appendMany(batch.map((e, i) => ({ event: e, expiresAt: i === 4 ? at(2 * HOUR) : at(HOUR) })));
        assert.deepEqual(failed, [], "nothing refused");
        const stored = await store.audit.storedAfter({ email }, auditIdFloor(before), 10);
        same(stored, batch.map((e, i) => withId(e, stored[i]?.id ?? "")), "in the order given");
        assert.equal(new Set(ids(stored)).size, 5, "ids are unique");
        assert.deepEqual(ids(stored), [...ids(stored)].sort(), "ids ascending in the order given");
        same(await store.audit.find({ email }, 10), [5, 4, 3, 2, 1].map((n) => event(n, { email, durationMs: n })), "found newest first by `at`");
        same(await store.audit.list({ email }, undefined, 10), [...stored].sort((a, b) => b.at.getTime() - a.at.getTime()));
        // Each keeps its own expiry: at HOUR all but the one kept for 2 hours go.
        await store.purgeExpired(at(HOUR));
        assert.deepEqual((await store.audit.find({ email }, 10)).map((e) => e.durationMs), [5], "only the event kept longer is left");
        await store.audit.append(event(0, { email, durationMs: 6 }), at(HOUR));
        assert.deepEqual((await store.audit.storedAfter({ email }, stored.at(-1)?.id ?? "", 10)).map((e) => e.durationMs), [6], "what is stored later comes after the batch");
      });

      it("appendMany stores copies, and an empty batch stores nothing", async (store) => {
        const email = newEmail("batch-copy");
        const e = event(1, { email });
        assert.deepEqual(await store.audit.appendMany([{ event: e, expiresAt: at(HOUR) }]), []);
        (e.hashedTokens as string[]).push("mutated-input");
        same(await store.audit.find({ email }, 10), [event(1, { email })]);
        assert.deepEqual(await store.audit.appendMany([]), []);
        assert.equal((await store.audit.list({}, undefined, 10)).length, 1, "still the one event");
      });

      it("batches and single appends at once: every event stored once, each with its own id", async (store) => {
        const email = newEmail("batch-burst");
        await concurrently(20, async (i) =>
          i % 2 === 0
            ? store.audit.append(event(i, { email, durationMs: i * 100 }), at(HOUR))
            : assert.deepEqual(await store.audit.appendMany(Array.from({ length: 5 }, (_, k) => ({ event: event(i, { email, durationMs: i * 100 + k }), expiresAt: at(HOUR) }))), []),
        );
        const stored = await store.audit.storedAfter({ email }, "", 100);
        assert.equal(stored.length, 10 + 10 * 5);
        assert.equal(new Set(ids(stored)).size, stored.length, "unique ids");
        assert.equal(new Set(stored.map((e) => e.durationMs)).size, stored.length, "each event once");
        for (let i = 1; i < 20; i += 2) {
          const mine = stored.filter((e) => Math.floor(e.durationMs / 100) === i).map((e) => e.durationMs);
          assert.deepEqual(mine, [0, 1, 2, 3, 4].map((k) => i * 100 + k), "a batch's events in its order");
        }
      });
    });

    describe("expired links are kept until retainUntil (so PreviewLink can say expired)", () => {
      it("find returns a stored link by hash, live or expired, until retainUntil", async (store) => {
        const link = newLink({ type: "recovery", redirectTo: "https://r.example.com/", expiresAt: at(1000), retainUntil: at(5000) });
        await store.links.insert([link]);
        same(await store.links.find(link.tokenHash, T0), link, "live");
        same(await store.links.find(link.tokenHash, at(1000)), link, "expired at expiresAt, still stored");
        same(await store.links.findLiveByEmail(link.email, "recovery", at(1000), 10), [], "but not offered for a code");
        same(await store.links.findByUser(link.userId, "recovery"), [link], "and still found for its user (to be replaced or revoked)");
        same(await store.links.find(link.tokenHash, at(4999)), link, "the millisecond before retainUntil");
        assert.equal(await store.links.find(link.tokenHash, at(5000)), undefined, "not at retainUntil, even before a purge");
        assert.equal(await store.links.find(unique("unknown"), T0), undefined, "unknown hash");
      });

      it("found links are copies", async (store) => {
        const link = newLink({ type: "email_change", emailChange: { changeId: "x", address: "new" } });
        await store.links.insert([link]);
        const found = (await store.links.find(link.tokenHash, T0))!;
        found.expiresAt.setTime(0);
        (found.emailChange as { changeId: string }).changeId = "tampered";
        same(await store.links.find(link.tokenHash, T0), link);
      });

    });

    describe("tombstones", () => {
      it("record then find: every field intact, by hash, until retainUntil", async (store) => {
        const link = newLink({ type: "email_change", redirectTo: "https://app.example.com/x", expiresAt: at(HOUR), retainUntil: at(3 * HOUR), emailChange: { changeId: "c", address: "new" }, issuedBy: "backend" });
        const tombstone = tombstoneOf(link, "replaced", at(7));
        assert.equal(tombstone.issuedBy, "backend", "the tombstone keeps who issued the link");
        same(await store.tombstones.record([tombstone]), [tombstone], "reports what it recorded");
        same(await store.tombstones.find(link.tokenHash, T0), tombstone);
        same(await store.tombstones.find(link.tokenHash, at(3 * HOUR - 1)), tombstone, "the millisecond before retainUntil");
        assert.equal(await store.tombstones.find(link.tokenHash, at(3 * HOUR)), undefined, "not at retainUntil, even before a purge");
        assert.equal(await store.tombstones.find(unique("unknown"), T0), undefined);
        assert.equal((await store.tombstones.find(link.tokenHash, T0) as unknown as Record<string, unknown>).otpHash, undefined, "no code HMAC");
        same(await store.tombstones.record([]), [], "nothing to record is fine");
      });

      it("the first tombstone of a hash wins; a batch still records its new hashes and reports only those", async (store) => {
        const [a, b, c] = [newLink(), newLink(), newLink()];
        same(await store.tombstones.record([tombstoneOf(a, "used", at(1))]), [tombstoneOf(a, "used", at(1))]);
        same(await store.tombstones.record([tombstoneOf(a, "revoked", at(2))]), [], "a single loser");
        same(
          await store.tombstones.record([tombstoneOf(b, "revoked", at(2)), tombstoneOf(a, "revoked", at(2)), tombstoneOf(c, "revoked", at(2))]),
          [tombstoneOf(b, "revoked", at(2)), tombstoneOf(c, "revoked", at(2))],
        );
        same(await store.tombstones.find(a.tokenHash, T0), tombstoneOf(a, "used", at(1)));
        same(await store.tombstones.find(b.tokenHash, T0), tombstoneOf(b, "revoked", at(2)));
      });

      it("30 concurrent records of one hash: exactly one is kept, whole, and exactly one call reports it", async (store) => {
        const link = newLink();
        const endings: LinkEnding[] = ["used", "replaced", "revoked"];
        const candidates = Array.from({ length: 30 }, (_, i) => tombstoneOf(link, endings[i % 3]!, at(i)));
        const reports = await concurrently(30, (i) => store.tombstones.record([candidates[i]!]));
        const kept = await store.tombstones.find(link.tokenHash, T0);
        assert.ok(kept && candidates.some((c) => c.ending === kept.ending && c.at.getTime() === kept.at.getTime()), JSON.stringify(kept));
        same(kept, candidates.find((c) => c.at.getTime() === kept!.at.getTime()));
        same(reports.flat(), [kept], "the one that recorded it, and only it, says so");
      });

      it("a redemption claim racing two revocations of overlapping batches: every link gets one fate, reported by exactly one call", async (store) => {
        const rounds = await concurrently(10, async (round) => {
          const userId = randomUUID();
          const links = [newLink({ userId }), newLink({ userId, type: "recovery" }), newLink({ userId, type: "invite" })];
          const claimed = links[0]!;
          const reports = await Promise.all([
            store.tombstones.record([tombstoneOf(claimed, "used", at(round))]),
            store.tombstones.record(links.map((l) => tombstoneOf(l, "revoked", at(round)))),
            store.tombstones.record(links.slice(0, 2).map((l) => tombstoneOf(l, "replaced", at(round)))),
          ]);
          return { links, reports, kept: await Promise.all(links.map((l) => store.tombstones.find(l.tokenHash, T0))) };
        });
        for (const { links, reports, kept } of rounds) {
          for (const [i, link] of links.entries()) {
            const reportedBy = reports.filter((r) => r.some((t) => t.tokenHash === link.tokenHash));
            assert.equal(reportedBy.length, 1, "one call reports each link");
            same(reportedBy[0]!.find((t) => t.tokenHash === link.tokenHash), kept[i], "and it is the fate kept");
          }
        }
      });

      it("found tombstones are copies", async (store) => {
        const link = newLink();
        await store.tombstones.record([tombstoneOf(link, "used", at(1))]);
        const found = (await store.tombstones.find(link.tokenHash, T0))!;
        found.at.setTime(0);
        (found as { ending: string }).ending = "tampered";
        same(await store.tombstones.find(link.tokenHash, T0), tombstoneOf(link, "used", at(1)));
      });
    });

    describe("purgeExpired", () => {
      it("deletes exactly what is due (links and tombstones: retainUntil <= now; the rest: expiresAt <= now), returns how many, and nothing else", async (store) => {
        const now = at(100);
        const just = now;
        const before = at(50);
        const after = at(101);

        const forgottenLinks = [
          newLink({ expiresAt: at(10), retainUntil: just }),
          newLink({ expiresAt: at(5), retainUntil: before, type: "recovery" }),
        ];
        const expiredButRetained = newLink({ expiresAt: at(20), retainUntil: after });
        const liveLink = newLink({ expiresAt: after });
        await store.links.insert([...forgottenLinks, expiredButRetained, liveLink]);

        const forgottenTombstone = tombstoneOf(newLink({ expiresAt: at(10), retainUntil: just }), "used", at(1));
        const keptTombstone = tombstoneOf(newLink({ expiresAt: at(10), retainUntil: after }), "revoked", at(2));
        await store.tombstones.record([forgottenTombstone, keptTombstone]);

        const [expiredKey, liveKey] = [unique("pk"), unique("pk")];
        await store.claims.claim(expiredKey, just);
        await store.claims.claim(liveKey, after);

        const email = newEmail("purge");
        const oldEvent: AuditEvent = { at: at(1), method: "VerifyLink", caller: "c", clientAddress: "", hashedTokens: [], outcome: "ok", durationMs: 1, email };
        const newEvent: AuditEvent = { ...oldEvent, at: at(2) };
        await store.audit.append(oldEvent, before);
        await store.audit.append(newEvent, after);

        const [expiredBucket, liveBucket] = [unique("pb"), unique("pb")];
        await store.rateLimits.takeSlot(expiredBucket, at(0), 1, just);
        await store.rateLimits.takeSlot(liveBucket, at(0), 1, after);

        const user = newUser();
        await store.users.insert(user);

        assert.equal(await store.purgeExpired(now), 2 + 1 + 1 + 1 + 1);

        for (const link of forgottenLinks) assert.equal(await store.links.find(link.tokenHash, T0), undefined, "forgotten link gone");
        same(await store.links.find(expiredButRetained.tokenHash, now), expiredButRetained, "an expired link is kept until retainUntil");
        same(await store.links.find(liveLink.tokenHash, T0), liveLink);
        assert.equal(await store.tombstones.find(forgottenTombstone.tokenHash, T0), undefined, "forgotten tombstone gone");
        same(await store.tombstones.find(keptTombstone.tokenHash, now), keptTombstone);
        same(await store.claims.claimed([expiredKey, liveKey], T0), new Set([liveKey]));
        assert.equal(await store.claims.claim(expiredKey, at(HOUR)), true, "a purged claim's key can be claimed again");
        assert.equal(await store.claims.claim(liveKey, at(HOUR)), false);
        same(await store.audit.find({ email }, 10), [newEvent]);
        assert.equal(await store.rateLimits.highestSlot(expiredBucket, at(0)), 0);
        assert.equal(await store.rateLimits.slotTaken(expiredBucket, at(0), 1), false, "a purged slot is free");
        assert.equal(await store.rateLimits.highestSlot(liveBucket, at(0)), 1);
        same(await store.users.findById(user.id), user, "users are not purged");

        assert.equal(await store.purgeExpired(now), 0, "nothing left to purge at the same instant");
        assert.equal(await store.purgeExpired(after), 2 + 3, "the retained link and the kept tombstone at their retainUntil (with the claim, event and window due then)");
        assert.equal(await store.links.find(expiredButRetained.tokenHash, T0), undefined);
        assert.equal(await store.tombstones.find(keptTombstone.tokenHash, T0), undefined);
      });

      it("on an empty store purges nothing", async (store) => {
        assert.equal(await store.purgeExpired(at(HOUR)), 0);
      });
    });

    // ListLinks reads links and tombstones through the same query; each
    // case runs on both.
    const listers = {
      links: {
        add: (store: Store, links: LinkRecord[]) => store.links.insert(links),
        list: (store: Store, query: LinkListQuery, now = T0) => store.links.list(query, now),
        expected: (links: LinkRecord[]) => links as unknown[],
      },
      tombstones: {
        add: async (store: Store, links: LinkRecord[]) => void (await store.tombstones.record(links.map((l) => tombstoneOf(l, "revoked", at(5))))),
        list: (store: Store, query: LinkListQuery, now = T0) => store.tombstones.list(query, now),
        expected: (links: LinkRecord[]) => links.map((l) => tombstoneOf(l, "revoked", at(5))) as unknown[],
      },
    } as const;
    const hashesOf = (entries: readonly { tokenHash: string }[]) => entries.map((e) => e.tokenHash);

    for (const [kind, lister] of Object.entries(listers)) {
      describe(`listing ${kind} (ListLinks)`, () => {
        it("newest issue first, ties by hash descending; every field intact; pending and expired included, past retainUntil not", async (store) => {
          const userId = randomUUID();
          const tie = at(20);
          const links = [
            newLink({ userId, issuedAt: at(10), issuedBy: "a", redirectTo: "https://app.example.com/", type: "email_change", emailChange: { changeId: "c", address: "new" } }),
            newLink({ userId, issuedAt: tie, tokenHash: `b-${unique("h")}` }),
            newLink({ userId, issuedAt: tie, tokenHash: `a-${unique("h")}`, pending: true }),
            newLink({ userId, issuedAt: at(30), expiresAt: at(-1), retainUntil: at(HOUR) }),
            newLink({ userId, issuedAt: at(40), expiresAt: at(-2), retainUntil: T0 }), // forgotten at T0
          ];
          await lister.add(store, links);
          const listed = await lister.list(store, { userId, limit: 10 });
          const [one, b, a, expired, forgotten] = lister.expected(links);
          same(listed, [expired, b, a, one]);
          same(await lister.list(store, { userId, limit: 10 }, at(-10)), [forgotten, expired, b, a, one], "retained before T0");
          same(await lister.list(store, { userId, limit: 2 }), [expired, b], "at most limit");
          same(await lister.list(store, { userId, limit: 10 }, at(HOUR)), [b, a, one], "the expired one forgotten at its retainUntil");
        });

        it("filters: user, address, type, issuing caller, issue time range (from inclusive, before exclusive), all combined", async (store) => {
          const userId = randomUUID();
          const email = newEmail("listed");
          const mine = (overrides: Partial<LinkRecord>) => newLink({ userId, email, issuedBy: "svc-a", ...overrides });
          const links = [
            mine({ issuedAt: at(1) }),
            mine({ issuedAt: at(2), type: "recovery" }),
            mine({ issuedAt: at(3), issuedBy: "svc-b" }),
            mine({ issuedAt: at(4), email: newEmail("other-address") }),
            newLink({ issuedAt: at(5), email, issuedBy: "svc-a" }), // another user, same address
            mine({ issuedAt: at(6), issuedBy: undefined }),
          ];
          await lister.add(store, links);
          const listed = async (query: Omit<LinkListQuery, "limit">) =>
            hashesOf(await lister.list(store, { ...query, limit: 100 })).filter((h) => links.some((l) => l.tokenHash === h));
          const h = (...indexes: number[]) => indexes.map((i) => links[i]!.tokenHash);
          same(await listed({ userId }), h(5, 3, 2, 1, 0));
          same(await listed({ email }), h(5, 4, 2, 1, 0));
          same(await listed({ email, type: "recovery" }), h(1));
          same(await listed({ type: "recovery", userId }), h(1));
          same(await listed({ issuedBy: "svc-a", userId }), h(3, 1, 0));
          same(await listed({ issuedBy: "svc-b" }), h(2));
          same(await listed({ userId, issuedFrom: at(2), issuedBefore: at(4) }), h(2, 1));
          same(await listed({ userId, email, type: "magiclink", issuedBy: "svc-a", issuedFrom: at(1), issuedBefore: at(6) }), h(0));
          same(await listed({ userId: randomUUID() }), []);
          same(await listed({ email: newEmail("nobody") }), []);
          same(await listed({ email: email.toUpperCase() }), [], "addresses are compared as given (normalized upstream)");
        });

        it("pages cut after a position cover every entry once, in order, whatever is added meanwhile", async (store) => {
          const userId = randomUUID();
          const type: LinkType = "invite";
          // Five instants, three links each: ties are the point.
          const links = Array.from({ length: 15 }, (_, i) => newLink({ userId, type, issuedAt: at(Math.floor(i / 3)) }));
          await lister.add(store, links);
          const seen: string[] = [];
          let after: LinkListQuery["after"];
          for (let page = 0; page < 20; page++) {
            const listed = await lister.list(store, { userId, after, limit: 4 });
            seen.push(...hashesOf(listed));
            if (listed.length < 4) break;
            const last = listed.at(-1)!;
            after = { issuedAt: last.issuedAt, tokenHash: last.tokenHash };
            // Newer links, and links at the last one's instant, arrive meanwhile.
            await lister.add(store, [newLink({ userId, type, issuedAt: at(100 + page) }), newLink({ userId, type, issuedAt: last.issuedAt })]);
          }
          const original = new Set(hashesOf(links));
          const seenOriginal = seen.filter((h) => original.has(h));
          same(seenOriginal, hashesOf([...links].sort((x, y) => y.issuedAt.getTime() - x.issuedAt.getTime() || (x.tokenHash < y.tokenHash ? 1 : -1))), "every original entry once, in order");
          assert.equal(new Set(seen).size, seen.length, "nothing listed twice");
        });

        it("returned entries are copies", async (store) => {
          const link = newLink({ emailChange: { changeId: "x", address: "new" }, type: "email_change" });
          await lister.add(store, [link]);
          const [found] = (await lister.list(store, { userId: link.userId, limit: 1 })) as LinkRecord[];
          found!.issuedAt.setTime(0);
          (found!.emailChange as { changeId: string }).changeId = "tampered";
          same(await lister.list(store, { userId: link.userId, limit: 1 }), lister.expected([link]));
        });
      });
    }
  });
}
