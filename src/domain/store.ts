import type { AuditEvent } from "./audit-event.js";
import type { LinkRecord, LinkTombstone } from "./link.js";
import type { LinkType } from "./link-type.js";
import type { JsonObject, PendingEmailChange, User } from "./user.js";

// The persistence port, owned by the domain. The domain calls these
// intention-revealing methods; each store in src/store/ (memory-store.ts,
// mongo-store.ts) implements them and both pass
// one contract suite (test/store/store-contract.ts). Every method either does
// what it says or throws; a failed write is never reported as done.
// Connectivity failures throw StoreUnavailableError.
//
// Where concurrent calls must not both win (redeeming a link, counting a code
// attempt, recording a confirmation), the decision rests on the two
// operations that are atomic on every MongoDB-compatible server: inserting a
// unique key, and the count reported by a delete. A read-modify-write
// (findOneAndUpdate, findOneAndDelete) is atomic on MongoDB but not on every
// compatible server (FerretDB 1.24 hands one document to several concurrent
// findOneAndDelete calls), so correctness never depends on one.
//
// Tombstones (PreviewLink's memory of why a link went away) are a sub-store
// of their own that the domain writes, not a side effect of the deleting
// methods: those report exactly the links their own delete removed (a link
// that a concurrent call removed first is not theirs to report), and the use
// case decides what that means (used, replaced, revoked) and that writing it
// is best effort. So every method here still either does what it says or
// throws, and no adapter decides which failures may be swallowed.

export interface Store {
  /** "memory" or "mongodb", for logs. */
  readonly kind: string;
  readonly users: UserStore;
  readonly links: LinkStore;
  readonly tombstones: TombstoneStore;
  readonly claims: ClaimStore;
  readonly rateLimits: RateLimitStore;
  readonly audit: AuditStore;
  /**
   * True when the server does not expire documents itself (no TTL indexes):
   * then purgeExpired must run periodically (store/purge-loop.ts).
   */
  readonly needsPurge: boolean;
  /**
   * Delete what is due to go at `now` (links and tombstones past their
   * retainUntil, claims, rate-limit windows and audit events past their
   * expiresAt); returns how many.
   */
  purgeExpired(now: Date): Promise<number>;
  /** Resolves when the store can serve (a cheap round trip); throws StoreUnavailableError when it cannot. */
  ping(options?: OperationOptions): Promise<void>;
  close(): Promise<void>;
}

/** Per-operation options: the call's signal aborts database work when the call ends. */
export interface OperationOptions {
  readonly signal?: AbortSignal | undefined;
}

export interface UserStore {
  findById(id: string, options?: OperationOptions): Promise<User | undefined>;
  findByEmail(email: string, options?: OperationOptions): Promise<User | undefined>;
  /** Insert a new user; "email_taken" when the address already belongs to a user. */
  insert(user: User, options?: OperationOptions): Promise<"inserted" | "email_taken">;
  /** Apply changes; returns the user after them, undefined when it does not exist. */
  update(id: string, changes: UserChanges, options?: OperationOptions): Promise<User | undefined>;
  /** Set emailConfirmedAt if it is not set yet; returns the user after. */
  confirmEmail(id: string, at: Date, options?: OperationOptions): Promise<User | undefined>;
  /**
   * Move the user to the new address of pending change `change` and mark it
   * confirmed. "email_taken" when another user holds the address by now;
   * undefined when the change is no longer pending.
   */
  completeEmailChange(id: string, change: Pick<PendingEmailChange, "id" | "newEmail">, at: Date, options?: OperationOptions): Promise<User | "email_taken" | undefined>;
  /** Drop pending change `changeId` (if it still is the pending one). */
  cancelEmailChange(id: string, changeId: string, at: Date, options?: OperationOptions): Promise<void>;
}

export interface UserChanges {
  readonly updatedAt: Date;
  readonly passwordHash?: string;
  readonly userMetadata?: JsonObject;
  readonly invitedAt?: Date;
  /** Start this email change, replacing any pending one. */
  readonly emailChange?: PendingEmailChange;
}

