import { randomBytes } from "node:crypto";

// The id of a stored audit event: when it was stored (milliseconds, as 12
// lower-case hex digits) and a 64-bit suffix, "0190f5c3a2b1-5d0e37a1c4b29f60".
// Each store takes ids from its own generator at insert: the suffix starts at
// a random value each millisecond and counts up within it, so ids are unique
// across instances and strictly increasing within one. Ids sort as strings in
// the order events were stored, which is what a watch polls by: every event
// stored at or after time T has an id above auditIdFloor(T), however old its
// `at` (an event the audit trail retried after an outage is stored late).
//
// Stored by one instance, ids follow its clock; instances' clocks differ a
// little, and an insert lands some time after its id was taken, so across
// instances an id is a storage time give or take that. The watch reads back
// over a window for that reason (domain/audit-watch.ts).

const TIME_DIGITS = 12;
const ID_PATTERN = /^([0-9a-f]{12})-[0-9a-f]{16}$/;

/**
 * Makes ids from `now` (milliseconds), each above the one before: within one
 * store, what is stored later has a higher id, even in the same millisecond
 * or when the clock steps back (the time part then waits for it). The random
 * part starts afresh each millisecond, so stores sharing a database do not
 * collide.
 */
export function createAuditIdGenerator(now: () => number): () => string {
  let lastTime = -1;
  let lastSuffix = 0n;
  return () => {
    const time = Math.max(Math.floor(now()), lastTime);
    // The top bit stays clear on a fresh start, so a millisecond has room for 2^63 increments.
    lastSuffix = time > lastTime ? randomBytes(8).readBigUInt64BE() >> 1n : lastSuffix + 1n;
    lastTime = time;
    return `${timePart(time)}-${lastSuffix.toString(16).padStart(16, "0")}`;
  };
}

/** Below every id of an event stored at or after `ms`, above every id stored before: an exclusive lower bound. */
export function auditIdFloor(ms: number): string {
  return `${timePart(ms)}-`;
}

/** When the event with this id was stored; undefined for an id not made here (an ObjectId of an event stored before ids existed). */
export function auditIdTime(id: string): number | undefined {
  const match = ID_PATTERN.exec(id);
  return match ? Number.parseInt(match[1] as string, 16) : undefined;
}

function timePart(ms: number): string {
  return Math.max(0, Math.floor(ms)).toString(16).padStart(TIME_DIGITS, "0");
}
