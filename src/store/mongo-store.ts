import { MongoClient, ObjectId, type Abortable, type Collection, type CommandOperationOptions, type Db, type Document, type Filter } from "mongodb";
import type { AuditEvent, StoredAuditEvent } from "../domain/audit-event.js";
import { createAuditIdGenerator } from "../domain/audit-event-id.js";
import type { LinkRecord, LinkTombstone } from "../domain/link.js";
import type { CompletedEmailChange, JsonObject, PendingEmailChange, User } from "../domain/user.js";
import type { Logger } from "../log/logger.js";
import { duplicateKeyIndexes, isDuplicateKeyError, isUnavailableError, translateErrors, writeErrorsByIndex } from "./mongo-errors.js";
import { guardStore } from "./guarded-store.js";
import { createStoreCircuit, describeCause } from "./store-circuit.js";
import {
  StoreUnavailableError,
  type AuditFilter,
  type AuditStore,
  type ClaimStore,
  type LinkListQuery,
  type LinkStore,
  type OperationOptions,
  type RateLimitStore,
  type Store,
  type TombstoneStore,
  type UserStore,
} from "../domain/store.js";

// The MongoDB store (official driver). Collections:
//   users        _id = user id; unique index on the normalized email
//   link_tokens  _id = SHA-256 of the link token (so it is unique, and a
//                hashed shard key on _id spreads it); indexes on {email,type}
//                and {userId,type}; TTL on retainUntil (expiresAt plus the
//                tombstone grace: an expired link stays, unusable, so that
//                PreviewLink can still say "expired")
//   link_tombstones _id = the token hash of a link that was used, replaced
//                or revoked (its fate: the first insert wins); TTL on
//                retainUntil (copied from the link)
//                Both link collections also have {userId,issuedAt,_id},
//                {email,issuedAt,_id} and {issuedAt,_id} for ListLinks (an
//                administrators' listing; FerretDB scans for it regardless).
//   claims       _id = the claimed key (one-time code attempts, email-change
//                confirmations, finished redemptions with their holder); TTL
//                on expiresAt
//   rate_limits  one document per hit: _id = bucket|window|slot, slots
//                numbered from 1, taken and probed by _id; index on
//                {bucket,window,slot} (resynchronizing only); TTL
//   audit_events one document per call: _id = the event id, taken at insert
//                (domain/audit-event-id.ts: it sorts by storage time, so a
//                watch polls a range of _id; documents stored before ids
//                existed have an ObjectId); indexes on {email,at,_id},
//                {userId,at,_id} and {at,_id} for ListAuditEvents (FerretDB
//                scans anyway); TTL on expiresAt (the retention)
// Every decision is a unique insert (tombstones, claims, rate-limit slots,
// users' addresses); hot-path reads are by _id. A link document changes once
// (pending → issued, an $unset by _id) and is otherwise only inserted and
// deleted. Servers without TTL indexes (FerretDB 1.x answers NotImplemented)
// get a purge loop instead.

export interface MongoStoreOptions {
  readonly uri: string;
  /** Database name; default: the one in the URI, else "authlink". */
  readonly database?: string | undefined;
  /**
   * The longest one operation may take (server selection, connecting, the
   * answer) before it fails as UNAVAILABLE; also bounds each connection
   * attempt at start-up.
   */
  readonly timeoutMs: number;
  /** How long a socket may stay silent mid-operation before it counts as broken. */
  readonly socketTimeoutMs: number;
  readonly logger: Logger;
  /** Start-up retries: the first pause (default 500 ms), doubled per failure up to the cap (default 10 s). */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** The clock audit event ids are taken from (default Date.now); tests skew it to play another instance. */
  readonly now?: () => number;
}

/** The MongoDB store, and when it first became usable. */
export interface MongoStore extends Store {
  /**
   * Resolves once the first connection and the index set-up succeeded (until
   * then every operation throws StoreUnavailableError); rejects if the store
   * is closed first. Start-up does not wait for it: authlink serves (not
   * ready, UNAVAILABLE) while the database is away.
   */
  readonly ready: Promise<void>;
}

interface UserDoc {
  _id: string;
  email: string;
  passwordHash?: string;
  emailConfirmedAt?: Date;
  invitedAt?: Date;
  createdAt: Date;
  updatedAt: Date;
  /** JSON text: metadata keys may contain "." or "$", which BSON field names should not. */
  userMetadataJson: string;
  emailChange?: PendingEmailChange;
  completedEmailChange?: CompletedEmailChange;
}

interface ClaimDoc {
  _id: string;
  expiresAt: Date;
  /** Who holds the key (hold()); absent for claim(). */
  holder?: string;
}

