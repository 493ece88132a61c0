import type { AuditEvent } from "../domain/audit-event.js";
import type { AuditAppend, AuditStore } from "../domain/store.js";

// Group commit of audit events: events of concurrent calls share one insert.
//
// An event that finds no insert in flight is written at once, alone: an idle
// server's call waits for nothing but its own insert. Events that arrive
// while an insert is in flight wait for it to settle, then go together in
// the next one (AuditStore.appendMany: one unordered insertMany). So the
// window is the in-flight insert itself: zero without load, one insert's
// round trip under load, and no timer. At most `maxBatch` events wait
// together: when that many are waiting, they go at once without waiting for
// the insert in flight.
//
// Each event's promise says what happened to that event: it resolves once
// the event is stored and rejects when it was not (the database refused that
// event, or the whole insert failed or could not tell which events it
// stored). No event is reported stored that the store did not report stored.
//
// Ids: the store gives each event its id when the insert is sent, in the
// order the events arrived, and a later insert is sent after an earlier one,
// so ids still sort in the order events were handed in.

export interface AuditGroupCommitOptions {
  /** Most events in one insert (default 100). */
  readonly maxBatch?: number;
}

export interface AuditGroupCommit {
  /** Resolves once the event is stored; rejects with why when it is not. */
  append(event: AuditEvent, expiresAt: Date): Promise<void>;
}

interface Waiting {
  readonly entry: AuditAppend;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

export const DEFAULT_MAX_AUDIT_BATCH = 100;

export function createAuditGroupCommit(store: Pick<AuditStore, "appendMany">, options: AuditGroupCommitOptions = {}): AuditGroupCommit {
  const maxBatch = Math.max(1, options.maxBatch ?? DEFAULT_MAX_AUDIT_BATCH);
  let waiting: Waiting[] = [];
  let inFlight = 0;

  async function send(): Promise<void> {
    const batch = waiting;
    waiting = [];
    inFlight += 1;
    try {
      const refused = new Map((await store.appendMany(batch.map((w) => w.entry))).map((f) => [f.index, f.error]));
      for (const [i, w] of batch.entries()) {
        const error = refused.get(i);
        if (error === undefined) w.resolve();
        else w.reject(error);
      }
    } catch (error) {
      for (const w of batch) w.reject(error);
    } finally {
      inFlight -= 1;
    }
    if (waiting.length > 0) void send();
  }

  return {
    append(event, expiresAt) {
      return new Promise<void>((resolve, reject) => {
        waiting.push({ entry: { event, expiresAt }, resolve, reject });
        if (inFlight === 0 || waiting.length >= maxBatch) void send();
      });
    },
  };
}
