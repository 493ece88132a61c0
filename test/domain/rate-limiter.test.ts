import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AuthlinkError } from "../../src/domain/errors.js";
import { RateLimiter, type RateRule } from "../../src/domain/rate-limiter.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import type { RateLimitStore, Store } from "../../src/domain/store.js";
import { ManualClock } from "../support/manual-clock.js";
import { openTestStore, useTestDatabase } from "../support/mongo.js";

// Limits shared through the store: exact under concurrency (also across
// instances), sliding between windows, with a usable retry delay.

const MINUTE = 60_000;

async function outcome(limiter: RateLimiter, key: string, rule: RateRule): Promise<"ok" | number> {
  try {
    await limiter.take("test", key, rule);
    return "ok";
  } catch (error) {
    assert.ok(error instanceof AuthlinkError && error.reason === "over_rate_limit", String(error));
    assert.ok(error.retryAfterMs !== undefined && error.retryAfterMs > 0);
    return error.retryAfterMs;
  }
}

function suite(name: string, openStore: () => Promise<Store>, inspect?: () => Promise<string>): void {
  describe(name, () => {
    let store: Store;
    before(async () => {
      store = await openStore();
    });
    after(() => store.close());
    let n = 0;
    const key = () => `key-${++n}-${Math.random()}`;

    test("allows the limit within a window and refuses the next hit with a retry delay", async () => {
      const clock = new ManualClock("2030-01-01T00:00:00.000Z");
      const limiter = new RateLimiter(store.rateLimits, clock);
      const rule = { limit: 3, windowMs: MINUTE };
      const k = key();
      for (let i = 0; i < 3; i++) assert.equal(await outcome(limiter, k, rule), "ok");
      const retry = await outcome(limiter, k, rule);
      assert.equal(typeof retry, "number");
      assert.ok((retry as number) <= 2 * MINUTE, `retry ${retry}`);
      assert.equal(await outcome(limiter, key(), rule), "ok", "other keys are independent");
    });

    test("slides: the previous window weighs in, less and less", async () => {
      const clock = new ManualClock("2030-01-01T00:00:00.000Z");
      const limiter = new RateLimiter(store.rateLimits, clock);
      const rule = { limit: 4, windowMs: MINUTE };
      const k = key();
      for (let i = 0; i < 4; i++) assert.equal(await outcome(limiter, k, rule), "ok");
      clock.advance(MINUTE); // start of the next window: the full previous window still counts
      assert.notEqual(await outcome(limiter, k, rule), "ok");
      clock.advance(MINUTE / 2); // halfway: 4 * 0.5 = 2 of the previous count, so 2 more fit
      assert.equal(await outcome(limiter, k, rule), "ok");
      assert.equal(await outcome(limiter, k, rule), "ok");
      assert.notEqual(await outcome(limiter, k, rule), "ok");
    });

    test("the retry delay is honest: waiting it out lets the next hit through", async () => {
      const clock = new ManualClock("2030-01-01T00:00:10.000Z");
      const limiter = new RateLimiter(store.rateLimits, clock);
      const rule = { limit: 2, windowMs: MINUTE };
      const k = key();
      await outcome(limiter, k, rule);
      await outcome(limiter, k, rule);
      const retry = await outcome(limiter, k, rule);
      assert.equal(typeof retry, "number");
      clock.advance(retry as number);
      assert.equal(await outcome(limiter, k, rule), "ok");
    });

    test("200 concurrent hits against a limit of 50: exactly 50 pass", async () => {
      const limiter = new RateLimiter(store.rateLimits, new ManualClock("2030-01-01T00:00:30.000Z"));
      const results = await Promise.all(Array.from({ length: 200 }, () => outcome(limiter, key(), { limit: 50, windowMs: MINUTE })));
      assert.ok(results.every((r) => r === "ok"), "distinct keys do not interfere");
      const rule = { limit: 50, windowMs: MINUTE };
      const k = key();
      const hits = await Promise.all(Array.from({ length: 200 }, () => outcome(limiter, k, rule)));
      assert.equal(hits.filter((r) => r === "ok").length, 50, JSON.stringify(hits));
      assert.ok(hits.every((r) => r === "ok" || (r as number) <= 2 * MINUTE));
    });

    test("200 concurrent hits from two instances (two processes) sharing the store: exactly the limit of 50 pass", async () => {
      const clock = new ManualClock("2030-01-01T00:00:30.000Z");
      const instances = [new RateLimiter(store.rateLimits, clock), new RateLimiter(store.rateLimits, clock)];
      const rule = { limit: 50, windowMs: MINUTE };
      const k = key();
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => outcome(instances[i % 2]!, k, rule)));
      assert.equal(results.filter((r) => r === "ok").length, 50, JSON.stringify(results));
      // Both now know the window is full, and a third, new one learns it too.
      const third = new RateLimiter(store.rateLimits, clock);
      for (const limiter of [...instances, third]) assert.notEqual(await outcome(limiter, k, rule), "ok");
    });

    test("two instances one after the other share one limit, the previous window included", async () => {
      const clock = new ManualClock("2030-01-01T00:00:00.000Z");
      const [a, b] = [new RateLimiter(store.rateLimits, clock), new RateLimiter(store.rateLimits, clock)];
      const rule = { limit: 4, windowMs: MINUTE };
      const k = key();
      assert.equal(await outcome(a, k, rule), "ok");
      assert.equal(await outcome(a, k, rule), "ok", "a is warm");
      assert.equal(await outcome(b, k, rule), "ok", "b starts cold, past a's slots");
      assert.equal(await outcome(a, k, rule), "ok", "a's guess is behind: it moves past b's slot");
      assert.notEqual(await outcome(b, k, rule), "ok");
      assert.notEqual(await outcome(a, k, rule), "ok");
      clock.advance(MINUTE + MINUTE / 2); // half of the previous window's 4 still counts
      assert.equal(await outcome(b, k, rule), "ok");
      assert.equal(await outcome(a, k, rule), "ok");
      assert.notEqual(await outcome(b, k, rule), "ok");
      assert.notEqual(await outcome(a, k, rule), "ok");
    });

    test("a limit of 0 is off", async () => {
      const limiter = new RateLimiter(store.rateLimits, new ManualClock());
      for (let i = 0; i < 20; i++) assert.equal(await outcome(limiter, "k", { limit: 0, windowMs: MINUTE }), "ok");
    });

    if (inspect) {
      test("keys are stored hashed", async () => {
        const limiter = new RateLimiter(store.rateLimits, new ManualClock());
        await limiter.take("test", "person@example.com", { limit: 5, windowMs: MINUTE });
        assert.doesNotMatch(await inspect(), /person@example\.com/);
      });
    }
  });
}

