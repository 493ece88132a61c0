import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { LinkState as ProtoLinkState, LinkType as ProtoLinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import {
  GetLinkResponseSchema,
  LinkSchema,
  ListLinksResponseSchema,
  ReissueLinkResponseSchema,
  RevokeLinksResponseSchema,
  type GetLinkRequest,
  type GetLinkResponse,
  type Link as ProtoLink,
  type ListLinksRequest,
  type ListLinksResponse,
  type ReissueLinkRequest,
  type ReissueLinkResponse,
  type RevokeLinksRequest,
  type RevokeLinksResponse,
} from "../../gen/authlink/v1/link_admin_service_pb.js";
import type {
  GetLinkInput,
  KnownLinkState,
  LinkPage,
  LinkView,
  ListLinksInput,
  ReissuedLink,
  RevokedLinks,
  RevokeLinksInput,
} from "../domain/link-admin.js";
import type { ReissueLinkInput } from "../domain/link-service.js";
import type { LinkType } from "../domain/link-type.js";
import { durationToMs, generateLinkResponse, linkStateToProto, linkTypeFromProto, linkTypeToProto } from "./messages.js";

// Translation of LinkAdminService's unary messages (GetLink, ListLinks,
// RevokeLinks, ReissueLink) to and from the domain (domain/link-admin.ts).

const STATE_TO_DOMAIN: Readonly<Partial<Record<ProtoLinkState, KnownLinkState>>> = {
  [ProtoLinkState.VALID]: "valid",
  [ProtoLinkState.EXPIRED]: "expired",
  [ProtoLinkState.USED]: "used",
  [ProtoLinkState.REPLACED]: "replaced",
  [ProtoLinkState.REVOKED]: "revoked",
};

/** An enum filter: unset (UNSPECIFIED) is no filter; a value the domain does not know is "invalid". */
function typeFilter(type: ProtoLinkType): LinkType | "invalid" | undefined {
  return type === ProtoLinkType.UNSPECIFIED ? undefined : (linkTypeFromProto(type) ?? "invalid");
}

function optionalDate(timestamp: Timestamp | undefined): Date | undefined {
  return timestamp && timestampDate(timestamp);
}

export function getLinkInput(request: GetLinkRequest): GetLinkInput {
  return { hashedToken: request.hashedToken };
}

export function getLinkResponse(view: LinkView): GetLinkResponse {
  return create(GetLinkResponseSchema, { link: linkToProto(view) });
}

export function listLinksInput(request: ListLinksRequest): ListLinksInput {
  return {
    userId: request.userId,
    email: request.email,
    type: typeFilter(request.type),
    state: request.state === ProtoLinkState.UNSPECIFIED ? undefined : (STATE_TO_DOMAIN[request.state] ?? "invalid"),
    issuedBy: request.issuedBy,
    issuedAfter: optionalDate(request.issuedAfter),
    issuedBefore: optionalDate(request.issuedBefore),
    pageSize: request.pageSize,
    pageToken: request.pageToken,
  };
}

export function listLinksResponse(page: LinkPage): ListLinksResponse {
  return create(ListLinksResponseSchema, { links: page.links.map(linkToProto), nextPageToken: page.nextPageToken });
}

export function revokeLinksInput(request: RevokeLinksRequest): RevokeLinksInput {
  const { target } = request;
  switch (target.case) {
    case "hashedTokens":
      return { kind: "hashed_tokens", hashedTokens: target.value.hashedTokens };
    case "user":
      return {
        kind: "user",
        userId: target.value.userId,
        email: target.value.email,
        types: target.value.types.map((type) => linkTypeFromProto(type) ?? "invalid"),
      };
    default:
      return { kind: "none" };
  }
}

export function revokeLinksResponse(revoked: RevokedLinks): RevokeLinksResponse {
  return create(RevokeLinksResponseSchema, { revokedCount: revoked.hashedTokens.length, hashedTokens: [...revoked.hashedTokens] });
}

export function reissueLinkInput(request: ReissueLinkRequest): ReissueLinkInput {
  return { hashedToken: request.hashedToken, expiresInMs: request.expiresIn ? durationToMs(request.expiresIn) : undefined };
}

export function reissueLinkResponse(reissued: ReissuedLink): ReissueLinkResponse {
  return create(ReissueLinkResponseSchema, {
    link: generateLinkResponse(reissued.link),
    replacedHashedToken: reissued.replacedHashedToken,
  });
}

function linkToProto(view: LinkView): ProtoLink {
  return create(LinkSchema, {
    hashedToken: view.hashedToken,
    type: linkTypeToProto(view.type),
    state: linkStateToProto(view.state),
    userId: view.userId,
    email: view.email,
    maskedEmail: view.maskedEmail,
    issuedAt: timestampFromDate(view.issuedAt),
    expiresAt: timestampFromDate(view.expiresAt),
    stateChangedAt: view.stateChangedAt && timestampFromDate(view.stateChangedAt),
    redirectTo: view.redirectTo ?? "",
    issuedBy: view.issuedBy,
    otpAttemptsUsed: view.otpAttemptsUsed,
    otpAttemptsMax: view.otpAttemptsMax,
    emailChangeAddress: view.emailChangeAddress ?? "",
  });
}
