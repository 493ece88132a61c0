import type { ActionLinkFormat } from "./action-link.js";
import type { LinkType } from "./link-type.js";
import type { PasswordPolicy } from "./password-policy.js";

// The knobs of link issuing and redemption, filled from configuration.

export interface LinkSettings {
  /** authlink's public base URL (issuer of assertions, home of the verify page); never taken from a request. */
  readonly publicUrl: URL;
  /** How action links are written: the verify page (default) or an operator's template. */
  readonly actionLink: ActionLinkFormat;
  readonly expiry: {
    /** Lifetime when a request gives none, per type. */
    readonly defaultMs: Readonly<Record<LinkType, number>>;
    /** Bounds for a requested expires_in. */
    readonly minMs: number;
    readonly maxMs: number;
  };
  /** Wrong codes a link survives; the next attempt beyond finds it dead. */
  readonly otpMaxAttempts: number;
  /** Email change needs the current address's confirmation too. */
  readonly secureEmailChange: boolean;
  readonly password: PasswordPolicy;
  /** Largest `data` accepted, in bytes of its JSON form. */
  readonly maxUserDataBytes: number;
  /**
   * How long after a link would have expired its fate (used, replaced,
   * revoked) is still remembered, so PreviewLink can tell its holder.
   */
  readonly tombstoneGraceMs: number;
}
