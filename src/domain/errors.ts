import { StoreUnavailableError } from "./store.js";

// The domain's one error type. Every expected failure has a stable snake_case
// reason; the reason decides the status code (one table, here), so the RPC
// layer only translates and never guesses.

export type ErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "permission_denied"
  | "unauthenticated"
  | "resource_exhausted"
  | "failed_precondition"
  | "unimplemented"
  | "aborted"
  | "unavailable"
  | "deadline_exceeded"
  | "cancelled"
  | "internal";

/**
 * Reason → kind and the public message. Messages never carry secrets or input
 * echoes, and avoid the characters `; / ? : @ & = + $ , #`: connect-node
 * percent-encodes grpc-message and grpc-js decodes it with decodeURI, which
 * leaves exactly those encoded, so a grpc-js caller would read `%3A`.
 * Validation problems (field descriptions) follow the same rule.
 */
export const REASONS = {
  validation_failed: { kind: "invalid_argument", message: "the request is invalid" },
  redirect_not_allowed: { kind: "invalid_argument", message: "redirect_to is not allowed" },
  weak_password: { kind: "invalid_argument", message: "the password is too weak" },
  user_not_found: { kind: "not_found", message: "no user has this email address" },
  email_exists: { kind: "already_exists", message: "a user with this email address already exists" },
  link_invalid_or_expired: { kind: "permission_denied", message: "the link is invalid or has expired" },
  credentials_missing: { kind: "unauthenticated", message: "this method requires the service role" },
  credentials_invalid: { kind: "unauthenticated", message: "the credentials are not valid" },
  not_service_role: { kind: "permission_denied", message: "the caller does not hold the service role" },
  method_not_exposed: { kind: "permission_denied", message: "this method is not open to any caller" },
  over_rate_limit: { kind: "resource_exhausted", message: "too many requests (retry later)" },
  request_too_large: { kind: "resource_exhausted", message: "the request is too large" },
  compression_not_supported: { kind: "unimplemented", message: "the request's compression is not supported (see grpc-accept-encoding)" },
  store_unavailable: { kind: "unavailable", message: "the database is unavailable (retry later)" },
  deadline_exceeded: { kind: "deadline_exceeded", message: "the deadline expired before the call completed" },
  cancelled: { kind: "cancelled", message: "the call was cancelled" },
  internal: { kind: "internal", message: "internal error" },
  idempotency_key_in_use: { kind: "aborted", message: "another row with this idempotency key is being issued (retry later)" },
  link_not_found: { kind: "not_found", message: "no such link" },
  link_already_used: { kind: "failed_precondition", message: "the link has been used" },
  email_change_not_pending: { kind: "failed_precondition", message: "the email change of this link is no longer pending" },
} as const satisfies Record<string, { kind: ErrorKind; message: string }>;

export type Reason = keyof typeof REASONS;

/** One problem with one request field; `field` uses the protobuf field path (`email_otp.otp`). */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

export interface AuthlinkErrorOptions {
  /** Replaces the reason's default public message. Must not contain secrets. */
  readonly message?: string;
  readonly violations?: readonly FieldViolation[];
  /** For over_rate_limit: how long until a retry can succeed. */
  readonly retryAfterMs?: number;
  /** For over_rate_limit: the rule that refused (for audit and metrics, not sent to clients). */
  readonly rateLimitRule?: string;
  /** Kept for logs only; never sent to clients. */
  readonly cause?: unknown;
}

export class AuthlinkError extends Error {
  override readonly name = "AuthlinkError";
  readonly reason: Reason;
  readonly kind: ErrorKind;
  readonly violations: readonly FieldViolation[];
  readonly retryAfterMs: number | undefined;
  readonly rateLimitRule: string | undefined;

  constructor(reason: Reason, options: AuthlinkErrorOptions = {}) {
    super(options.message ?? REASONS[reason].message, { cause: options.cause });
    this.reason = reason;
    this.kind = REASONS[reason].kind;
    this.violations = options.violations ?? [];
    this.retryAfterMs = options.retryAfterMs;
    this.rateLimitRule = options.rateLimitRule;
  }
}

/** INVALID_ARGUMENT with one violation per bad field. */
export function invalidRequest(
  violations: readonly FieldViolation[],
  reason: "validation_failed" | "redirect_not_allowed" | "weak_password" = "validation_failed",
): AuthlinkError {
  const message =
    violations.length === 1 && violations[0]
      ? `${REASONS[reason].message} (${violations[0].field} ${violations[0].description})`
      : REASONS[reason].message;
  return new AuthlinkError(reason, { message, violations });
}

/** The single answer for every unusable link, so callers cannot tell why. */
export function linkInvalidOrExpired(): AuthlinkError {
  return new AuthlinkError("link_invalid_or_expired");
}

/**
 * Any thrown value as a domain error: ours pass through, a store outage is
 * UNAVAILABLE, an aborted call is CANCELLED or DEADLINE_EXCEEDED (the call
 * boundary aborts with a TimeoutError when the deadline passes), and the rest
 * is INTERNAL, keeping the original as `cause` for the log.
 */
export function toAuthlinkError(error: unknown, signal?: AbortSignal): AuthlinkError {
  if (error instanceof AuthlinkError) return error;
  if (error instanceof StoreUnavailableError) return new AuthlinkError("store_unavailable", { cause: error });
  const name = (error as { name?: unknown } | null)?.name;
  if (name === "TimeoutError") return new AuthlinkError("deadline_exceeded", { cause: error });
  if (name === "AbortError") return new AuthlinkError("cancelled", { cause: error });
  if (signal?.aborted) {
    // The operation failed its own way because the call ended under it.
    const reasonName = (signal.reason as { name?: unknown } | undefined)?.name;
    return new AuthlinkError(reasonName === "TimeoutError" ? "deadline_exceeded" : "cancelled", { cause: error });
  }
  return new AuthlinkError("internal", { cause: error });
}
