import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AuditEventSchema,
  ListAuditEventsResponseSchema,
  WatchAuditEventsResponseSchema,
  type AuditEvent as ProtoAuditEvent,
  type ListAuditEventsRequest,
  type ListAuditEventsResponse,
  type WatchAuditEventsRequest,
  type WatchAuditEventsResponse,
} from "../../gen/authlink/v1/audit_service_pb.js";
import type { StoredAuditEvent } from "../domain/audit-event.js";
import type { AuditEventPage, AuditFilterInput, ListAuditEventsInput, WatchAuditEventsInput } from "../domain/audit-reader.js";
import { linkStateToProto, linkTypeToProto } from "./messages.js";

// AuditService's wire messages and the domain's, in both directions.

/** Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z. */
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;

/** A Timestamp as a Date; an invalid Date for one out of range (the domain rejects it). */
function timeInput(timestamp: Timestamp | undefined): Date | undefined {
  if (!timestamp) return undefined;
  const valid =
    timestamp.seconds >= MIN_SECONDS && timestamp.seconds <= MAX_SECONDS && timestamp.nanos >= 0 && timestamp.nanos <= 999_999_999;
  return valid ? timestampDate(timestamp) : new Date(NaN);
}

function filterInput(request: ListAuditEventsRequest | WatchAuditEventsRequest): AuditFilterInput {
  return { userId: request.userId, email: request.email, caller: request.caller, method: request.method, outcome: request.outcome };
}

export function listAuditEventsInput(request: ListAuditEventsRequest): ListAuditEventsInput {
  return {
    ...filterInput(request),
    since: timeInput(request.since),
    until: timeInput(request.until),
    pageSize: request.pageSize,
    pageToken: request.pageToken,
  };
}

export function watchAuditEventsInput(request: WatchAuditEventsRequest): WatchAuditEventsInput {
  return { ...filterInput(request), since: timeInput(request.since) };
}

export function auditEventToProto(event: StoredAuditEvent): ProtoAuditEvent {
  return create(AuditEventSchema, {
    id: event.id,
    at: timestampFromDate(event.at),
    requestId: event.requestId ?? "",
    method: event.method,
    caller: event.caller,
    clientAddress: event.clientAddress,
    linkType: event.linkType && linkTypeToProto(event.linkType),
    userId: event.userId ?? "",
    email: event.email ?? "",
    hashedTokens: [...event.hashedTokens],
    outcome: event.outcome,
    durationMs: Math.max(0, Math.round(event.durationMs)),
    linkAgeMs: BigInt(Math.round(event.linkAgeMs ?? 0)),
    linkState: event.linkState && linkStateToProto(event.linkState),
    rateLimitRule: event.rateLimitRule ?? "",
    count: event.count ?? 1,
  });
}

export function listAuditEventsResponse(page: AuditEventPage): ListAuditEventsResponse {
  return create(ListAuditEventsResponseSchema, { events: page.events.map(auditEventToProto), nextPageToken: page.nextPageToken });
}

export function watchAuditEventsResponse(event: StoredAuditEvent): WatchAuditEventsResponse {
  return create(WatchAuditEventsResponseSchema, { event: auditEventToProto(event) });
}
