import { normalizeEmail } from "./email.js";
import { invalidRequest, type FieldViolation } from "./errors.js";
import type { LinkSettings } from "./link-settings.js";
import type { LinkType } from "./link-type.js";
import { MAX_PASSWORD_LENGTH, passwordWeakness } from "./password-policy.js";
import type { RedirectPolicy } from "./redirect-policy.js";
import type { JsonObject } from "./user.js";
import { MAX_METADATA_DEPTH, metadataProblem } from "./user-metadata.js";
import { formatDurationMs } from "./durations.js";
import type { OtpCodec } from "../crypto/otp.js";
import { isWellFormedLinkToken } from "../crypto/link-token.js";

// The two requests as the domain receives them (already off the wire) and
// their validation. Validation runs in three steps, each with its own reason:
// malformed input (validation_failed, every bad field listed), then the
// redirect target (redirect_not_allowed), then password strength
// (weak_password). Nothing is read or written before all three pass.

export interface GenerateLinkInput {
  /** undefined: unspecified or not a known type. */
  readonly type: LinkType | undefined;
  readonly email: string;
  readonly redirectTo: string;
  readonly data: JsonObject | undefined;
  readonly password: string;
  readonly newEmail: string;
  /** undefined: use the type's default. */
  readonly expiresInMs: number | undefined;
}

export interface VerifyLinkInput {
  readonly type: LinkType | undefined;
  readonly credential:
    | { readonly kind: "token"; readonly token: string }
    | { readonly kind: "email_otp"; readonly email: string; readonly otp: string }
    | { readonly kind: "none" };
}

export interface GenerateLinkRequest {
  readonly type: LinkType;
  readonly email: string;
  readonly redirectTo: string | undefined;
  readonly data: JsonObject | undefined;
  readonly password: string | undefined;
  readonly newEmail: string | undefined;
  readonly expiresInMs: number;
}

export type VerifyLinkRequest =
  | { readonly type: LinkType; readonly credential: { readonly kind: "token"; readonly token: string } }
  | {
      readonly type: LinkType;
      readonly credential: { readonly kind: "email_otp"; readonly email: string; readonly otp: string };
    };

const TYPES_WITH_DATA: ReadonlySet<LinkType> = new Set(["signup", "invite", "magiclink"]);

export function validateGenerateLink(
  input: GenerateLinkInput,
  settings: LinkSettings,
  redirects: RedirectPolicy,
): GenerateLinkRequest {
  const violations: FieldViolation[] = [];
  const bad = (field: string, description: string) => violations.push({ field, description });
  const { type } = input;

  if (type === undefined) bad("type", "is required (SIGNUP or MAGICLINK or RECOVERY or INVITE or EMAIL_CHANGE)");

  const email = normalizeEmail(input.email);
  if (!email.ok) bad("email", email.problem);

  if (type === "signup") {
    if (input.password === "") bad("password", "is required for SIGNUP");
    else if ([...input.password].length > MAX_PASSWORD_LENGTH) {
      bad("password", `must be at most ${MAX_PASSWORD_LENGTH} characters`);
    }
  } else if (input.password !== "") {
    bad("password", "is allowed only for SIGNUP");
  }

  let newEmail: string | undefined;
  if (type === "email_change") {
    const checked = normalizeEmail(input.newEmail);
    if (!checked.ok) bad("new_email", checked.problem);
    else if (email.ok && checked.email === email.email) bad("new_email", "must differ from the current address");
    else newEmail = checked.email;
  } else if (input.newEmail !== "") {
    bad("new_email", "is allowed only for EMAIL_CHANGE");
  }

  if (input.data !== undefined && type !== undefined) {
    if (!TYPES_WITH_DATA.has(type)) {
      bad("data", "is allowed only for SIGNUP or INVITE or MAGICLINK");
    } else {
      const problem = metadataProblem(input.data, settings.maxUserDataBytes);
      if (problem) bad("data", problem);
    }
  }

  const expiresIn = expiresInProblem(input.expiresInMs, settings);
  if (expiresIn) bad("expires_in", expiresIn);

  if (violations.length > 0 || type === undefined || !email.ok) throw invalidRequest(violations);

  let redirectTo: string | undefined;
  if (input.redirectTo !== "") {
    const checked = redirects.check(input.redirectTo);
    if (!checked.ok) throw invalidRequest([{ field: "redirect_to", description: checked.problem }], "redirect_not_allowed");
    redirectTo = checked.url;
  }

  if (type === "signup") {
    const weakness = passwordWeakness(input.password, email.email, settings.password);
    if (weakness) throw invalidRequest([{ field: "password", description: weakness }], "weak_password");
  }

  return {
    type,
    email: email.email,
    redirectTo,
    data: input.data,
    password: type === "signup" ? input.password : undefined,
    newEmail,
    expiresInMs: input.expiresInMs ?? settings.expiry.defaultMs[type],
  };
}

/** What is wrong with a requested lifetime (undefined: none requested, or within the configured bounds). */
export function expiresInProblem(expiresInMs: number | undefined, settings: LinkSettings): string | undefined {
  const { minMs, maxMs } = settings.expiry;
  if (expiresInMs === undefined || (expiresInMs >= minMs && expiresInMs <= maxMs)) return undefined;
  return `must be between ${formatDurationMs(minMs)} and ${formatDurationMs(maxMs)}`;
}

export function validateVerifyLink(input: VerifyLinkInput, otp: OtpCodec): VerifyLinkRequest {
  const violations: FieldViolation[] = [];
  const bad = (field: string, description: string) => violations.push({ field, description });
  const { type, credential } = input;

  if (type === undefined) bad("type", "is required (SIGNUP or MAGICLINK or RECOVERY or INVITE or EMAIL_CHANGE)");

  switch (credential.kind) {
    case "none":
      bad("credential", "exactly one of token or email_otp is required");
      break;
    case "token":
      if (!isWellFormedLinkToken(credential.token)) bad("token", "must be the 43-character token from the link");
      break;
    case "email_otp": {
      const email = normalizeEmail(credential.email);
      if (!email.ok) bad("email_otp.email", email.problem);
      if (!otp.isWellFormed(credential.otp)) bad("email_otp.otp", `must be ${otp.length} digits`);
      if (violations.length === 0 && type !== undefined && email.ok) {
        return { type, credential: { kind: "email_otp", email: email.email, otp: credential.otp } };
      }
      break;
    }
  }
  if (violations.length > 0 || type === undefined || credential.kind !== "token") throw invalidRequest(violations);
  return { type, credential };
}

/** How deep `data` may nest (the limit of all user metadata, user-metadata.ts). */
export const MAX_DATA_DEPTH = MAX_METADATA_DEPTH;
