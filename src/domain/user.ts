// The account a link belongs to, as the domain sees it (no storage or wire
// concerns).

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface User {
  readonly id: string;
  /** Normalized (see email.ts); unique across users. */
  readonly email: string;
  /** argon2id PHC string; absent for users created without a password. */
  readonly passwordHash?: string | undefined;
  readonly emailConfirmedAt?: Date | undefined;
  readonly invitedAt?: Date | undefined;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly userMetadata: JsonObject;
  /** An email change waiting for its confirmations. */
  readonly emailChange?: PendingEmailChange | undefined;
  /** The last email change that completed (so a redemption that completed it can be finished again). */
  readonly completedEmailChange?: CompletedEmailChange | undefined;
}

export interface CompletedEmailChange {
  readonly id: string;
  /** The address the user moved away from. */
  readonly previousEmail: string;
}

export interface PendingEmailChange {
  /** Identifies this change; links of an older change no longer apply. */
  readonly id: string;
  readonly newEmail: string;
  /** Secure email change: the current address must confirm too. */
  readonly requireCurrent: boolean;
  readonly requestedAt: Date;
}

/** Which address of an email change a link was sent to. */
export type EmailChangeAddress = "new" | "current";
