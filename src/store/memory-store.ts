import type { LinkRecord, LinkTombstone } from "../domain/link.js";
import { LINK_TYPES, type LinkType } from "../domain/link-type.js";
import { compareNewestFirst, matchesListQuery } from "../domain/link-order.js";
import type { User } from "../domain/user.js";
import type { AuditEvent, StoredAuditEvent } from "../domain/audit-event.js";
import { createAuditIdGenerator } from "../domain/audit-event-id.js";
import { setImmediate as nextTurn } from "node:timers/promises";
import type {
  AuditFilter,
  AuditQuery,
  AuditStore,
  ClaimStore,
  LinkListQuery,
  LinkStore,
  RateLimitStore,
  Store,
  TombstoneStore,
  UserChanges,
  UserStore,
} from "../domain/store.js";
import { ExpiryQueue } from "./expiry-queue.js";
import { createRing } from "./ring-buffer.js";
import { plainCopy } from "./plain-copy.js";

// The embedded store: everything in process memory, gone on restart. Each
// method does all of its reads and writes synchronously, so on Node's single
// thread it is as atomic as the MongoDB operation it stands for. Records are
// copied in and out so that callers never share mutable state with the store.
// A call's abort signal is not consulted: no operation here ever waits.
// The audit trail is a ring buffer of the newest events (maxAuditEvents), so
// memory stays bounded however long the process runs.
//
// Every operation is a lookup in a map or in one index bucket, never a walk
// over all links or users: links are indexed by hash, by user and by
// (type, address), and a bucket holds one user's or one address's links
// only, which the replacement rule keeps to a handful. Everything that
// expires (links and tombstones at their retainUntil, claims and rate-limit
// windows at their expiresAt) is also queued by due time (expiry-queue.ts),
// so the sweep takes only what is due and leaves no entry of it anywhere.
// (The sweep alone gives other calls a turn between slices of a large
// backlog; each deletion in it is still done whole, index entries with it.)
// The one exception is the administrators' listing (list, for ListLinks):
// it walks the user's or the address's index buckets when the query names a
// user or an address, and otherwise every link; tombstones, kept by hash
// only, it always walks. It is never on the path of a link's issue or use.

const copy = plainCopy;

export interface MemoryStoreOptions {
  /**
   * Most audit events kept (default 10,000, about 10 MiB): past it the oldest
   * is dropped. The embedded store is for development and tests; a
   * deployment that must keep its audit trail uses MongoDB.
   */
  readonly maxAuditEvents?: number;
  /**
   * Makes the store's maps (default: `new Map()`). Tests pass maps that count
   * what is done to them, to show that an operation does the same few
   * lookups however full the store is.
   */
  readonly newMap?: <K, V>() => Map<K, V>;
  /** The clock stored audit events' ids are taken from (default Date.now); tests skew it. */
  readonly now?: () => number;
}

/** How many entries each part of the embedded store holds (for tests and measurements). */
export interface MemoryStoreSizes {
  readonly users: number;
  readonly userEmails: number;
  readonly links: number;
  /** Users with links (index buckets). */
  readonly linkUsers: number;
  /** (type, address) pairs with links (index buckets). */
  readonly linkAddresses: number;
  readonly tombstones: number;
  readonly claims: number;
  readonly rateWindows: number;
  readonly auditEvents: number;
  /** Entries waiting in the expiry queues (those of entries that went early included, until they fall due). */
  readonly expiryQueue: number;
}

export interface MemoryStore extends Store {
  sizes(): MemoryStoreSizes;
}

/** The sweep gives other calls a turn after this many queue entries. */
const SWEEP_SLICE = 10_000;

export const DEFAULT_MAX_AUDIT_EVENTS = 10_000;

