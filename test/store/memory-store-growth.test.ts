import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { tombstoneOf } from "../../src/domain/link.js";
import { ExpiryQueue } from "../../src/store/expiry-queue.js";
import { createMemoryStore, type MemoryStore, type MemoryStoreSizes } from "../../src/store/memory-store.js";
import { fillEvent, fillForgottenAt, fillLink, fillStore, type Fill } from "./memory-store-fill.js";

// The embedded store as it fills up: every operation looks up the same few
// entries however many others are stored, the expiry sweep copes with any
// backlog, and what it sweeps leaves memory. No timing is asserted (the
// machine is shared): operations are counted, sizes and heap are measured.
// test/bench/memory-store-cost.ts measures the times.

const AT = new Date("2030-01-01T00:00:00Z");
const MINUTE = 60_000;

const EMPTY: MemoryStoreSizes = {
  users: 0,
  userEmails: 0,
  links: 0,
  linkUsers: 0,
  linkAddresses: 0,
  tombstones: 0,
  claims: 0,
  rateWindows: 0,
  auditEvents: 0,
  expiryQueue: 0,
};

describe("embedded store: expiry queue", () => {
  test("takes keys earliest first, only those due", () => {
    const queue = new ExpiryQueue();
    const times = Array.from({ length: 5_000 }, (_, i) => (i * 7_919) % 5_003);
    times.forEach((time, i) => queue.add(time, `k${i}`));
    const taken: number[] = [];
    for (let key = queue.takeDue(2_500); key !== undefined; key = queue.takeDue(2_500)) {
      taken.push(times[Number(key.slice(1))] as number);
    }
    assert.deepEqual(taken, times.filter((t) => t <= 2_500).sort((a, b) => a - b));
    assert.equal(queue.size, times.filter((t) => t > 2_500).length);
    while (queue.takeDue(Infinity) !== undefined);
    assert.equal(queue.size, 0);
    assert.equal(queue.takeDue(Infinity), undefined);
  });
});

describe("embedded store: expiry sweep", () => {
  test("300k expired links and 300k audit events: swept without error, nothing left behind", async () => {
    const fill: Fill = { count: 300_000, at: AT, lifetimeMs: MINUTE, prefix: "sweep" };
    const store = createMemoryStore({ maxAuditEvents: fill.count });
    await fillStore(store, fill);
    const full = store.sizes();
    assert.equal(full.links, 150_000);
    assert.equal(full.tombstones, 150_000);
    assert.equal(full.auditEvents, 300_000);

    // Nothing is forgotten before its retention.
    assert.equal(await store.purgeExpired(new Date(AT.getTime() + fill.lifetimeMs - 1)), 0);
    // The links have expired but are kept for PreviewLink; their codes' claims and windows go.
    await store.purgeExpired(new Date(AT.getTime() + fill.lifetimeMs));
    assert.equal(store.sizes().links, 150_000);
    assert.equal(store.sizes().tombstones, 150_000);
    assert.equal(store.sizes().rateWindows, 0);

    const purged = await store.purgeExpired(fillForgottenAt(fill));
    assert.equal(purged, 150_000 + 150_000 + 150_000); // links, tombstones, finished claims
    assert.deepEqual(store.sizes(), EMPTY);
  });

  test("a link that went early leaves only its queue entry, and that goes when it falls due", async () => {
    const store = createMemoryStore();
    const fill: Fill = { count: 1, at: AT, lifetimeMs: MINUTE, prefix: "early" };
    const link = fillLink(fill, 0);
    await store.links.insert([link]);
    await store.tombstones.record([tombstoneOf(link, "replaced", AT)]);
    assert.equal(await store.links.delete(link.tokenHash), true);
    assert.deepEqual(store.sizes(), { ...EMPTY, tombstones: 1, expiryQueue: 2 });
    assert.equal(await store.purgeExpired(fillForgottenAt(fill)), 1); // the tombstone
    assert.deepEqual(store.sizes(), EMPTY);
  });

  test("a claim recorded again after its sweep is kept until its new expiry", async () => {
    const store = createMemoryStore();
    await store.claims.claim("key", new Date(AT.getTime() + 1));
    assert.equal(await store.purgeExpired(new Date(AT.getTime() + 1)), 1);
    assert.equal(await store.claims.claim("key", new Date(AT.getTime() + 10)), true);
    assert.equal(await store.purgeExpired(new Date(AT.getTime() + 9)), 0);
    assert.deepEqual(await store.claims.claimed(["key"], new Date(AT.getTime() + 9)), new Set(["key"]));
    assert.equal(await store.purgeExpired(new Date(AT.getTime() + 10)), 1);
    assert.deepEqual(store.sizes(), EMPTY);
  });

  test("200k links issued, expired and swept: the heap returns to where it started", async () => {
    // In a child process with --expose-gc, so that the heap is measured after a full collection.
    const child = spawn(process.execPath, ["--expose-gc", fileURLToPath(new URL("./memory-store-heap-child.js", import.meta.url)), "200000"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    const code = await new Promise((resolve) => child.on("exit", resolve));
    assert.equal(code, 0);
    const { empty, filled, swept, sizes } = JSON.parse(output) as { empty: number; filled: number; swept: number; sizes: MemoryStoreSizes };
    assert.deepEqual(sizes, EMPTY);
    const MiB = 2 ** 20;
    assert.ok(filled - empty > 100 * MiB, `filled: ${((filled - empty) / MiB).toFixed(1)} MiB over empty (the measure means something)`);
    assert.ok(swept - empty < 16 * MiB, `after the sweep: ${((swept - empty) / MiB).toFixed(1)} MiB over empty`);
  });
});

/** A Map that counts what is done to it: lookups and writes, and every entry an iteration visits. */
class CountingMap<K, V> extends Map<K, V> {
  static lookups = 0;
  static visited = 0;

  override get(key: K) {
    CountingMap.lookups++;
    return super.get(key);
  }
  override has(key: K) {
    CountingMap.lookups++;
    return super.has(key);
  }
  override set(key: K, value: V) {
    CountingMap.lookups++;
    return super.set(key, value);
  }
  override delete(key: K) {
    CountingMap.lookups++;
    return super.delete(key);
  }
  override *entries(): MapIterator<[K, V]> {
    for (const entry of super.entries()) {
      CountingMap.visited++;
      yield entry;
    }
  }
  override *keys(): MapIterator<K> {
    for (const [key] of this.entries()) yield key;
  }
  override *values(): MapIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }
  override [Symbol.iterator]() {
    return this.entries();
  }
  override forEach(callback: (value: V, key: K, map: Map<K, V>) => void, thisArg?: unknown) {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this);
  }
}