interface RateHitDoc {
  _id: string;
  bucket: string;
  window: Date;
  slot: number;
  expiresAt: Date;
}

/** `_id`: an event id (a string); an ObjectId on documents stored before event ids existed. */
type AuditDoc = AuditEvent & { _id: string | ObjectId; expiresAt: Date };

interface LinkDoc {
  _id: string;
  /** Absent on documents stored before it existed (backfilled at start-up). */
  retainUntil?: Date;
  otpHash: string;
  type: LinkRecord["type"];
  userId: string;
  email: string;
  redirectTo?: string;
  issueId: string;
  issuedAt: Date;
  expiresAt: Date;
  emailChange?: LinkRecord["emailChange"];
  /** Present (true) until the link's issue makes it usable. */
  pending?: boolean;
  /** Absent on documents stored before it was recorded. */
  issuedBy?: string;
}

interface TombstoneDoc {
  _id: string;
  ending: LinkTombstone["ending"];
  at: Date;
  type: LinkRecord["type"];
  userId: string;
  email: string;
  redirectTo?: string;
  issuedAt: Date;
  expiresAt: Date;
  retainUntil: Date;
  emailChange?: LinkRecord["emailChange"];
  issuedBy?: string;
}

const NOT_IMPLEMENTED = 238;
const INDEX_NOT_FOUND = 27;
const NAMESPACE_NOT_FOUND = 26;

/**
 * The MongoDB store, at once: it connects and creates its indexes in the
 * background, retrying with capped exponential backoff (each failure logged
 * with host:port, never credentials) until the database answers. Operations
 * pass a circuit (store-circuit.ts) that fails them at once until then, and
 * again whenever the database goes away. Throws only for a connection string
 * the driver cannot parse (a configuration error, which no retry would fix).
 */
export async function openMongoStore(options: MongoStoreOptions): Promise<MongoStore> {
  const { logger } = options;
  const client = new MongoClient(options.uri, {
    appName: "authlink",
    serverSelectionTimeoutMS: options.timeoutMs,
    connectTimeoutMS: options.timeoutMs,
    socketTimeoutMS: options.socketTimeoutMs,
    ignoreUndefined: true,
  });
  const name = options.database ?? databaseFromUri(options.uri) ?? "authlink";
  const db = client.db(name);
  const target = describeTarget(options.uri);
  const redact = credentialRedactor(options.uri);
  let ttl: boolean | undefined;
  const inner = createMongoStore(client, db, () => ttl, options.now ?? Date.now);
  const circuit = createStoreCircuit({
    ping: (signal) => inner.ping({ signal }),
    operationTimeoutMs: options.timeoutMs,
    logger,
    target,
    redact,
  });

  const closing = new AbortController();
  const closedEarly = () => new StoreUnavailableError("the store was closed before it connected");
  const initialMs = options.retry?.initialMs ?? 500;
  const maxMs = options.retry?.maxMs ?? 10_000;
  let ttlWarned = false;
  const warnOnce = (message: string) => {
    if (!ttlWarned) logger.warn(message);
    ttlWarned = true;
  };
  const setUp = async (): Promise<void> => {
    logger.info({ database: target, name }, "connecting to MongoDB");
    for (let attempt = 1; ; attempt++) {
      try {
        await client.connect();
        ({ ttl } = await ensureIndexes(db, warnOnce));
        break;
      } catch (error) {
        if (closing.signal.aborted) throw closedEarly();
        const retryInMs = Math.min(maxMs, initialMs * 2 ** (attempt - 1));
        const unreachable = isUnavailableError(error);
        logger[unreachable ? "warn" : "error"](
          { database: target, attempt, retryInMs, cause: redact(describeCause(error)) },
          unreachable
            ? "MongoDB is not reachable: not ready (calls answer UNAVAILABLE); retrying"
            : "MongoDB set-up failed: not ready (calls answer UNAVAILABLE); retrying",
        );
        await pause(retryInMs, closing.signal);
        if (closing.signal.aborted) throw closedEarly();
      }
    }
    circuit.start();
    logger.info({ database: target, name, purgeLoop: ttl === false }, "MongoDB connected and indexes ready");
  };
  const ready = setUp();
  ready.catch(() => undefined); // nobody need wait for it

  const guarded = guardStore(inner, circuit);
  const closeGuarded = guarded.close;
  return Object.assign(guarded, {
    ready,
    close: async () => {
      closing.abort();
      await closeGuarded();
    },
  });
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The hosts of a connection string, for log lines: `host:port,host:port` (or the SRV name), never its credentials. */
export function describeTarget(uri: string): string {
  const match = /^(mongodb(?:\+srv)?):\/\/(?:[^@/?]*@)?([^/?]*)/.exec(uri);
  return match ? `${match[1] === "mongodb+srv" ? "mongodb+srv://" : ""}${match[2]}` : "(unparsable connection string)";
}

/**
 * Removes the connection string's user and password (as written and
 * percent-decoded) from text about to be logged: a second line of defence,
 * as driver messages name hosts, not credentials.
 */
export function credentialRedactor(uri: string): (text: string) => string {
  const userInfo = /^mongodb(?:\+srv)?:\/\/([^@/?]*)@/.exec(uri)?.[1];
  if (!userInfo) return (text) => text;
  const secrets = new Set<string>();
  for (const part of [userInfo, ...userInfo.split(":")]) {
    if (part.length < 3) continue; // too short to search for without mangling the text
    secrets.add(part);
    try {
      secrets.add(decodeURIComponent(part));
    } catch {
      // not valid percent-encoding: the raw form is enough
    }
  }
  const ordered = [...secrets].sort((a, b) => b.length - a.length);
  return (text) => ordered.reduce((out, secret) => out.split(secret).join("[redacted]"), text);
}

/** The database named in the URI path, if any. */
export function databaseFromUri(uri: string): string | undefined {
  const name = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]+)/.exec(uri)?.[1];
  return name ? decodeURIComponent(name) : undefined;
}