export interface LinkStore {
  /** Store new links (all of one issue). */
  insert(links: readonly LinkRecord[], options?: OperationOptions): Promise<void>;
  /**
   * The stored link with this hash, whether live or expired, without
   * consuming it; undefined when none is stored or it is past its
   * retainUntil. Looked up by hash alone (the hot path of PreviewLink).
   */
  find(tokenHash: string, now: Date, options?: OperationOptions): Promise<LinkRecord | undefined>;
  /**
   * Delete the user's links of `type` from issues older than (issuedAt,
   * issueId), so that the newest issue wins even when two race. Returns the
   * links this call deleted.
   */
  deleteOlderIssues(userId: string, type: LinkType, issuedAt: Date, issueId: string, options?: OperationOptions): Promise<LinkRecord[]>;
  /**
   * If the user has links of `type` from an issue newer than (issuedAt,
   * issueId), delete this issue's links and return those this call deleted
   * (none when no newer issue exists). Called after deleteOlderIssues, it
   * settles races: whatever the interleaving, only the newest issue survives.
   */
  removeIfSuperseded(userId: string, type: LinkType, issuedAt: Date, issueId: string, options?: OperationOptions): Promise<LinkRecord[]>;
  /** Delete every stored link of a user; returns the links this call deleted. */
  deleteAllForUser(userId: string, options?: OperationOptions): Promise<LinkRecord[]>;
  /**
   * Remove and return the live (now < expiresAt) link with this hash and
   * type. Of concurrent calls for one link, exactly one gets it; and of a
   * consume racing any deleting method, exactly one reports the link.
   */
  consume(tokenHash: string, type: LinkType, now: Date, options?: OperationOptions): Promise<LinkRecord | undefined>;
  /** Live links of `type` sent to `email` (candidates for a one-time code), at most `limit`. */
  findLiveByEmail(email: string, type: LinkType, now: Date, limit: number, options?: OperationOptions): Promise<LinkRecord[]>;
  /** Delete one link; true when this call deleted it (false: it was not stored). */
  delete(tokenHash: string, options?: OperationOptions): Promise<boolean>;
  /** Put back a link that was consumed but whose effect could not be applied. */
  restore(link: LinkRecord, options?: OperationOptions): Promise<void>;
}

/**
 * Why links went away (used, replaced, revoked), keyed by token hash, each
 * kept until its retainUntil. The first tombstone recorded for a hash wins:
 * a later record of the same hash is ignored, however many race.
 */
export interface TombstoneStore {
  /** Record tombstones; a hash that already has one keeps it. */
  record(tombstones: readonly LinkTombstone[], options?: OperationOptions): Promise<void>;
  /** The tombstone of this hash; undefined when there is none or it is past its retainUntil at `now`. */
  find(tokenHash: string, now: Date, options?: OperationOptions): Promise<LinkTombstone | undefined>;
  /** Forget the tombstone of this hash (a consumed link was put back). */
  remove(tokenHash: string, options?: OperationOptions): Promise<void>;
}

/**
 * Keys that can be recorded once: the first claim of a key wins, every later
 * one loses, however many race. Claims expire at `expiresAt`.
 */
export interface ClaimStore {
  /** True for the one call that recorded `key`; false when it already was. */
  claim(key: string, expiresAt: Date, options?: OperationOptions): Promise<boolean>;
  /** Which of `keys` are recorded (and not expired at `now`). */
  claimed(keys: readonly string[], now: Date, options?: OperationOptions): Promise<Set<string>>;
}

/**
 * Rate-limit windows: the hits in (bucket, window) are slots numbered from 1,
 * each a unique key, so concurrent hits never exceed a limit.
 */
export interface RateLimitStore {
  /** Hits recorded in the window starting at `windowStart`. */
  count(bucket: string, windowStart: Date, options?: OperationOptions): Promise<number>;
  /** Record one hit if the window holds fewer than `limit`; true when recorded. */
  hit(bucket: string, windowStart: Date, limit: number, expiresAt: Date, options?: OperationOptions): Promise<boolean>;
}

/** The audit trail (kept until `expiresAt`, the configured retention). */
export interface AuditStore {
  append(event: AuditEvent, expiresAt: Date): Promise<void>;
  /** Events of one user or address, newest first (for tests and operators). */
  find(filter: { readonly email?: string; readonly userId?: string }, limit: number): Promise<AuditEvent[]>;
}

/** The store cannot be reached (or did not answer in time); the caller may retry. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}
