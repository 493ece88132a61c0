import type { LinkType } from "./link-type.js";

// What the domain knows about the call it serves, and what it reports back
// for the audit trail.

export interface CallContext {
  /** Fires when the caller goes away or the call's deadline passes. */
  readonly signal?: AbortSignal | undefined;
  /** The caller's service identity, when it proved the service role. */
  readonly serviceIdentity?: string | undefined;
  /** The client's network address (after trusted proxies), for per-address limits. */
  readonly clientAddress?: string | undefined;
  /** Filled in as the call learns what it touches. */
  readonly facts?: CallFacts | undefined;
}

/** What a call touched: the audit event's subject. Never a secret. */
export interface CallFacts {
  linkType?: LinkType;
  userId?: string;
  /** Normalized address the call was about. */
  email?: string;
  /** SHA-256 hex of every link token issued, redeemed or presented. */
  hashedTokens: string[];
}

export function newCallFacts(): CallFacts {
  return { hashedTokens: [] };
}
