import type { AuditEvent, StoredAuditEvent } from "./audit-event.js";
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
// Where concurrent calls must not both win (redeeming a link, ending one,
// counting a code attempt, recording a confirmation), the decision rests on
// the two operations that are atomic on every MongoDB-compatible server:
// inserting a unique key, and the count reported by a delete. A
// read-modify-write (findOneAndUpdate, findOneAndDelete) is atomic on MongoDB
// but not on every compatible server (FerretDB 1.24 hands one document to
// several concurrent findOneAndDelete calls), so correctness never depends on
// one.
//
// The fate of a link is its tombstone (used, replaced, revoked): the first
// one recorded for its hash wins, whoever races. A redemption claims a link
// by recording its "used" tombstone; a replacement or revocation ends links by
// recording theirs, and deletes the link documents of those it recorded only
// afterwards. So a link is never both redeemed and revoked, and a call that
// fails half way leaves a decided fate that a retry can finish, never a link
// that is gone with nothing saying why. The domain orchestrates this (the
// stores only persist); every method here still either does what it says or
// throws.

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
   * Move the user to the new address of pending change `change`, mark it
   * confirmed, and remember the change as completedEmailChange (with the
   * address the user moved away from). "email_taken" when another user holds
   * the address by now; undefined when the change is no longer pending.
   */
  completeEmailChange(id: string, change: Pick<PendingEmailChange, "id" | "newEmail">, at: Date, options?: OperationOptions): Promise<User | "email_taken" | undefined>;
  /** Drop pending change `changeId` (if it still is the pending one). */
  cancelEmailChange(id: string, changeId: string, at: Date, options?: OperationOptions): Promise<void>;
  /**
   * Move the user to `email` at once (an administrator's change: nothing to
   * confirm), dropping any pending email change; every other field stays.
   * The unique address decides a race: "email_taken" when another user holds
   * `email` (the user is then unchanged); undefined when the user does not exist.
   */
  changeEmail(id: string, email: string, at: Date, options?: OperationOptions): Promise<User | "email_taken" | undefined>;
  /** Delete the user (its address is free again); true when this call deleted it, false when it did not exist. */
  delete(id: string, options?: OperationOptions): Promise<boolean>;
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
  /** Store new links (all of one issue; pending until markIssued). */
  insert(links: readonly LinkRecord[], options?: OperationOptions): Promise<void>;
  /** Make pending links usable (the last step of their issue); hashes no longer stored are skipped. */
  markIssued(tokenHashes: readonly string[], options?: OperationOptions): Promise<void>;
  /**
   * The stored link with this hash, whether pending, live or expired;
   * undefined when none is stored or it is past its retainUntil. Looked up
   * by hash alone (the hot path of VerifyLink and PreviewLink).
   */
  find(tokenHash: string, now: Date, options?: OperationOptions): Promise<LinkRecord | undefined>;
  /** Every stored link of the user (only those of `type`, when given), pending and expired ones too. */
  findByUser(userId: string, type: LinkType | undefined, options?: OperationOptions): Promise<LinkRecord[]>;
  /** Issued (not pending), live links of `type` sent to `email` (candidates for a one-time code), at most `limit`. */
  findLiveByEmail(email: string, type: LinkType, now: Date, limit: number, options?: OperationOptions): Promise<LinkRecord[]>;
  /** Delete one link; true when this call deleted it (false: it was not stored). */
  delete(tokenHash: string, options?: OperationOptions): Promise<boolean>;
  /**
   * Stored links (pending ones too) that match `query` and are not past their
   * retainUntil at `now`, newest issue first (see LinkListQuery). For
   * administrators (ListLinks), not the hot path: it may scan.
   */
  list(query: LinkListQuery, now: Date, options?: OperationOptions): Promise<LinkRecord[]>;
}

/**
 * A page of links or tombstones, newest issue first: ordered by issuedAt,
 * then by tokenHash (compared as strings), both descending. Every set filter
 * must match.
 */
export interface LinkListQuery {
  readonly userId?: string | undefined;
  /** The address the link was sent to (normalized). */
  readonly email?: string | undefined;
  readonly type?: LinkType | undefined;
  readonly issuedBy?: string | undefined;
  /** Issued at or after this time. */
  readonly issuedFrom?: Date | undefined;
  /** Issued before this time. */
  readonly issuedBefore?: Date | undefined;
  /** Only entries after this one in the order (older issue, or the same instant and a smaller hash). */
  readonly after?: LinkListPosition | undefined;
  /** At most this many (at least 1). */
  readonly limit: number;
}

/** A place in the newest-first order of links (a page's cursor). */
export interface LinkListPosition {
  readonly issuedAt: Date;
  readonly tokenHash: string;
}

/**
 * The fate of links (used, replaced, revoked), keyed by token hash, each kept
 * until its retainUntil. The first tombstone recorded for a hash wins: a
 * later record of the same hash is ignored, however many race.
 */
