import {
  Code,
  ConnectError,
  createContextKey,
  type HandlerContext,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
} from "@connectrpc/connect";
import type { CallBoundary, OpenCall } from "../call/call-boundary.js";
import { REQUEST_ID_HEADER } from "../call/request-id.js";
import { settleBy } from "../domain/abort.js";
import { callKey, peerKey } from "./context-values.js";
import { toConnectError } from "./error-details.js";
import { classifyRequestError, type ProtocolRefusalKind } from "./protocol-errors.js";

/**
 * connect-node's adapter of the call boundary, attached to each service:
 * `router.service(desc, impl, adapter)`. Two parts:
 *
 * - the request gate runs once the request headers are in and before the
 *   body is read: it admits the call (caller, access, refusal limit, request
 *   id, deadline), so a refused call is answered without its body ever being
 *   read, decompressed or parsed;
 * - the interceptor runs once the request message is decoded: it puts the
 *   admitted Call where handlers find it and ends the call when it is really
 *   over — for a unary call when the handler returns, for a streaming
 *   response after its last message or its error, so an error thrown
 *   mid-stream keeps its reason and metrics see the real outcome.
 *
 * Between the two, connect-node reads and decodes the request. What fails
 * there (undecodable, oversize, broken framing) never reaches an interceptor:
 * connect-node aborts the call's context with the error and then answers with
 * that same error object. The gate listens for that abort, classifies the
 * error (protocol-errors.ts), ends the call with the classified error and
 * rewrites the error in place, so that the caller gets INVALID_ARGUMENT with
 * a reason instead of INTERNAL with the parser's text. The protocol tests
 * (test/e2e/malformed.test.ts) pin this down for every protocol.
 *
 * Every answer, error or not, carries the request id.
 */
export interface CallAdapter {
  readonly requestGate: (context: HandlerContext) => Promise<void>;
  readonly interceptors: Interceptor[];
}

export interface CallAdapterOptions {
  /** Told of each request refused while it was read (undecodable, oversize, ...). */
  readonly onProtocolRefusal?: ((kind: ProtocolRefusalKind) => void) | undefined;
}

/** The admitted call, from the gate to the interceptor. */
interface Admitted {
  readonly open: OpenCall;
  /** Set once the interceptor (or a refusal) owns the call's end. */
  handedOver: boolean;
}

const admittedKey = createContextKey<Admitted | undefined>(undefined, { description: "authlink admitted call" });

export function createCallAdapter(boundary: CallBoundary, options: CallAdapterOptions = {}): CallAdapter {
  const { onProtocolRefusal } = options;

  const requestGate = async (context: HandlerContext) => {
    const peer = context.values.get(peerKey);
    const open = await boundary.admit({
      method: context.method,
      protocol: context.protocolName,
      certificate: peer.certificate,
      authorization: context.requestHeader.get("authorization"),
      clientAddress: peer.clientAddress,
      requestIdHeader: context.requestHeader.get(REQUEST_ID_HEADER),
      signal: context.signal,
    });
    const admitted: Admitted = { open, handedOver: false };
    context.values.set(admittedKey, admitted);
    if (open.refused) {
      admitted.handedOver = true;
      throw failure(open, open.refused);
    }
    const onAbort = () => {
      if (admitted.handedOver) return;
      admitted.handedOver = true;
      const reason: unknown = context.signal.reason;
      const refusal = classifyRequestError(reason, context.method.input);
      if (!refusal) {
        open.end(reason); // the caller left or its deadline passed while the request was read
        return;
      }
      onProtocolRefusal?.(refusal.kind);
      const answer = failure(open, refusal.answer);
      if (reason instanceof ConnectError && answer instanceof ConnectError) overwrite(reason, answer);
    };
    if (context.signal.aborted) onAbort();
    else context.signal.addEventListener("abort", onAbort, { once: true });
  };

  const interceptor: Interceptor = (next) => async (req) => {
    const admitted = req.contextValues.get(admittedKey);
    if (!admitted) throw new Error("the call adapter's requestGate is not installed for this service");
    admitted.handedOver = true;
    const { open } = admitted;
    req.contextValues.set(callKey, open.call);
    const fail = (error: unknown, headersSent = false) => failure(open, error, headersSent);
    if (req.stream) req = { ...req, message: refusingUndecodable(req.message, req.method.input, onProtocolRefusal) } satisfies StreamRequest;
    let res;
    try {
      // The answer goes out when the call's deadline (the client's, capped by
      // the server's) passes, whatever the handler is still waiting for:
      // connect-node would otherwise answer only once the handler returns.
      // The handler runs on, and anything it still writes stays bounded by
      // the store's own time limits.
      res = await settleBy(next(req), open.call.signal);
    } catch (error) {
      throw fail(error);
    }
    res.header.set(REQUEST_ID_HEADER, open.call.requestId);
    if (!res.stream) {
      open.end();
      return res;
    }
    return { ...res, message: endAfterLastMessage(res.message, open, fail) } satisfies StreamResponse;
  };

  return { requestGate, interceptors: [interceptor] };
}

