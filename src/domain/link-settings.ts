import type { LinkType } from "./link-type.js";
import type { PasswordPolicy } from "./password-policy.js";

// The knobs of link issuing and redemption, filled from configuration.

export interface LinkSettings {
  /** Base of every action link; never taken from a request. */
  readonly publicUrl: URL;
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
}
