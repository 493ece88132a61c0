import type { AuditEvent } from "../domain/audit-event.js";
import type { AuditLog } from "../domain/audit-log.js";
import { AuthlinkError } from "../domain/errors.js";
import type { AuditAppendFailure, AuditStore } from "../domain/store.js";
import type { Logger } from "../log/logger.js";
import { createAuditGroupCommit, DEFAULT_MAX_AUDIT_BATCH } from "./audit-group-commit.js";

// The audit log behind the domain's AuditLog port: every event is written as
// one log line and stored with the configured retention. Events of concurrent
// calls share inserts (audit-group-commit.ts): a lone event is written at
// once; under load, those that arrive while an insert is in flight go
// together in the next, up to maxBatch; each call still learns whether its
// own event was stored.
//
// The failure policy (README, "Audit"):
// - recordBeforeHandout: the event must be stored before the call answers;
//   when it cannot be, it throws store_unavailable and the use case withdraws
//   what it issued.
// - recordOutcome: the effect has already happened (or the call failed), so
//   the answer must not change. An event that cannot be stored is logged at
//   error level, counted, and kept in a bounded in-process queue that is
//   retried on a timer, oldest first, up to maxBatch events per insert. When
//   the queue is full the oldest event is dropped (and counted): memory
//   stays bounded during a long outage, and the log line of every event is
//   still there.

/** What the metrics want to know about the audit trail. */
export interface AuditObserver {
  observeAuditEvent(event: AuditEvent): void;
  auditWriteFailed(): void;
  auditEventsDropped(count: number): void;
  setAuditQueueLength(length: number): void;
}

export interface AuditTrailOptions {
  readonly store: AuditStore;
  readonly logger: Logger;
  readonly retentionMs: number;
  readonly observer?: AuditObserver | undefined;
  /** How often queued events are retried (default 5 s). */
  readonly retryIntervalMs?: number;
  /** Most events kept for retry (default 10,000). */
  readonly maxQueued?: number;
  /** Most events in one insert, live or retried (default 100). */
  readonly maxBatch?: number;
}

export interface AuditTrail extends AuditLog {
  /** Events waiting to be stored. */
  readonly queued: number;
  /** Retry the queued events now; resolves when the queue is empty or a write failed. */
  flush(): Promise<void>;
  /** Stops the retry timer (queued events are lost; each was logged). */
  close(): void;
}

export function createAuditTrail(options: AuditTrailOptions): AuditTrail {
  const { store, logger, retentionMs, observer } = options;
  const maxQueued = options.maxQueued ?? 10_000;
  const maxBatch = Math.max(1, options.maxBatch ?? DEFAULT_MAX_AUDIT_BATCH);
  /** Events waiting for a retry, oldest first (each in a box of its own, so that it is told apart by identity). */
  const queue: { readonly event: AuditEvent }[] = [];
  let flushing: Promise<void> | undefined;

  const expiryOf = (event: AuditEvent) => new Date(event.at.getTime() + retentionMs);
  const commit = createAuditGroupCommit(store, { maxBatch });
  const write = (event: AuditEvent) => commit.append(event, expiryOf(event));
  const log = (event: AuditEvent) => {
    observer?.observeAuditEvent(event);
    logger.info({ requestId: event.requestId, audit: event }, "call");
  };
  const setQueueLength = () => observer?.setAuditQueueLength(queue.length);

  const keep = (event: AuditEvent, error: unknown) => {
    observer?.auditWriteFailed();
    logger.error(
      { err: error, requestId: event.requestId, method: event.method, outcome: event.outcome },
      "AUDIT EVENT NOT STORED: the call's outcome stands; the event is queued for retry",
    );
    queue.push({ event });
    if (queue.length > maxQueued) {
      queue.shift();
      observer?.auditEventsDropped(1);
      logger.error({ maxQueued }, "audit retry queue full: dropped the oldest event (its log line remains)");
    }
    setQueueLength();
  };

  const flushQueue = async () => {
    while (queue.length > 0) {
      const chunk = queue.slice(0, maxBatch);
      let failures: AuditAppendFailure[];
      try {
        failures = await store.appendMany(chunk.map(({ event }) => ({ event, expiresAt: expiryOf(event) })));
      } catch {
        return; // still down; the next tick tries again
      }
      const refused = new Set(failures.map((f) => chunk[f.index]));
      const stored = new Set(chunk.filter((queued) => !refused.has(queued)));
      // Meanwhile events may have been queued (at the end) or dropped (from
      // the front): take out exactly the stored ones.
      let kept = 0;
      for (const queued of queue) if (!stored.has(queued)) queue[kept++] = queued;
      queue.length = kept;
      setQueueLength();
      if (refused.size > 0) return; // the database refused some: they wait for the next tick, oldest first
    }
  };
  const flush = () => {
    flushing ??= flushQueue().finally(() => {
      flushing = undefined;
    });
    return flushing;
  };

  const timer = setInterval(() => {
    if (queue.length > 0) void flush();
  }, options.retryIntervalMs ?? 5_000);
  timer.unref();

  return {
    get queued() {
      return queue.length;
    },
    async recordBeforeHandout(event) {
      // Logged and counted only once stored: a refused generation is then
      // recorded as what it became (store_unavailable), not as issued.
      try {
        await write(event);
        log(event);
      } catch (error) {
        observer?.auditWriteFailed();
        logger.error({ err: error, requestId: event.requestId, method: event.method }, "audit event could not be stored; refusing the call");
        throw new AuthlinkError("store_unavailable", { cause: error });
      }
    },
    async recordOutcome(event) {
      log(event);
      try {
        await write(event);
      } catch (error) {
        keep(event, error);
      }
    },
    flush,
    close: () => clearInterval(timer),
  };
}
