import { randomUUID } from "node:crypto";

// What a use case knows about the call it serves. The call boundary
// (src/call/) builds one per call, whatever the transport, after it has
// settled who is calling and capped the deadline; use cases read it and
// never write to it.

export interface Call {
  /** The RPC method, e.g. "GenerateLink" (the audit trail's `method`). */
  readonly method: string;
  /**
   * Ties the call's log lines, audit events and response header together.
   * A retry that repeats it is the same call (VerifyLink answers it again).
   */
  readonly requestId: string;
  /** The caller's service identity, when it proved the service role. */
  readonly serviceIdentity: string | undefined;
  /** A secret-free name of the caller for the audit trail (identity, "anonymous", or what a refused credential claimed). */
  readonly callerName: string;
  /** The client's network address (after trusted proxies), for per-address limits. */
  readonly clientAddress: string;
  /** Fires when the caller goes away or the call's deadline (capped by the server) passes. */
  readonly signal: AbortSignal;
  /** performance.now() when the call began. */
  readonly startedAt: number;
}

const NEVER = new AbortController().signal;

/**
 * A call made from inside the process (tests, tools): no caller identity, no
 * client address, no deadline, a request id of its own.
 */
export function internalCall(method: string, fields: Partial<Call> = {}): Call {
  return {
    method,
    requestId: `internal-${randomUUID()}`,
    serviceIdentity: undefined,
    callerName: "internal",
    clientAddress: "",
    signal: NEVER,
    startedAt: performance.now(),
    ...fields,
  };
}