/**
 * Create collections' indexes (idempotent). Reports whether TTL indexes are
 * supported; `warn` is told when they are not.
 */
async function ensureIndexes(db: Db, warn: (message: string) => void): Promise<{ ttl: boolean }> {
  await db.collection("users").createIndex({ email: 1 }, { unique: true, name: "email_unique" });
  const links = db.collection<LinkDoc>("link_tokens");
  await links.createIndex({ email: 1, type: 1 }, { name: "email_type" });
  await links.createIndex({ userId: 1, type: 1 }, { name: "user_type" });
  await backfillRetainUntil(links);
  const ttl = await createTtlIndex(links, "retainUntil", warn);
  // Before tombstones, link documents expired at expiresAt: that index would
  // delete expired links before PreviewLink could call them expired.
  await dropIndexIfPresent(links, "expiresAt_ttl");
  await dropIndexIfPresent(links, "expiresAt_purge");
  const tombstones = db.collection<TombstoneDoc>("link_tombstones");
  await createTtlIndex(tombstones, "retainUntil", undefined);
  await createListingIndexes(links, { byUserAndAddress: false });
  await createListingIndexes(tombstones, { byUserAndAddress: true });
  await createTtlIndex(db.collection("claims"), "expiresAt", undefined);
  const rateLimits = db.collection("rate_limits");
  await rateLimits.createIndex({ bucket: 1, window: 1, slot: -1 }, { name: "bucket_window_slot" });
  await createTtlIndex(rateLimits, "expiresAt", undefined);
  const audit = db.collection("audit_events");
  // ListAuditEvents sorts by (at, _id): the indexes end with both, so a page
  // is a walk along an index on MongoDB. The older {email,at} and {userId,at}
  // are covered by the new ones.
  await audit.createIndex({ email: 1, at: -1, _id: -1 }, { name: "email_at_id" });
  await audit.createIndex({ userId: 1, at: -1, _id: -1 }, { name: "user_at_id" });
  await audit.createIndex({ at: -1, _id: -1 }, { name: "at_id" });
  await dropIndexIfPresent(audit, "email_at");
  await dropIndexIfPresent(audit, "user_at");
  await createTtlIndex(audit, "expiresAt", undefined);
  return { ttl };
}

/**
 * The indexes of ListLinks's filters, each in its newest-first order.
 *
 * On `link_tokens` a listing by user or address uses the hot path's
 * `{userId,type}` / `{email,type}` instead: one person holds a handful of
 * links there (issuing replaces the older ones of a type), so sorting them
 * costs nothing, while two more indexes would cost every link insert and
 * delete two more index updates. Tombstones have no such index, and one
 * person's pile up over the grace period, so they get their own. Databases
 * set up by an earlier version lose the two on `link_tokens`.
 */
async function createListingIndexes<T extends LinkDoc | TombstoneDoc>(
  collection: Collection<T>,
  { byUserAndAddress }: { readonly byUserAndAddress: boolean },
): Promise<void> {
  if (byUserAndAddress) {
    await collection.createIndex({ userId: 1, issuedAt: -1, _id: -1 }, { name: "user_issued" });
    await collection.createIndex({ email: 1, issuedAt: -1, _id: -1 }, { name: "email_issued" });
  } else {
    await dropIndexIfPresent(collection, "user_issued");
    await dropIndexIfPresent(collection, "email_issued");
  }
  await collection.createIndex({ issuedAt: -1, _id: -1 }, { name: "issued" });
}

