import { createHash } from "node:crypto";
import { settleBy } from "./abort.js";
import type { OperationOptions, RateLimitStore } from "./store.js";
import type { Clock } from "./clock.js";
import { AuthlinkError } from "./errors.js";

// Rate limits shared by every instance, kept in the store.
//
// Each limit is a sliding window approximated from two fixed windows (the
// current one, and the previous one weighted by how much of it still falls
// inside the sliding window). Hits in a window are unique slots 1..limit in
// the store, so concurrent hits from any number of instances never exceed the
// limit. Hits to one bucket from this process are queued, so they do not
// race each other for a slot (each lost race costs a round trip); a caller
// whose call ends leaves the queue at once, and past MAX_QUEUED waiting hits a
// bucket's newcomers do not queue (the store keeps the count exact anyway).
// Bucket keys are hashed: no address is stored here.

export interface RateRule {
  /** Hits allowed per window; 0 turns the rule off. */
  readonly limit: number;
  readonly windowMs: number;
}

export interface RateLimitSettings {
  /** GenerateLink, per calling service identity. */
  readonly generatePerCaller: RateRule;
  /** GenerateLink, per target address and link type. */
  readonly generatePerEmail: RateRule;
  /** VerifyLink, per client address (service-role callers are exempt). */
  readonly verifyPerAddress: RateRule;
  /** VerifyLink by code, per address the code was sent to and client address. */
  readonly verifyCodePerEmailAndClient: RateRule;
  /** VerifyLink by code, per address the code was sent to: the ceiling over all client addresses. */
  readonly verifyCodePerEmail: RateRule;
}

/** Retry hints never promise less than this. */
const MIN_RETRY_MS = 1_000;

/** Most hits that wait for one bucket in this process. */
const MAX_QUEUED = 64;

interface BucketQueue {
  /** Settles when every hit queued so far has finished or left. Never rejects. */
  tail: Promise<void>;
  /** Hits queued or running. */
  length: number;
}

export class RateLimiter {
  readonly #store: RateLimitStore;
  readonly #clock: Clock;
  readonly #queues = new Map<string, BucketQueue>();

  constructor(store: RateLimitStore, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  /** Count one hit against `rule` for `key`, or throw over_rate_limit (with a retry delay). */
  async take(name: string, key: string, rule: RateRule, op: OperationOptions = {}): Promise<void> {
    if (rule.limit === 0) return;
    const bucket = `${name}:${createHash("sha256").update(key).digest("base64url").slice(0, 32)}`;
    await this.#serialized(bucket, op.signal, async () => {
      const now = this.#clock.now().getTime();
      const windowMs = rule.windowMs;
      const start = Math.floor(now / windowMs) * windowMs;
      const previous = await this.#store.count(bucket, new Date(start - windowMs), op);
      const previousWeight = (start + windowMs - now) / windowMs;
      const budget = rule.limit - Math.floor(previous * previousWeight);
      if (budget > 0 && (await this.#store.hit(bucket, new Date(start), budget, new Date(start + 2 * windowMs), op))) {
        return;
      }
      const current = await this.#store.count(bucket, new Date(start), op);
      throw new AuthlinkError("over_rate_limit", {
        retryAfterMs: retryAfterMs(rule, now, start, previous, current),
        rateLimitRule: name,
      });
    });
  }

  /**
   * Runs `task` after every earlier task for the same bucket has finished;
   * rejects with the signal's reason if it fires while waiting.
   */
  async #serialized<T>(bucket: string, signal: AbortSignal | undefined, task: () => Promise<T>): Promise<T> {
    let queue = this.#queues.get(bucket);
    if (!queue) {
      queue = { tail: Promise.resolve(), length: 0 };
      this.#queues.set(bucket, queue);
    }
    if (queue.length >= MAX_QUEUED) return task();
    const before = queue.tail;
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    // The next one waits for this one and for all before it, even when this
    // one leaves early.
    queue.tail = before.then(() => mine);
    queue.length += 1;
    try {
      await (signal ? settleBy(before, signal) : before);
      return await task();
    } finally {
      done();
      queue.length -= 1;
      if (queue.length === 0 && this.#queues.get(bucket) === queue) this.#queues.delete(bucket);
    }
  }
}

/**
 * When the next hit would be allowed: once the previous window's weight has
 * decayed enough, or, if the current window alone is full, once it has become
 * the previous window and decayed in turn.
 */
function retryAfterMs(rule: RateRule, now: number, start: number, previous: number, current: number): number {
  const end = start + rule.windowMs;
  let at: number;
  if (current < rule.limit && previous > 0) {
    // previous * (end - t) / window < limit - current
    at = end - ((rule.limit - current) * rule.windowMs) / previous;
  } else if (current >= rule.limit) {
    // in the next window: current * (end + window - t) / window < limit
    at = end + rule.windowMs - (rule.limit * rule.windowMs) / Math.max(current, 1);
  } else {
    at = end;
  }
  // The boundary itself is still refused (the weighted count must fall below
  // the limit), so the first allowed moment is just past it.
  return Math.max(MIN_RETRY_MS, Math.floor(at - now) + 1);
}
