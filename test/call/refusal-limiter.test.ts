import assert from "node:assert/strict";
import { test } from "node:test";
import { createRefusalLimiter } from "../../src/call/refusal-limiter.js";
import { ManualClock } from "../support/manual-clock.js";

// The in-process limit on refusals per client address: a token bucket that
// holds `limit` and refills at limit/window, with a bounded number of
// addresses.

test("an address gets `limit` refusals at once, then one per window/limit; others are untouched", () => {
  const clock = new ManualClock();
  const limiter = createRefusalLimiter({ rule: { limit: 3, windowMs: 3_000 }, clock });
  for (let i = 0; i < 3; i++) assert.deepEqual(limiter.take("192.0.2.1"), { allowed: true });
  const refused = limiter.take("192.0.2.1");
  assert.equal(refused.allowed, false);
  assert.equal(!refused.allowed && refused.retryAfterMs, 1_000);
  assert.deepEqual(limiter.take("192.0.2.2"), { allowed: true }, "another address has its own bucket");
  clock.advance(999);
  assert.equal(limiter.take("192.0.2.1").allowed, false);
  clock.advance(1);
  assert.equal(limiter.take("192.0.2.1").allowed, true, "one more per second");
  assert.equal(limiter.take("192.0.2.1").allowed, false);
  clock.advance(60_000);
  for (let i = 0; i < 3; i++) assert.equal(limiter.take("192.0.2.1").allowed, true, "the bucket refills up to the limit, no further");
  assert.equal(limiter.take("192.0.2.1").allowed, false);
});

test("retry hints are at least a second and say when the next refusal is allowed", () => {
  const clock = new ManualClock();
  const limiter = createRefusalLimiter({ rule: { limit: 1, windowMs: 60_000 }, clock });
  limiter.take("a");
  const refused = limiter.take("a");
  assert.equal(!refused.allowed && refused.retryAfterMs, 60_000);
  const fast = createRefusalLimiter({ rule: { limit: 100, windowMs: 1_000 }, clock });
  for (let i = 0; i < 100; i++) fast.take("a");
  const soon = fast.take("a");
  assert.equal(!soon.allowed && soon.retryAfterMs, 1_000);
});

test("limit 0 turns it off; at most maxAddresses buckets, least recently used dropped first", () => {
  const clock = new ManualClock();
  const off = createRefusalLimiter({ rule: { limit: 0, windowMs: 1_000 }, clock });
  for (let i = 0; i < 100; i++) assert.equal(off.take("a").allowed, true);
  assert.equal(off.size, 0);

  const limiter = createRefusalLimiter({ rule: { limit: 1, windowMs: 60_000 }, clock, maxAddresses: 3 });
  for (const address of ["a", "b", "c"]) limiter.take(address);
  limiter.take("a"); // "a" used again: "b" is now the least recently used
  limiter.take("d");
  assert.equal(limiter.size, 3);
  assert.equal(limiter.take("a").allowed, false, "a is still tracked");
  assert.equal(limiter.take("b").allowed, true, "b was dropped and starts afresh");
});
