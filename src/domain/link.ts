import type { LinkType } from "./link-type.js";
import type { EmailChangeAddress } from "./user.js";

// An outstanding link as stored: hashes only, never the token or the code.
// A record never changes after it is stored; it is only deleted (redeemed,
// replaced, revoked or expired).

export interface LinkRecord {
  /** SHA-256 hex of the link token; unique. */
  readonly tokenHash: string;
  /** HMAC of the one-time code, bound to type and email (crypto/otp.ts). */
  readonly otpHash: string;
  readonly type: LinkType;
  readonly userId: string;
  /** The normalized address the link was sent to. */
  readonly email: string;
  /** Normalized redirect target; absent when none was requested. */
  readonly redirectTo?: string | undefined;
  /** Links issued by one call share an issue; (issuedAt, issueId) orders issues. */
  readonly issueId: string;
  readonly issuedAt: Date;
  /** The link works while now < expiresAt. */
  readonly expiresAt: Date;
  /** EMAIL_CHANGE only: which change and which address this link confirms. */
  readonly emailChange?: { readonly changeId: string; readonly address: EmailChangeAddress } | undefined;
}
