import type { Clock } from "../domain/clock.js";
import type { RateRule } from "../domain/rate-limiter.js";

// How many calls the boundary refuses per client address, counted in this
// process: a token bucket per address that holds `limit` refusals and refills
// at limit/window. Past it, a refused call is answered over_rate_limit at
// once, before any database work (its audit event is coalesced like every
// refusal, audit/refusal-coalescing.ts).
//
// Why per instance is enough: this limit guards no secret (service keys are
// long random strings that no number of guesses finds, and certificates are
// checked by TLS); it only keeps one address from making an instance spend
// its CPU and the database's writes on refusals. With N instances an address gets N times the limit,
// which bounds the load per instance all the same; the limits that guard
// secrets (code attempts, VerifyLink per address) are kept in the shared store.
// Keeping this one in the store would itself be the database work a flood
// must not cause.
//
// Memory: at most `maxAddresses` buckets, least recently used dropped first
// (an address that comes back after being dropped starts with a full bucket).

export type RefusalVerdict = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterMs: number };

export interface RefusalLimiter {
  /** Count one refusal for `address`; allowed: false when its budget is spent. */
  take(address: string): RefusalVerdict;
  /** Addresses currently tracked. */
  readonly size: number;
}

export interface RefusalLimiterOptions {
  /** Refusals per window; limit 0 turns the limiter off. */
  readonly rule: RateRule;
  readonly clock: Clock;
  /** Most addresses tracked at once (default 10,000). */
  readonly maxAddresses?: number;
}

/** Retry hints never promise less than this (like the store's limits). */
const MIN_RETRY_MS = 1_000;

export function createRefusalLimiter(options: RefusalLimiterOptions): RefusalLimiter {
  const { rule, clock } = options;
  const maxAddresses = options.maxAddresses ?? 10_000;
  /** Per address: tokens left and when they were counted. Map order = least recently used first. */
  const buckets = new Map<string, { tokens: number; at: number }>();
  const perMs = rule.limit / rule.windowMs;

  return {
    get size() {
      return buckets.size;
    },
    take(address) {
      if (rule.limit === 0) return { allowed: true };
      const now = clock.now().getTime();
      const bucket = buckets.get(address);
      let tokens = rule.limit;
      if (bucket) {
        tokens = Math.min(rule.limit, bucket.tokens + Math.max(0, now - bucket.at) * perMs);
        buckets.delete(address); // re-inserted below: most recently used last
      } else if (buckets.size >= maxAddresses) {
        const oldest = buckets.keys().next().value;
        if (oldest !== undefined) buckets.delete(oldest);
      }
      const allowed = tokens >= 1;
      buckets.set(address, { tokens: allowed ? tokens - 1 : tokens, at: now });
      return allowed ? { allowed } : { allowed, retryAfterMs: Math.max(MIN_RETRY_MS, Math.ceil((1 - tokens) / perMs)) };
    },
  };
}
