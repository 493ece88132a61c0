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

    test("50 concurrent hits from two instances sharing the store: exactly the limit pass", async () => {
      const clock = new ManualClock("2030-01-01T00:00:30.000Z");
      const instances = [new RateLimiter(store.rateLimits, clock), new RateLimiter(store.rateLimits, clock)];
      const rule = { limit: 10, windowMs: MINUTE };
      const k = key();
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => outcome(instances[i % 2]!, k, rule)));
      assert.equal(results.filter((r) => r === "ok").length, 10, JSON.stringify(results));
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

describe("the per-bucket queue", () => {
  /** A rate-limit store whose hits hang until released. */
  function hangingStore() {
    const waiting: (() => void)[] = [];
    let hits = 0;
    const store: RateLimitStore = {
      count: async () => 0,
      hit: () =>
        new Promise<boolean>((resolve) => {
          hits += 1;
          waiting.push(() => resolve(true));
        }),
    };
    return { store, waiting, hits: () => hits };
  }
  const rule = { limit: 1_000, windowMs: MINUTE };

  test("a hit waiting behind a slow one leaves as soon as its call ends, and the queue goes on", async () => {
    const { store, waiting, hits } = hangingStore();
    const limiter = new RateLimiter(store, new ManualClock("2030-01-01T00:00:00.000Z"));
    const first = limiter.take("test", "k", rule);
    await new Promise((resolve) => setImmediate(resolve));
    const call = new AbortController();
    const second = limiter.take("test", "k", rule, { signal: call.signal });
    const third = limiter.take("test", "k", rule);
    call.abort(new DOMException("the client's deadline passed", "TimeoutError"));
    await assert.rejects(second, { name: "TimeoutError" });
    assert.equal(hits(), 1, "only the first is at the store");
    waiting.shift()?.();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(hits(), 2, "the third runs next; the second never reached the store");
    waiting.shift()?.();
    await third;
  });

  test("the queue is bounded: past its length, hits go to the store at once", async () => {
    const { store, waiting, hits } = hangingStore();
    const limiter = new RateLimiter(store, new ManualClock("2030-01-01T00:00:00.000Z"));
    const takes = Array.from({ length: 100 }, () => limiter.take("test", "k", rule));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(hits(), 1 + (100 - 64), "one running, 63 waiting, the other 36 not queued");
    while (hits() < 100 || waiting.length > 0) {
      waiting.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(takes);
  });
});
