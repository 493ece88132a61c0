import { randomUUID } from "node:crypto";
import { isWellFormedHashedToken, newLinkToken } from "../crypto/link-token.js";
import { buildActionLink } from "./action-link.js";
import { auditEventOf, newSubject, type Subject } from "./audit-subject.js";
import type { Call } from "./call.js";
import { AuthlinkError, invalidRequest, type FieldViolation } from "./errors.js";
import type { LinkRecord, LinkTombstone } from "./link.js";
import type { LinkEndings } from "./link-endings.js";
import { previewOf } from "./link-preview.js";
import { expiresInProblem, validateGenerateLink, type GenerateLinkInput, type GenerateLinkRequest } from "./link-requests.js";
import type { GeneratedLink, IssuedLink, LinkServiceDeps, ReissueLinkInput } from "./link-service.js";
import type { LinkType } from "./link-type.js";
import type { OperationOptions } from "./store.js";
import type { EmailChangeAddress, JsonObject, User } from "./user.js";

// Issuing links: GenerateLink and ReissueLink (link-service.ts is the way in).
//
// An error answer never hides a committed effect that a retry cannot finish
// (docs/retries.md): an issue stores its links pending (unusable), has the
// event audited, ends the older links of the type, and makes its own usable
// as its last write. A call that fails before that leaves nothing anyone can
// use, and a retry issues a new link that replaces whatever the failed one
// did.

/** The user a link is issued to, and for an email change the write that starts the change. */
interface PreparedUser {
  readonly user: User;
  /** Stores what `user` holds; runs once the new links are stored and audited. */
  readonly commit?: (op: OperationOptions) => Promise<User>;
}

export class LinkIssuing {
  readonly #deps: LinkServiceDeps;
  readonly #endings: LinkEndings;

  constructor(deps: LinkServiceDeps, endings: LinkEndings) {
    this.#deps = deps;
    this.#endings = endings;
  }

  generate(input: GenerateLinkInput, call: Call): Promise<GeneratedLink> {
    return this.#auditingFailure(call, (subject) => this.#generate(input, call, subject));
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
  reissue(input: ReissueLinkInput, call: Call): Promise<GeneratedLink> {
    return this.#auditingFailure(call, (subject) => this.#reissue(input, call, subject));
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
    await this.#endings.end(stored.filter((link) => link.issueId !== newest.issueId), "replaced", now, op);
    return newest.issueId === issueId;
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
   * Runs an issuing use case and audits its failure. Its success is audited
   * by #issue, before the secrets are handed out.
   */
  async #auditingFailure(call: Call, run: (subject: Subject) => Promise<GeneratedLink>): Promise<GeneratedLink> {
    const subject = newSubject();
    try {
      return await run(subject);
    } catch (error) {
      await this.#deps.audit.recordOutcome(this.#auditEvent(call, subject, error));
      throw error;
    }
  }

  /** The audit event of a call: its outcome is "ok" without `error`, else the error's reason. */
  #auditEvent(call: Call, subject: Subject, error?: unknown) {
    return auditEventOf(call, subject, this.#deps.clock.now(), error);
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
