import { LinkState, LinkType, type GenerateLinkResponse, type User } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import type { AuditEvent } from "../../gen/authlink/v1/audit_service_pb.js";
import type { Link } from "../../gen/authlink/v1/link_admin_service_pb.js";
import type { Column } from "./output.js";
import { isoOf } from "./values.js";

// How the contract's messages read in a table: the fields people look for,
// in the order they look for them, with types and states by short name.

export type Fields = (readonly [string, string])[];

export const typeName = (type: LinkType): string => (LinkType[type] ?? String(type)).toLowerCase();
export const stateName = (state: LinkState): string => (LinkState[state] ?? String(state)).toLowerCase();

export function userFields(user: User | undefined, prefix = ""): Fields {
  if (!user) return [];
  return [
    [`${prefix}id`, user.id],
    [`${prefix}email`, user.email],
    [`${prefix}email_confirmed_at`, isoOf(user.emailConfirmedAt)],
    [`${prefix}invited_at`, isoOf(user.invitedAt)],
    [`${prefix}created_at`, isoOf(user.createdAt)],
    [`${prefix}updated_at`, isoOf(user.updatedAt)],
    [`${prefix}new_email`, user.newEmail],
    [`${prefix}has_password`, user.hasPassword ? "yes" : "no"],
    [`${prefix}metadata`, user.userMetadata && Object.keys(user.userMetadata).length > 0 ? JSON.stringify(user.userMetadata) : ""],
  ];
}

/** A newly issued link: the secrets first, since they are shown once. */
export function issuedLinkFields(link: GenerateLinkResponse | undefined): Fields {
  if (!link) return [];
  const fields: Fields = [
    ["action_link", link.actionLink],
    ["email_otp", link.emailOtp],
    ["hashed_token", link.hashedToken],
    ["type", typeName(link.verificationType)],
    ["expires_at", isoOf(link.expiresAt)],
    ["redirect_to", link.redirectTo],
  ];
  const current = link.currentEmailConfirmation;
  if (current) {
    fields.push(
      ["current_email.action_link", current.actionLink],
      ["current_email.email_otp", current.emailOtp],
      ["current_email.hashed_token", current.hashedToken],
    );
  }
  return [...fields, ...userFields(link.user, "user.")];
}

export function linkFields(link: Link | undefined): Fields {
  if (!link) return [];
  return [
    ["hashed_token", link.hashedToken],
    ["type", typeName(link.type)],
    ["state", stateName(link.state)],
    ["user_id", link.userId],
    ["email", link.email],
    ["email_change_address", link.emailChangeAddress],
    ["issued_at", isoOf(link.issuedAt)],
    ["expires_at", isoOf(link.expiresAt)],
    ["state_changed_at", isoOf(link.stateChangedAt)],
    ["redirect_to", link.redirectTo],
    ["issued_by", link.issuedBy],
    ["otp_attempts", `${link.otpAttemptsUsed}/${link.otpAttemptsMax}`],
  ];
}

export const LINK_COLUMNS: readonly Column<Link>[] = [
  { header: "HASHED_TOKEN", value: (l) => l.hashedToken },
  { header: "TYPE", value: (l) => typeName(l.type) },
  { header: "STATE", value: (l) => stateName(l.state) },
  { header: "EMAIL", value: (l) => l.email },
  { header: "ISSUED_AT", value: (l) => isoOf(l.issuedAt) },
  { header: "EXPIRES_AT", value: (l) => isoOf(l.expiresAt) },
  { header: "ISSUED_BY", value: (l) => l.issuedBy },
];

export const AUDIT_COLUMNS: readonly Column<AuditEvent>[] = [
  { header: "AT", value: (e) => isoOf(e.at), width: 24 },
  { header: "METHOD", value: (e) => e.method, width: 19 },
  { header: "OUTCOME", value: (e) => (e.count > 1 ? `${e.outcome} x${e.count}` : e.outcome), width: 23 },
  { header: "CALLER", value: (e) => e.caller, width: 20 },
  { header: "TYPE", value: (e) => (e.linkType ? typeName(e.linkType) : ""), width: 12 },
  { header: "EMAIL", value: (e) => e.email, width: 28 },
  { header: "CLIENT", value: (e) => e.clientAddress, width: 15 },
  { header: "REQUEST_ID", value: (e) => e.requestId },
];
