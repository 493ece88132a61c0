import type { AuditEvent } from "./audit-event.js";
import type { AuditLog } from "./audit-log.js";
import type { Call } from "./call.js";
import type { Clock } from "./clock.js";
import { toAuthlinkError } from "./errors.js";
import type { LinkState } from "./link-preview.js";
import type { LinkType } from "./link-type.js";

// What a call has learnt about what it touches, and the audit event that
// reports it. Every use case (LinkService, the admin use cases) fills a
// Subject as it goes and reports the outcome through one of these, so all
// audit events are built the same way. Never a secret.

export interface Subject {
  linkType?: LinkType;
  userId?: string;
  /** Normalized address the call was about. */
  email?: string;
  /** SHA-256 hex of every link token issued, redeemed, presented or managed. */
  hashedTokens: string[];
  /** Redemptions and previews: milliseconds from the link's issue. */
  linkAgeMs?: number;
  /** Previews: the state answered. */
  linkState?: LinkState;
}

export function newSubject(): Subject {
  return { hashedTokens: [] };
}

/** The audit event of a call: its outcome is "ok" without `error`, else the error's reason. */
export function auditEventOf(call: Call, subject: Subject, at: Date, error?: unknown): AuditEvent {
  const failure = error === undefined ? undefined : toAuthlinkError(error, call.signal);
  return {
    at,
    requestId: call.requestId,
    method: call.method,
    caller: call.callerName,
    clientAddress: call.clientAddress,
    linkType: subject.linkType,
    userId: subject.userId,
    email: subject.email,
    hashedTokens: [...subject.hashedTokens],
    outcome: failure?.reason ?? "ok",
    durationMs: Math.round(performance.now() - call.startedAt),
    linkAgeMs: failure ? undefined : subject.linkAgeMs,
    linkState: failure ? undefined : subject.linkState,
    rateLimitRule: failure?.rateLimitRule,
  };
}

/**
 * Runs an administrative use case and reports its outcome, success or
 * failure, with `recordOutcome` (which never throws). For use cases that hand
 * out no secret; one that does (a new link) must audit before the handout
 * (AuditLog.recordBeforeHandout), as LinkIssuing does.
 */
export async function audited<T>(
  deps: { readonly audit: AuditLog; readonly clock: Clock },
  call: Call,
  run: (subject: Subject) => Promise<T>,
): Promise<T> {
  const subject = newSubject();
  let result: T;
  try {
    result = await run(subject);
  } catch (error) {
    await deps.audit.recordOutcome(auditEventOf(call, subject, deps.clock.now(), error));
    throw error;
  }
  await deps.audit.recordOutcome(auditEventOf(call, subject, deps.clock.now()));
  return result;
}
