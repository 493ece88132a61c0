import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AuthlinkError, type ErrorKind } from "../domain/errors.js";
import { StoreUnavailableError } from "../store/store.js";

// Errors on the wire: every failure becomes a ConnectError with a status code
// from the table below, a google.rpc.ErrorInfo whose `reason` is the stable
// snake_case code, a google.rpc.BadRequest listing bad fields, and a
// google.rpc.RetryInfo when waiting helps. Anything unexpected becomes a bare
// INTERNAL: driver messages and stacks stay in the server log.

/** The ErrorInfo domain of authlink's reasons. */
export const ERROR_DOMAIN = "authlink";

const CODES: Readonly<Record<ErrorKind, Code>> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  permission_denied: Code.PermissionDenied,
  unauthenticated: Code.Unauthenticated,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  cancelled: Code.Canceled,
  internal: Code.Internal,
};

/** A domain error as it goes on the wire. */
export function toConnectError(error: AuthlinkError): ConnectError {
  const details: ConstructorParameters<typeof ConnectError>[3] = [
    { desc: ErrorInfoSchema, value: { reason: error.reason, domain: ERROR_DOMAIN } },
  ];
  if (error.violations.length > 0) {
    details.push({
      desc: BadRequestSchema,
      value: { fieldViolations: error.violations.map((v) => ({ field: v.field, description: v.description })) },
    });
  }
  if (error.retryAfterMs !== undefined) {
    const ms = Math.max(0, Math.ceil(error.retryAfterMs));
    details.push({
      desc: RetryInfoSchema,
      value: { retryDelay: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 } },
    });
  }
  return new ConnectError(error.message, CODES[error.kind], undefined, details);
}

/**
 * Any thrown value as a domain error: ours pass through, a store outage is
 * UNAVAILABLE, an aborted call is CANCELLED or DEADLINE_EXCEEDED, and the
 * rest is INTERNAL (the caller logs `cause`).
 */
export function asAuthlinkError(error: unknown): AuthlinkError {
  if (error instanceof AuthlinkError) return error;
  if (error instanceof StoreUnavailableError) return new AuthlinkError("store_unavailable", { cause: error });
  if (error instanceof ConnectError) {
    if (error.code === Code.DeadlineExceeded) return new AuthlinkError("deadline_exceeded", { cause: error });
    if (error.code === Code.Canceled) return new AuthlinkError("cancelled", { cause: error });
  }
  const name = (error as { name?: unknown } | null)?.name;
  if (name === "TimeoutError") return new AuthlinkError("deadline_exceeded", { cause: error });
  if (name === "AbortError") return new AuthlinkError("cancelled", { cause: error });
  return new AuthlinkError("internal", { cause: error });
}
