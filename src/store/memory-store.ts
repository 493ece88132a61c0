import type { LinkRecord, LinkTombstone } from "../domain/link.js";
import type { LinkType } from "../domain/link-type.js";
import type { User } from "../domain/user.js";
import type { AuditEvent } from "../domain/audit-event.js";
import type {
  AuditStore,
  ClaimStore,
  LinkStore,
  RateLimitStore,
  Store,
  TombstoneStore,
  UserChanges,
  UserStore,
} from "../domain/store.js";

// The embedded store: everything in process memory, gone on restart. Each
// method does all of its reads and writes synchronously, so on Node's single
// thread it is as atomic as the MongoDB operation it stands for. Records are
// copied in and out so that callers never share mutable state with the store.
// A call's abort signal is not consulted: no operation here ever waits.
// The audit trail is a ring buffer of the newest events (maxAuditEvents), so
// memory stays bounded however long the process runs.

const copy = <T>(value: T): T => structuredClone(value);

export interface MemoryStoreOptions {
  /**
   * Most audit events kept (default 10,000, about 10 MiB): past it the oldest
   * is dropped. The embedded store is for development and tests; a
   * deployment that must keep its audit trail uses MongoDB.
   */
  readonly maxAuditEvents?: number;
}

export const DEFAULT_MAX_AUDIT_EVENTS = 10_000;

