import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import type { CallBoundary, OpenCall } from "../call/call-boundary.js";
import { REQUEST_ID_HEADER } from "../call/request-id.js";
import { settleBy } from "../domain/abort.js";
import { callKey, peerKey } from "./context-values.js";
import { toConnectError } from "./error-details.js";

/**
 * connect-node's adapter of the call boundary, attached to each service
 * (router.service(desc, impl, { interceptors })). It hands the boundary what
 * the request knows, puts the admitted Call where handlers find it, and ends
 * the call when it is really over: for a unary call when the handler
 * returns, for a streaming response after its last message or its error, so
 * an error thrown mid-stream keeps its reason and metrics see the real
 * outcome. Every answer, error or not, carries the request id.
 */
export function createCallInterceptor(boundary: CallBoundary): Interceptor {
  return (next) => async (req) => {
    const peer = req.contextValues.get(peerKey);
    const open = await boundary.admit({
      method: req.method,
      protocol: protocolOf(req.header.get("content-type")),
      certificate: peer.certificate,
      authorization: req.header.get("authorization"),
      clientAddress: peer.clientAddress,
      requestIdHeader: req.header.get(REQUEST_ID_HEADER),
      signal: req.signal,
    });
    const requestIdHeader = { [REQUEST_ID_HEADER]: open.call.requestId };
    /** The error to answer with; before any response header went out it carries the request id itself. */
    const fail = (error: unknown, headersSent = false) => {
      if (isDeliberateStatus(error)) {
        open.endWithStatus(Code[error.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase()); // NotFound → NOT_FOUND
        if (!headersSent) error.metadata.set(REQUEST_ID_HEADER, open.call.requestId);
        return error;
      }
      const failure = open.end(error);
      return failure ? toConnectError(failure, headersSent ? undefined : requestIdHeader) : error;
    };
    if (open.refused) throw fail(open.refused);
    req.contextValues.set(callKey, open.call);
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

function protocolOf(contentType: string | null): string {
  if (contentType?.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType?.startsWith("application/grpc")) return "grpc";
  return "connect";
}
