import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { AuditEvent } from "../../src/domain/audit-event.js";
import type { LinkRecord } from "../../src/domain/link.js";
import type { User } from "../../src/domain/user.js";
import type { Store } from "../../src/store/store.js";

// One contract for every store: the embedded one and MongoDB run these same
// tests (memory-store.test.ts, mongo-store.test.ts), so they cannot drift
// apart. The concurrency cases are the point: they are what single use,
// attempt limits and rate limits rest on.

const T0 = new Date("2030-06-01T12:00:00.000Z");
const at = (ms: number) => new Date(T0.getTime() + ms);
const HOUR = 3_600_000;

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

let serial = 0;
const unique = (label: string) => `${label}-${++serial}-${randomUUID().slice(0, 8)}`;

export function newUser(overrides: Partial<User> = {}): User {
  return {
    id: randomUUID(),
    email: `${unique("user")}@example.com`,
    createdAt: T0,
    updatedAt: T0,
    userMetadata: {},
    ...overrides,
  };
}

export function newLink(overrides: Partial<LinkRecord> = {}): LinkRecord {
  return {
    tokenHash: unique("hash"),
    otpHash: unique("otp"),
    type: "magiclink",
    userId: randomUUID(),
    email: `${unique("to")}@example.com`,
    issueId: unique("issue"),
    issuedAt: T0,
    expiresAt: at(HOUR),
    ...overrides,
  };
}