export function createMemoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  const newMap = options.newMap ?? (<K, V>() => new Map<K, V>());
  const users = newMap<string, User>();
  const userIdByEmail = newMap<string, string>();
  const links = newMap<string, LinkRecord>();
  /** Hashes of each user's links. */
  const linksByUser = newMap<string, Set<string>>();
  /** Hashes of the links of each (type, address); see addressKey. */
  const linksByAddress = newMap<string, Set<string>>();
  const tombstones = newMap<string, LinkTombstone>();
  /** Claimed keys: when they expire, and who holds them ("" for claim()). */
  const claims = newMap<string, { expiresAt: Date; holder: string }>();
  /** Taken slots per bucket and window; the window keys expire like claims. */
  const rateWindows = newMap<string, { slots: Set<number>; highest: number; expiresAt: Date }>();
  /** What falls due when, one queue per map; see purgeExpired. */
  const linkExpiries = new ExpiryQueue();
  const tombstoneExpiries = new ExpiryQueue();
  const claimExpiries = new ExpiryQueue();
  const windowExpiries = new ExpiryQueue();
  const auditEvents = createRing<{ id: string; event: AuditEvent; expiresAt: Date }>(options.maxAuditEvents ?? DEFAULT_MAX_AUDIT_EVENTS);
  const newAuditId = createAuditIdGenerator(options.now ?? Date.now);

  const userStore: UserStore = {
    async findById(id) {
      const user = users.get(id);
      return user && copy(user);
    },
    async findByEmail(email) {
      const id = userIdByEmail.get(email);
      const user = id === undefined ? undefined : users.get(id);
      return user && copy(user);
    },
    async insert(user) {
      if (userIdByEmail.has(user.email) || users.has(user.id)) return "email_taken";
      users.set(user.id, copy(user));
      userIdByEmail.set(user.email, user.id);
      return "inserted";
    },
    async update(id, changes: UserChanges) {
      // Like MongoDB's $set of the given fields: a change left undefined is not applied.
      const given = Object.fromEntries(Object.entries(copy(changes)).filter(([, value]) => value !== undefined));
      return replaceUser(id, (user) => ({ ...user, ...given }));
    },
    async confirmEmail(id, at) {
      return replaceUser(id, (user) =>
        user.emailConfirmedAt ? user : { ...user, emailConfirmedAt: at, updatedAt: at },
      );
    },
    async completeEmailChange(id, change, at) {
      const user = users.get(id);
      if (!user?.emailChange || user.emailChange.id !== change.id || user.emailChange.newEmail !== change.newEmail) {
        return undefined;
      }
      const holder = userIdByEmail.get(change.newEmail);
      if (holder !== undefined && holder !== id) return "email_taken";
      userIdByEmail.delete(user.email);
      userIdByEmail.set(change.newEmail, id);
      return replaceUser(id, (u) => ({
        ...u,
        email: change.newEmail,
        emailConfirmedAt: at,
        updatedAt: at,
        emailChange: undefined,
        completedEmailChange: { id: change.id, previousEmail: u.email },
      }));
    },
    async cancelEmailChange(id, changeId, at) {
      const user = users.get(id);
      if (user?.emailChange?.id === changeId) replaceUser(id, (u) => ({ ...u, emailChange: undefined, updatedAt: at }));
    },
    async changeEmail(id, email, at) {
      const user = users.get(id);
      if (!user) return undefined;
      const holder = userIdByEmail.get(email);
      if (holder !== undefined && holder !== id) return "email_taken";
      userIdByEmail.delete(user.email);
      userIdByEmail.set(email, id);
      return replaceUser(id, (u) => ({ ...u, email, emailChange: undefined, updatedAt: at }));
    },
    async delete(id) {
      const user = users.get(id);
      if (!user) return false;
      users.delete(id);
      // The address index follows (it always names this user for its address).
      if (userIdByEmail.get(user.email) === id) userIdByEmail.delete(user.email);
      return true;
    },
  };

  function replaceUser(id: string, change: (user: User) => User): User | undefined {
    const user = users.get(id);
    if (!user) return undefined;
    const next = change(user);
    users.set(id, next);
    return copy(next);
  }

  const isLive = (link: LinkRecord, now: Date): boolean => now.getTime() < link.expiresAt.getTime();
  /** Links (expired ones included) and tombstones are kept until their retainUntil. */
  const isRetained = (entry: { retainUntil: Date }, now: Date): boolean => now.getTime() < entry.retainUntil.getTime();

  /** A link type never contains ":", so this key is unambiguous. */
  const addressKey = (type: LinkType, email: string) => `${type}:${email}`;

  function storeLink(link: LinkRecord): void {
    links.set(link.tokenHash, link);
    addToBucket(linksByUser, link.userId, link.tokenHash);
    addToBucket(linksByAddress, addressKey(link.type, link.email), link.tokenHash);
    linkExpiries.add(link.retainUntil.getTime(), link.tokenHash);
  }

  /** Delete a link and its index entries; true when it was stored. (Its expiry entry goes when it falls due.) */
  function deleteLink(tokenHash: string): boolean {
    const link = links.get(tokenHash);
    if (!link) return false;
    links.delete(tokenHash);
    removeFromBucket(linksByUser, link.userId, tokenHash);
    removeFromBucket(linksByAddress, addressKey(link.type, link.email), tokenHash);
    return true;
  }

  /** The stored links whose hashes are in `bucket`, those that pass `keep`, at most `limit`. */
  function linksIn(bucket: Set<string> | undefined, keep: (link: LinkRecord) => boolean, limit = Infinity): LinkRecord[] {
    const found: LinkRecord[] = [];
    if (!bucket) return found;
    for (const hash of bucket) {
      if (found.length >= limit) break;
      const link = links.get(hash) as LinkRecord;
      if (keep(link)) found.push(copy(link));
    }
    return found;
  }

  const linkStore: LinkStore = {
    async insert(records) {
      if (records.some((r) => links.has(r.tokenHash))) throw new Error("duplicate token hash");
      for (const record of records) storeLink(copy(record));
    },
    async markIssued(tokenHashes) {
      for (const hash of tokenHashes) {
        const link = links.get(hash);
        // Same hash, user, type and address: the indexes stay as they are.
        if (link) links.set(hash, { ...link, pending: undefined });
      }
    },
    async find(tokenHash, now) {
      const link = links.get(tokenHash);
      return link && isRetained(link, now) ? copy(link) : undefined;
    },
    async findByUser(userId, type: LinkType | undefined) {
      return linksIn(linksByUser.get(userId), (l) => type === undefined || l.type === type);
    },
    async findLiveByEmail(email, type, now, limit) {
      return linksIn(linksByAddress.get(addressKey(type, email)), (l) => isLive(l, now) && !l.pending, Math.max(0, limit));
    },
    async delete(tokenHash) {
      return deleteLink(tokenHash);
    },
    async list(query, now) {
      return newestFirst(linkCandidates(query), query, now);
    },
  };

  /**
   * The links a listing has to look at: the user's index bucket, else the
   * address's buckets (one per type), else every link. (Listing is for
   * administrators; the hot path never walks.)
   */
  function linkCandidates(query: LinkListQuery): Iterable<LinkRecord> {
    const hashes = (bucket: Set<string> | undefined) => [...(bucket ?? [])];
    if (query.userId !== undefined) return hashes(linksByUser.get(query.userId)).map((hash) => links.get(hash) as LinkRecord);
    if (query.email !== undefined) {
      const email = query.email;
      const types = query.type === undefined ? LINK_TYPES : [query.type];
      return types.flatMap((type) => hashes(linksByAddress.get(addressKey(type, email)))).map((hash) => links.get(hash) as LinkRecord);
    }
    return links.values();
  }

  const tombstoneStore: TombstoneStore = {
    async record(records) {
      const recorded: LinkTombstone[] = [];
      for (const tombstone of records) {
        if (tombstones.has(tombstone.tokenHash)) continue;
        tombstones.set(tombstone.tokenHash, copy(tombstone));
        tombstoneExpiries.add(tombstone.retainUntil.getTime(), tombstone.tokenHash);
        recorded.push(copy(tombstone));
      }
      return recorded;
    },
    async find(tokenHash, now) {
      const tombstone = tombstones.get(tokenHash);
      return tombstone && isRetained(tombstone, now) ? copy(tombstone) : undefined;
    },
    async list(query, now) {
      // Tombstones are kept by hash only: a listing walks them all.
      return newestFirst(tombstones.values(), query, now);
    },
  };

  /** Copies of the retained entries that match `query`, newest issue first, at most query.limit. */
  function newestFirst<T extends LinkRecord | LinkTombstone>(entries: Iterable<T>, query: LinkListQuery, now: Date): T[] {
    const found: T[] = [];
    for (const entry of entries) if (isRetained(entry, now) && matchesListQuery(entry, query)) found.push(entry);
    return found.sort(compareNewestFirst).slice(0, Math.max(0, query.limit)).map((entry) => copy(entry));
  }

  function recordClaim(key: string, holder: string, expiresAt: Date): void {
    claims.set(key, { expiresAt, holder });
    claimExpiries.add(expiresAt.getTime(), key);
  }

  const claimStore: ClaimStore = {
    async claim(key, expiresAt) {
      if (claims.has(key)) return false;
      recordClaim(key, "", expiresAt);
      return true;
    },
    async claimed(keys, now) {
      return new Set(keys.filter((key) => (claims.get(key)?.expiresAt.getTime() ?? -Infinity) > now.getTime()));
    },
    async hold(key, holder, expiresAt) {
      const held = claims.get(key);
      if (held) return held.holder;
      recordClaim(key, holder, expiresAt);
      return holder;
    },
    async holderOf(key, now) {
      const held = claims.get(key);
      return held && held.expiresAt.getTime() > now.getTime() ? held.holder : undefined;
    },
    async release(key, holder) {
      if (claims.get(key)?.holder !== holder) return false;
      return claims.delete(key);
    },
  };

  const windowKey = (bucket: string, windowStart: Date) => `${bucket}|${windowStart.getTime()}`;
  const rateLimitStore: RateLimitStore = {
    async takeSlot(bucket, windowStart, slot, expiresAt) {
      const key = windowKey(bucket, windowStart);
      const window = rateWindows.get(key);
      if (window?.slots.has(slot)) return false;
      if (window) {
        window.slots.add(slot);
        window.highest = Math.max(window.highest, slot);
      } else {
        rateWindows.set(key, { slots: new Set([slot]), highest: slot, expiresAt });
        // Queued when it is new; the sweep checks the time on record.
        windowExpiries.add(expiresAt.getTime(), key);
      }
      return true;
    },
    async slotTaken(bucket, windowStart, slot) {
      return rateWindows.get(windowKey(bucket, windowStart))?.slots.has(slot) ?? false;
    },
    async highestSlot(bucket, windowStart) {
      return rateWindows.get(windowKey(bucket, windowStart))?.highest ?? 0;
    },
  };

  const auditStore: AuditStore = {
    async append(event, expiresAt) {
      auditEvents.push({ id: newAuditId(), event: copy(event), expiresAt });
    },
    async find(filter, limit) {
      return [...auditEvents]
        .filter(({ event }) => (filter.email === undefined || event.email === filter.email) && (filter.userId === undefined || event.userId === filter.userId))
        .map(({ event }) => copy(event))
        .sort((a, b) => b.at.getTime() - a.at.getTime())
        .slice(0, limit);
    },
    // Both walk the whole ring (at most maxAuditEvents entries): an
    // operator's query on a development store.
    async list(query, after, limit) {
      const found: StoredAuditEvent[] = [];
      for (const { id, event } of auditEvents) {
        if (matchesQuery(event, query) && (after === undefined || isBefore(event.at, id, after.at, after.id))) found.push({ ...copy(event), id });
      }
      return found.sort((a, b) => (isBefore(a.at, a.id, b.at, b.id) ? 1 : -1)).slice(0, Math.max(0, limit));
    },
    async storedAfter(filter, afterId, limit) {
      const found: StoredAuditEvent[] = [];
      for (const { id, event } of auditEvents) {
        if (id > afterId && matchesFilter(event, filter)) found.push({ ...copy(event), id });
      }
      return found.sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, Math.max(0, limit));
    },
    async appendMany(entries) {
      for (const { event, expiresAt } of entries) auditEvents.push({ id: newAuditId(), event: copy(event), expiresAt });
      return [];
    },
  };

  return {
    kind: "memory",
    users: userStore,
    links: linkStore,
    tombstones: tombstoneStore,
    claims: claimStore,
    rateLimits: rateLimitStore,
    audit: auditStore,
    needsPurge: true,
    async purgeExpired(now) {
      const at = now.getTime();
      // Each queue hands over what is due; an entry whose key went early, or
      // whose time on record moved later, is skipped. So every key left has
      // an entry at its own due time, and the sweep visits only what is due.
      const due = (date: Date) => date.getTime() <= at;
      let count = 0;
      count += await sweep(linkExpiries, at, (hash) => {
        const link = links.get(hash);
        return link !== undefined && due(link.retainUntil) && deleteLink(hash);
      });
      count += await sweep(tombstoneExpiries, at, (hash) => {
        const tombstone = tombstones.get(hash);
        return tombstone !== undefined && due(tombstone.retainUntil) && tombstones.delete(hash);
      });
      count += await sweep(claimExpiries, at, (key) => {
        const claim = claims.get(key);
        return claim !== undefined && due(claim.expiresAt) && claims.delete(key);
      });
      count += await sweep(windowExpiries, at, (key) => {
        const window = rateWindows.get(key);
        return window !== undefined && due(window.expiresAt) && rateWindows.delete(key);
      });
      // Events are appended in the order calls end, all with one retention,
      // so the expired ones are the oldest: drop from that end and stop at the
      // first live one. (One that expired behind a live one, from a call that
      // ended a moment later, goes with a later purge.)
      count += auditEvents.dropOldestWhile((entry) => due(entry.expiresAt));
      return count;
    },
    sizes() {
      return {
        users: users.size,
        userEmails: userIdByEmail.size,
        links: links.size,
        linkUsers: linksByUser.size,
        linkAddresses: linksByAddress.size,
        tombstones: tombstones.size,
        claims: claims.size,
        rateWindows: rateWindows.size,
        auditEvents: auditEvents.size,
        expiryQueue: linkExpiries.size + tombstoneExpiries.size + claimExpiries.size + windowExpiries.size,
      };
    },
    async ping() {},
    async close() {},
  };
}