describe("embedded store: point operations", () => {
  /**
   * One person's whole round: a user, a link issued, found every way, its
   * code tried, redeemed, limited, audited, swept. Returns how many map
   * lookups and iteration steps it took, on a store that holds `others`
   * users, links (half redeemed) and what traffic leaves beside them.
   */
  async function countRound(others: number) {
    const store: MemoryStore = createMemoryStore({ newMap: <K, V>() => new CountingMap<K, V>() });
    for (let i = 0; i < others; i++) {
      await store.users.insert({ id: `other-${i}`, email: `other-${i}@example.com`, createdAt: AT, updatedAt: AT, userMetadata: {} });
    }
    // Their links live for an hour; this round's for a minute.
    await fillStore(store, { count: others, at: AT, lifetimeMs: 60 * MINUTE, prefix: "other" });

    CountingMap.lookups = 0;
    CountingMap.visited = 0;
    const fill: Fill = { count: 2, at: AT, lifetimeMs: MINUTE, prefix: "round" };
    const [link, other] = [fillLink(fill, 0), fillLink(fill, 1)];
    const user = { id: link.userId, email: link.email, createdAt: AT, updatedAt: AT, userMetadata: {} };
    assert.equal(await store.users.insert(user), "inserted");
    assert.ok(await store.users.findByEmail(user.email));
    await store.users.update(user.id, { updatedAt: AT, userMetadata: { a: 1 } });
    await store.links.insert([link, { ...other, userId: user.id, email: user.email, type: link.type }]);
    await store.links.markIssued([link.tokenHash, other.tokenHash]);
    assert.equal((await store.links.findByUser(user.id, link.type)).length, 2);
    assert.equal((await store.links.findByUser(user.id, undefined)).length, 2);
    assert.equal((await store.links.findLiveByEmail(user.email, link.type, AT, 5)).length, 2);
    assert.equal(await store.claims.claim(`otp:${link.tokenHash}:1`, link.expiresAt), true);
    assert.ok(await store.links.find(link.tokenHash, AT));
    assert.equal((await store.tombstones.record([tombstoneOf(link, "used", AT)])).length, 1);
    assert.equal(await store.claims.hold(`finished:${link.tokenHash}`, "request", link.retainUntil), "request");
    assert.equal(await store.claims.holderOf(`finished:${link.tokenHash}`, AT), "request");
    assert.equal((await store.claims.claimed([`otp:${link.tokenHash}:1`], AT)).size, 1);
    assert.equal(await store.links.delete(link.tokenHash), true);
    assert.ok(await store.tombstones.find(link.tokenHash, AT));
    assert.equal(await store.users.confirmEmail(user.id, AT).then((u) => u?.id), user.id);
    assert.equal(await store.rateLimits.takeSlot("round-bucket", AT, 1, link.expiresAt), true);
    assert.equal(await store.rateLimits.slotTaken("round-bucket", AT, 1), true);
    assert.equal(await store.rateLimits.highestSlot("round-bucket", AT), 1);
    await store.audit.append(fillEvent(fill, 0), link.expiresAt);
    // The sweep when this round's entries are due and nobody else's are.
    const purged = await store.purgeExpired(fillForgottenAt(fill));
    // The other link, the tombstone, two claims, the window. (The audit event
    // waits behind older ones with a longer retention: it is the oldest
    // events that go first.)
    assert.equal(purged, 1 + 1 + 2 + 1);
    return { lookups: CountingMap.lookups, visited: CountingMap.visited };
  }

  test("a round costs the same map work beside 100 or 20,000 of everything else", async () => {
    const small = await countRound(100);
    const large = await countRound(20_000);
    // Equal counts: nothing in the round depends on how much else is stored
    // (a walk over all links, users, claims or windows would show here).
    assert.deepEqual(large, small);
    assert.equal(small.visited, 0);
  });

  test("the counting map sees a scan", async () => {
    const map = new CountingMap<string, number>();
    for (let i = 0; i < 10; i++) map.set(`k${i}`, i);
    CountingMap.visited = 0;
    assert.equal([...map.values()].filter((v) => v > 4).length, 5);
    map.forEach(() => undefined);
    assert.equal(CountingMap.visited, 20);
  });
});
