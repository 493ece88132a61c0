import type { LinkType } from "./link-type.js";

// One line of the audit trail: every call, its caller, its subject and its
// outcome. It holds hashes and identities only, never a token, code,
// password or key.

export interface AuditEvent {
  readonly at: Date;
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
}
