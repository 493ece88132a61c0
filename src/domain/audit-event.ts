import type { LinkState } from "./link-preview.js";
import type { LinkType } from "./link-type.js";

// One line of the audit trail: a call, its caller, its subject and its
// outcome. It holds hashes and identities only, never a token, code,
// password or key.

export interface AuditEvent {
  readonly at: Date;
  /** The call's request id (also in its log lines and its x-request-id response header). */
  readonly requestId?: string | undefined;
  /** RPC method name, e.g. "GenerateLink". */
  readonly method: string;
  /** Service identity (SPIFFE ID, CN or key:…), "anonymous", or the identity a rejected credential claimed. */
  readonly caller: string;
  readonly clientAddress: string;
  readonly linkType?: LinkType | undefined;
  readonly userId?: string | undefined;
  readonly email?: string | undefined;
  readonly hashedTokens: readonly string[];
  /** "ok", or the error reason (link_invalid_or_expired, over_rate_limit, credentials_missing, ...). */
  readonly outcome: string;
  readonly durationMs: number;
  /**
   * Redemptions and previews: milliseconds from the link's issue to this call.
   * A redemption seconds after issue with no preview before it is the
   * signature of a mail scanner.
   */
  readonly linkAgeMs?: number | undefined;
  /** PreviewLink: the state answered. */
  readonly linkState?: LinkState | undefined;
  /** over_rate_limit: the rule that refused the call. */
  readonly rateLimitRule?: string | undefined;
  /**
   * How many identical calls this event stands for; absent means one. Repeated
   * refusals (same client address, caller, method, reason and rule, no
   * subject) are coalesced: the first is stored at once, the rest are counted
   * and stored as one summary event per window (audit/refusal-coalescing.ts).
   */
  readonly count?: number | undefined;
}

/** An event as stored: with the id its store gave it (domain/audit-event-id.ts). */
export type StoredAuditEvent = AuditEvent & { readonly id: string };