export interface TombstoneStore {
  /** Record tombstones; a hash that already has one keeps it. Returns those this call recorded. */
  record(tombstones: readonly LinkTombstone[], options?: OperationOptions): Promise<LinkTombstone[]>;
  /** The tombstone of this hash; undefined when there is none or it is past its retainUntil at `now`. */
  find(tokenHash: string, now: Date, options?: OperationOptions): Promise<LinkTombstone | undefined>;
  /**
   * Tombstones that match `query` and are not past their retainUntil at
   * `now`, in the same order as LinkStore.list. For administrators; it may scan.
   */
  list(query: LinkListQuery, now: Date, options?: OperationOptions): Promise<LinkTombstone[]>;
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
  /**
   * Record `key` as held by `holder` unless it is recorded already; returns
   * the holder on record afterwards: `holder` for the one call that recorded
   * it, the first one's for every other. (A key recorded by `claim` is held
   * by "".)
   */
  hold(key: string, holder: string, expiresAt: Date, options?: OperationOptions): Promise<string>;
  /** Who holds `key`; undefined when it is not recorded (or expired at `now`). */
  holderOf(key: string, now: Date, options?: OperationOptions): Promise<string | undefined>;
  /**
   * Forget `key` if `holder` holds it (expired or not), so the key can be
   * held again; true for the one call that removed it, false when the key is
   * not recorded or another holder holds it. A delete by key and holder:
   * never removes a later holder's record.
   */
  release(key: string, holder: string, options?: OperationOptions): Promise<boolean>;
}

/**
 * Rate-limit windows: the hits in (bucket, window) are slots numbered from 1,
 * each a unique key, so concurrent hits from any number of instances never
 * take one slot twice. Which slot to try is the caller's business
 * (domain/rate-limiter.ts); every operation here but highestSlot is a point
 * operation on one slot's key.
 */
export interface RateLimitStore {
  /**
   * Take one slot: true when this call stored it, false when it was taken
   * already (by anyone, this caller's own earlier attempt included).
   */
  takeSlot(bucket: string, windowStart: Date, slot: number, expiresAt: Date, options?: OperationOptions): Promise<boolean>;
  /** Whether the slot is taken (a read by key). */
  slotTaken(bucket: string, windowStart: Date, slot: number, options?: OperationOptions): Promise<boolean>;
  /** The highest slot taken in the window, 0 when none: a query, for resynchronizing only. */
  highestSlot(bucket: string, windowStart: Date, options?: OperationOptions): Promise<number>;
}

/**
 * The audit trail (kept until `expiresAt`, the configured retention). Each
 * stored event gets an id at insert (domain/audit-event-id.ts): unique, and
 * sorting in the order events were stored.
 */
export interface AuditStore {
  append(event: AuditEvent, expiresAt: Date): Promise<void>;
  /** Events of one user or address, newest first (for tests and operators). */
  find(filter: { readonly email?: string; readonly userId?: string }, limit: number): Promise<AuditEvent[]>;
  /**
   * Events that match `query`, newest first by (at, id), strictly after
   * `after` in that order (the last event of the previous page), at most
   * `limit`. Events stored meanwhile never shift a page.
   */
  list(query: AuditQuery, after: AuditPosition | undefined, limit: number, options?: OperationOptions): Promise<StoredAuditEvent[]>;
  /**
   * Events that match `filter` whose id sorts above `afterId`, in id order
   * (the order they were stored), at most `limit`: what a watch polls.
   */
  storedAfter(filter: AuditFilter, afterId: string, limit: number, options?: OperationOptions): Promise<StoredAuditEvent[]>;
  /**
   * Appends several events with one write (audit/audit-group-commit.ts),
   * their ids in the order given. Each event stands on its own: one the
   * database refuses does not keep the others out. Resolves with the events
   * that were not stored (by index, with why), empty when all were; throws
   * when it cannot tell which were (a connection lost): then none may be
   * taken as stored.
   */
  appendMany(entries: readonly AuditAppend[]): Promise<AuditAppendFailure[]>;
}

/** An event to append and when it goes. */
export interface AuditAppend {
  readonly event: AuditEvent;
  readonly expiresAt: Date;
}

/** An event appendMany did not store: its index in the entries, and why. */
export interface AuditAppendFailure {
  readonly index: number;
  readonly error: Error;
}

/** Set fields must all match (exactly; `email` is the normalized address). */
export interface AuditFilter {
  readonly userId?: string | undefined;
  readonly email?: string | undefined;
  readonly caller?: string | undefined;
  readonly method?: string | undefined;
  readonly outcome?: string | undefined;
}

export interface AuditQuery extends AuditFilter {
  /** Only events at or after this time. */
  readonly since?: Date | undefined;
  /** Only events before this time. */
  readonly until?: Date | undefined;
}

/** Where a page of events ends: the (at, id) of its last event. */
export interface AuditPosition {
  readonly at: Date;
  readonly id: string;
}

/** The store cannot be reached (or did not answer in time); the caller may retry. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}