suite("embedded store", async () => createMemoryStore());
const database = await useTestDatabase("rate_limiter");
suite(
  "MongoDB store",
  () => openTestStore(database),
  async () => JSON.stringify(await database.client.db(database.name).collection("rate_limits").find().toArray()),
);

/**
 * A rate-limit store over the embedded one whose operations wait until the
 * test lets them run: `round()` runs every operation issued so far at once,
 * as one round trip. `hold` keeps matching operations back until released.
 */
function steppedStore() {
  const inner = createMemoryStore().rateLimits;
  const pending: (() => void)[] = [];
  const held: (() => void)[] = [];
  const ops: string[] = [];
  let hold: ((op: string, bucket: string) => boolean) | undefined;
  let fail: ((op: string) => boolean) | undefined;
  const wrap =
    <A extends unknown[], R>(name: string, operation: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> =>
      new Promise<R>((resolve, reject) => {
        ops.push(name);
        const go = () => {
          if (fail?.(name)) reject(new Error("store failed"));
          else operation(...args).then(resolve, reject);
        };
        if (hold?.(name, args[0] as string)) held.push(go);
        else pending.push(go);
      });
  const store: RateLimitStore = {
    takeSlot: wrap("takeSlot", inner.takeSlot.bind(inner)),
    slotTaken: wrap("slotTaken", inner.slotTaken.bind(inner)),
    highestSlot: wrap("highestSlot", inner.highestSlot.bind(inner)),
  };
  const tick = () => new Promise((resolve) => setImmediate(resolve));
  return {
    store,
    ops,
    held,
    setHold: (h: typeof hold) => (hold = h),
    setFail: (f: typeof fail) => (fail = f),
    /** Runs the operations issued so far (one round trip); false when there were none. */
    async round(): Promise<boolean> {
      await tick();
      const now = pending.splice(0);
      for (const go of now) go();
      await tick();
      return now.length > 0;
    },
    /** Round trips until `promise` settles. */
    async roundsUntil(promise: Promise<unknown>): Promise<number> {
      let settled = false;
      promise.then(
        () => (settled = true),
        () => (settled = true),
      );
      let rounds = 0;
      for (;;) {
        await tick();
        if (settled) return rounds;
        if (await this.round()) rounds++;
        else if (!settled) throw new Error("the take waits for nothing the test controls");
      }
    },
    /** `promise`, its store operations run round by round. */
    async drive<T>(promise: Promise<T>): Promise<T> {
      await this.roundsUntil(promise);
      return promise;
    },
  };
}

describe("no queue, one round trip", () => {
  const rule = { limit: 1_000, windowMs: MINUTE };
  const clock = () => new ManualClock("2030-01-01T00:00:30.000Z");

  test("a warm hit is one insert by key; a new bucket's first hit two round trips of point operations", async () => {
    const s = steppedStore();
    const limiter = new RateLimiter(s.store, clock());
    assert.equal(await s.roundsUntil(limiter.take("test", "k", rule)), 2);
    assert.deepEqual(s.ops, ["slotTaken", "slotTaken", "takeSlot"], "slot 1 of both windows, then the insert");
    for (let i = 0; i < 5; i++) {
      s.ops.length = 0;
      assert.equal(await s.roundsUntil(limiter.take("test", "k", rule)), 1);
      assert.deepEqual(s.ops, ["takeSlot"]);
    }
  });

  test("concurrent warm hits to one bucket go to the store together: one round trip for all", async () => {
    const s = steppedStore();
    const limiter = new RateLimiter(s.store, clock());
    await s.drive(limiter.take("test", "k", rule));
    s.ops.length = 0;
    const takes = Promise.all(Array.from({ length: 20 }, () => limiter.take("test", "k", rule)));
    assert.equal(await s.roundsUntil(takes), 1);
    assert.equal(s.ops.length, 20);
    assert.ok(s.ops.every((op) => op === "takeSlot"));
  });

  test("a hit whose insert hangs delays no other hit, to its bucket or another", async () => {
    const s = steppedStore();
    const limiter = new RateLimiter(s.store, clock());
    // Warm up both buckets.
    for (const k of ["a", "b"]) await s.drive(limiter.take("test", k, rule));
    let holdNext = true;
    s.setHold((op) => {
      if (op !== "takeSlot" || !holdNext) return false;
      holdNext = false;
      return true;
    });
    let slowDone = false;
    const slow = limiter.take("test", "a", rule).then(() => (slowDone = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(s.held.length, 1, "the first hit's insert is held");
    assert.equal(await s.roundsUntil(limiter.take("test", "a", rule)), 1, "the same bucket");
    assert.equal(await s.roundsUntil(limiter.take("test", "b", rule)), 1, "another bucket");
    assert.equal(slowDone, false, "the slow one is still waiting");
    s.held.shift()?.();
    await slow;
  });

  test("a new bucket whose first read hangs delays no other bucket; hits that wait for it leave when their call ends", async () => {
    const s = steppedStore();
    const limiter = new RateLimiter(s.store, clock());
    s.setHold((op, bucket) => op === "slotTaken" && bucket.startsWith("slow:"));
    const first = limiter.take("slow", "k", rule);
    const call = new AbortController();
    const second = limiter.take("slow", "k", rule, { signal: call.signal });
    assert.equal(await s.roundsUntil(limiter.take("fast", "k", rule)), 2);
    call.abort(new DOMException("the client's deadline passed", "TimeoutError"));
    await assert.rejects(second, { name: "TimeoutError" });
    assert.equal(s.held.length, 2, "one read of both windows, shared by both hits");
    s.setHold(undefined);
    for (const go of s.held.splice(0)) go();
    assert.equal(await s.roundsUntil(first), 1, "then the insert");
  });

  test("a failed insert leaves no gap: its slot is tried again by the next hit", async () => {
    const s = steppedStore();
    const limiter = new RateLimiter(s.store, clock());
    const tight = { limit: 2, windowMs: MINUTE };
    await s.drive(limiter.take("test", "k", tight));
    s.setFail((op) => op === "takeSlot");
    await assert.rejects(s.drive(limiter.take("test", "k", tight)), /store failed/);
    s.setFail(undefined);
    await s.drive(limiter.take("test", "k", tight)); // slot 2 again
    await assert.rejects(s.drive(limiter.take("test", "k", tight)), { reason: "over_rate_limit" });
  });

  test("a cold instance facing a busy bucket does not walk the slots one by one", async () => {
    const s = steppedStore();
    const busy = new RateLimiter(s.store, clock());
    const rule40 = { limit: 40, windowMs: MINUTE };
    await s.drive(Promise.all(Array.from({ length: 39 }, () => busy.take("test", "k", rule40))));
    s.ops.length = 0;
    const cold = new RateLimiter(s.store, clock());
    assert.equal(await s.roundsUntil(cold.take("test", "k", rule40)), 3, "slot 1 of both windows, the current window's highest slot, the insert");
    assert.deepEqual(s.ops, ["slotTaken", "slotTaken", "highestSlot", "takeSlot"]);
    s.ops.length = 0;
    // The first instance's guess (slot 40) is now behind by one: one conflict, one more insert.
    assert.equal(await s.roundsUntil(busy.take("test", "k", { limit: 50, windowMs: MINUTE })), 2);
    // Far behind: after four conflicts in a row, one query resynchronizes it.
    const other = new RateLimiter(s.store, clock());
    await s.drive(Promise.all(Array.from({ length: 8 }, () => other.take("test", "k", { limit: 50, windowMs: MINUTE }))));
    s.ops.length = 0;
    assert.equal(await s.roundsUntil(busy.take("test", "k", { limit: 50, windowMs: MINUTE })), 6);
    assert.deepEqual(s.ops, ["takeSlot", "takeSlot", "takeSlot", "takeSlot", "highestSlot", "takeSlot"]);
    s.ops.length = 0;
    assert.equal(await s.roundsUntil(busy.take("test", "k", { limit: 60, windowMs: MINUTE })), 1, "and it is warm again");
  });

  test("over the limit a warm instance refuses without a round trip, and stores nothing", async () => {
    const s = steppedStore();
    const limiter = new RateLimiter(s.store, clock());
    const tight = { limit: 2, windowMs: MINUTE };
    for (let i = 0; i < 2; i++) await s.drive(limiter.take("test", "k", tight));
    s.ops.length = 0;
    const refused = limiter.take("test", "k", tight);
    assert.equal(await s.roundsUntil(refused), 0);
    await assert.rejects(refused, (error: unknown) => error instanceof AuthlinkError && error.reason === "over_rate_limit" && (error.retryAfterMs ?? 0) >= 1_000);
    assert.deepEqual(s.ops, []);
  });
});

describe("state kept per bucket", () => {
  test("past 50,000 buckets a new one forgets a quarter at once, not one per new bucket", async () => {
    // A bulk run brings a new address, hence a new bucket, with every call;
    // forgetting one bucket per new one walked all 50,000 each time (the
    // bench saw CPU per pair triple once a run had passed 50,000 addresses).
    const store = createMemoryStore();
    const limiter = new RateLimiter(store.rateLimits, new ManualClock("2030-01-01T00:00:00.000Z"));
    const rule = { limit: 5, windowMs: 60 * MINUTE };
    for (let i = 0; i < 50_000; i++) await limiter.take("bulk", `address-${i}`, rule);
    assert.equal(limiter.trackedBuckets, 50_000);
    await limiter.take("bulk", "address-50000", rule);
    assert.equal(limiter.trackedBuckets, 37_501, "down to three quarters, plus the new one");
    for (let i = 50_001; i < 60_000; i++) await limiter.take("bulk", `address-${i}`, rule);
    assert.equal(limiter.trackedBuckets, 47_500, "no walk again until the cap is reached");
    await store.close();
  });
});
