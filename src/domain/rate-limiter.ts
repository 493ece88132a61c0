import { hash } from "node:crypto";
import { settleBy } from "./abort.js";
import type { OperationOptions, RateLimitStore } from "./store.js";
import type { Clock } from "./clock.js";
import { AuthlinkError } from "./errors.js";

// Rate limits shared by every instance, kept in the store.
//
// Each limit is a sliding window approximated from two fixed windows (the
// current one, and the previous one weighted by how much of it still falls
// inside the sliding window). Hits in a window are unique slots 1..budget in
// the store, so concurrent hits from any number of instances never exceed the
// limit: the store's unique key decides, never this process.
//
// Which slot to try is this process's guess, kept per bucket: concurrent hits
// are handed distinct slots synchronously, so a warm hit costs one insert by
// key and nothing waits for anything else. A slot someone else took (a
// duplicate key) moves the guess past it; a few such in a row, with no slot
// won in between, resynchronize the guess with a query. Per bucket and
// window, the first hit here reads slot 1 of both windows by key and queries
// the highest slot only of a window that has hits (one or two round trips,
// shared by the hits that arrive meanwhile). The previous window's count is
// then known for the window's rest. A failed insert's slot is tried again
// first, so failures leave no gap. Bucket keys are hashed: no address is
// stored here. docs/rate-limits.md has the costs and the limits of this.

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

/** Slots found taken by others in a row before the guess is resynchronized by a query. */
const RESYNC_AFTER = 4;

/** Buckets remembered; past this, windows that have ended are forgotten, then the oldest. */
const MAX_BUCKETS = 50_000;
const FORGET_DOWN_TO = Math.floor((MAX_BUCKETS * 3) / 4);

/** What this process knows of one bucket's current window. */
interface WindowState {
  readonly windowStart: number;
  readonly windowMs: number;
  /** The previous window's hits, once read. */
  previous: number | undefined;
  /** The first read of this window (shared by the hits that arrive meanwhile); undefined when there is none running. */
  loading: Promise<void> | undefined;
  /** The lowest slot neither handed out here nor known to be taken. */
  next: number;
  /**
   * Slots handed out whose insert failed or never ran, lowest first: handed
   * out again before `next`, so that no gap is left behind (an insert that
   * did land reads as taken, and the hit moves on).
   */
  unsure: number[];
  /** Slots found taken by others since this process last won one. */
  conflicts: number;
}

export class RateLimiter {
  readonly #store: RateLimitStore;
  readonly #clock: Clock;
  readonly #windows = new Map<string, WindowState>();

  constructor(store: RateLimitStore, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  /** Count one hit against `rule` for `key`, or throw over_rate_limit (with a retry delay). */
  /** How many buckets this process keeps state for (bounded; for tests). */
  get trackedBuckets(): number {
    return this.#windows.size;
  }

  async take(name: string, key: string, rule: RateRule, op: OperationOptions = {}): Promise<void> {
    if (rule.limit === 0) return;
    const bucket = `${name}:${hash("sha256", key, "base64url").slice(0, 32)}`;
    const now = this.#clock.now().getTime();
    const { windowMs } = rule;
    const start = Math.floor(now / windowMs) * windowMs;
    const state = this.#window(bucket, start, windowMs, now);
    const previous = state.previous ?? (await this.#load(bucket, state, op));
    const budget = rule.limit - Math.floor((previous * (start + windowMs - now)) / windowMs);
    const window = new Date(start);
    const expiresAt = new Date(start + 2 * windowMs);
    for (;;) {
      const slot = state.unsure[0] ?? state.next;
      if (slot > budget) {
        throw new AuthlinkError("over_rate_limit", {
          retryAfterMs: retryAfterMs(rule, now, start, previous, state.next - 1),
          rateLimitRule: name,
        });
      }
      if (slot === state.next) state.next += 1;
      else state.unsure.shift();
      let stored: boolean;
      try {
        stored = await this.#store.takeSlot(bucket, window, slot, expiresAt, op);
      } catch (error) {
        insertSorted(state.unsure, slot);
        throw error;
      }
      if (stored) {
        state.conflicts = 0;
        return;
      }
      // Another hit holds the slot (it counted). Conflicts in a row, with no
      // slot won in between, mean the guess is far behind (another instance
      // did many hits here): ask the store. Conflicts between wins are two
      // instances taking slots side by side; moving on is cheaper there.
      if (++state.conflicts >= RESYNC_AFTER) {
        state.conflicts = 0;
        const highest = await this.#store.highestSlot(bucket, window, op);
        state.next = Math.max(state.next, highest + 1);
      }
    }
  }

  /** This process's state of the bucket's window starting at `start` (new when the window is new here). */
  #window(bucket: string, start: number, windowMs: number, now: number): WindowState {
    const known = this.#windows.get(bucket);
    if (known && known.windowStart === start && known.windowMs === windowMs) return known;
    if (!known && this.#windows.size >= MAX_BUCKETS) this.#forget(now);
    const state: WindowState = { windowStart: start, windowMs, previous: undefined, loading: undefined, next: 1, unsure: [], conflicts: 0 };
    this.#windows.set(bucket, state);
    return state;
  }

  /**
   * Reads what the window's first hit here needs: the previous window's count
   * and where the current window stands. Hits that arrive meanwhile share the
   * read; each leaves when its own call ends.
   */
  async #load(bucket: string, state: WindowState, op: OperationOptions): Promise<number> {
    state.loading ??= this.#read(bucket, state).finally(() => {
      state.loading = undefined;
    });
    await (op.signal ? settleBy(state.loading, op.signal) : state.loading);
    return state.previous as number;
  }

  async #read(bucket: string, state: WindowState): Promise<void> {
    // No caller's signal: the read serves every hit waiting for it (the
    // store's own time limit bounds it).
    const previousWindow = new Date(state.windowStart - state.windowMs);
    const currentWindow = new Date(state.windowStart);
    const [previousUsed, currentUsed] = await Promise.all([
      this.#store.slotTaken(bucket, previousWindow, 1),
      this.#store.slotTaken(bucket, currentWindow, 1),
    ]);
    const [previous, current] = await Promise.all([
      previousUsed ? this.#store.highestSlot(bucket, previousWindow) : 0,
      currentUsed ? this.#store.highestSlot(bucket, currentWindow) : 0,
    ]);
    state.previous = previous;
    state.next = Math.max(state.next, current + 1);
  }

  /**
   * Drops the windows that have ended and, if that is not enough, the oldest,
   * down to three quarters of the cap: the walk over every window is then paid
   * once per quarter-cap of new buckets, not once per new bucket (each pair of
   * a bulk run brings a new address, hence a new bucket). A forgotten bucket
   * costs its next hit one read; the store keeps the count.
   */
  #forget(now: number): void {
    for (const [bucket, state] of this.#windows) {
      if (state.windowStart + state.windowMs <= now) this.#windows.delete(bucket);
    }
    for (const bucket of this.#windows.keys()) {
      if (this.#windows.size <= FORGET_DOWN_TO) break;
      this.#windows.delete(bucket);
    }
  }
}

function insertSorted(list: number[], value: number): void {
  let i = list.length;
  while (i > 0 && (list[i - 1] as number) > value) i--;
  list.splice(i, 0, value);
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
