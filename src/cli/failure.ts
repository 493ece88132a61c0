import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";

// How the CLI fails: exit codes, usage errors, and a failed call described
// as an operator needs it (status name, reason, offending fields).

export const EXIT_OK = 0;
/** A call failed (the server answered an error, or could not be reached), or a bulk row failed. */
export const EXIT_CALL_FAILED = 1;
/** Bad flags or arguments, a missing or unreadable file, a bad CSV header: nothing was sent. */
export const EXIT_USAGE = 2;

/** Stopped by Ctrl-C (128 + SIGINT), as shells report it. */
export const EXIT_INTERRUPTED = 130;

/** A mistake in how the CLI was invoked; reported before any call is made. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The gRPC name of a status code: Code.InvalidArgument → "INVALID_ARGUMENT". */
export function statusName(code: Code | number): string {
  const name = Code[code] as string | undefined;
  if (name === undefined) return `CODE_${code}`;
  return name === "Canceled" ? "CANCELLED" : name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

/** A failed call, as plain data (for JSON output and for the human form). */
export interface CallFailure {
  readonly status: string;
  readonly reason: string | undefined;
  readonly message: string;
  readonly fieldViolations: readonly FieldViolation[];
  readonly retryDelayMs: number | undefined;
}

export function callFailureOf(error: unknown): CallFailure {
  const err = ConnectError.from(error);
  const retry = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return {
    status: statusName(err.code),
    reason: err.findDetails(ErrorInfoSchema)[0]?.reason,
    message: err.rawMessage,
    fieldViolations: err
      .findDetails(BadRequestSchema)
      .flatMap((detail) => detail.fieldViolations.map((v) => ({ field: v.field, description: v.description }))),
    retryDelayMs: retry ? Number(retry.seconds) * 1000 + Math.round(retry.nanos / 1e6) : undefined,
  };
}

/** The human form: `error: INVALID_ARGUMENT validation_failed: …` and one line per field. */
export function describeFailure(failure: CallFailure): string {
  const lines = [`error: ${failure.status}${failure.reason ? ` ${failure.reason}` : ""}: ${failure.message}`];
  for (const v of failure.fieldViolations) lines.push(`  ${v.field}: ${v.description}`);
  if (failure.retryDelayMs !== undefined) lines.push(`  retry after ${Math.ceil(failure.retryDelayMs / 1000)}s`);
  if (failure.reason === "credentials_missing") {
    lines.push("  hint: set AUTHLINK_CLI_SERVICE_KEY or pass --key-file PATH (the service key)");
  }
  return lines.join("\n");
}