/**
 * The filter of a listing (store.ts, LinkListQuery) on a link or tombstone
 * collection: the query's filters, retained at `now`, and after its position.
 */
function listFilter(query: LinkListQuery, now: Date): Document {
  const and: Document[] = [{ $or: [{ retainUntil: { $gt: now } }, { retainUntil: { $exists: false }, expiresAt: { $gt: now } }] }];
  if (query.userId !== undefined) and.push({ userId: query.userId });
  if (query.email !== undefined) and.push({ email: query.email });
  if (query.type !== undefined) and.push({ type: query.type });
  if (query.issuedBy !== undefined) and.push(query.issuedBy === "" ? { $or: [{ issuedBy: "" }, { issuedBy: { $exists: false } }] } : { issuedBy: query.issuedBy });
  if (query.issuedFrom !== undefined) and.push({ issuedAt: { $gte: query.issuedFrom } });
  if (query.issuedBefore !== undefined) and.push({ issuedAt: { $lt: query.issuedBefore } });
  if (query.after !== undefined) {
    const { issuedAt, tokenHash } = query.after;
    and.push({ $or: [{ issuedAt: { $lt: issuedAt } }, { issuedAt, _id: { $lt: tokenHash } }] });
  }
  return { $and: and };
}

/** Newest issue first, then by hash (store.ts). */
const NEWEST_FIRST = { issuedAt: -1, _id: -1 } as const;

/**
 * Link documents stored before retainUntil existed are given their expiresAt
 * (they had no grace period), so the TTL index or the purge on retainUntil
 * removes them too. Idempotent: once done, nothing matches. Documents an
 * older instance stores during a rolling upgrade are caught at the next
 * start-up.
 */
async function backfillRetainUntil(links: Collection<LinkDoc>): Promise<void> {
  const legacy = await links.find({ retainUntil: { $exists: false } }, { projection: { _id: 1, expiresAt: 1 } }).toArray();
  if (legacy.length === 0) return;
  await links.bulkWrite(
    legacy.map((doc) => ({
      updateOne: { filter: { _id: doc._id }, update: { $set: { retainUntil: doc.expiresAt } } },
    })),
    { ordered: false },
  );
}

/** Drop an index by name if it exists (idempotent, and harmless when another instance drops it first). */
async function dropIndexIfPresent<T extends Document>(collection: Collection<T>, name: string): Promise<void> {
  try {
    await collection.dropIndex(name);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code !== INDEX_NOT_FOUND && code !== NAMESPACE_NOT_FOUND) throw error;
  }
}

/** Warns of the fallback: pass `warn` only for the first collection. */
async function createTtlIndex<T extends object>(
  collection: Collection<T>,
  field: string,
  warn: ((message: string) => void) | undefined,
): Promise<boolean> {
  try {
    await collection.createIndex({ [field]: 1 }, { expireAfterSeconds: 0, name: `${field}_ttl` });
    return true;
  } catch (error) {
    if ((error as { code?: unknown }).code !== NOT_IMPLEMENTED) throw error;
    await collection.createIndex({ [field]: 1 }, { name: `${field}_purge` });
    warn?.(
      "this MongoDB server does not support TTL indexes (it answered NotImplemented); expired documents are purged periodically instead",
    );
    return false;
  }
}

