import { createAuditTrail } from "../../src/audit/audit-trail.js";
import { createOtpCodec } from "../../src/crypto/otp.js";
import { createArgon2Hasher, DEFAULT_ARGON2_PARAMS } from "../../src/crypto/passwords.js";
import { Secret } from "../../src/crypto/secret.js";
import { AuthlinkError } from "../../src/domain/errors.js";
import type { GenerateLinkInput } from "../../src/domain/link-requests.js";
import { LinkService } from "../../src/domain/link-service.js";
import type { LinkType } from "../../src/domain/link-type.js";
import type { LinkSettings } from "../../src/domain/link-settings.js";
import { RateLimiter, type RateLimitSettings } from "../../src/domain/rate-limiter.js";
import { compileRedirectPolicy } from "../../src/domain/redirect-policy.js";
import type { Store } from "../../src/domain/store.js";
import type { Logger } from "../../src/log/logger.js";
import { testAssertionSigner } from "./assertions.js";
import { createCapturedLogger } from "./captured-logger.js";
import { linkParams } from "./links.js";
import { ManualClock } from "./manual-clock.js";

// The domain's LinkService built by hand on a given store, with a manual
// clock, real crypto, a real audit trail and a real signer: what the domain
// tests (link-service, link-preview, user-admin) share.

export const HOUR = 3_600_000;

export const TEST_LINK_SETTINGS: LinkSettings = {
  publicUrl: new URL("https://auth.example.com"),
  actionLink: { kind: "verify_page", publicUrl: new URL("https://auth.example.com") },
  expiry: {
    defaultMs: { signup: HOUR, magiclink: HOUR, recovery: HOUR, invite: 24 * HOUR, email_change: HOUR },
    minMs: 60_000,
    maxMs: 7 * 24 * HOUR,
  },
  otpMaxAttempts: 5,
  secureEmailChange: true,
  password: { minLength: 8 },
  maxUserDataBytes: 8192,
  tombstoneGraceMs: 24 * HOUR,
};

/** Every limit off: limits have their own tests (rate-limiter.test.ts). */
export const NO_RATE_LIMITS: RateLimitSettings = {
  generatePerCaller: { limit: 0, windowMs: 60_000 },
  generatePerEmail: { limit: 0, windowMs: 60_000 },
  verifyPerAddress: { limit: 0, windowMs: 60_000 },
  verifyCodePerEmailAndClient: { limit: 0, windowMs: 60_000 },
  verifyCodePerEmail: { limit: 0, windowMs: 60_000 },
};

export interface LinkServiceFixture {
  readonly links: LinkService;
  readonly store: Store;
  readonly clock: ManualClock;
}

export function makeLinkService(
  store: Store,
  options: {
    readonly settings?: Partial<LinkSettings>;
    readonly rateLimits?: RateLimitSettings;
    /** Default: a captured logger, which keeps every line (a benchmark passes a silent one). */
    readonly logger?: Logger;
  } = {},
): LinkServiceFixture {
  const clock = new ManualClock();
  const links = new LinkService({
    store,
    clock,
    otp: createOtpCodec(new Secret("s".repeat(32)), 6),
    passwords: createArgon2Hasher(DEFAULT_ARGON2_PARAMS),
    redirects: compileRedirectPolicy(["https://app.example.com/**"]).policy,
    settings: { ...TEST_LINK_SETTINGS, ...options.settings },
    rateLimiter: new RateLimiter(store.rateLimits, clock),
    rateLimits: options.rateLimits ?? NO_RATE_LIMITS,
    audit: createAuditTrail({ store: store.audit, logger: options.logger ?? createCapturedLogger().logger, retentionMs: 30 * 24 * HOUR }),
    assertions: testAssertionSigner(),
  });
  return { links, store, clock };
}

/** The strong password a SIGNUP input gets by default. */
export const TEST_PASSWORD = "correct horse battery staple";

/** A GenerateLink input as the wire leaves unset fields (empty strings), a SIGNUP with TEST_PASSWORD. */
export function generateInput(type: LinkType, email: string, extra: Partial<GenerateLinkInput> = {}): GenerateLinkInput {
  return {
    type,
    email,
    redirectTo: "",
    data: undefined,
    password: type === "signup" ? TEST_PASSWORD : "",
    newEmail: "",
    expiresInMs: undefined,
    ...extra,
  };
}

/** The token of an issued link, read from its action link. */
export const tokenOf = (link: { readonly actionLink: string }): string => linkParams(link.actionLink).get("token") ?? "";

/**
 * Whether VerifyLink redeems this token now (it is consumed if so): false on
 * link_invalid_or_expired, any other error thrown.
 */
export async function redeems(links: LinkService, type: LinkType, token: string): Promise<boolean> {
  try {
    await links.verify({ type, credential: { kind: "token", token } });
    return true;
  } catch (error) {
    if (error instanceof AuthlinkError && error.reason === "link_invalid_or_expired") return false;
    throw error;
  }
}
