import type { OtpCodec } from "../crypto/otp.js";
import type { PasswordHasher } from "../crypto/passwords.js";
import type { AssertionIssuer, IssuedAssertion } from "./assertion.js";
import type { AuditLog } from "./audit-log.js";
import { internalCall, type Call } from "./call.js";
import type { Clock } from "./clock.js";
import type { LinkTombstone } from "./link.js";
import { LinkEndings } from "./link-endings.js";
import { LinkIssuing } from "./link-issuing.js";
import type { LinkPreview, PreviewLinkInput } from "./link-preview.js";
import { LinkRedemption } from "./link-redemption.js";
import type { GenerateLinkInput, VerifyLinkInput } from "./link-requests.js";
import type { LinkSettings } from "./link-settings.js";
import type { LinkType } from "./link-type.js";
import type { RateLimiter, RateLimitSettings } from "./rate-limiter.js";
import type { RedirectPolicy } from "./redirect-policy.js";
import type { OperationOptions, Store } from "./store.js";
import type { User } from "./user.js";

// Issuing and redeeming links: the behaviour table of DESIGN.md, one method
// per use case. Knows nothing of protobuf or MongoDB; it talks to the Store
// and AuditLog ports. The work is done in three parts:
//   link-issuing.ts     GenerateLink, ReissueLink
//   link-redemption.ts  VerifyLink, PreviewLink
//   link-endings.ts     links replaced or revoked before their time
//
// Each use case reports its own outcome to the audit log: a generation before
// its secrets leave, a redemption once it has finished, and any failure with
// what the call had learnt by then (the Subject, local to the call). An error
// answer never hides a committed effect that a retry cannot finish
// (docs/retries.md); each part says how it keeps to that.

export interface LinkServiceDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly otp: OtpCodec;
  readonly passwords: PasswordHasher;
  readonly redirects: RedirectPolicy;
  readonly settings: LinkSettings;
  readonly rateLimiter: RateLimiter;
  readonly rateLimits: RateLimitSettings;
  readonly audit: AuditLog;
  /** Signs the proof of each redemption. */
  readonly assertions: AssertionIssuer;
}

/** The secrets of one link, handed out once. */
export interface IssuedLink {
  readonly actionLink: string;
  readonly otp: string;
  readonly hashedToken: string;
}

export interface GeneratedLink {
  readonly type: LinkType;
  readonly user: User;
  /** For EMAIL_CHANGE: the link to the new address. */
  readonly link: IssuedLink;
  /** EMAIL_CHANGE in secure mode: the link to the current address. */
  readonly currentAddressLink: IssuedLink | undefined;
  readonly redirectTo: string | undefined;
  readonly expiresAt: Date;
}

export interface VerifiedLink {
  readonly type: LinkType;
  readonly user: User;
  readonly redirectTo: string | undefined;
  /** EMAIL_CHANGE: this address is confirmed, the other one is still outstanding. */
  readonly emailChangePending: boolean;
  readonly hashedToken: string;
  /** The signed proof of this redemption for the relying application. */
  readonly assertion: IssuedAssertion;
}

/** ReissueLink: which earlier link to issue again, and for how long. */
export interface ReissueLinkInput {
  /** SHA-256 hex of the earlier link's token. */
  readonly hashedToken: string;
  /** undefined: the earlier link's lifetime (its expiry minus its issue), within the configured bounds. */
  readonly expiresInMs: number | undefined;
}

export class LinkService {
  readonly #issuing: LinkIssuing;
  readonly #redemption: LinkRedemption;
  readonly #endings: LinkEndings;

  constructor(deps: LinkServiceDeps) {
    this.#endings = new LinkEndings(deps.store);
    this.#issuing = new LinkIssuing(deps, this.#endings);
    this.#redemption = new LinkRedemption(deps, this.#endings);
  }

  /** GenerateLink: a new link (and code) of a type for an address, audited before its secrets leave. */
  generate(input: GenerateLinkInput, call: Call = internalCall("GenerateLink")): Promise<GeneratedLink> {
    return this.#issuing.generate(input, call);
  }

  /** ReissueLink: a new link for the user, type and redirect of an earlier one (rules: LinkIssuing.reissue). */
  reissue(input: ReissueLinkInput, call: Call = internalCall("ReissueLink")): Promise<GeneratedLink> {
    return this.#issuing.reissue(input, call);
  }

  /** VerifyLink: redeem a link by its token or code, once, and sign the proof. */
  verify(input: VerifyLinkInput, call: Call = internalCall("VerifyLink")): Promise<VerifiedLink> {
    return this.#redemption.verify(input, call);
  }

  /** PreviewLink: where a link stands, for the holder of its token, without consuming it. */
  preview(input: PreviewLinkInput, call: Call = internalCall("PreviewLink")): Promise<LinkPreview> {
    return this.#redemption.preview(input, call);
  }

  /** Revoke a user's outstanding links (of `types`, or all): see LinkEndings.revokeUserLinks. */
  revokeUserLinks(userId: string, types: readonly LinkType[] | undefined, at: Date, op: OperationOptions = {}): Promise<LinkTombstone[]> {
    return this.#endings.revokeUserLinks(userId, types, at, op);
  }

  /** Revoke these links by hash: see LinkEndings.revokeLinks. */
  revokeLinks(tokenHashes: readonly string[], at: Date, op: OperationOptions = {}): Promise<LinkTombstone[]> {
    return this.#endings.revokeLinks(tokenHashes, at, op);
  }
}