/** The store's operations; `ttl` says (once the indexes are set up) whether the server has TTL indexes. */
function createMongoStore(client: MongoClient, db: Db, ttl: () => boolean | undefined, now: () => number): Store {
  const users = db.collection<UserDoc>("users");
  const links = db.collection<LinkDoc>("link_tokens");
  const tombstones = db.collection<TombstoneDoc>("link_tombstones");
  const claims = db.collection<ClaimDoc>("claims");
  const rateHits = db.collection<RateHitDoc>("rate_limits");
  const auditEvents = db.collection<AuditDoc>("audit_events");
  const newAuditId = createAuditIdGenerator(now);
  // Every driver operation gets the signal it is handed (guarded-store.ts
  // decides what that is): server selection, the wait for a pooled
  // connection and the wait for the answer all stop when it fires. The
  // driver types declare `signal` for reads only; it honours it for writes
  // too (a write already sent may still apply).
  const abortable = (options?: OperationOptions): CommandOperationOptions & Abortable =>
    options?.signal ? { signal: options.signal } : {};
  // findOneAndUpdate serves only updates where the last writer winning is
  // harmless (store.ts says why nothing else relies on it).
  const after = { returnDocument: "after" as const };
  const run = <T>(options: OperationOptions | undefined, operation: () => Promise<T>): Promise<T> => {
    options?.signal?.throwIfAborted();
    return translateErrors(operation);
  };

  const userStore: UserStore = {
    findById: (id, options) => run(options, async () => toUser(await users.findOne({ _id: id }, abortable(options)))),
    findByEmail: (email, options) => run(options, async () => toUser(await users.findOne({ email }, abortable(options)))),
    insert: (user, options) =>
      run(options, async () => {
        try {
          await users.insertOne(fromUser(user), abortable(options));
          return "inserted";
        } catch (error) {
          if (isDuplicateKeyError(error)) return "email_taken";
          throw error;
        }
      }),
    update: (id, changes, options) =>
      run(options, async () => {
        const set: Partial<UserDoc> = { updatedAt: changes.updatedAt };
        if (changes.passwordHash !== undefined) set.passwordHash = changes.passwordHash;
        if (changes.userMetadata !== undefined) set.userMetadataJson = JSON.stringify(changes.userMetadata);
        if (changes.invitedAt !== undefined) set.invitedAt = changes.invitedAt;
        if (changes.emailChange !== undefined) set.emailChange = changes.emailChange;
        return toUser(await users.findOneAndUpdate({ _id: id }, { $set: set }, { ...after, ...abortable(options) }));
      }),
    confirmEmail: (id, at, options) =>
      run(options, async () => {
        const updated = await users.findOneAndUpdate(
          { _id: id, emailConfirmedAt: { $exists: false } },
          { $set: { emailConfirmedAt: at, updatedAt: at } },
          { ...after, ...abortable(options) },
        );
        return toUser(updated ?? (await users.findOne({ _id: id }, abortable(options))));
      }),
    completeEmailChange: (id, change, at, options) =>
      run(options, async () => {
        const pending = { _id: id, "emailChange.id": change.id, "emailChange.newEmail": change.newEmail };
        const before = await users.findOne(pending, { ...abortable(options), projection: { _id: 1, email: 1 } });
        if (!before) return undefined;
        const completedEmailChange: CompletedEmailChange = { id: change.id, previousEmail: before.email };
        // The address is checked before the update, and again after a failed
        // one, so the answer does not depend on how a server reports a
        // unique-index conflict inside an update (MongoDB: 11000; FerretDB:
        // InternalError). The unique index is what guards the race.
        const takenByOther = async () => {
          const holder = await users.findOne({ email: change.newEmail }, { ...abortable(options), projection: { _id: 1 } });
          return holder !== null && holder._id !== id;
        };
        if (await takenByOther()) return "email_taken";
        try {
          const updated = await users.findOneAndUpdate(
            pending,
            { $set: { email: change.newEmail, emailConfirmedAt: at, updatedAt: at, completedEmailChange }, $unset: { emailChange: "" } },
            { ...after, ...abortable(options) },
          );
          return toUser(updated);
        } catch (error) {
          if (isDuplicateKeyError(error) || (!isUnavailableError(error) && (await takenByOther()))) return "email_taken";
          throw error;
        }
      }),
    cancelEmailChange: (id, changeId, at, options) =>
      run(options, async () => {
        await users.updateOne(
          { _id: id, "emailChange.id": changeId },
          { $unset: { emailChange: "" }, $set: { updatedAt: at } },
          abortable(options),
        );
      }),
    changeEmail: (id, email, at, options) =>
      run(options, async () => {
        // As in completeEmailChange: the address is checked before the
        // update and again after a failed one (servers report a unique-index
        // conflict inside an update differently); the unique index decides.
        const takenByOther = async () => {
          const holder = await users.findOne({ email }, { ...abortable(options), projection: { _id: 1 } });
          return holder !== null && holder._id !== id;
        };
        if (await takenByOther()) return "email_taken";
        try {
          const updated = await users.findOneAndUpdate(
            { _id: id },
            { $set: { email, updatedAt: at }, $unset: { emailChange: "" } },
            { ...after, ...abortable(options) },
          );
          return toUser(updated);
        } catch (error) {
          if (isDuplicateKeyError(error) || (!isUnavailableError(error) && (await takenByOther()))) return "email_taken";
          throw error;
        }
      }),
    delete: (id, options) =>
      run(options, async () => (await users.deleteOne({ _id: id }, abortable(options))).deletedCount === 1),
  };

  const stillRetained = <T extends { retainUntil?: Date; expiresAt: Date }>(doc: T | null, now: Date): T | undefined =>
    doc && now.getTime() < (doc.retainUntil ?? doc.expiresAt).getTime() ? doc : undefined;

  const linkStore: LinkStore = {
    insert: (records, options) =>
      run(options, async () => {
        await links.insertMany(records.map(fromLink), { ordered: true, ...abortable(options) });
      }),
    markIssued: (tokenHashes, options) =>
      run(options, async () => {
        // One update by _id per link, together: one round trip.
        await Promise.all(tokenHashes.map((hash) => links.updateOne({ _id: hash }, { $unset: { pending: "" } }, abortable(options))));
      }),
    find: (tokenHash, now, options) =>
      run(options, async () => toLink(stillRetained(await links.findOne({ _id: tokenHash }, abortable(options)), now) ?? null)),
    findByUser: (userId, type, options) =>
      run(options, async () => {
        const docs = await links.find(type === undefined ? { userId } : { userId, type }, abortable(options)).toArray();
        return docs.map((doc) => toLink(doc) as LinkRecord);
      }),
    findLiveByEmail: (email, type, now, limit, options) =>
      run(options, async () => {
        if (limit <= 0) return []; // the driver reads limit(0) as "no limit"
        const docs = await links
          .find({ email, type, expiresAt: { $gt: now }, pending: { $exists: false } }, abortable(options))
          .limit(limit)
          .toArray();
        return docs.map((doc) => toLink(doc) as LinkRecord);
      }),
    delete: (tokenHash, options) =>
      run(options, async () => (await links.deleteOne({ _id: tokenHash }, abortable(options))).deletedCount === 1),
    list: (query, now, options) =>
      run(options, async () => {
        if (query.limit <= 0) return []; // the driver reads limit(0) as "no limit"
        const docs = await links.find(listFilter(query, now), { ...abortable(options), sort: NEWEST_FIRST, limit: query.limit }).toArray();
        return docs.map((doc) => toLink(doc) as LinkRecord);
      }),
  };

  const tombstoneStore: TombstoneStore = {
    record: (records, options) =>
      run(options, async () => {
        if (records.length === 0) return [];
        try {
          // Unordered: every new hash is recorded even when another already
          // has its tombstone (which stays: the first writer wins).
          await tombstones.insertMany(records.map(fromTombstone), { ordered: false, ...abortable(options) });
          return [...records];
        } catch (error) {
          if (records.length === 1 && isDuplicateKeyError(error)) return [];
          const lost = duplicateKeyIndexes(error);
          if (!lost) throw error;
          return records.filter((_, i) => !lost.has(i));
        }
      }),
    find: (tokenHash, now, options) =>
      run(options, async () => toTombstone(stillRetained(await tombstones.findOne({ _id: tokenHash }, abortable(options)), now))),
    list: (query, now, options) =>
      run(options, async () => {
        if (query.limit <= 0) return [];
        const docs = await tombstones.find(listFilter(query, now), { ...abortable(options), sort: NEWEST_FIRST, limit: query.limit }).toArray();
        return docs.map((doc) => toTombstone(doc) as LinkTombstone);
      }),
  };

  const claimStore: ClaimStore = {
    claim: (key, expiresAt, options) =>
      run(options, async () => {
        try {
          await claims.insertOne({ _id: key, expiresAt }, abortable(options));
          return true;
        } catch (error) {
          if (isDuplicateKeyError(error)) return false;
          throw error;
        }
      }),
    claimed: (keys, now, options) =>
      run(options, async () => {
        const found = await Promise.all(keys.map((key) => claims.findOne({ _id: key }, abortable(options))));
        return new Set(found.filter((doc) => doc !== null && doc.expiresAt.getTime() > now.getTime()).map((doc) => doc!._id));
      }),
    hold: (key, holder, expiresAt, options) =>
      run(options, async () => {
        // The insert decides; a loser reads who won. Should the winner's
        // document be purged in between, the key is free again: try again.
        for (;;) {
          try {
            await claims.insertOne({ _id: key, expiresAt, holder }, abortable(options));
            return holder;
          } catch (error) {
            if (!isDuplicateKeyError(error)) throw error;
          }
          const held = await claims.findOne({ _id: key }, abortable(options));
          if (held) return held.holder ?? "";
        }
      }),
    holderOf: (key, now, options) =>
      run(options, async () => {
        const held = await claims.findOne({ _id: key }, abortable(options));
        return held && held.expiresAt.getTime() > now.getTime() ? (held.holder ?? "") : undefined;
      }),
    release: (key, holder, options) =>
      run(options, async () => {
        // By _id and holder: a key held again since is another document.
        const filter = holder === "" ? { _id: key, holder: { $exists: false } } : { _id: key, holder };
        return (await claims.deleteOne(filter, abortable(options))).deletedCount === 1;
      }),
  };

  const slotId = (bucket: string, window: Date, slot: number) => `${bucket}|${window.getTime()}|${slot}`;
  const rateLimitStore: RateLimitStore = {
    takeSlot: (bucket, windowStart, slot, expiresAt, options) =>
      run(options, async () => {
        try {
          await rateHits.insertOne({ _id: slotId(bucket, windowStart, slot), bucket, window: windowStart, slot, expiresAt }, abortable(options));
          return true;
        } catch (error) {
          if (isDuplicateKeyError(error)) return false;
          throw error;
        }
      }),
    slotTaken: (bucket, windowStart, slot, options) =>
      run(options, async () => (await rateHits.findOne({ _id: slotId(bucket, windowStart, slot) }, { ...abortable(options), projection: { _id: 1 } })) !== null),
    highestSlot: (bucket, windowStart, options) =>
      run(
        options,
        async () =>
          (await rateHits.findOne({ bucket, window: windowStart }, { ...abortable(options), sort: { slot: -1 }, projection: { slot: 1 } }))?.slot ?? 0,
      ),
  };

  const auditStore: AuditStore = {
    append: (event, expiresAt) =>
      translateErrors(async () => {
        await auditEvents.insertOne({ _id: newAuditId(), ...event, expiresAt });
      }),
    find: (filter, limit) =>
      translateErrors(async () => {
        const query: Record<string, string> = {};
        if (filter.email !== undefined) query.email = filter.email;
        if (filter.userId !== undefined) query.userId = filter.userId;
        const docs = await auditEvents.find(query, { sort: { at: -1 }, limit, projection: { _id: 0, expiresAt: 0 } }).toArray();
        return docs.map((doc) => withoutNulls(doc) as AuditEvent);
      }),
    list: (query, after, limit, options) =>
      run(options, async () => {
        if (limit <= 0) return []; // the driver reads limit(0) as "no limit"
        const clauses: Filter<AuditDoc>[] = [auditFilter(query)];
        if (query.since !== undefined || query.until !== undefined) {
          clauses.push({ at: { ...(query.since && { $gte: query.since }), ...(query.until && { $lt: query.until }) } });
        }
        if (after) clauses.push({ $or: [{ at: { $lt: after.at } }, { at: after.at, ...idBelow(after.id) }] });
        const docs = await auditEvents
          .find(clauses.length === 1 ? (clauses[0] as Filter<AuditDoc>) : { $and: clauses }, { sort: { at: -1, _id: -1 }, limit, projection: { expiresAt: 0 }, ...abortable(options) })
          .toArray();
        return docs.map(toStoredAuditEvent);
      }),
    storedAfter: (filter, afterId, limit, options) =>
      run(options, async () => {
        if (limit <= 0) return [];
        // A string range: documents with an ObjectId (stored before event ids) never match.
        const docs = await auditEvents
          .find({ ...auditFilter(filter), _id: { $gt: afterId } }, { sort: { _id: 1 }, limit, projection: { expiresAt: 0 }, ...abortable(options) })
          .toArray();
        return docs.map(toStoredAuditEvent);
      }),
    appendMany: (entries) =>
      translateErrors(async () => {
        if (entries.length === 0) return [];
        // Ids taken in the order given, then one unordered insert: a
        // document the server refuses does not stop the others.
        const docs = entries.map(({ event, expiresAt }) => ({ _id: newAuditId(), ...event, expiresAt }));
        try {
          await auditEvents.insertMany(docs, { ordered: false });
          return [];
        } catch (error) {
          const refused = writeErrorsByIndex(error);
          if (!refused) throw error;
          return [...refused].map(([index, why]) => ({ index, error: why }));
        }
      }),
  };

  return {
    kind: "mongodb",
    users: userStore,
    links: linkStore,
    tombstones: tombstoneStore,
    claims: claimStore,
    rateLimits: rateLimitStore,
    audit: auditStore,
    get needsPurge() {
      return ttl() === false;
    },
    purgeExpired: (now) =>
      translateErrors(async () => {
        const expired = { expiresAt: { $lte: now } };
        const forgotten = { retainUntil: { $lte: now } };
        const results = await Promise.all([
          links.deleteMany(forgotten),
          tombstones.deleteMany(forgotten),
          claims.deleteMany(expired),
          rateHits.deleteMany(expired),
          auditEvents.deleteMany(expired),
        ]);
        return results.reduce((sum, result) => sum + result.deletedCount, 0);
      }),
    ping: (options) =>
      translateErrors(async () => {
        await db.command({ ping: 1 }, { signal: options?.signal });
      }),
    close: () => client.close(),
  };
}

