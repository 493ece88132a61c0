import type { DescMessage } from "@bufbuild/protobuf";
import { isFieldError } from "@bufbuild/protobuf/reflect";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuthlinkError, type FieldViolation } from "../domain/errors.js";

// Requests the protocol layer refuses while reading them, before any handler
// runs: what connect-node raised, classified into a kind (a metrics label)
// and the answer authlink gives, with a reason, in authlink's own words.
//
// connect-node answers an unparseable message with INTERNAL and the parser's
// text ("parse binary: invalid varint"; a string that is not UTF-8, like the
// lone surrogate \ud800 that protobufjs-based clients such as grpc-js encode
// as the bytes ED A0 80, fails protobuf-es's strict UTF-8 check the same way),
// and malformed JSON with INVALID_ARGUMENT and the parser's text. Neither is
// an internal error, and no parser text is sent to a client.

/** What the protocol layer refused (the `kind` label of authlink_protocol_refusals_total). */
export type ProtocolRefusalKind =
  /** No RPC at this path (404). */
  | "unknown_path"
  /** An HTTP method other than POST (or GET where allowed) (405). */
  | "method_not_allowed"
  /** A content type no protocol serves (415). */
  | "unsupported_media_type"
  /** A bidirectional stream over HTTP/1.1 (505). */
  | "http_version_not_supported"
  /** A message larger than AUTHLINK_MAX_REQUEST_BYTES, or one that decompresses to more. */
  | "oversize"
  /** Broken framing: a truncated envelope, no message or more than one for a unary call. */
  | "bad_envelope"
  /** A message that is not valid protobuf (or JSON) of its type, invalid UTF-8 included. */
  | "undecodable"
  /** A compression the server does not support. */
  | "compression_not_supported"
  /** A malformed protocol header (timeout, protocol version). */
  | "bad_header";

export interface ProtocolRefusal {
  readonly kind: ProtocolRefusalKind;
  /** What the caller is answered. */
  readonly answer: AuthlinkError;
}

export const UNDECODABLE_MESSAGE = "the request could not be decoded";

/**
 * An error raised while a request was read, as a refusal; undefined when it
 * is not a refusal but the end of the call (cancelled, deadline passed) or
 * not the protocol layer's. `input` (the method's request message) lets a
 * JSON error name the top-level field it is about.
 */
export function classifyRequestError(error: unknown, input?: DescMessage): ProtocolRefusal | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  const text = error.rawMessage;
  switch (error.code) {
    case Code.Canceled:
    case Code.DeadlineExceeded:
    case Code.Aborted:
      return undefined;
    case Code.ResourceExhausted:
      return { kind: "oversize", answer: new AuthlinkError("request_too_large", { cause: error }) };
  }
  if (error.code === Code.Unimplemented && /compression/i.test(text)) {
    return { kind: "compression_not_supported", answer: new AuthlinkError("compression_not_supported", { cause: error }) };
  }
  if (/timeout|connect-protocol-version|connect=v/i.test(text)) {
    return { kind: "bad_header", answer: new AuthlinkError("validation_failed", { message: "a request header is invalid", cause: error }) };
  }
  if (/^protocol error|envelope|end flag/i.test(text)) {
    return { kind: "bad_envelope", answer: undecodable(error) };
  }
  return { kind: "undecodable", answer: undecodable(error, jsonFieldOf(error, input)) };
}

function undecodable(cause: unknown, field?: string): AuthlinkError {
  const violations: FieldViolation[] = field === undefined ? [] : [{ field, description: "could not be decoded" }];
  return new AuthlinkError("validation_failed", { message: UNDECODABLE_MESSAGE, violations, cause });
}

/** The top-level field a JSON decoding error is about (protobuf-es wraps a FieldError), if any. */
function jsonFieldOf(error: ConnectError, input: DescMessage | undefined): string | undefined {
  if (input === undefined) return undefined;
  for (let cause: unknown = error.cause, depth = 0; cause instanceof Error && depth < 3; cause = cause.cause, depth++) {
    if (isFieldError(cause)) {
      const field = cause.field();
      return field.parent === input ? field.name : undefined;
    }
  }
  return undefined;
}

/**
 * A status grpc-js answered by itself while it read a request (the
 * grpc-js listener's counterpart of classifyRequestError): its size limit,
 * a message the deserializer refused (protobuf-es, the same as connect-node's),
 * broken framing, a compression it does not know, a malformed grpc-timeout.
 * Undefined for anything else (deadlines included: the call boundary
 * classifies those).
 */
export function classifyGrpcJsStatus(code: number, details: string): ProtocolRefusal | undefined {
  const cause = new Error(details);
  switch (code) {
    case Code.ResourceExhausted:
      return /^Received message/.test(details)
        ? { kind: "oversize", answer: new AuthlinkError("request_too_large", { cause }) }
        : undefined;
    case Code.Internal:
      if (/grpc-timeout/.test(details)) {
        return { kind: "bad_header", answer: new AuthlinkError("validation_failed", { message: "a request header is invalid", cause }) };
      }
      if (/deserializ/i.test(details)) return { kind: "undecodable", answer: undecodable(cause) };
      if (/decompress/i.test(details)) return { kind: "undecodable", answer: undecodable(cause) };
      return undefined;
    case Code.Unimplemented:
      if (/unsupported encoding/.test(details)) {
        return { kind: "compression_not_supported", answer: new AuthlinkError("compression_not_supported", { cause }) };
      }
      // A unary or server-streaming call with no request message or a second one.
      if (/request message/.test(details)) return { kind: "bad_envelope", answer: undecodable(cause) };
      return undefined;
  }
  return undefined;
}
