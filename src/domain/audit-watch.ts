import type { StoredAuditEvent } from "./audit-event.js";
import { auditIdFloor, auditIdTime } from "./audit-event-id.js";
import { StoreUnavailableError, type AuditFilter, type AuditStore } from "./store.js";

// Following the audit trail as it is stored, by any instance sharing the
// database: the store is polled by event id (ids sort by storage time,
// audit-event-id.ts). Polling works on every store and every MongoDB-
// compatible server (FerretDB 1.x has no change streams).
//
// Why a look-back: an event's id is taken just before its insert, from the
// clock of the instance that stores it. So an event can become visible after
// one with a higher id — a slower insert, or another instance whose clock is
// a little behind. A poll that only asked for "above the highest id seen"
// would miss it. Each poll therefore reads again from `lookBackMs` before
// the time it started (on this instance's clock) and skips the ids it has
// already sent; it remembers sent ids only for that window, so memory stays
// bounded by the events stored in one window. An event that shows up later
// than `lookBackMs` after its id was taken (a clock further behind, an insert
// slower than that) would be missed: the window must exceed the clock skew
// between instances plus the longest insert (AUTHLINK_DB_TIMEOUT).
//
// An event the audit trail retries after an outage gets its id when it is
// finally stored, so the watch shows it then (with its original `at`).
//
// While the database is away, polls fail and the stream waits; the next poll
// that succeeds resumes where the last one stopped, so nothing is lost.
// Polling stops as soon as the signal fires: the pause between polls and a
// read in flight both end with it, and no timer is left behind.

export interface AuditWatchOptions {
  readonly store: Pick<AuditStore, "storedAfter">;
  /** Pause between polls. */
  readonly pollIntervalMs: number;
  /** How far back each poll reads again (see above). */
  readonly lookBackMs: number;
  /** This instance's clock, as stores take ids from it (default Date.now). */
  readonly now?: () => number;
  /** Events read per round trip (default 500). */
  readonly batchSize?: number;
}

export interface AuditWatchStart {
  readonly filter: AuditFilter;
  /** Replay events stored at or after this time first; undefined: only events stored from now on. */
  readonly since: Date | undefined;
  /** Ends the watch (the call's signal). */
  readonly signal: AbortSignal;
}

/**
 * Starts a watch. Without `since` it first reads what is already stored
 * within the look-back window (without sending it), so that only events
 * stored from now on are sent: that read is done when this resolves, and a
 * store that cannot be reached rejects it. The returned events come oldest
 * stored first, each once, until the signal fires (then the iteration throws
 * the signal's reason).
 */
export async function startAuditWatch(options: AuditWatchOptions, start: AuditWatchStart): Promise<AsyncIterable<StoredAuditEvent>> {
  const { store, pollIntervalMs, lookBackMs } = options;
  const { filter, since, signal } = start;
  const now = options.now ?? Date.now;
  const batchSize = options.batchSize ?? 500;
  const oldest = since?.getTime() ?? -Infinity;
  /** Where the next poll starts reading: an id, or the floor of a time. */
  let resumeAfter = auditIdFloor(since?.getTime() ?? now() - lookBackMs);
  /** Ids sent (or, before the first poll, already stored) that the next poll may read again, with their time. */
  const sent = new Map<string, number>();

  /** One poll: every event stored after resumeAfter, those not sent yet passed to the consumer (when `send`). */
  async function* poll(send: boolean): AsyncGenerator<StoredAuditEvent> {
    const floorMs = Math.max(oldest, now() - lookBackMs);
    let afterId = resumeAfter;
    try {
      for (;;) {
        const batch = await store.storedAfter(filter, afterId, batchSize, { signal });
        for (const event of batch) {
          afterId = event.id;
          if (sent.has(event.id)) continue;
          const time = auditIdTime(event.id) ?? -Infinity;
          if (time >= floorMs) sent.set(event.id, time);
          if (send) yield event;
        }
        if (batch.length < batchSize) break;
      }
    } catch (error) {
      // Cut short (the database went away): what was read is not read again,
      // unless it lies inside the next window anyway (and is then in `sent`).
      const floor = auditIdFloor(floorMs);
      resumeAfter = afterId < floor ? afterId : floor;
      throw error;
    }
    resumeAfter = auditIdFloor(floorMs);
    for (const [id, time] of sent) if (time < floorMs) sent.delete(id);
  }

  if (since === undefined) {
    for await (const _ of poll(false)); // what is already stored is not sent
  }

  return {
    async *[Symbol.asyncIterator]() {
      try {
        for (let first = true; ; first = false) {
          if (!first || since === undefined) await pause(pollIntervalMs, signal);
          try {
            yield* poll(true);
          } catch (error) {
            // The database is away: the next poll tries again from where this one stopped.
            if (signal.aborted || !(error instanceof StoreUnavailableError)) throw error;
          }
        }
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        throw error;
      }
    },
  };
}

/** Resolves after `ms`; rejects with the signal's reason as soon as it fires (and clears the timer). */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