function fromUser(user: User): UserDoc {
  return {
    _id: user.id,
    email: user.email,
    passwordHash: user.passwordHash,
    emailConfirmedAt: user.emailConfirmedAt,
    invitedAt: user.invitedAt,
    createdAt: user.createdAt,
    updatedAt: user.updatedAt,
    userMetadataJson: JSON.stringify(user.userMetadata),
    emailChange: user.emailChange,
    completedEmailChange: user.completedEmailChange,
  } as UserDoc;
}

function toUser(doc: UserDoc | null): User | undefined {
  if (!doc) return undefined;
  return {
    id: doc._id,
    email: doc.email,
    passwordHash: doc.passwordHash ?? undefined,
    emailConfirmedAt: doc.emailConfirmedAt ?? undefined,
    invitedAt: doc.invitedAt ?? undefined,
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
    userMetadata: JSON.parse(doc.userMetadataJson) as JsonObject,
    emailChange: doc.emailChange ? withoutNulls(doc.emailChange) : undefined,
    completedEmailChange: doc.completedEmailChange ?? undefined,
  };
}

function fromLink(link: LinkRecord): LinkDoc {
  return {
    _id: link.tokenHash,
    otpHash: link.otpHash,
    type: link.type,
    userId: link.userId,
    email: link.email,
    redirectTo: link.redirectTo,
    issueId: link.issueId,
    issuedAt: link.issuedAt,
    expiresAt: link.expiresAt,
    retainUntil: link.retainUntil,
    emailChange: link.emailChange,
    pending: link.pending === true ? true : undefined,
    issuedBy: link.issuedBy,
  } as LinkDoc;
}

