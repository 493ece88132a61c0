import type { LinkType } from "./link-type.js";
import type { EmailChangeAddress } from "./user.js";

// An outstanding link as stored: hashes only, never the token or the code.
// A record is stored pending and changes once, when its GenerateLink makes
// it usable as its last step; otherwise it is only deleted, after its fate
// (used, replaced, revoked) is recorded as its tombstone, or forgotten once
// it is past `retainUntil`.

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
  /**
   * When the store may forget the link: its expiry plus the tombstone grace
   * period. An expired link stays stored (unusable: every read checks
   * expiresAt) until then, so that PreviewLink can tell its holder it
   * expired; so does its tombstone when it goes earlier (LinkTombstone).
   */
  readonly retainUntil: Date;
  /** EMAIL_CHANGE only: which change and which address this link confirms. */
  readonly emailChange?: LinkEmailChange | undefined;
  /**
   * True until the GenerateLink that stored it has done everything else: a
   * pending link cannot be redeemed, and PreviewLink does not know it. So a
   * GenerateLink that fails half way leaves nothing anyone can use.
   */
  readonly pending?: boolean | undefined;
  /**
   * The caller that issued it: its service identity, else its name as the
   * audit trail gives it. Absent on links stored before it was recorded.
   */
  readonly issuedBy?: string | undefined;
}

/** Which change and which address an EMAIL_CHANGE link confirms. */
export interface LinkEmailChange {
  readonly changeId: string;
  readonly address: EmailChangeAddress;
}

/** Why a link left the store before it was due to be forgotten. */
export type LinkEnding = "used" | "replaced" | "revoked";

/**
 * The fate of a link, keyed by its token hash, kept until the link's
 * `retainUntil`: the reason, when, and the link's descriptive fields (never
 * its code's HMAC). The first tombstone recorded for a hash is the link's
 * fate: recording it is how a redemption claims a link and how a revocation
 * ends one, and the link document is deleted only afterwards. A "used"
 * tombstone holds all a redemption needs to finish (store.ts).
 */
export interface LinkTombstone {
  readonly tokenHash: string;
  readonly ending: LinkEnding;
  /** When the link was used, replaced or revoked. */
  readonly at: Date;
  readonly type: LinkType;
  readonly userId: string;
  readonly email: string;
  readonly redirectTo?: string | undefined;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
  readonly retainUntil: Date;
  readonly emailChange?: LinkEmailChange | undefined;
  /** Copied from the link (absent on links stored before it was recorded). */
  readonly issuedBy?: string | undefined;
}

/** The tombstone of `link`, which ended as `ending` at `at`. */
export function tombstoneOf(link: LinkRecord, ending: LinkEnding, at: Date): LinkTombstone {
  return {
    tokenHash: link.tokenHash,
    ending,
    at,
    type: link.type,
    userId: link.userId,
    email: link.email,
    redirectTo: link.redirectTo,
    issuedAt: link.issuedAt,
    expiresAt: link.expiresAt,
    retainUntil: link.retainUntil,
    emailChange: link.emailChange,
    issuedBy: link.issuedBy,
  };
}
