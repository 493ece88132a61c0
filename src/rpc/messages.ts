import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import {
  GenerateLinkResponseSchema,
  LinkState as ProtoLinkState,
  LinkType as ProtoLinkType,
  PreviewLinkResponseSchema,
  UserSchema,
  VerifyLinkResponseSchema,
  type GenerateLinkRequest,
  type GenerateLinkResponse,
  type PreviewLinkRequest,
  type PreviewLinkResponse,
  type User as ProtoUser,
  type VerifyLinkRequest,
  type VerifyLinkResponse,
} from "../../gen/authlink/v1/admin_auth_service_pb.js";
import type { GenerateLinkInput, VerifyLinkInput } from "../domain/link-requests.js";
import type { GeneratedLink, VerifiedLink } from "../domain/link-service.js";
import type { LinkPreview, LinkState, PreviewLinkInput } from "../domain/link-preview.js";
import type { LinkType } from "../domain/link-type.js";
import type { JsonObject, User } from "../domain/user.js";

// Translation between the wire messages and the domain, in both directions.
// Transport-neutral: used by the Connect handlers and usable from any other
// server (a plain grpc-js Server, say) that decodes the same messages.

const TO_DOMAIN: Readonly<Partial<Record<ProtoLinkType, LinkType>>> = {
  [ProtoLinkType.SIGNUP]: "signup",
  [ProtoLinkType.MAGICLINK]: "magiclink",
  [ProtoLinkType.RECOVERY]: "recovery",
  [ProtoLinkType.INVITE]: "invite",
  [ProtoLinkType.EMAIL_CHANGE]: "email_change",
};

const TO_PROTO: Readonly<Record<LinkType, ProtoLinkType>> = {
  signup: ProtoLinkType.SIGNUP,
  magiclink: ProtoLinkType.MAGICLINK,
  recovery: ProtoLinkType.RECOVERY,
  invite: ProtoLinkType.INVITE,
  email_change: ProtoLinkType.EMAIL_CHANGE,
};

const STATE_TO_PROTO: Readonly<Record<LinkState, ProtoLinkState>> = {
  valid: ProtoLinkState.VALID,
  expired: ProtoLinkState.EXPIRED,
  used: ProtoLinkState.USED,
  replaced: ProtoLinkState.REPLACED,
  revoked: ProtoLinkState.REVOKED,
  unknown: ProtoLinkState.UNKNOWN,
};

export function linkTypeFromProto(type: ProtoLinkType): LinkType | undefined {
  return TO_DOMAIN[type];
}

export function linkTypeToProto(type: LinkType): ProtoLinkType {
  return TO_PROTO[type];
}

export function linkStateToProto(state: LinkState): ProtoLinkState {
  return STATE_TO_PROTO[state];
}

/** A Duration in milliseconds; NaN for a malformed one (so validation rejects it). */
export function durationToMs(duration: Duration): number {
  const sameSign = duration.seconds >= 0n ? duration.nanos >= 0 : duration.nanos <= 0;
  if (!sameSign || Math.abs(duration.nanos) > 999_999_999) return NaN;
  return durationMs(duration);
}

export function generateLinkInput(request: GenerateLinkRequest): GenerateLinkInput {
  return {
    type: linkTypeFromProto(request.type),
    email: request.email,
    redirectTo: request.redirectTo,
    data: request.data as JsonObject | undefined,
    password: request.password,
    newEmail: request.newEmail,
    expiresInMs: request.expiresIn ? durationToMs(request.expiresIn) : undefined,
  };
}

export function verifyLinkInput(request: VerifyLinkRequest): VerifyLinkInput {
  const { credential } = request;
  return {
    type: linkTypeFromProto(request.type),
    credential:
      credential.case === "token"
        ? { kind: "token", token: credential.value }
        : credential.case === "emailOtp"
          ? { kind: "email_otp", email: credential.value.email, otp: credential.value.otp }
          : { kind: "none" },
  };
}

export function userToProto(user: User): ProtoUser {
  return create(UserSchema, {
    id: user.id,
    email: user.email,
    emailConfirmedAt: user.emailConfirmedAt && timestampFromDate(user.emailConfirmedAt),
    invitedAt: user.invitedAt && timestampFromDate(user.invitedAt),
    createdAt: timestampFromDate(user.createdAt),
    updatedAt: timestampFromDate(user.updatedAt),
    userMetadata: user.userMetadata,
    newEmail: user.emailChange?.newEmail ?? "",
    hasPassword: user.passwordHash !== undefined,
  });
}

export function generateLinkResponse(result: GeneratedLink): GenerateLinkResponse {
  return create(GenerateLinkResponseSchema, {
    actionLink: result.link.actionLink,
    emailOtp: result.link.otp,
    hashedToken: result.link.hashedToken,
    verificationType: linkTypeToProto(result.type),
    redirectTo: result.redirectTo ?? "",
    user: userToProto(result.user),
    expiresAt: timestampFromDate(result.expiresAt),
    currentEmailConfirmation: result.currentAddressLink && {
      actionLink: result.currentAddressLink.actionLink,
      emailOtp: result.currentAddressLink.otp,
      hashedToken: result.currentAddressLink.hashedToken,
    },
  });
}

export function verifyLinkResponse(result: VerifiedLink): VerifyLinkResponse {
  return create(VerifyLinkResponseSchema, {
    user: userToProto(result.user),
    verificationType: linkTypeToProto(result.type),
    redirectTo: result.redirectTo ?? "",
    emailChangePending: result.emailChangePending,
    assertion: result.assertion.assertion,
    assertionExpiresAt: timestampFromDate(result.assertion.expiresAt),
  });
}

export function previewLinkInput(request: PreviewLinkRequest): PreviewLinkInput {
  return { type: linkTypeFromProto(request.type), token: request.token };
}

/** Only `state` for an UNKNOWN link (the contract says so). */
export function previewLinkResponse(preview: LinkPreview): PreviewLinkResponse {
  if (preview.state === "unknown") return create(PreviewLinkResponseSchema, { state: ProtoLinkState.UNKNOWN });
  return create(PreviewLinkResponseSchema, {
    state: STATE_TO_PROTO[preview.state],
    type: linkTypeToProto(preview.type),
    maskedEmail: preview.maskedEmail,
    expiresAt: timestampFromDate(preview.expiresAt),
    redirectHost: preview.redirectHost ?? "",
    stateChangedAt: preview.stateChangedAt && timestampFromDate(preview.stateChangedAt),
  });
}
