import { normalizeEmail } from "./email.js";
import { invalidRequest, type FieldViolation } from "./errors.js";
import type { LinkSettings } from "./link-settings.js";
import { MAX_PASSWORD_LENGTH, passwordWeakness, type PasswordPolicy } from "./password-policy.js";
import type { JsonObject } from "./user.js";
import { metadataProblem } from "./user-metadata.js";

// The UserAdminService requests as the domain receives them (already off the
// wire) and their validation, by GenerateLink's rules (link-requests.ts): the
// same address check and normalization, the same password length and
// strength, the same metadata limits. Malformed input is validation_failed
// with every bad field listed; a weak password is weak_password, checked only
// once the rest is well formed. Nothing is written before both pass.

export interface CreateUserInput {
  readonly email: string;
  /** "" for none. */
  readonly password: string;
  readonly userMetadata: JsonObject | undefined;
  readonly emailConfirm: boolean;
}

export type GetUserInput =
  | { readonly kind: "id"; readonly id: string }
  | { readonly kind: "email"; readonly email: string }
  | { readonly kind: "none" };

export interface UpdateUserInput {
  readonly id: string;
  /** A patch: keys replace, a null removes the key, other keys stay. */
  readonly userMetadata: JsonObject | undefined;
  /** "" for no change. */
  readonly password: string;
  /** "" for no change. */
  readonly email: string;
  /** true: confirm the address now (false changes nothing). */
  readonly emailConfirm: boolean;
}

export interface DeleteUserInput {
  readonly id: string;
}

/** GenerateLink INVITE's input without its type. */
export interface InviteUserInput {
  readonly email: string;
  readonly redirectTo: string;
  readonly data: JsonObject | undefined;
  readonly expiresInMs: number | undefined;
}

export interface CreateUserRequest {
  readonly email: string;
  readonly password: string | undefined;
  readonly userMetadata: JsonObject;
  readonly emailConfirm: boolean;
}

export type GetUserRequest = { readonly kind: "id"; readonly id: string } | { readonly kind: "email"; readonly email: string };

export interface UpdateUserRequest {
  readonly id: string;
  readonly userMetadata: JsonObject | undefined;
  readonly password: string | undefined;
  /** Normalized. */
  readonly email: string | undefined;
  readonly emailConfirm: boolean;
}

/** Longest id accepted (authlink's ids are UUIDs; this only bounds what is looked up). */
const MAX_USER_ID_LENGTH = 128;

type Bad = (field: string, description: string) => void;

function violationCollector(): { violations: FieldViolation[]; bad: Bad } {
  const violations: FieldViolation[] = [];
  return { violations, bad: (field, description) => violations.push({ field, description }) };
}

function checkUserId(id: string, bad: Bad): void {
  if (id === "") bad("id", "is required");
  else if (id.length > MAX_USER_ID_LENGTH || /[^\x21-\x7e]/.test(id)) bad("id", "is not a user id");
}

function checkPasswordLength(password: string, bad: Bad): void {
  if ([...password].length > MAX_PASSWORD_LENGTH) bad("password", `must be at most ${MAX_PASSWORD_LENGTH} characters`);
}

function checkMetadata(metadata: JsonObject | undefined, maxBytes: number, bad: Bad): void {
  const problem = metadata && metadataProblem(metadata, maxBytes);
  if (problem) bad("user_metadata", problem);
}

/** weak_password when `password` fails the policy for a user at `email`. */
export function checkPasswordStrength(password: string, email: string, policy: PasswordPolicy): void {
  const weakness = passwordWeakness(password, email, policy);
  if (weakness) throw invalidRequest([{ field: "password", description: weakness }], "weak_password");
}

export function validateCreateUser(input: CreateUserInput, settings: LinkSettings): CreateUserRequest {
  const { violations, bad } = violationCollector();
  const email = normalizeEmail(input.email);
  if (!email.ok) bad("email", email.problem);
  checkPasswordLength(input.password, bad);
  checkMetadata(input.userMetadata, settings.maxUserDataBytes, bad);
  if (violations.length > 0 || !email.ok) throw invalidRequest(violations);
  if (input.password !== "") checkPasswordStrength(input.password, email.email, settings.password);
  return {
    email: email.email,
    password: input.password === "" ? undefined : input.password,
    userMetadata: input.userMetadata ?? {},
    emailConfirm: input.emailConfirm,
  };
}

export function validateGetUser(input: GetUserInput): GetUserRequest {
  const { violations, bad } = violationCollector();
  switch (input.kind) {
    case "none":
      bad("key", "exactly one of id or email is required");
      break;
    case "id":
      checkUserId(input.id, bad);
      if (violations.length === 0) return { kind: "id", id: input.id };
      break;
    case "email": {
      const email = normalizeEmail(input.email);
      if (email.ok) return { kind: "email", email: email.email };
      bad("email", email.problem);
      break;
    }
  }
  throw invalidRequest(violations);
}

/**
 * The well-formedness of an update. Its password's strength (against the
 * address the user will have) and the size of the merged metadata need the
 * user: the use case checks them before it writes anything.
 */
export function validateUpdateUser(input: UpdateUserInput, settings: LinkSettings): UpdateUserRequest {
  const { violations, bad } = violationCollector();
  checkUserId(input.id, bad);
  let email: string | undefined;
  if (input.email !== "") {
    const checked = normalizeEmail(input.email);
    if (checked.ok) email = checked.email;
    else bad("email", checked.problem);
  }
  checkPasswordLength(input.password, bad);
  checkMetadata(input.userMetadata, settings.maxUserDataBytes, bad);
  if (violations.length > 0) throw invalidRequest(violations);
  return {
    id: input.id,
    userMetadata: input.userMetadata,
    password: input.password === "" ? undefined : input.password,
    email,
    emailConfirm: input.emailConfirm,
  };
}

export function validateDeleteUser(input: DeleteUserInput): DeleteUserInput {
  const { violations, bad } = violationCollector();
  checkUserId(input.id, bad);
  if (violations.length > 0) throw invalidRequest(violations);
  return input;
}