/**
 * Ends the call with `error` and returns what to answer with (a ConnectError,
 * whatever the transport; the grpc-js adapter uses it too): a status a
 * handler chose on purpose passes through; anything else is classified by
 * the boundary. Before any response header went out, the error carries the
 * request id itself.
 */
export function failure(open: OpenCall, error: unknown, headersSent = false): unknown {
  const requestIdHeader = headersSent ? undefined : { [REQUEST_ID_HEADER]: open.call.requestId };
  if (isDeliberateStatus(error)) {
    open.endWithStatus(Code[error.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase()); // NotFound → NOT_FOUND
    if (requestIdHeader) error.metadata.set(REQUEST_ID_HEADER, open.call.requestId);
    return error;
  }
  const ended = open.end(error);
  return ended ? toConnectError(ended, requestIdHeader) : error;
}

/**
 * connect-node answers with the very error object it aborted the call with:
 * make that object say what authlink answers (code, message, details), and
 * add the answer's headers to the ones it carries (e.g. grpc-accept-encoding).
 */
function overwrite(target: ConnectError, answer: ConnectError): void {
  Object.assign(target, {
    code: answer.code,
    rawMessage: answer.rawMessage,
    message: answer.message,
    details: answer.details,
    cause: undefined,
  });
  answer.metadata.forEach((value, name) => target.metadata.set(name, value));
}

/** A streaming request's messages, with a message that cannot be read refused like a unary one. */
async function* refusingUndecodable<T>(
  messages: AsyncIterable<T>,
  input: StreamRequest["method"]["input"],
  onProtocolRefusal: CallAdapterOptions["onProtocolRefusal"],
): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    const refusal = classifyRequestError(error, input);
    if (!refusal) throw error;
    onProtocolRefusal?.(refusal.kind);
    throw refusal.answer;
  }
}

async function* endAfterLastMessage<T>(
  messages: AsyncIterable<T>,
  open: OpenCall,
  fail: (error: unknown, headersSent: boolean) => unknown,
): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw fail(error, true);
  } finally {
    // Normal completion ends as OK; a consumer that stopped early (the client
    // went away) ends as cancelled. end() counts only the first call.
    open.end(open.call.signal.aborted ? open.call.signal.reason : undefined);
  }
}

/**
 * A status a handler chose on purpose (a foreign service's NOT_FOUND, say), as
 * opposed to a failure: passed through. Deadlines and cancellations are the
 * boundary's to classify, and Unknown/Internal are failures.
 */
function isDeliberateStatus(error: unknown): error is ConnectError {
  if (!(error instanceof ConnectError)) return false;
  return ![Code.Unknown, Code.Internal, Code.DeadlineExceeded, Code.Canceled].includes(error.code);
}
