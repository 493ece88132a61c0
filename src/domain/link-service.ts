import { randomUUID } from "node:crypto";
import { hashLinkToken, newLinkToken } from "../crypto/link-token.js";
import type { OtpCodec } from "../crypto/otp.js";
import type { PasswordHasher } from "../crypto/passwords.js";
import type { OperationOptions, Store } from "./store.js";
import { buildActionLink } from "./action-link.js";
import type { AssertionIssuer, IssuedAssertion } from "./assertion.js";
import type { AuditEvent } from "./audit-event.js";
import type { AuditLog } from "./audit-log.js";
import { internalCall, type Call } from "./call.js";
import type { Clock } from "./clock.js";
import { AuthlinkError, linkInvalidOrExpired, toAuthlinkError } from "./errors.js";
import { tombstoneOf, type LinkEnding, type LinkRecord } from "./link.js";
import {
  previewOf,
  validatePreviewLink,
  type LinkPreview,
  type LinkState,
  type PreviewLinkInput,
} from "./link-preview.js";
import {
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
// its secrets leave (and withdraws them when that fails), a redemption once
// its effect has committed, and any failure with what the call had learnt by
// then (the Subject, local to the call).
//
// Every link that goes away for a reason leaves a tombstone (used, replaced,
// revoked) for PreviewLink. The tombstone is written after the delete that
// decided it, by whoever's delete won, and it is best effort: a failed
// tombstone write never turns a redemption, an issue or a revocation into an
// error (that would lie about something that happened, or lose a link); at
// worst PreviewLink answers UNKNOWN for that link.

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

/** What a call has learnt about what it touches: the audit event's subject. Never a secret. */
interface Subject {
  linkType?: LinkType;
  userId?: string;
  /** Normalized address the call was about. */
  email?: string;
  /** SHA-256 hex of every link token issued, redeemed or presented. */
  hashedTokens: string[];
  /** Redemptions and previews: milliseconds from the link's issue. */
  linkAgeMs?: number;
  /** Previews: the state answered. */
  linkState?: LinkState;
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

/** How many live links sent to one address a code is tried against. */
const MAX_OTP_CANDIDATES = 10;

export class LinkService {
  readonly #deps: LinkServiceDeps;

  constructor(deps: LinkServiceDeps) {
    this.#deps = deps;
  }

  async generate(input: GenerateLinkInput, call: Call = internalCall("GenerateLink")): Promise<GeneratedLink> {
    const subject: Subject = { hashedTokens: [] };
    try {
      return await this.#generate(input, call, subject);
    } catch (error) {
      await this.#deps.audit.recordOutcome(this.#auditEvent(call, subject, error));
      throw error;
    }
  }

  async #generate(input: GenerateLinkInput, call: Call, subject: Subject): Promise<GeneratedLink> {
    const { settings, redirects, passwords, clock, rateLimiter, rateLimits } = this.#deps;
    const request = validateGenerateLink(input, settings, redirects);
    Object.assign(subject, { linkType: request.type, email: request.email });
    const op: OperationOptions = { signal: call.signal };
    await rateLimiter.take("generate-caller", call.serviceIdentity ?? "", rateLimits.generatePerCaller, op);
    await rateLimiter.take("generate-email", `${request.type}:${request.email}`, rateLimits.generatePerEmail, op);
    const passwordHash = request.password === undefined ? undefined : await passwords.hash(request.password);
    call.signal.throwIfAborted();
    const now = clock.now();
    const user = await this.#prepareUser(request, passwordHash, now, op);
    subject.userId = user.id;

    const issued = await this.#issue(request, user, now, call, subject);
    return { type: request.type, user, redirectTo: request.redirectTo, expiresAt: issued.expiresAt, ...issued.links };
  }

  /**
   * Mint the link (two for a secure email change), store their hashes, and
   * replace the user's older links of the type.
   */
  async #issue(
    request: GenerateLinkRequest,
    user: User,
    now: Date,
    call: Call,
    subject: Subject,
  ): Promise<{ expiresAt: Date; links: Pick<GeneratedLink, "link" | "currentAddressLink"> }> {
    const { store, settings, otp } = this.#deps;
    const op: OperationOptions = { signal: call.signal };
    const issueId = nextIssueId();
    const expiresAt = new Date(now.getTime() + request.expiresInMs);
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
      // No secret leaves unaudited: if this event cannot be stored, the new
      // links are withdrawn below, the caller gets UNAVAILABLE, and the
      // user's earlier links are untouched.
      await this.#deps.audit.recordBeforeHandout(this.#auditEvent(call, subject));
      // Replace the user's older links of this type only once the new ones
      // are stored and audited (a failure here leaves an extra link, never
      // none). When two calls race, the newer issue wins: the older one's
      // links go, as if the calls had come one after the other (and if that
      // is this issue's, they are replaced before anyone saw them).
      const replaced: LinkRecord[] = [];
      try {
        replaced.push(...(await store.links.deleteOlderIssues(user.id, request.type, now, issueId, op)));
        replaced.push(...(await store.links.removeIfSuperseded(user.id, request.type, now, issueId, op)));
      } finally {
        await this.#bury(replaced, "replaced");
      }
    } catch (error) {
      // The caller will never see these links (deadline passed, client gone,
      // or a fault): take them back so no orphan stays redeemable. Nobody
      // holds their tokens, so they leave no tombstone.
      await Promise.all(records.map((r) => store.links.delete(r.tokenHash))).catch(() => undefined);
      throw error;
    }
    return { expiresAt, links: { link: primary.link, currentAddressLink: current?.link } };
  }

  async verify(input: VerifyLinkInput, call: Call = internalCall("VerifyLink")): Promise<VerifiedLink> {
    const subject: Subject = { hashedTokens: [] };
    let verified: VerifiedLink;
    try {
      verified = await this.#verify(input, call, subject);
    } catch (error) {
      await this.#deps.audit.recordOutcome(this.#auditEvent(call, subject, error));
      throw error;
    }
    // The effect has committed: the answer is success even if the event
    // cannot be stored right now (recordOutcome keeps and retries it).
    await this.#deps.audit.recordOutcome(this.#auditEvent(call, subject));
    return verified;
  }

  async #verify(input: VerifyLinkInput, call: Call, subject: Subject): Promise<VerifiedLink> {
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
    let link: LinkRecord | undefined;
    if (credential.kind === "token") {
      const tokenHash = hashLinkToken(credential.token);
      subject.hashedTokens.push(tokenHash);
      link = await store.links.consume(tokenHash, request.type, now, op);
    } else {
      subject.email = credential.email;
      // Two budgets: a stranger from one client address spends only their
      // own share of an address's code attempts; the per-address ceiling
      // bounds guessing from many client addresses.
      await rateLimiter.take("verify-code-client", `${credential.email} ${call.clientAddress}`, rateLimits.verifyCodePerEmailAndClient, op);
      await rateLimiter.take("verify-code", credential.email, rateLimits.verifyCodePerEmail, op);
      link = await this.#redeemCode(credential.email, credential.otp, request.type, now, op);
      if (link) subject.hashedTokens.push(link.tokenHash);
    }
    if (!link) throw linkInvalidOrExpired();
    Object.assign(subject, { userId: link.userId, email: link.email, linkAgeMs: now.getTime() - link.issuedAt.getTime() });

    // The link is consumed: finish its effect even if the caller leaves now,
    // and if a fault stops us, put the link back so it can be used again
    // (and forget that it was used). Its tombstone is written alongside the
    // effect, so it costs no extra round trip.
    const buried = this.#bury([link], "used", now);
    let effect: Effect;
    try {
      effect = await this.#applyEffect(link, now);
      await buried;
    } catch (error) {
      await buried;
      if (!(error instanceof AuthlinkError)) {
        await store.links.restore(link).catch(() => undefined);
        await store.tombstones.remove(link.tokenHash).catch(() => undefined);
      }
      throw error;
    }
    const { previousEmail, ...verified } = effect;
    const assertion = await this.#deps.assertions.issue(
      {
        userId: verified.user.id,
        email: verified.user.email,
        emailVerified: verified.user.emailConfirmedAt !== undefined,
        linkType: link.type,
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
    return { ...verified, assertion };
  }

  /**
   * Where a link stands, without consuming anything: for the holder of its
   * token (the verify page asks on load). Rate limited and audited like
   * VerifyLink; reads the link and its tombstone by hash only.
   */
  async preview(input: PreviewLinkInput, call: Call = internalCall("PreviewLink")): Promise<LinkPreview> {
    const subject: Subject = { hashedTokens: [] };
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
   * Remember why these links went away (their delete was this call's).
   * Best effort, and never cut short by the call's end: the delete happened,
   * so this neither fails nor is abandoned half way; a failed write leaves
   * PreviewLink answering UNKNOWN for those links.
   */
  async #bury(links: readonly LinkRecord[], ending: LinkEnding, at: Date = this.#deps.clock.now()): Promise<void> {
    if (links.length === 0) return;
    await this.#deps.store.tombstones.record(links.map((link) => tombstoneOf(link, ending, at))).catch(() => undefined);
  }

  /** The audit event of a call: its outcome is "ok" without `error`, else the error's reason. */
  #auditEvent(call: Call, subject: Subject, error?: unknown): AuditEvent {
    const failure = error === undefined ? undefined : toAuthlinkError(error, call.signal);
    return {
      at: this.#deps.clock.now(),
      requestId: call.requestId,
      method: call.method,
      caller: call.callerName,
      clientAddress: call.clientAddress,
      linkType: subject.linkType,
      userId: subject.userId,
      email: subject.email,
      hashedTokens: [...subject.hashedTokens],
      outcome: failure?.reason ?? "ok",
      durationMs: Math.round(performance.now() - call.startedAt),
      linkAgeMs: failure ? undefined : subject.linkAgeMs,
      linkState: failure ? undefined : subject.linkState,
      rateLimitRule: failure?.rateLimitRule,
    };
  }

  /** The user a link is issued to, created or updated as the link type says. */
  async #prepareUser(
    request: GenerateLinkRequest,
    passwordHash: string | undefined,
    now: Date,
    op: OperationOptions,
  ): Promise<User> {
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
        return this.#findOrCreate(request.email, fresh({ passwordHash }), op, async (existing) => {
          if (existing.emailConfirmedAt) throw new AuthlinkError("email_exists");
          return users.update(
            existing.id,
            { updatedAt: now, passwordHash, userMetadata: mergeMetadata(existing.userMetadata, request.data) },
            op,
          );
        });
      case "invite":
        return this.#findOrCreate(request.email, fresh({ invitedAt: now }), op, async (existing) => {
          if (existing.emailConfirmedAt) throw new AuthlinkError("email_exists");
          return users.update(
            existing.id,
            { updatedAt: now, invitedAt: now, userMetadata: mergeMetadata(existing.userMetadata, request.data) },
            op,
          );
        });
      case "magiclink":
        return this.#findOrCreate(request.email, fresh({}), op, async (existing) => existing);
      case "recovery": {
        const user = await users.findByEmail(request.email, op);
        if (!user) throw new AuthlinkError("user_not_found");
        return user;
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
        const updated = await users.update(user.id, { updatedAt: now, emailChange }, op);
        if (!updated) throw new AuthlinkError("user_not_found");
        return updated;
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
   * Find the link a code belongs to. Before a code is compared with a
   * candidate link, one of that link's attempts is claimed (claims are unique
   * keys, so parallel guesses cannot share an attempt); once the last attempt
   * is used without success, the link is deleted.
   */
  async #redeemCode(
    email: string,
    otp: string,
    type: LinkType,
    now: Date,
    op: OperationOptions,
  ): Promise<LinkRecord | undefined> {
    const { links } = this.#deps.store;
    const candidates = await links.findLiveByEmail(email, type, now, MAX_OTP_CANDIDATES, op);
    // Used-up attempts disable the link's code, never the link: anyone who
    // knows the address can send wrong codes, but only the person holds the
    // token, and it keeps working.
    for (const candidate of candidates) {
      if ((await this.#claimOtpAttempt(candidate, op)) === undefined) continue; // code disabled
      if (this.#deps.otp.matches(candidate.otpHash, type, email, otp)) {
        return links.consume(candidate.tokenHash, type, now, op);
      }
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

  async #applyEffect(link: LinkRecord, now: Date): Promise<Effect> {
    const { users, links } = this.#deps.store;
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
        await this.#bury(await links.deleteAllForUser(link.userId), "revoked");
        return done(user);
      }
      case "email_change":
        return this.#confirmEmailChange(link, now, done);
    }
  }

  /**
   * One address of an email change is confirmed (its link is redeemed). The
   * confirmation is recorded as a claim; when every address the change needs
   * is confirmed, the user moves to the new address and every other link of
   * the user is revoked.
   */
  async #confirmEmailChange(
    link: LinkRecord,
    now: Date,
    done: (user: User | undefined, emailChangePending?: boolean, previousEmail?: string) => Effect,
  ): Promise<Effect> {
    const { users, links, claims } = this.#deps.store;
    const user = await users.findById(link.userId);
    const change = user?.emailChange;
    if (!link.emailChange || !change || change.id !== link.emailChange.changeId) {
      throw linkInvalidOrExpired(); // a newer change replaced this one, or it was dropped
    }
    const key = (address: EmailChangeAddress) => `email_change:${change.id}:${address}`;
    await claims.claim(key(link.emailChange.address), link.expiresAt);
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
    await this.#bury(await links.deleteAllForUser(link.userId), "revoked");
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
