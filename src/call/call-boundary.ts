import type { DescMethod } from "@bufbuild/protobuf";
import type { AuditLog } from "../domain/audit-log.js";
import type { Call } from "../domain/call.js";
import type { Clock } from "../domain/clock.js";
import { AuthlinkError, toAuthlinkError } from "../domain/errors.js";
import { callerIdentity, resolveCaller, type CallerPolicy } from "../identity/caller.js";
import type { PeerCertificate } from "../identity/peer-certificate.js";
import type { Logger } from "../log/logger.js";
import { authorize } from "./access.js";
import type { AccessPolicies } from "./access-policy.js";
import type { RefusalLimiter } from "./refusal-limiter.js";
import { requestIdFrom } from "./request-id.js";
import { STATUS_CODES } from "./status-codes.js";

// The call boundary: the one place every call passes, whatever the transport
// (connect-node's three protocols, rpc/call-adapter.ts; the grpc-js listener,
// rpc/grpc-js-adapter.ts) and
// whatever its shape (unary or streaming). A thin adapter per transport hands
// in what the transport knows (TransportFacts) and gets back an OpenCall:
//
//   admit  who is calling (client certificate or service key), whether the
//          method's policy lets them, a request id, and the call's signal:
//          the client's own deadline or disconnect, capped by the server's
//          longest call. Refusals are counted per client address in
//          process (refusal-limiter.ts): past the limit a refused call is
//          answered over_rate_limit, before any database work;
//   end    once, when the call is over (for a stream: after its last message
//          or its error): the error classified as a domain error with a
//          reason (logged when unexpected), metrics told the real outcome,
//          the deadline timer released.
//
// Use cases receive the Call and report their own audit events; the boundary
// audits only the refusals it makes itself, and only for audited services
// (the audit trail coalesces repeated refusals: audit/refusal-coalescing.ts).

/** What a transport knows about one call before it runs. */
export interface TransportFacts {
  readonly method: DescMethod;
  /** "grpc", "grpc-web", "connect", ... (a metrics label). */
  readonly protocol: string;
  readonly certificate: PeerCertificate;
  readonly authorization: string | null;
  readonly clientAddress: string;
  /** The x-request-id the client sent, if any. */
  readonly requestIdHeader: string | null;
  /** Aborts when the client goes away or its own deadline passes. */
  readonly signal: AbortSignal;
}

export interface OpenCall {
  readonly call: Call;
  /** Set when the call may not run: answer with end(refused). */
  readonly refused: AuthlinkError | undefined;
  /** Ends the call (only the first end counts); returns the error to answer with, or undefined for success. */
  end(error?: unknown): AuthlinkError | undefined;
  /**
   * Ends the call with a status a foreign service chose itself (health's
   * NOT_FOUND for an unknown service): passed through as it is.
   */
  endWithStatus(codeName: string): void;
}

/** Told when a call starts; the returned function when it ends, with its status code name ("OK", "NOT_FOUND"). */
export type CallObserver = (method: string, protocol: string) => (code: string) => void;

export interface CallBoundaryOptions {
  readonly policies: AccessPolicies;
  readonly callers: CallerPolicy;
  /** The longest a unary or client-streaming call may run, whatever deadline the client asked for. */
  readonly maxCallDurationMs: number;
  /**
   * The longest a call with a streamed response may run (an audit watch, a
   * bulk generation): they are long by nature, so they get their own cap.
   * Default: maxCallDurationMs.
   */
  readonly maxStreamDurationMs?: number | undefined;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly observe?: CallObserver | undefined;
  /** Refusals per client address; without it refusals are not limited. */
  readonly refusalLimiter?: RefusalLimiter | undefined;
}

/** The rule name of the refusal limit (audit events, metrics). */
export const REFUSAL_LIMIT_RULE = "refusals-per-address";

export interface CallBoundary {
  admit(facts: TransportFacts): Promise<OpenCall>;
}

