import type { ErrorKind } from "../domain/errors.js";

// The gRPC status code of each kind of domain error: one table for every
// transport (Connect's Code enum uses the same numbers) and for metrics.

export const STATUS_CODES: Readonly<Record<ErrorKind, { readonly code: number; readonly name: string }>> = {
  cancelled: { code: 1, name: "CANCELLED" },
  invalid_argument: { code: 3, name: "INVALID_ARGUMENT" },
  deadline_exceeded: { code: 4, name: "DEADLINE_EXCEEDED" },
  not_found: { code: 5, name: "NOT_FOUND" },
  already_exists: { code: 6, name: "ALREADY_EXISTS" },
  permission_denied: { code: 7, name: "PERMISSION_DENIED" },
  resource_exhausted: { code: 8, name: "RESOURCE_EXHAUSTED" },
  failed_precondition: { code: 9, name: "FAILED_PRECONDITION" },
  aborted: { code: 10, name: "ABORTED" },
  unimplemented: { code: 12, name: "UNIMPLEMENTED" },
  internal: { code: 13, name: "INTERNAL" },
  unavailable: { code: 14, name: "UNAVAILABLE" },
  unauthenticated: { code: 16, name: "UNAUTHENTICATED" },
};
