import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { GenerateLinkRequestSchema, GenerateLinkResponseSchema, UserSchema } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import {
  BulkLinkResultSchema,
  BulkRowErrorSchema,
  type BulkLinkResult,
  type BulkLinkRow,
  type BulkRowError,
} from "../../gen/authlink/v1/link_admin_service_pb.js";
import { STATUS_CODES } from "../call/status-codes.js";
import type { BulkRowInput, BulkRowResult, ReplayedLink } from "../domain/bulk-generation.js";
import type { AuthlinkError } from "../domain/errors.js";
import { generateLinkInput, generateLinkResponse, linkTypeToProto, userToProto } from "./messages.js";

// Bulk rows and their results on the wire (LinkAdminService's
// BulkGenerateLinks and StreamGenerateLinks). A row's error carries what a
// GenerateLink error carries in its status and details: the code from the one
// table (call/status-codes.ts), the reason, the violations, the retry delay.

/** A row off the wire; a row without a request is validated as an empty GenerateLinkRequest. */
export function bulkRowInput(row: BulkLinkRow | undefined): BulkRowInput {
  return {
    idempotencyKey: row?.idempotencyKey ?? "",
    request: generateLinkInput(row?.request ?? create(GenerateLinkRequestSchema)),
  };
}

export function bulkLinkResult(result: BulkRowResult): BulkLinkResult {
  const { index, idempotencyKey, outcome } = result;
  switch (outcome.kind) {
    case "issued":
      return create(BulkLinkResultSchema, { index, idempotencyKey, result: { case: "link", value: generateLinkResponse(outcome.link) } });
    case "replayed":
      return create(BulkLinkResultSchema, { index, idempotencyKey, replayed: true, result: { case: "link", value: replayedResponse(outcome.link) } });
    case "failed":
      return create(BulkLinkResultSchema, { index, idempotencyKey, result: { case: "error", value: bulkRowError(outcome.error) } });
  }
}

/** The earlier link: hash, type, user, redirect and expiry; its secrets stay empty (never stored). */
function replayedResponse(link: ReplayedLink) {
  return create(GenerateLinkResponseSchema, {
    hashedToken: link.hashedToken,
    verificationType: linkTypeToProto(link.type),
    redirectTo: link.redirectTo ?? "",
    user: link.user ? userToProto(link.user) : create(UserSchema, { id: link.userId }),
    expiresAt: timestampFromDate(link.expiresAt),
    currentEmailConfirmation: link.currentAddressHashedToken === undefined ? undefined : { hashedToken: link.currentAddressHashedToken },
  });
}

export function bulkRowError(error: AuthlinkError): BulkRowError {
  return create(BulkRowErrorSchema, {
    code: STATUS_CODES[error.kind].code,
    reason: error.reason,
    message: error.message,
    fieldViolations: error.violations.map((v) => ({ field: v.field, description: v.description })),
    retryDelay: error.retryAfterMs === undefined ? undefined : durationFromMs(Math.max(0, Math.ceil(error.retryAfterMs))),
  });
}
