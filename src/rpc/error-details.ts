import { ConnectError, type Code } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { STATUS_CODES } from "../call/status-codes.js";
import type { AuthlinkError } from "../domain/errors.js";

// Errors on the wire: every failure becomes a ConnectError with the status
// code of its kind (call/status-codes.ts), a google.rpc.ErrorInfo whose
// `reason` is the stable snake_case code, a google.rpc.BadRequest listing bad
// fields, and a google.rpc.RetryInfo when waiting helps. Unexpected errors
// arrive here already classified as INTERNAL: driver messages and stacks
// stay in the server log.

/** The ErrorInfo domain of authlink's reasons. */
export const ERROR_DOMAIN = "authlink";

/** A domain error as it goes on the wire; `headers` travel with it (e.g. x-request-id). */
export function toConnectError(error: AuthlinkError, headers?: Record<string, string>): ConnectError {
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
  return new ConnectError(error.message, STATUS_CODES[error.kind].code as Code, headers, details);
}
