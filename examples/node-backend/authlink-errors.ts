import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";

// What an authlink error means to this app: its status, its stable reason
// (`email_exists`, `over_rate_limit`, …), the fields at fault, and the HTTP
// status the app answers with. The app's users are never blamed for the
// app's own mistakes: a refused service key is a 502, not a 401.

export interface AuthlinkFailure {
  /** The gRPC code, e.g. "invalid_argument". */
  readonly code: string;
  readonly reason: string;
  readonly message: string;
  readonly fields: readonly string[];
  /** Seconds to wait (rate limits). */
  readonly retryAfterSeconds?: number;
  readonly httpStatus: number;
}

const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.FailedPrecondition]: 409,
  [Code.ResourceExhausted]: 429,
  [Code.Unimplemented]: 501,
  [Code.Unavailable]: 503,
};

export function describeAuthlinkError(error: unknown): AuthlinkFailure {
  const e = ConnectError.from(error);
  const retry = e.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return {
    code: Code[e.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase(),
    reason: e.findDetails(ErrorInfoSchema)[0]?.reason ?? "",
    message: e.rawMessage,
    fields: e.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field)),
    retryAfterSeconds: retry ? Math.max(1, Number(retry.seconds)) : undefined,
    httpStatus: HTTP_STATUS[e.code] ?? 502,
  };
}