export function createCallBoundary(options: CallBoundaryOptions): CallBoundary {
  const { policies, callers, maxCallDurationMs, audit, clock, logger, observe, refusalLimiter } = options;
  const maxStreamDurationMs = options.maxStreamDurationMs ?? maxCallDurationMs;

  return {
    async admit(facts) {
      const { method } = facts;
      const fullName = `${method.parent.typeName}/${method.name}`;
      const observed = observe?.(method.name, facts.protocol);
      const caller = resolveCaller(facts.certificate, facts.authorization, callers);
      const streamsResponse = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
      const deadline = linkDeadline(facts.signal, streamsResponse ? maxStreamDurationMs : maxCallDurationMs);
      const call: Call = {
        method: method.name,
        requestId: requestIdFrom(facts.requestIdHeader),
        serviceIdentity: caller.kind === "service" ? caller.identity : undefined,
        callerName: callerIdentity(caller),
        clientAddress: facts.clientAddress,
        signal: deadline.signal,
        startedAt: performance.now(),
      };

      let ended = false;
      const finish = (codeName: string) => {
        if (ended) return false;
        ended = true;
        deadline.release();
        observed?.(codeName);
        return true;
      };
      const end = (error?: unknown): AuthlinkError | undefined => {
        const failure = error === undefined ? undefined : toAuthlinkError(error, deadline.signal);
        if (!finish(failure ? STATUS_CODES[failure.kind].name : "OK")) return failure;
        if (failure && (failure.kind === "internal" || failure.kind === "unavailable")) {
          logger.error(
            { requestId: call.requestId, method: fullName, reason: failure.reason, err: failure.cause },
            "call failed unexpectedly",
          );
        }
        return failure;
      };

      let refused = authorize(caller, policies.accessOf(method));
      const verdict = refused && refusalLimiter?.take(call.clientAddress);
      if (verdict && !verdict.allowed) {
        refused = new AuthlinkError("over_rate_limit", { retryAfterMs: verdict.retryAfterMs, rateLimitRule: REFUSAL_LIMIT_RULE });
      }
      if (refused && policies.isAudited(method)) {
        if (caller.kind === "rejected" && refused.reason === caller.reason) {
          // Within the refusal limit only, so a flood writes a bounded number of these lines.
          logger.info({ requestId: call.requestId, method: fullName, reason: caller.reason, detail: caller.detail }, "credential refused");
        }
        await audit.recordOutcome({
          at: clock.now(),
          requestId: call.requestId,
          method: call.method,
          caller: call.callerName,
          clientAddress: call.clientAddress,
          hashedTokens: [],
          outcome: refused.reason,
          durationMs: Math.round(performance.now() - call.startedAt),
          rateLimitRule: refused.rateLimitRule,
        });
      }
      return { call, refused, end, endWithStatus: (codeName) => void finish(codeName) };
    },
  };
}

/**
 * The call's signal: aborts when the transport's does (the client left, or
 * its deadline passed) or when the server's cap passes, whichever is first,
 * with a TimeoutError for a deadline and an AbortError for a departure. A
 * plain timer, cleared when the call ends, rather than AbortSignal.timeout,
 * which would keep every call's objects alive for the whole cap.
 */
function linkDeadline(transport: AbortSignal, capMs: number): { signal: AbortSignal; release(): void } {
  const controller = new AbortController();
  const onTransportAbort = () => controller.abort(asAbortReason(transport.reason));
  const timer = setTimeout(
    () => controller.abort(new DOMException("the call ran past the server's time limit", "TimeoutError")),
    capMs,
  );
  if (transport.aborted) onTransportAbort();
  else transport.addEventListener("abort", onTransportAbort, { once: true });
  return {
    signal: controller.signal,
    release() {
      clearTimeout(timer);
      transport.removeEventListener("abort", onTransportAbort);
    },
  };
}

/** A transport's abort reason as a DOMException the domain understands. */
function asAbortReason(reason: unknown): DOMException {
  const { name, code } = (reason ?? {}) as { name?: unknown; code?: unknown };
  // connect-node aborts with a ConnectError (code 4: deadline exceeded); others with a TimeoutError.
  const deadline = name === "TimeoutError" || (name === "ConnectError" && code === 4);
  return deadline
    ? new DOMException("the client's deadline passed", "TimeoutError")
    : new DOMException("the client went away", "AbortError");
}