function toLink(doc: LinkDoc | null): LinkRecord | undefined {
  if (!doc) return undefined;
  return {
    tokenHash: doc._id,
    otpHash: doc.otpHash,
    type: doc.type,
    userId: doc.userId,
    email: doc.email,
    redirectTo: doc.redirectTo ?? undefined,
    issueId: doc.issueId,
    issuedAt: doc.issuedAt,
    expiresAt: doc.expiresAt,
    retainUntil: doc.retainUntil ?? doc.expiresAt,
    emailChange: doc.emailChange ?? undefined,
    pending: doc.pending === true ? true : undefined,
    issuedBy: doc.issuedBy ?? undefined,
  };
}

function fromTombstone(tombstone: LinkTombstone): TombstoneDoc {
  return {
    _id: tombstone.tokenHash,
    ending: tombstone.ending,
    at: tombstone.at,
    type: tombstone.type,
    userId: tombstone.userId,
    email: tombstone.email,
    redirectTo: tombstone.redirectTo,
    issuedAt: tombstone.issuedAt,
    expiresAt: tombstone.expiresAt,
    retainUntil: tombstone.retainUntil,
    emailChange: tombstone.emailChange,
    issuedBy: tombstone.issuedBy,
  } as TombstoneDoc;
}

function toTombstone(doc: TombstoneDoc | undefined): LinkTombstone | undefined {
  if (!doc) return undefined;
  return {
    tokenHash: doc._id,
    ending: doc.ending,
    at: doc.at,
    type: doc.type,
    userId: doc.userId,
    email: doc.email,
    redirectTo: doc.redirectTo ?? undefined,
    issuedAt: doc.issuedAt,
    expiresAt: doc.expiresAt,
    retainUntil: doc.retainUntil,
    emailChange: doc.emailChange ?? undefined,
    issuedBy: doc.issuedBy ?? undefined,
  };
}

function withoutNulls<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null && v !== undefined)) as T;
}

function auditFilter(filter: AuditFilter): Filter<AuditDoc> {
  const query: Record<string, string> = {};
  for (const field of ["userId", "email", "caller", "method", "outcome"] as const) {
    const value = filter[field];
    if (value !== undefined) query[field] = value;
  }
  return query as Filter<AuditDoc>;
}

const LEGACY_ID = /^[0-9a-f]{24}$/;

/**
 * Ids below `id` in the (at, _id) descending order. In BSON order every
 * string sorts below every ObjectId, so below a legacy document's ObjectId
 * come the lower ObjectIds and all string ids.
 */
function idBelow(id: string): Filter<AuditDoc> {
  if (!LEGACY_ID.test(id)) return { _id: { $lt: id } };
  return { $or: [{ _id: { $lt: new ObjectId(id) } }, { _id: { $type: "string" } }] };
}

function toStoredAuditEvent(doc: AuditDoc): StoredAuditEvent {
  const { _id, ...event } = withoutNulls(doc);
  return { ...(event as AuditEvent), id: typeof _id === "string" ? _id : _id.toHexString() };
}
