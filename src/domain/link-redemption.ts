import { hashLinkToken } from "../crypto/link-token.js";
import { audited, auditEventOf, newSubject, type Subject } from "./audit-subject.js";
import type { Call } from "./call.js";
import { AuthlinkError, linkInvalidOrExpired } from "./errors.js";
import { tombstoneOf, type LinkRecord, type LinkTombstone } from "./link.js";
import type { LinkEndings } from "./link-endings.js";
import { previewOf, validatePreviewLink, type LinkPreview, type PreviewLinkInput } from "./link-preview.js";
import { validateVerifyLink, type VerifyLinkInput } from "./link-requests.js";
import type { LinkServiceDeps, VerifiedLink } from "./link-service.js";
import type { LinkType } from "./link-type.js";
import type { OperationOptions } from "./store.js";
import type { EmailChangeAddress, User } from "./user.js";

// Redeeming links (VerifyLink), and telling the holder of a token where its
// link stands without consuming it (PreviewLink). link-service.ts is the way in.
//
// An error answer never hides a committed effect that a retry cannot finish
// (docs/retries.md): VerifyLink claims the link by recording its "used"
// tombstone (the first fate recorded for a link wins), applies the effect
// (idempotent), and then records that this call finished it: of all the
// calls that finish one claimed link, the first to record that answers
// success; the others answer PERMISSION_DENIED. A claim left by a call that
// failed is finished by the next call with the token or code; a call that
// finished it is answered again when it retries under the same request id.

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

export class LinkRedemption {
  readonly #deps: LinkServiceDeps;
  readonly #endings: LinkEndings;

  constructor(deps: LinkServiceDeps, endings: LinkEndings) {
    this.#deps = deps;
    this.#endings = endings;
  }

  async verify(input: VerifyLinkInput, call: Call): Promise<VerifiedLink> {
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
  preview(input: PreviewLinkInput, call: Call): Promise<LinkPreview> {
    return audited(this.#deps, call, (subject) => this.#preview(input, call, subject));
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
    await this.#endings.end(links.filter((other) => other.tokenHash !== link.tokenHash), "revoked", now);
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

  /** The audit event of a call: its outcome is "ok" without `error`, else the error's reason. */
  #auditEvent(call: Call, subject: Subject, error?: unknown) {
    return auditEventOf(call, subject, this.#deps.clock.now(), error);
  }
}
