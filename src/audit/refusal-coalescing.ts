import type { AuditEvent } from "../domain/audit-event.js";
import type { AuditLog } from "../domain/audit-log.js";
import type { Clock } from "../domain/clock.js";

// Repeated refusals, audited as one event with a count instead of one
// document per call, so that a flood of refused calls writes O(windows)
// documents, not O(calls).
//
// Which events: refusals that touch nobody — the outcome is one of
// COALESCED_OUTCOMES and the event names no user, address, link type or token
// (the boundary's refusals, and over_rate_limit before a request was even
// read, like VerifyLink's per-address limit). Everything else passes through
// untouched, one event per call.
//
// How: refusals are keyed by (client address, caller, method, outcome,
// rate-limit rule). The first of a key is stored at once, as it is. Further
// ones are only counted; at the end of each window every key with a count
// gets one summary event (`count` = the calls it stands for, `at` = the last
// of them, no request id). A key quiet for a whole window is forgotten, so
// its next refusal is again stored at once.
//
// Memory: at most `maxKeys` keys. When they are all taken, refusals of new
// keys are counted under an overflow key per (method, outcome, rule) with
// client address and caller "*" (a handful more keys at most), and stored as
// summaries only.

/** Outcomes that are refusals of a caller, not results of a use case. */
export const COALESCED_OUTCOMES: ReadonlySet<string> = new Set([
  "credentials_missing",
  "credentials_invalid",
  "not_service_role",
  "method_not_exposed",
  "over_rate_limit",
]);

export interface RefusalCoalescingOptions {
  readonly clock: Clock;
  /** How long refusals of one key are counted before their summary is stored (default 60 s). */
  readonly windowMs?: number;
  /** Most keys counted at once (default 10,000). */
  readonly maxKeys?: number;
}

export interface CoalescingAuditLog extends AuditLog {
  /** Keys being counted. */
  readonly keys: number;
  /** Store the summaries of everything counted so far now, instead of at the end of the window. */
  flush(): Promise<void>;
  /** Stops the window timer and stores what is counted. */
  close(): Promise<void>;
}

interface Counted {
  /** The first refusal of the key (stored at once, unless it overflowed). */
  readonly first: AuditEvent;
  /** Refusals since the last stored event. */
  count: number;
  /** When the last of them happened. */
  lastAt: Date;
}

const OVERFLOW = "*";

export function coalesceRefusals(audit: AuditLog, options: RefusalCoalescingOptions): CoalescingAuditLog {
  const windowMs = options.windowMs ?? 60_000;
  const maxKeys = options.maxKeys ?? 10_000;
  const counted = new Map<string, Counted>();

  const flush = async () => {
    const summaries: AuditEvent[] = [];
    for (const [key, entry] of counted) {
      if (entry.count === 0) {
        counted.delete(key); // quiet for a whole window
        continue;
      }
      summaries.push({
        ...entry.first,
        at: entry.lastAt,
        requestId: undefined,
        durationMs: 0,
        count: entry.count,
      });
      entry.count = 0;
    }
    // recordOutcome never throws: an event it cannot store is queued and logged.
    await Promise.all(summaries.map((summary) => audit.recordOutcome(summary)));
  };

  const timer = setInterval(() => void flush(), windowMs);
  timer.unref();

  return {
    get keys() {
      return counted.size;
    },
    recordBeforeHandout: (event) => audit.recordBeforeHandout(event),
    async recordOutcome(event) {
      if (!isCoalesced(event)) return audit.recordOutcome(event);
      const key = keyOf(event.clientAddress, event.caller, event);
      const entry = counted.get(key);
      if (entry) {
        entry.count += 1;
        entry.lastAt = event.at;
        return;
      }
      if (counted.size >= maxKeys) {
        const overflowKey = keyOf(OVERFLOW, OVERFLOW, event);
        const overflow = counted.get(overflowKey);
        if (overflow) {
          overflow.count += 1;
          overflow.lastAt = event.at;
        } else {
          counted.set(overflowKey, { first: { ...event, clientAddress: OVERFLOW, caller: OVERFLOW }, count: 1, lastAt: event.at });
        }
        return;
      }
      counted.set(key, { first: event, count: 0, lastAt: event.at });
      return audit.recordOutcome(event);
    },
    flush,
    async close() {
      clearInterval(timer);
      await flush();
    },
  };
}

/** A refusal that names no subject. */
function isCoalesced(event: AuditEvent): boolean {
  return (
    COALESCED_OUTCOMES.has(event.outcome) &&
    event.userId === undefined &&
    event.email === undefined &&
    event.linkType === undefined &&
    event.hashedTokens.length === 0 &&
    (event.count ?? 1) === 1
  );
}

function keyOf(clientAddress: string, caller: string, event: AuditEvent): string {
  return JSON.stringify([clientAddress, caller, event.method, event.outcome, event.rateLimitRule ?? ""]);
}
