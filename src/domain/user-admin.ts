import { randomUUID } from "node:crypto";
import type { PasswordHasher } from "../crypto/passwords.js";
import type { AuditLog } from "./audit-log.js";
import { audited, type Subject } from "./audit-subject.js";
import type { Call } from "./call.js";
import type { Clock } from "./clock.js";
import { AuthlinkError, invalidRequest } from "./errors.js";
import type { LinkService, GeneratedLink } from "./link-service.js";
import type { LinkSettings } from "./link-settings.js";
import type { RateLimiter, RateLimitSettings } from "./rate-limiter.js";
import type { OperationOptions, Store } from "./store.js";
import {
  checkPasswordStrength,
  validateCreateUser,
  validateDeleteUser,
  validateGetUser,
  validateUpdateUser,
  type CreateUserInput,
  type DeleteUserInput,
  type GetUserInput,
  type InviteUserInput,
  type UpdateUserInput,
} from "./user-admin-requests.js";
import { metadataProblem, patchMetadata } from "./user-metadata.js";
import type { User } from "./user.js";

// An administrator's use cases on users (UserAdminService): create, read,
// update, delete, invite. Knows nothing of protobuf or MongoDB.
//
// - Rules are GenerateLink's (user-admin-requests.ts): the same validation,
//   `email_exists` from the users' unique address, passwords hashed with the
//   configured argon2id hasher. Every input problem is answered before the
//   first write.
// - Rate limit: CreateUser, UpdateUser and DeleteUser each take one hit from
//   the caller's generation budget (rule "generate-caller",
//   AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER), once the request has passed
//   validation, as GenerateLink does: one budget per caller for every write.
//   GetUser, a read by key, is not limited. InviteUser is GenerateLink and
//   takes both of its limits.
// - A new password or address revokes every outstanding link of the user, as
//   a redeemed recovery link does; so does a deletion. Links are revoked
//   before the change is written (a call that fails half way has ended them
//   already, and its retry, which may find the address already moved, finishes
//   the rest) and again after it (a link issued meanwhile, to the old address
//   or before the new password, goes too).
// - Every call is audited with its outcome (audited()); InviteUser by
//   LinkService.generate, before the link leaves. Never a password.

export interface UserAdminDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly audit: AuditLog;
  readonly passwords: PasswordHasher;
  /** Password policy and metadata limit: GenerateLink's. */
  readonly settings: LinkSettings;
  /** Issues invites (the one code path that issues links) and revokes links. */
  readonly links: LinkService;
  readonly rateLimiter: RateLimiter;
  readonly rateLimits: RateLimitSettings;
}

export interface UpdatedUser {
  readonly user: User;
  /** Outstanding links the change revoked. */
  readonly revokedLinks: number;
}

export interface DeletedUser {
  /** Outstanding links the deletion revoked. */
  readonly revokedLinks: number;
}

const userNotFound = (by: "id" | "email"): AuthlinkError =>
  by === "id" ? new AuthlinkError("user_not_found", { message: "no user has this id" }) : new AuthlinkError("user_not_found");

export class UserAdmin {
  readonly #deps: UserAdminDeps;

  constructor(deps: UserAdminDeps) {
    this.#deps = deps;
  }

