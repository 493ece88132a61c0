import { randomUUID } from "node:crypto";
import { hashLinkToken, isWellFormedHashedToken, newLinkToken } from "../crypto/link-token.js";
import type { OtpCodec } from "../crypto/otp.js";
import type { PasswordHasher } from "../crypto/passwords.js";
import type { OperationOptions, Store } from "./store.js";
import { buildActionLink } from "./action-link.js";
import type { AssertionIssuer, IssuedAssertion } from "./assertion.js";
import type { AuditLog } from "./audit-log.js";
import { auditEventOf, newSubject, type Subject } from "./audit-subject.js";
import { internalCall, type Call } from "./call.js";
import type { Clock } from "./clock.js";
import { AuthlinkError, invalidRequest, linkInvalidOrExpired, type FieldViolation } from "./errors.js";
import { tombstoneOf, type LinkEnding, type LinkRecord, type LinkTombstone } from "./link.js";
import {
  previewOf,
  validatePreviewLink,
  type LinkPreview,
  type LinkState,
  type PreviewLinkInput,
} from "./link-preview.js";
import {
  expiresInProblem,
  validateGenerateLink,
  validateVerifyLink,
  type GenerateLinkInput,
  type GenerateLinkRequest,
  type VerifyLinkInput,
} from "./link-requests.js";
import type { LinkSettings } from "./link-settings.js";
import type { LinkType } from "./link-type.js";
import type { RateLimiter, RateLimitSettings } from "./rate-limiter.js";
import type { RedirectPolicy } from "./redirect-policy.js";
import type { EmailChangeAddress, JsonObject, User } from "./user.js";

// Issuing and redeeming links: the behaviour table of DESIGN.md. Knows
// nothing of protobuf or MongoDB; it talks to the Store and AuditLog ports.
//
// Each use case reports its own outcome to the audit log: a generation before
// its secrets leave, a redemption once it has finished, and any failure with
// what the call had learnt by then (the Subject, local to the call).
//
// An error answer never hides a committed effect that a retry cannot finish
// (docs/retries.md):
// - GenerateLink stores its links pending (unusable), has the event audited,
//   ends the older links of the type, and makes its own usable as its last
//   write. A call that fails before that leaves nothing anyone can use, and
//   a retry issues a new link that replaces whatever the failed one did.
// - VerifyLink claims the link by recording its "used" tombstone (the first
//   fate recorded for a link wins), applies the effect (idempotent), and
//   then records that this call finished it: of all the calls that finish
//   one claimed link, the first to record that answers success; the others
//   answer PERMISSION_DENIED. A claim left by a call that failed is finished
//   by the next call with the token or code; a call that finished it is
//   answered again when it retries under the same request id.
// - Replacements and revocations record their tombstones first, and delete
//   the link documents of the links whose fate they decided.

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

/** What the effect of a redemption produced, before its proof is signed. */
type Effect = Omit<VerifiedLink, "assertion"> & {
  /** EMAIL_CHANGE: the address the change moves away from. */
  readonly previousEmail?: string;
};

/** A finished redemption, and the tidying-up that may still be running. */
interface Redemption {
  readonly verified: VerifiedLink;
  readonly tidied: Promise<void>;
}

/** ReissueLink: which earlier link to issue again, and for how long. */
export interface ReissueLinkInput {
  /** SHA-256 hex of the earlier link's token. */
  readonly hashedToken: string;
  /** undefined: the earlier link's lifetime (its expiry minus its issue), within the configured bounds. */
  readonly expiresInMs: number | undefined;
}

/** The user a link is issued to, and for an email change the write that starts the change. */
interface PreparedUser {
  readonly user: User;
  /** Stores what `user` holds; runs once the new links are stored and audited. */
  readonly commit?: (op: OperationOptions) => Promise<User>;
}

/** How many live links sent to one address a code is tried against. */
const MAX_OTP_CANDIDATES = 10;

/**
 * How long after its claim a redemption can still be finished (by any call
 * with the token or code), or answered again to the call that finished it,
 * when that is later than the link's expiry.
 */
export const FINISH_WINDOW_MS = 15 * 60_000;

/** The claims key that records which call finished the redemption of a link. */
const finishedKey = (tokenHash: string) => `redeemed:${tokenHash}`;

export class LinkService {
  readonly #deps: LinkServiceDeps;

