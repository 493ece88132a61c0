import type { AuditEvent } from "./audit-event.js";

/**
 * The audit trail as the use cases see it. Each use case reports the outcome
 * it knows, at the moment it knows it, with one of two guarantees:
 *
 * - before secrets leave (a generated link): `recordBeforeHandout` resolves
 *   only once the event is stored and throws when it cannot be, so the use
 *   case can withdraw what it issued and answer UNAVAILABLE;
 * - after an effect has committed (a redemption), and for every failure or
 *   refusal: `recordOutcome` never throws. An event that cannot be stored now
 *   is logged loudly, counted, and retried later, because answering an error
 *   for something that did happen would be a lie the caller cannot undo.
 */
export interface AuditLog {
  recordBeforeHandout(event: AuditEvent): Promise<void>;
  recordOutcome(event: AuditEvent): Promise<void>;
}