  create(input: CreateUserInput, call: Call): Promise<User> {
    return audited(this.#deps, call, async (subject) => {
      const { settings, store, passwords, clock } = this.#deps;
      const request = validateCreateUser(input, settings);
      subject.email = request.email;
      const op: OperationOptions = { signal: call.signal };
      await this.#takeWriteBudget(call, op);
      const passwordHash = request.password === undefined ? undefined : await passwords.hash(request.password);
      call.signal.throwIfAborted();
      const now = clock.now();
      const user: User = {
        id: randomUUID(),
        email: request.email,
        passwordHash,
        emailConfirmedAt: request.emailConfirm ? now : undefined,
        createdAt: now,
        updatedAt: now,
        userMetadata: request.userMetadata,
      };
      subject.userId = user.id;
      if ((await store.users.insert(user, op)) === "email_taken") {
        delete subject.userId;
        throw new AuthlinkError("email_exists");
      }
      return user;
    });
  }

  get(input: GetUserInput, call: Call): Promise<User> {
    return audited(this.#deps, call, async (subject) => {
      const { users } = this.#deps.store;
      const request = validateGetUser(input);
      const op: OperationOptions = { signal: call.signal };
      if (request.kind === "id") subject.userId = request.id;
      else subject.email = request.email;
      const user = request.kind === "id" ? await users.findById(request.id, op) : await users.findByEmail(request.email, op);
      if (!user) throw userNotFound(request.kind);
      Object.assign(subject, { userId: user.id, email: user.email });
      return user;
    });
  }

  update(input: UpdateUserInput, call: Call): Promise<UpdatedUser> {
    return audited(this.#deps, call, async (subject) => {
      const { settings, store, passwords, clock } = this.#deps;
      const { users } = store;
      const request = validateUpdateUser(input, settings);
      subject.userId = request.id;
      const op: OperationOptions = { signal: call.signal };
      const user = await users.findById(request.id, op);
      if (!user) throw userNotFound("id");
      subject.email = user.email;

      // The rest of the input's checks, which need the user; still nothing written.
      const newEmail = request.email !== undefined && request.email !== user.email ? request.email : undefined;
      const metadata = request.userMetadata && patchMetadata(user.userMetadata, request.userMetadata);
      const merged = metadata && metadataProblem(metadata, settings.maxUserDataBytes);
      if (merged) throw invalidRequest([{ field: "user_metadata", description: `${merged} once merged` }]);
      if (request.password !== undefined) checkPasswordStrength(request.password, newEmail ?? user.email, settings.password);
      if (newEmail !== undefined && (await users.findByEmail(newEmail, op))) throw new AuthlinkError("email_exists");

      await this.#takeWriteBudget(call, op);
      const passwordHash = request.password === undefined ? undefined : await passwords.hash(request.password);
      call.signal.throwIfAborted();
      const now = clock.now();
      const revokes = newEmail !== undefined || passwordHash !== undefined;
      let revoked = revokes ? await this.#revokeAll(user.id, now, subject, op) : 0;

      let after = user;
      if (newEmail !== undefined) {
        // The unique address decides a race the check above could not see.
        const moved = await users.changeEmail(user.id, newEmail, now, op);
        if (moved === "email_taken") throw new AuthlinkError("email_exists");
        if (!moved) throw userNotFound("id");
        after = moved;
        subject.email = moved.email;
      }
      // (Metadata is merged with what was read above: a concurrent change of
      // the same user's metadata may be overwritten, the last writer wins.)
      if (metadata !== undefined || passwordHash !== undefined) {
        const updated = await users.update(user.id, { updatedAt: now, userMetadata: metadata, passwordHash }, op);
        if (!updated) throw userNotFound("id");
        after = updated;
      }
      if (request.emailConfirm && !after.emailConfirmedAt) {
        const confirmed = await users.confirmEmail(user.id, now, op);
        if (!confirmed) throw userNotFound("id");
        after = confirmed;
      }
      if (revokes) revoked += await this.#revokeAll(user.id, now, subject, op);
      return { user: after, revokedLinks: revoked };
    });
  }

  delete(input: DeleteUserInput, call: Call): Promise<DeletedUser> {
    return audited(this.#deps, call, async (subject) => {
      const { store, clock } = this.#deps;
      const request = validateDeleteUser(input);
      subject.userId = request.id;
      const op: OperationOptions = { signal: call.signal };
      const user = await store.users.findById(request.id, op);
      if (!user) throw userNotFound("id");
      subject.email = user.email;
      await this.#takeWriteBudget(call, op);
      // Links first: a link that outlived its user could not be redeemed
      // (redemption needs the user), but would still look valid to PreviewLink.
      const revoked = await this.#revokeAll(user.id, clock.now(), subject, op);
      if (!(await store.users.delete(user.id, op))) throw userNotFound("id");
      return { revokedLinks: revoked };
    });
  }

  /**
   * GenerateLink with type INVITE, under this call (its audit event says
   * InviteUser): creates the user or re-invites an unconfirmed one.
   */
  invite(input: InviteUserInput, call: Call): Promise<GeneratedLink> {
    return this.#deps.links.generate({ ...input, type: "invite", password: "", newEmail: "" }, call);
  }

  /** One hit of the caller's generation budget. */
  async #takeWriteBudget(call: Call, op: OperationOptions): Promise<void> {
    const { rateLimiter, rateLimits } = this.#deps;
    await rateLimiter.take("generate-caller", call.serviceIdentity ?? "", rateLimits.generatePerCaller, op);
  }

  /** Revoke the user's outstanding links; their hashes go to the audit event. Returns how many. */
  async #revokeAll(userId: string, at: Date, subject: Subject, op: OperationOptions): Promise<number> {
    const ended = await this.#deps.links.revokeUserLinks(userId, undefined, at, op);
    subject.hashedTokens.push(...ended.map((tombstone) => tombstone.tokenHash));
    return ended.length;
  }
}
