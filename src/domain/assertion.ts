import type { LinkType } from "./link-type.js";

// The proof of redemption: after a link is redeemed, the relying application
// gets a statement it can check without trusting whoever carried it (in a
// browser, the person). The domain says what happened; how it is signed and
// encoded (a JWS today) is the issuer's business.

/** How the link was redeemed: by its token (the link itself) or by its code. */
export type RedemptionMethod = "link" | "code";

export interface RedemptionProof {
  readonly userId: string;
  /** The user's address once the redemption has taken effect. */
  readonly email: string;
  readonly emailVerified: boolean;
  readonly linkType: LinkType;
  readonly method: RedemptionMethod;
  /** EMAIL_CHANGE only: the change this redemption confirms. */
  readonly emailChange?: EmailChangeProof | undefined;
}

export interface EmailChangeProof {
  /** The address before the change. */
  readonly previousEmail: string;
  readonly newEmail: string;
  /**
   * True while the other address (secure email change) has still to confirm:
   * the address has not changed yet, and `email` is still the previous one.
   */
  readonly pending: boolean;
}

export interface IssuedAssertion {
  /** Opaque to the domain; handed to the relying application as is. */
  readonly assertion: string;
  readonly expiresAt: Date;
}

export interface AssertionIssuer {
  issue(proof: RedemptionProof, now: Date): Promise<IssuedAssertion>;
}