export function runStoreContract(name: string, open: () => Promise<Store>): void {
  describe(`${name}: store contract`, () => {
    let store: Store;
    before(async () => {
      store = await open();
    });
    after(() => store.close());

    describe("users", () => {
      test("insert, then find by id and by email, with every field intact", async () => {
        const user = newUser({
          passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
          emailConfirmedAt: at(1),
          invitedAt: at(2),
          userMetadata: { plan: "pro", "dotted.key": 1, $dollar: true, nested: { list: [1, "two", null, { deep: "ü✓" }] } },
          emailChange: { id: "change-1", newEmail: "next@example.com", requireCurrent: true, requestedAt: at(3) },
        });
        assert.equal(await store.users.insert(user), "inserted");
        same(await store.users.findById(user.id), user);
        same(await store.users.findByEmail(user.email), user);
        assert.equal(await store.users.findById(randomUUID()), undefined);
        assert.equal(await store.users.findByEmail("nobody@example.com"), undefined);
      });

      test("an address belongs to one user: the second insert is email_taken and changes nothing", async () => {
        const first = newUser();
        await store.users.insert(first);
        assert.equal(await store.users.insert(newUser({ email: first.email, userMetadata: { other: true } })), "email_taken");
        same(await store.users.findByEmail(first.email), first);
      });

      test("20 concurrent inserts of one address: exactly one is inserted", async () => {
        const email = `${unique("race")}@example.com`;
        const results = await Promise.all(Array.from({ length: 20 }, () => store.users.insert(newUser({ email }))));
        assert.equal(results.filter((r) => r === "inserted").length, 1);
      });

      test("update applies the given fields only and returns the user after; a missing user is undefined", async () => {
        const user = newUser({ passwordHash: "old", userMetadata: { a: 1 } });
        await store.users.insert(user);
        const updated = await store.users.update(user.id, { updatedAt: at(10), userMetadata: { a: 2, b: 3 } });
        same(updated, { ...user, updatedAt: at(10), userMetadata: { a: 2, b: 3 } });
        same(await store.users.findById(user.id), updated);
        const change = { id: "c", newEmail: "n@example.com", requireCurrent: false, requestedAt: at(11) };
        const withChange = await store.users.update(user.id, { updatedAt: at(11), emailChange: change, invitedAt: at(11), passwordHash: "new" });
        same(withChange, { ...updated, updatedAt: at(11), emailChange: change, invitedAt: at(11), passwordHash: "new" });
        assert.equal(await store.users.update(randomUUID(), { updatedAt: at(12) }), undefined);
      });

      test("confirmEmail sets the time once and keeps the first", async () => {
        const user = newUser();
        await store.users.insert(user);
        same((await store.users.confirmEmail(user.id, at(5)))?.emailConfirmedAt, at(5));
        same((await store.users.confirmEmail(user.id, at(9)))?.emailConfirmedAt, at(5));
        assert.equal(await store.users.confirmEmail(randomUUID(), at(5)), undefined);
      });

      test("completeEmailChange moves the user, frees the old address and clears the change", async () => {
        const change = { id: "change-move", newEmail: `${unique("moved")}@example.com`, requireCurrent: true, requestedAt: at(1) };
        const user = newUser({ emailChange: change });
        await store.users.insert(user);
        const moved = await store.users.completeEmailChange(user.id, change, at(20));
        assert.ok(moved && moved !== "email_taken");
        assert.equal(moved.email, change.newEmail);
        same(moved.emailConfirmedAt, at(20));
        assert.equal(moved.emailChange, undefined);
        assert.equal(await store.users.findByEmail(user.email), undefined);
        assert.equal((await store.users.findByEmail(change.newEmail))?.id, user.id);
        assert.equal(await store.users.insert(newUser({ email: user.email })), "inserted", "the old address is free");
        assert.equal(await store.users.insert(newUser({ email: change.newEmail })), "email_taken");
      });

      test("completeEmailChange: email_taken when someone holds the address; undefined for a stale change", async () => {
        const holder = newUser();
        await store.users.insert(holder);
        const change = { id: "change-taken", newEmail: holder.email, requireCurrent: false, requestedAt: at(1) };
        const user = newUser({ emailChange: change });
        await store.users.insert(user);
        assert.equal(await store.users.completeEmailChange(user.id, change, at(2)), "email_taken");
        same(await store.users.findById(user.id), user, "nothing changed");
        assert.equal(await store.users.completeEmailChange(user.id, { id: "other", newEmail: "x@example.com" }, at(2)), undefined);
        same(await store.users.findById(user.id), user);
      });

      test("cancelEmailChange drops only the matching change", async () => {
        const change = { id: "change-cancel", newEmail: "c@example.com", requireCurrent: true, requestedAt: at(1) };
        const user = newUser({ emailChange: change });
        await store.users.insert(user);
        await store.users.cancelEmailChange(user.id, "stale", at(2));
        same((await store.users.findById(user.id))?.emailChange, change);
        await store.users.cancelEmailChange(user.id, change.id, at(3));
        const after = await store.users.findById(user.id);
        assert.equal(after?.emailChange, undefined);
        same(after?.updatedAt, at(3));
      });

      test("returned users are copies", async () => {
        const user = newUser({ userMetadata: { a: 1 } });
        await store.users.insert(user);
        const found = await store.users.findById(user.id);
        (found!.userMetadata as Record<string, unknown>).a = 999;
        same((await store.users.findById(user.id))?.userMetadata, { a: 1 });
      });
    });

    describe("links", () => {
      test("consume returns the link once, with every field intact", async () => {
        const link = newLink({ redirectTo: "https://app.example.com/x", emailChange: { changeId: "c1", address: "current" } });
        await store.links.insert([link]);
        same(await store.links.consume(link.tokenHash, link.type, T0), link);
        assert.equal(await store.links.consume(link.tokenHash, link.type, T0), undefined);
      });

      test("consume with another type refuses and does not consume", async () => {
        const link = newLink({ type: "invite" });
        await store.links.insert([link]);
        assert.equal(await store.links.consume(link.tokenHash, "magiclink", T0), undefined);
        assert.equal(await store.links.consume(link.tokenHash, "recovery", T0), undefined);
        same(await store.links.consume(link.tokenHash, "invite", T0), link);
      });

      test("expiry: live until the instant before expiresAt; a refused late attempt consumes nothing", async () => {
        const link = newLink({ expiresAt: at(1000) });
        await store.links.insert([link]);
        assert.equal(await store.links.consume(link.tokenHash, link.type, at(1000)), undefined);
        assert.equal(await store.links.consume(link.tokenHash, link.type, at(1001)), undefined);
        same(await store.links.consume(link.tokenHash, link.type, at(999)), link, "still there for an earlier now");
      });

      test("50 concurrent consumes of one link: exactly one gets it", async () => {
        const link = newLink();
        await store.links.insert([link]);
        const results = await Promise.all(Array.from({ length: 50 }, () => store.links.consume(link.tokenHash, link.type, T0)));
        assert.equal(results.filter((r) => r !== undefined).length, 1);
      });

      test("insert of two links at once; findLiveByEmail filters by address, type and liveness, up to a limit", async () => {
        const email = `${unique("otp")}@example.com`;
        const a = newLink({ email, expiresAt: at(HOUR) });
        const b = newLink({ email, expiresAt: at(2 * HOUR) });
        const expired = newLink({ email, expiresAt: at(10) });
        const otherType = newLink({ email, type: "recovery" });
        const otherEmail = newLink();
        await store.links.insert([a, b]);
        await store.links.insert([expired, otherType, otherEmail]);
        const live = await store.links.findLiveByEmail(email, "magiclink", at(10), 10);
        same(live.map((l) => l.tokenHash).sort(), [a.tokenHash, b.tokenHash].sort());
        assert.equal((await store.links.findLiveByEmail(email, "magiclink", at(10), 1)).length, 1);
        same((await store.links.findLiveByEmail(email, "magiclink", at(HOUR), 10)).map((l) => l.tokenHash), [b.tokenHash]);
      });

      test("delete and restore", async () => {
        const link = newLink();
        await store.links.insert([link]);
        await store.links.delete(link.tokenHash);
        assert.equal(await store.links.consume(link.tokenHash, link.type, T0), undefined);
        await store.links.restore(link);
        same(await store.links.consume(link.tokenHash, link.type, T0), link);
        await store.links.delete("no-such-hash"); // deleting nothing is fine
      });

      test("deleteOlderIssues removes strictly older issues of the same user and type only", async () => {
        const userId = randomUUID();
        const mine = newLink({ userId, issuedAt: at(100), issueId: "m" });
        const sameIssue = newLink({ userId, issuedAt: at(100), issueId: "m" });
        const olderTime = newLink({ userId, issuedAt: at(99), issueId: "z" });
        const sameTimeSmallerId = newLink({ userId, issuedAt: at(100), issueId: "a" });
        const sameTimeLargerId = newLink({ userId, issuedAt: at(100), issueId: "n" });
        const newer = newLink({ userId, issuedAt: at(101), issueId: "a" });
        const otherType = newLink({ userId, type: "invite", issuedAt: at(1) });
        const otherUser = newLink({ issuedAt: at(1) });
        await store.links.insert([mine, sameIssue, olderTime, sameTimeSmallerId, sameTimeLargerId, newer, otherType, otherUser]);
        assert.equal(await store.links.deleteOlderIssues(userId, "magiclink", at(100), "m"), 2);
        const alive = async (l: LinkRecord) => (await store.links.findLiveByEmail(l.email, l.type, T0, 10)).length === 1;
        same(
          await Promise.all([mine, sameIssue, olderTime, sameTimeSmallerId, sameTimeLargerId, newer, otherType, otherUser].map(alive)),
          [true, true, false, false, true, true, true, true],
        );
      });

      test("removeIfSuperseded removes an issue only when a newer one of the user and type exists", async () => {
        const userId = randomUUID();
        const older = newLink({ userId, issuedAt: at(5), issueId: "b" });
        const olderTwin = newLink({ userId, issuedAt: at(5), issueId: "b" });
        await store.links.insert([older, olderTwin]);
        assert.equal(await store.links.removeIfSuperseded(userId, "magiclink", at(5), "b"), false, "nothing newer yet");
        await store.links.insert([newLink({ userId, type: "invite", issuedAt: at(9) })]);
        assert.equal(await store.links.removeIfSuperseded(userId, "magiclink", at(5), "b"), false, "another type does not count");
        const newer = newLink({ userId, issuedAt: at(5), issueId: "c" });
        await store.links.insert([newer]);
        assert.equal(await store.links.removeIfSuperseded(userId, "magiclink", at(5), "b"), true);
        assert.equal(await store.links.consume(older.tokenHash, "magiclink", T0), undefined);
        assert.equal(await store.links.consume(olderTwin.tokenHash, "magiclink", T0), undefined);
        same(await store.links.consume(newer.tokenHash, "magiclink", T0), newer);
      });

      test("deleteAllForUser", async () => {
        const userId = randomUUID();
        const links = [newLink({ userId }), newLink({ userId, type: "recovery" }), newLink()];
        await store.links.insert(links);
        assert.equal(await store.links.deleteAllForUser(userId), 2);
        same(await store.links.consume(links[2]!.tokenHash, "magiclink", T0), links[2]);
      });

      test("returned links are copies", async () => {
        const link = newLink({ emailChange: { changeId: "x", address: "new" } });
        await store.links.insert([link]);
        const [found] = await store.links.findLiveByEmail(link.email, link.type, T0, 1);
        (found!.emailChange as { changeId: string }).changeId = "tampered";
        same(await store.links.consume(link.tokenHash, link.type, T0), link);
      });
    });

    describe("claims", () => {
      test("the first claim of a key wins, later ones lose", async () => {
        const key = unique("claim");
        assert.equal(await store.claims.claim(key, at(HOUR)), true);
        assert.equal(await store.claims.claim(key, at(HOUR)), false);
      });

      test("50 concurrent claims of one key: exactly one wins", async () => {
        const key = unique("claim-race");
        const results = await Promise.all(Array.from({ length: 50 }, () => store.claims.claim(key, at(HOUR))));
        assert.equal(results.filter(Boolean).length, 1);
      });

      test("claimed reports recorded, unexpired keys only", async () => {
        const [a, b, c] = [unique("a"), unique("b"), unique("c")];
        await store.claims.claim(a, at(HOUR));
        await store.claims.claim(b, at(10));
        same(await store.claims.claimed([a, b, c], T0), new Set([a, b]));
        same(await store.claims.claimed([a, b, c], at(10)), new Set([a]));
      });
    });

    describe("rate limits", () => {
      const window = at(0);
      test("hits are counted per bucket and window, up to the limit", async () => {
        const bucket = unique("bucket");
        assert.equal(await store.rateLimits.count(bucket, window), 0);
        assert.equal(await store.rateLimits.hit(bucket, window, 2, at(HOUR)), true);
        assert.equal(await store.rateLimits.hit(bucket, window, 2, at(HOUR)), true);
        assert.equal(await store.rateLimits.hit(bucket, window, 2, at(HOUR)), false);
        assert.equal(await store.rateLimits.count(bucket, window), 2);
        assert.equal(await store.rateLimits.hit(bucket, window, 3, at(HOUR)), true, "a higher limit lets one more in");
        assert.equal(await store.rateLimits.count(bucket, at(60_000)), 0, "another window");
        assert.equal(await store.rateLimits.count(unique("other"), window), 0, "another bucket");
      });

      test("40 concurrent hits with a limit of 7: exactly 7 recorded", async () => {
        const bucket = unique("bucket-race");
        const results = await Promise.all(Array.from({ length: 40 }, () => store.rateLimits.hit(bucket, window, 7, at(HOUR))));
        assert.equal(results.filter(Boolean).length, 7);
        assert.equal(await store.rateLimits.count(bucket, window), 7);
      });
    });

    describe("audit", () => {
      test("events are appended and found by address or user, newest first", async () => {
        const email = `${unique("audit")}@example.com`;
        const userId = randomUUID();
        const event = (n: number, outcome: string): AuditEvent => ({
          at: at(n),
          method: "VerifyLink",
          caller: "anonymous",
          clientAddress: "192.0.2.1",
          linkType: "magiclink",
          userId,
          email,
          hashedTokens: [`h${n}`],
          outcome,
          durationMs: n,
        });
        await store.audit.append(event(1, "ok"), at(HOUR));
        await store.audit.append(event(2, "link_invalid_or_expired"), at(HOUR));
        const bare: AuditEvent = { at: at(3), method: "GenerateLink", caller: "anonymous", clientAddress: "", hashedTokens: [], outcome: "credentials_missing", durationMs: 0 };
        await store.audit.append(bare, at(HOUR));
        same(await store.audit.find({ email }, 10), [event(2, "link_invalid_or_expired"), event(1, "ok")]);
        same(await store.audit.find({ userId }, 1), [event(2, "link_invalid_or_expired")]);
      });
    });

    describe("purgeExpired", () => {
      test("deletes what expired (expiresAt <= now) and nothing else", async () => {
        const base = at(100 * HOUR); // after everything other tests stored expires
        const expiredLink = newLink({ expiresAt: base });
        const liveLink = newLink({ expiresAt: new Date(base.getTime() + 1) });
        await store.links.insert([expiredLink, liveLink]);
        const [expiredKey, liveKey] = [unique("pk"), unique("pk")];
        await store.claims.claim(expiredKey, base);
        await store.claims.claim(liveKey, new Date(base.getTime() + 1));
        const bucket = unique("pb");
        await store.rateLimits.hit(bucket, base, 5, base);
        const purged = await store.purgeExpired(base);
        assert.ok(purged >= 3, `purged ${purged}`);
        assert.equal(await store.links.consume(expiredLink.tokenHash, "magiclink", T0), undefined, "expired link gone");
        same(await store.links.consume(liveLink.tokenHash, "magiclink", T0), liveLink);
        same(await store.claims.claimed([expiredKey, liveKey], T0), new Set([liveKey]));
        assert.equal(await store.claims.claim(expiredKey, at(200 * HOUR)), true, "an expired claim's key can be claimed again");
        assert.equal(await store.rateLimits.count(bucket, base), 0);
        assert.equal(await store.purgeExpired(base), 0, "nothing left to purge at the same instant");
      });
    });
  });
}