/**
 * Take every key due at `now` from `queue` and pass it to `expire` (true when
 * it deleted something); returns how many it deleted. Gives other calls a
 * turn now and then, so that a large backlog does not stall them.
 */
async function sweep(queue: ExpiryQueue, now: number, expire: (key: string) => boolean): Promise<number> {
  let deleted = 0;
  for (let taken = 1; ; taken++) {
    const key = queue.takeDue(now);
    if (key === undefined) return deleted;
    if (expire(key)) deleted++;
    if (taken % SWEEP_SLICE === 0) await nextTurn();
  }
}

function addToBucket(index: Map<string, Set<string>>, key: string, member: string): void {
  const bucket = index.get(key);
  if (bucket) bucket.add(member);
  else index.set(key, new Set([member]));
}

/** Remove `member`, and the bucket with it once it is empty (so no empty bucket outlives its last link). */
function removeFromBucket(index: Map<string, Set<string>>, key: string, member: string): void {
  const bucket = index.get(key);
  if (bucket?.delete(member) && bucket.size === 0) index.delete(key);
}

function matchesFilter(event: AuditEvent, filter: AuditFilter): boolean {
  return (
    (filter.userId === undefined || event.userId === filter.userId) &&
    (filter.email === undefined || event.email === filter.email) &&
    (filter.caller === undefined || event.caller === filter.caller) &&
    (filter.method === undefined || event.method === filter.method) &&
    (filter.outcome === undefined || event.outcome === filter.outcome)
  );
}

function matchesQuery(event: AuditEvent, query: AuditQuery): boolean {
  const at = event.at.getTime();
  return (
    matchesFilter(event, query) &&
    (query.since === undefined || at >= query.since.getTime()) &&
    (query.until === undefined || at < query.until.getTime())
  );
}

/** (at, id) sorts before (otherAt, otherId): older, or as old with a lower id. */
function isBefore(at: Date, id: string, otherAt: Date, otherId: string): boolean {
  return at.getTime() < otherAt.getTime() || (at.getTime() === otherAt.getTime() && id < otherId);
}