  constructor(deps: LinkServiceDeps) {
    this.#deps = deps;
  }

  async generate(input: GenerateLinkInput, call: Call = internalCall("GenerateLink")): Promise<GeneratedLink> {
    const subject = newSubject();
    try {
      return await this.#generate(input, call, subject);
    } catch (error) {
      await this.#deps.audit.recordOutcome(this.#auditEvent(call, subject, error));
      throw error;
    }
  }

  async #generate(input: GenerateLinkInput, call: Call, subject: Subject): Promise<GeneratedLink> {
    const { settings, redirects, passwords, clock } = this.#deps;
    const request = validateGenerateLink(input, settings, redirects);
    Object.assign(subject, { linkType: request.type, email: request.email });
    const op: OperationOptions = { signal: call.signal };
    await this.#takeGenerateLimits(request.type, request.email, call, op);
    const passwordHash = request.password === undefined ? undefined : await passwords.hash(request.password);
    call.signal.throwIfAborted();
    const now = clock.now();
    const prepared = await this.#prepareUser(request, passwordHash, now, op);
    subject.userId = prepared.user.id;

    const issued = await this.#issue(request, prepared, now, call, subject);
    return { type: request.type, user: issued.user, redirectTo: request.redirectTo, expiresAt: issued.expiresAt, ...issued.links };
  }

  /** The rate limits of issuing a link (GenerateLink and ReissueLink alike). */
  async #takeGenerateLimits(type: LinkType, email: string, call: Call, op: OperationOptions): Promise<void> {
    const { rateLimiter, rateLimits } = this.#deps;
    await rateLimiter.take("generate-caller", call.serviceIdentity ?? "", rateLimits.generatePerCaller, op);
    await rateLimiter.take("generate-email", `${type}:${email}`, rateLimits.generatePerEmail, op);
  }

  /**
   * A new link (new token, new code) for the user, type and redirect of an
   * earlier one, issued as GenerateLink issues (#issue: audited before the
   * secrets leave; it replaces every outstanding link of the type for the
   * user, the earlier one included). The same rules as GenerateLink apply to
   * the user as they are now: a SIGNUP or INVITE for a user who has
   * confirmed since is email_exists (an INVITE counts as invited again); a
   * user deleted since is user_not_found; an EMAIL_CHANGE link is issued
   * again (both addresses in secure mode) only while its change is still
   * the user's pending one (else email_change_not_pending), and not when
   * another user holds the new address by now (email_exists). No password
   * is asked again: a SIGNUP user has one. Links go to the user's current
   * address. A used link is link_already_used; an unknown or pending one
   * link_not_found.
   */
  async reissue(input: ReissueLinkInput, call: Call = internalCall("ReissueLink")): Promise<GeneratedLink> {
    const subject = newSubject();
    try {
      return await this.#reissue(input, call, subject);
    } catch (error) {
      await this.#deps.audit.recordOutcome(this.#auditEvent(call, subject, error));
      throw error;
    }
  }

  async #reissue(input: ReissueLinkInput, call: Call, subject: Subject): Promise<GeneratedLink> {
    const { store, settings, redirects, clock } = this.#deps;
    const violations: FieldViolation[] = [];
    if (!isWellFormedHashedToken(input.hashedToken)) {
      violations.push({ field: "hashed_token", description: "must be the 64 lower-case hex characters of a hashed token" });
    }
    const expiresIn = expiresInProblem(input.expiresInMs, settings);
    if (expiresIn) violations.push({ field: "expires_in", description: expiresIn });
    if (violations.length > 0) throw invalidRequest(violations);
    subject.hashedTokens.push(input.hashedToken);

    const op: OperationOptions = { signal: call.signal };
    const now = clock.now();
    const [link, tombstone] = await Promise.all([
      store.links.find(input.hashedToken, now, op),
      store.tombstones.find(input.hashedToken, now, op),
    ]);
    // Its tombstone is its fate; a pending link has not been handed out.
    const earlier = tombstone ?? (link?.pending ? undefined : link);
    if (!earlier) throw new AuthlinkError("link_not_found");
    Object.assign(subject, { linkType: earlier.type, userId: earlier.userId });
    if (previewOf(earlier.type, now, link, tombstone).state === "used") throw new AuthlinkError("link_already_used");

    let redirectTo = earlier.redirectTo;
    if (redirectTo !== undefined) {
      // Allowed when it was issued; the allow-list may have changed since.
      const checked = redirects.check(redirectTo);
      if (!checked.ok) {
        throw invalidRequest([{ field: "redirect_to", description: "of the earlier link is no longer allowed" }], "redirect_not_allowed");
      }
      redirectTo = checked.url;
    }
    const { minMs, maxMs } = settings.expiry;
    const lifetimeMs = earlier.expiresAt.getTime() - earlier.issuedAt.getTime();
    const expiresInMs = input.expiresInMs ?? Math.min(maxMs, Math.max(minMs, lifetimeMs));

    const found = await store.users.findById(earlier.userId, op);
    if (!found) throw new AuthlinkError("user_not_found");
    subject.email = found.email;
    await this.#takeGenerateLimits(earlier.type, found.email, call, op);
    call.signal.throwIfAborted();
    const user = await this.#userForReissue(earlier, found, now, op);
    const request: GenerateLinkRequest = {
      type: earlier.type,
      email: user.email,
      redirectTo,
      data: undefined,
      password: undefined,
      newEmail: earlier.type === "email_change" ? user.emailChange?.newEmail : undefined,
      expiresInMs,
    };
    const issued = await this.#issue(request, { user }, now, call, subject);
    return { type: request.type, user: issued.user, redirectTo, expiresAt: issued.expiresAt, ...issued.links };
  }

  /** The user a link is issued to again, as the rules of its type are now (see reissue). */
  async #userForReissue(earlier: LinkTombstone | LinkRecord, user: User, now: Date, op: OperationOptions): Promise<User> {
    const { users } = this.#deps.store;
    switch (earlier.type) {
      case "signup":
        if (user.emailConfirmedAt) throw new AuthlinkError("email_exists");
        return user;
      case "invite": {
        if (user.emailConfirmedAt) throw new AuthlinkError("email_exists");
        const invited = await users.update(user.id, { updatedAt: now, invitedAt: now }, op);
        if (!invited) throw new AuthlinkError("user_not_found");
        return invited;
      }
      case "magiclink":
      case "recovery":
        return user;
      case "email_change": {
        const change = user.emailChange;
        if (!change || change.id !== earlier.emailChange?.changeId) throw new AuthlinkError("email_change_not_pending");
        const holder = await users.findByEmail(change.newEmail, op);
        if (holder && holder.id !== user.id) throw new AuthlinkError("email_exists");
        return user;
      }
    }
  }

  /**
   * Mint the link (two for a secure email change), store their hashes
   * pending, have the issue audited, replace the user's older links of the
   * type, and make the new ones usable: that last write is what makes the
   * issue count, so a failure before it leaves nothing usable.
   */
  async #issue(
    request: GenerateLinkRequest,
    prepared: PreparedUser,
    now: Date,
    call: Call,
    subject: Subject,
  ): Promise<{ user: User; expiresAt: Date; links: Pick<GeneratedLink, "link" | "currentAddressLink"> }> {
    const { store, settings, otp } = this.#deps;
    const op: OperationOptions = { signal: call.signal };
    const issueId = nextIssueId();
    const expiresAt = new Date(now.getTime() + request.expiresInMs);
    let user = prepared.user;
    const change = request.type === "email_change" ? user.emailChange : undefined;
    const mint = (email: string, address?: EmailChangeAddress) => {
      const { token, tokenHash } = newLinkToken();
      const code = otp.generate();
      const record: LinkRecord = {
        tokenHash,
        otpHash: otp.hash(request.type, email, code),
        type: request.type,
        userId: user.id,
        email,
        redirectTo: request.redirectTo,
        issueId,
        issuedAt: now,
        expiresAt,
        // Kept (expired, unusable) and then remembered by its tombstone
        // for the grace period, so PreviewLink can tell its holder.
        retainUntil: new Date(expiresAt.getTime() + settings.tombstoneGraceMs),
        emailChange: change && address ? { changeId: change.id, address } : undefined,
        pending: true,
        issuedBy: call.serviceIdentity ?? call.callerName,
      };
      const link: IssuedLink = {
        actionLink: buildActionLink(settings.actionLink, token, request.type, request.redirectTo),
        otp: code,
        hashedToken: tokenHash,
      };
      return { record, link };
    };

    const primary = change ? mint(change.newEmail, "new") : mint(user.email);
    const current = change?.requireCurrent ? mint(user.email, "current") : undefined;
    const records = current ? [primary.record, current.record] : [primary.record];
    subject.hashedTokens.push(...records.map((r) => r.tokenHash));
    await store.links.insert(records, op);
    try {
      call.signal.throwIfAborted();
      // No secret leaves unaudited: if this event cannot be stored, the
      // caller gets UNAVAILABLE and the user's earlier links are untouched.
      await this.#deps.audit.recordBeforeHandout(this.#auditEvent(call, subject));
      // Only now do the older links go. (For an email change, starting the
      // new change is what ends the older change's links.) A failure from
      // here on may have ended them: the caller's retry issues the link
      // that replaces them.
      if (prepared.commit) user = await prepared.commit(op);
      if (await this.#replaceOlderIssues(user.id, request.type, now, issueId, op)) {
        await store.links.markIssued(records.map((r) => r.tokenHash), op);
      }
    } catch (error) {
      // The caller will never see these links (deadline passed, client gone,
      // or a fault). They are pending, so nobody can use them even if this
      // fails too; removing them only tidies up. Nobody holds their tokens,
      // so they leave no tombstone.
      await Promise.all(records.map((r) => store.links.delete(r.tokenHash))).catch(() => undefined);
      throw error;
    }
    return { user, expiresAt, links: { link: primary.link, currentAddressLink: current?.link } };
  }

  /**
   * End the user's links of `type` from every issue but the newest (this
   * one, unless a newer one is already stored). When two calls race, the
   * newer issue wins, as if the calls had come one after the other: each
   * reads after storing its own links, so at least one of them sees both.
   * Returns whether this issue is the newest (then its links are made
   * usable; else they are replaced before anyone saw them).
   */
  async #replaceOlderIssues(userId: string, type: LinkType, now: Date, issueId: string, op: OperationOptions): Promise<boolean> {
    const stored = await this.#deps.store.links.findByUser(userId, type, op);
    const newer = (a: { issuedAt: Date; issueId: string }, b: { issuedAt: Date; issueId: string }) =>
      a.issuedAt.getTime() > b.issuedAt.getTime() || (a.issuedAt.getTime() === b.issuedAt.getTime() && a.issueId > b.issueId);
    let newest = { issuedAt: now, issueId };
    for (const link of stored) if (newer(link, newest)) newest = link;
    await this.#end(stored.filter((link) => link.issueId !== newest.issueId), "replaced", now, op);
    return newest.issueId === issueId;
  }

  async verify(input: VerifyLinkInput, call: Call = internalCall("VerifyLink")): Promise<VerifiedLink> {
    const subject = newSubject();
    let redemption: Redemption;
    try {
      redemption = await this.#verify(input, call, subject);
    } catch (error) {
      await this.#deps.audit.recordOutcome(this.#auditEvent(call, subject, error));
      throw error;
    }
    // The redemption has finished: the answer is success even if the event
    // cannot be stored right now (recordOutcome keeps and retries it).
    await Promise.all([this.#deps.audit.recordOutcome(this.#auditEvent(call, subject)), redemption.tidied]);
    return redemption.verified;
  }

  async #verify(input: VerifyLinkInput, call: Call, subject: Subject): Promise<Redemption> {
    const { store, clock, rateLimiter, rateLimits } = this.#deps;
    const op: OperationOptions = { signal: call.signal };
    // Per client address, before anything else, so malformed floods count
    // too. A backend that proved the service role verifies for many people
    // from one address and is not limited here.
    if (call.serviceIdentity === undefined) {
      await rateLimiter.take("verify-address", call.clientAddress, rateLimits.verifyPerAddress, op);
    }
    const request = validateVerifyLink(input, this.#deps.otp);
    subject.linkType = request.type;
    const now = clock.now();
    const { credential } = request;
    let tokenHash: string;
    let link: LinkRecord | undefined;
    let finisher: string | undefined;
    if (credential.kind === "token") {
      tokenHash = hashLinkToken(credential.token);
      subject.hashedTokens.push(tokenHash);
      // Both by _id, together: one round trip.
      [link, finisher] = await Promise.all([
        store.links.find(tokenHash, now, op),
        store.claims.holderOf(finishedKey(tokenHash), now, op),
      ]);
    } else {
      subject.email = credential.email;
      // Two budgets: a stranger from one client address spends only their
      // own share of an address's code attempts; the per-address ceiling
      // bounds guessing from many client addresses.
      await rateLimiter.take("verify-code-client", `${credential.email} ${call.clientAddress}`, rateLimits.verifyCodePerEmailAndClient, op);
      await rateLimiter.take("verify-code", credential.email, rateLimits.verifyCodePerEmail, op);
      link = await this.#matchCode(credential.email, credential.otp, request.type, now, op);
      if (!link) throw linkInvalidOrExpired();
      tokenHash = link.tokenHash;
      subject.hashedTokens.push(tokenHash);
      finisher = await store.claims.holderOf(finishedKey(tokenHash), now, op);
    }

    const claim = await this.#claim(tokenHash, link, request.type, finisher, call.requestId, now, op);
    Object.assign(subject, { userId: claim.userId, email: claim.email, linkAgeMs: now.getTime() - claim.issuedAt.getTime() });
    const { previousEmail, ...verified } = await this.#applyEffect(claim, now);
    // Nobody would hear the answer: leave the claim for the next call to finish.
    call.signal.throwIfAborted();
    // Of all the calls that finish this claim, the first to record it answers
    // success (and so does that call again, retried under its request id).
    if ((await store.claims.hold(finishedKey(tokenHash), call.requestId, claim.retainUntil, op)) !== call.requestId) {
      throw linkInvalidOrExpired();
    }
    // The link document is clutter now (its tombstone and this record say
    // it is used); a failure to remove it changes nothing.
    const tidied = store.links.delete(tokenHash).then(
      () => undefined,
      () => undefined,
    );
    const assertion = await this.#deps.assertions.issue(
      {
        userId: verified.user.id,
        email: verified.user.email,
        emailVerified: verified.user.emailConfirmedAt !== undefined,
        linkType: claim.type,
        method: credential.kind === "token" ? "link" : "code",
        emailChange:
          previousEmail === undefined
            ? undefined
            : {
                previousEmail,
                newEmail: verified.emailChangePending
                  ? (verified.user.emailChange?.newEmail ?? verified.user.email)
                  : verified.user.email,
                pending: verified.emailChangePending,
              },
      },
      now,
    );
    return { verified: { ...verified, assertion }, tidied };
  }

  /**
   * The redemption of the link with `tokenHash` that this call may finish:
   * its "used" tombstone, recorded now by this call (a live, issued link of
   * `type`), or recorded earlier by a call that did not finish it (a fault,
   * or still running) and not older than FINISH_WINDOW_MS past the link's
   * expiry. Throws link_invalid_or_expired for everything else: unknown,
   * pending, expired, of another type, replaced, revoked, or finished by
   * another call. `finisher` is the call that finished it, if one did: this
   * call (retried under its request id) may finish it again.
   */
  async #claim(
    tokenHash: string,
    link: LinkRecord | undefined,
    type: LinkType,
    finisher: string | undefined,
    requestId: string,
    now: Date,
    op: OperationOptions,
  ): Promise<LinkTombstone> {
    const { tombstones } = this.#deps.store;
    if (finisher !== undefined && finisher !== requestId) throw linkInvalidOrExpired();
    let claim: LinkTombstone | undefined;
    const usable = link !== undefined && link.type === type && !link.pending && now.getTime() < link.expiresAt.getTime();
    if (usable && finisher === undefined) {
      [claim] = await tombstones.record([tombstoneOf(link, "used", now)], op);
    }
    // Not recorded by this call: another fate came first, or an earlier call
    // claimed it (the link may have expired since: the claim has not).
    if (!claim && (finisher !== undefined || (link !== undefined && link.type === type && !link.pending))) {
      claim = await tombstones.find(tokenHash, now, op);
    }
    const finishBy = claim && Math.max(claim.expiresAt.getTime(), claim.at.getTime() + FINISH_WINDOW_MS);
    if (!claim || claim.ending !== "used" || claim.type !== type || now.getTime() >= (finishBy as number)) {
      throw linkInvalidOrExpired();
    }
    return claim;
  }

  /**
   * Where a link stands, without consuming anything: for the holder of its
   * token (the verify page asks on load). Rate limited and audited like
   * VerifyLink; reads the link and its tombstone by hash only.
   */
  async preview(input: PreviewLinkInput, call: Call = internalCall("PreviewLink")): Promise<LinkPreview> {
    const subject = newSubject();
    let preview: LinkPreview;
    try {
      preview = await this.#preview(input, call, subject);
    } catch (error) {
      await this.#deps.audit.recordOutcome(this.#auditEvent(call, subject, error));
      throw error;
    }
    await this.#deps.audit.recordOutcome(this.#auditEvent(call, subject));
    return preview;
  }

  async #preview(input: PreviewLinkInput, call: Call, subject: Subject): Promise<LinkPreview> {
    const { store, clock, rateLimiter, rateLimits } = this.#deps;
    const op: OperationOptions = { signal: call.signal };
    // The same per-address budget as VerifyLink (a preview is a guess at a
    // token as much as a redemption is), before anything else.
    if (call.serviceIdentity === undefined) {
      await rateLimiter.take("verify-address", call.clientAddress, rateLimits.verifyPerAddress, op);
    }
    const request = validatePreviewLink(input);
    subject.linkType = request.type;
    const tokenHash = hashLinkToken(request.token);
    subject.hashedTokens.push(tokenHash);
    const now = clock.now();
    // Both by _id, together: one round trip.
    const [link, tombstone] = await Promise.all([
      store.links.find(tokenHash, now, op),
      store.tombstones.find(tokenHash, now, op),
    ]);
    const known = link ?? tombstone;
    if (known) {
      // Known to the operator even when the holder asked with another type.
      Object.assign(subject, { userId: known.userId, email: known.email, linkAgeMs: now.getTime() - known.issuedAt.getTime() });
    }
    const preview = previewOf(request.type, now, link, tombstone);
    subject.linkState = preview.state;
    return preview;
  }

  /**
   * End these links as `ending`: record their tombstones (the first fate
   * recorded for a link wins, so a link a redemption claimed first, or that
   * another call ended first, is not this call's), then delete the link
   * documents of those this call ended. Returns them. The deletes are
   * tidying up: the tombstone already makes the link unusable.
   */
  async #end(links: readonly LinkRecord[], ending: LinkEnding, at: Date, op: OperationOptions = {}): Promise<LinkTombstone[]> {
    if (links.length === 0) return [];
    const { store } = this.#deps;
    const ended = await store.tombstones.record(links.map((link) => tombstoneOf(link, ending, at)), op);
    await Promise.all(ended.map((tombstone) => store.links.delete(tombstone.tokenHash).catch(() => false)));
    return ended;
  }

  /** The audit event of a call: its outcome is "ok" without `error`, else the error's reason. */
  #auditEvent(call: Call, subject: Subject, error?: unknown) {
    return auditEventOf(call, subject, this.#deps.clock.now(), error);
  }

  /**
   * The user a link is issued to, created or updated as the link type says
   * (a retry does the same again). An email change is only prepared here: it
   * is started (commit) once the new links are stored and audited, since
   * starting it ends the links of the change pending before.
   */
  async #prepareUser(
    request: GenerateLinkRequest,
    passwordHash: string | undefined,
    now: Date,
    op: OperationOptions,
  ): Promise<PreparedUser> {
    const prepared = async (user: Promise<User>): Promise<PreparedUser> => ({ user: await user });
    const { users } = this.#deps.store;
    const data = request.data ?? {};
    const fresh = (fields: Partial<User>): User => ({
      id: randomUUID(),
      email: request.email,
      createdAt: now,
      updatedAt: now,
      userMetadata: data,
      ...fields,
    });

    switch (request.type) {
      case "signup":
        return prepared(this.#findOrCreate(request.email, fresh({ passwordHash }), op, async (existing) => {
          if (existing.emailConfirmedAt) throw new AuthlinkError("email_exists");
          return users.update(
            existing.id,
            { updatedAt: now, passwordHash, userMetadata: mergeMetadata(existing.userMetadata, request.data) },
            op,
          );
        }));
      case "invite":
        return prepared(this.#findOrCreate(request.email, fresh({ invitedAt: now }), op, async (existing) => {
          if (existing.emailConfirmedAt) throw new AuthlinkError("email_exists");
          return users.update(
            existing.id,
            { updatedAt: now, invitedAt: now, userMetadata: mergeMetadata(existing.userMetadata, request.data) },
            op,
          );
        }));
      case "magiclink":
        return prepared(this.#findOrCreate(request.email, fresh({}), op, async (existing) => existing));
      case "recovery": {
        const user = await users.findByEmail(request.email, op);
        if (!user) throw new AuthlinkError("user_not_found");
        return { user };
      }
      case "email_change": {
        const user = await users.findByEmail(request.email, op);
        if (!user) throw new AuthlinkError("user_not_found");
        const newEmail = request.newEmail as string;
        if (await users.findByEmail(newEmail, op)) throw new AuthlinkError("email_exists");
        const emailChange = {
          id: randomUUID(),
          newEmail,
          requireCurrent: this.#deps.settings.secureEmailChange,
          requestedAt: now,
        };
        const commit = async (commitOp: OperationOptions) => {
          const updated = await users.update(user.id, { updatedAt: now, emailChange }, commitOp);
          if (!updated) throw new AuthlinkError("user_not_found");
          return updated;
        };
        return { user: { ...user, updatedAt: now, emailChange }, commit };
      }
    }
  }

  /**
   * The existing user for `email` (passed through `onExisting`), or `created`
   * inserted. When another call creates the same user in between, the insert
   * loses on the unique index and the now-existing user is used.
   */
  async #findOrCreate(
    email: string,
    created: User,
    op: OperationOptions,
    onExisting: (user: User) => Promise<User | undefined>,
  ): Promise<User> {
    const { users } = this.#deps.store;
    for (let attempt = 0; attempt < 3; attempt++) {
      const existing = await users.findByEmail(email, op);
      if (existing) {
        const user = await onExisting(existing);
        if (user) return user;
        continue; // deleted in between: look again
      }
      if ((await users.insert(created, op)) === "inserted") return created;
    }
    throw new Error("user kept changing while a link was issued");
  }

  /**
   * The link a code belongs to (still to be claimed). Before a code is
   * compared with a candidate link, one of that link's attempts is claimed
   * (claims are unique keys, so parallel guesses cannot share an attempt).
   */
  async #matchCode(
    email: string,
    otp: string,
    type: LinkType,
    now: Date,
    op: OperationOptions,
  ): Promise<LinkRecord | undefined> {
    const candidates = await this.#deps.store.links.findLiveByEmail(email, type, now, MAX_OTP_CANDIDATES, op);
    // Used-up attempts disable the link's code, never the link: anyone who
    // knows the address can send wrong codes, but only the person holds the
    // token, and it keeps working.
    for (const candidate of candidates) {
      if ((await this.#claimOtpAttempt(candidate, op)) === undefined) continue; // code disabled
      if (this.#deps.otp.matches(candidate.otpHash, type, email, otp)) return candidate;
    }
    return undefined;
  }

  /** The number (1-based) of the attempt this call now owns, or undefined when all are used. */
  async #claimOtpAttempt(link: LinkRecord, op: OperationOptions): Promise<number | undefined> {
    for (let attempt = 1; attempt <= this.#deps.settings.otpMaxAttempts; attempt++) {
      if (await this.#deps.store.claims.claim(`otp:${link.tokenHash}:${attempt}`, link.expiresAt, op)) return attempt;
    }
    return undefined;
  }

  /**
   * What redeeming the claimed link does. Idempotent: a call that finishes a
   * claim an earlier call left behind does it again, and ends in the same
   * state (every step is a set-if-unset, a unique insert, or an end of links
   * that are already ended).
   */
  async #applyEffect(link: LinkTombstone, now: Date): Promise<Effect> {
    const { users } = this.#deps.store;
    const done = (user: User | undefined, emailChangePending = false, previousEmail?: string): Effect => {
      if (!user) throw linkInvalidOrExpired(); // the user is gone
      return { type: link.type, user, redirectTo: link.redirectTo, emailChangePending, hashedToken: link.tokenHash, previousEmail };
    };

    switch (link.type) {
      case "signup":
      case "invite":
      case "magiclink":
        return done(await users.confirmEmail(link.userId, now));
      case "recovery": {
        // Receiving the mail proves the address too. Then no other link may
        // outlive the credential change this recovery leads to.
        const user = await users.confirmEmail(link.userId, now);
        await this.#revokeOthers(link, now);
        return done(user);
      }
      case "email_change":
        return this.#confirmEmailChange(link, now, done);
    }
  }

  /** Revoke every link of the link's user but this one (already claimed). */
  async #revokeOthers(link: LinkTombstone, now: Date): Promise<void> {
    const links = await this.#deps.store.links.findByUser(link.userId, undefined);
    await this.#end(links.filter((other) => other.tokenHash !== link.tokenHash), "revoked", now);
  }

  /**
   * Revoke the user's outstanding links (of `types`, or all types when none
   * are given): what an administrator's revocation, password or address
   * change, or deletion of the user does. Returns the links this call
   * revoked; links already used, replaced, revoked, or expired are not
   * counted (a retry revokes nothing twice). Audited by the caller's use case.
   */
  async revokeUserLinks(userId: string, types: readonly LinkType[] | undefined, at: Date, op: OperationOptions = {}): Promise<LinkTombstone[]> {
    const stored = await this.#deps.store.links.findByUser(userId, types?.length === 1 ? types[0] : undefined, op);
    const outstanding = stored.filter(
      (link) => (types === undefined || types.length === 0 || types.includes(link.type)) && at.getTime() < link.expiresAt.getTime(),
    );
    return this.#end(outstanding, "revoked", at, op);
  }

  /**
   * Revoke these links (by hash); those not stored, or whose fate is already
   * decided, or that have expired, are skipped. Returns the links this call revoked.
   */
  async revokeLinks(tokenHashes: readonly string[], at: Date, op: OperationOptions = {}): Promise<LinkTombstone[]> {
    const { links } = this.#deps.store;
    const found = await Promise.all([...new Set(tokenHashes)].map((hash) => links.find(hash, at, op)));
    const outstanding = found.filter((link): link is LinkRecord => link !== undefined && at.getTime() < link.expiresAt.getTime());
    return this.#end(outstanding, "revoked", at, op);
  }

  /**
   * One address of an email change is confirmed (its link is redeemed). The
   * confirmation is recorded as a claim; when every address the change needs
   * is confirmed, the user moves to the new address and every other link of
   * the user is revoked. A change that has completed (this redemption's or
   * the other address's) answers as completed.
   */
  async #confirmEmailChange(
    link: LinkTombstone,
    now: Date,
    done: (user: User | undefined, emailChangePending?: boolean, previousEmail?: string) => Effect,
  ): Promise<Effect> {
    const { users, claims } = this.#deps.store;
    const user = await users.findById(link.userId);
    if (!user || !link.emailChange) throw linkInvalidOrExpired();
    const { changeId, address } = link.emailChange;
    if (user.completedEmailChange?.id === changeId) {
      // Finished before the call that completed it could answer (or say so).
      await this.#revokeOthers(link, now);
      return done(user, false, user.completedEmailChange.previousEmail);
    }
    const change = user.emailChange;
    if (!change || change.id !== changeId) {
      throw linkInvalidOrExpired(); // a newer change replaced this one, or it was dropped
    }
    const key = (of: EmailChangeAddress) => `email_change:${change.id}:${of}`;
    await claims.claim(key(address), link.expiresAt);
    const needed = change.requireCurrent ? [key("new"), key("current")] : [key("new")];
    const confirmed = await claims.claimed(needed, now);
    if (needed.some((k) => !confirmed.has(k))) return done(user, true, user.email);

    const changed = await users.completeEmailChange(link.userId, change, now);
    if (changed === "email_taken") {
      // Someone else took the address meanwhile. Dropping the pending change
      // also kills its other link (it no longer matches a change).
      await users.cancelEmailChange(link.userId, change.id, now);
      throw new AuthlinkError("email_exists");
    }
    // undefined: a concurrent confirmation completed the change first.
    const after = changed ?? (await users.findById(link.userId));
    if (after?.email !== change.newEmail) throw linkInvalidOrExpired();
    await this.#revokeOthers(link, now);
    return done(after, false, user.email);
  }
}

let issueSequence = 0;

/**
 * Issues are ordered by (issuedAt, issueId). Within one millisecond, calls
 * served by this process must keep their order (a later call's link replaces
 * an earlier one's), so the id starts with a process-wide sequence number;
 * the random part keeps ids from different instances apart.
 */
function nextIssueId(): string {
  issueSequence += 1;
  return `${issueSequence.toString(36).padStart(11, "0")}-${randomUUID()}`;
}

/** Shallow merge: keys in `data` replace the same keys in `existing`. */
function mergeMetadata(existing: JsonObject, data: JsonObject | undefined): JsonObject {
  return data ? { ...existing, ...data } : existing;
}