export function createMemoryStore(options: MemoryStoreOptions = {}): Store {
  const users = new Map<string, User>();
  const userIdByEmail = new Map<string, string>();
  const links = new Map<string, LinkRecord>();
  const tombstones = new Map<string, LinkTombstone>();
  /** Claimed keys: when they expire, and who holds them ("" for claim()). */
  const claims = new Map<string, { expiresAt: Date; holder: string }>();
  /** Taken slots per bucket and window; the window keys expire like claims. */
  const rateWindows = new Map<string, { slots: Set<number>; highest: number; expiresAt: Date }>();
  const auditEvents = createRing<{ event: AuditEvent; expiresAt: Date }>(options.maxAuditEvents ?? DEFAULT_MAX_AUDIT_EVENTS);

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

  /** Delete the links that match; returns how many. */
  const deleteWhere = (predicate: (link: LinkRecord) => boolean): number => {
    let deleted = 0;
    for (const [hash, link] of links) {
      if (predicate(link) && links.delete(hash)) deleted++;
    }
    return deleted;
  };

  const linkStore: LinkStore = {
    async insert(records) {
      if (records.some((r) => links.has(r.tokenHash))) throw new Error("duplicate token hash");
      for (const record of records) links.set(record.tokenHash, copy(record));
    },
    async markIssued(tokenHashes) {
      for (const hash of tokenHashes) {
        const link = links.get(hash);
        if (link) links.set(hash, { ...link, pending: undefined });
      }
    },
    async find(tokenHash, now) {
      const link = links.get(tokenHash);
      return link && isRetained(link, now) ? copy(link) : undefined;
    },
    async findByUser(userId, type: LinkType | undefined) {
      return [...links.values()].filter((l) => l.userId === userId && (type === undefined || l.type === type)).map(copy);
    },
    async findLiveByEmail(email, type, now, limit) {
      return [...links.values()]
        .filter((l) => l.email === email && l.type === type && isLive(l, now) && !l.pending)
        .slice(0, Math.max(0, limit))
        .map(copy);
    },
    async delete(tokenHash) {
      return links.delete(tokenHash);
    },
  };

  const tombstoneStore: TombstoneStore = {
    async record(records) {
      const recorded: LinkTombstone[] = [];
      for (const tombstone of records) {
        if (tombstones.has(tombstone.tokenHash)) continue;
        tombstones.set(tombstone.tokenHash, copy(tombstone));
        recorded.push(copy(tombstone));
      }
      return recorded;
    },
    async find(tokenHash, now) {
      const tombstone = tombstones.get(tokenHash);
      return tombstone && isRetained(tombstone, now) ? copy(tombstone) : undefined;
    },
  };

  const claimStore: ClaimStore = {
    async claim(key, expiresAt) {
      if (claims.has(key)) return false;
      claims.set(key, { expiresAt, holder: "" });
      return true;
    },
    async claimed(keys, now) {
      return new Set(keys.filter((key) => (claims.get(key)?.expiresAt.getTime() ?? -Infinity) > now.getTime()));
    },
    async hold(key, holder, expiresAt) {
      const held = claims.get(key);
      if (held) return held.holder;
      claims.set(key, { expiresAt, holder });
      return holder;
    },
    async holderOf(key, now) {
      const held = claims.get(key);
      return held && held.expiresAt.getTime() > now.getTime() ? held.holder : undefined;
    },
  };

  const windowKey = (bucket: string, windowStart: Date) => `${bucket}|${windowStart.getTime()}`;
  const rateLimitStore: RateLimitStore = {
    async takeSlot(bucket, windowStart, slot, expiresAt) {
      const key = windowKey(bucket, windowStart);
      const window = rateWindows.get(key) ?? { slots: new Set<number>(), highest: 0, expiresAt };
      if (window.slots.has(slot)) return false;
      window.slots.add(slot);
      window.highest = Math.max(window.highest, slot);
      rateWindows.set(key, window);
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
      auditEvents.push({ event: copy(event), expiresAt });
    },
    async find(filter, limit) {
      return [...auditEvents]
        .filter(({ event }) => (filter.email === undefined || event.email === filter.email) && (filter.userId === undefined || event.userId === filter.userId))
        .map(({ event }) => copy(event))
        .sort((a, b) => b.at.getTime() - a.at.getTime())
        .slice(0, limit);
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
      let count = deleteWhere((l) => !isRetained(l, now));
      for (const [hash, tombstone] of tombstones) {
        if (!isRetained(tombstone, now) && tombstones.delete(hash)) count++;
      }
      const expired = (expiresAt: Date) => expiresAt.getTime() <= now.getTime();
      for (const [key, { expiresAt }] of claims) {
        if (expired(expiresAt) && claims.delete(key)) count++;
      }
      for (const [key, window] of rateWindows) {
        if (expired(window.expiresAt) && rateWindows.delete(key)) count++;
      }
      // Events are appended in the order calls end, all with one retention,
      // so the expired ones are the oldest: drop from that end and stop at the
      // first live one. (One that expired behind a live one, from a call that
      // ended a moment later, goes with a later purge.)
      count += auditEvents.dropOldestWhile((entry) => expired(entry.expiresAt));
      return count;
    },
    async ping() {},
    async close() {},
  };
}

/**
 * A ring buffer of at most `capacity` items: pushing onto a full one drops the
 * oldest. Iterates oldest first.
 */
interface Ring<T> extends Iterable<T> {
  readonly size: number;
  push(item: T): void;
  /** Drops items from the oldest end while `test` holds; returns how many. */
  dropOldestWhile(test: (item: T) => boolean): number;
}

function createRing<T>(capacity: number): Ring<T> {
  if (!(Number.isInteger(capacity) && capacity >= 1)) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  const slots: (T | undefined)[] = [];
  let head = 0;
  let size = 0;
  return {
    get size() {
      return size;
    },
    push(item) {
      if (size < capacity) {
        slots[(head + size) % capacity] = item;
        size += 1;
      } else {
        slots[head] = item;
        head = (head + 1) % capacity;
      }
    },
    dropOldestWhile(test) {
      let dropped = 0;
      while (size > 0 && test(slots[head] as T)) {
        slots[head] = undefined;
        head = (head + 1) % capacity;
        size -= 1;
        dropped += 1;
      }
      return dropped;
    },
    *[Symbol.iterator]() {
      for (let i = 0; i < size; i++) yield slots[(head + i) % capacity] as T;
    },
  };
}
