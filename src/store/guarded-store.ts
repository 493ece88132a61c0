import type { OperationOptions, Store } from "../domain/store.js";
import type { RunOptions, StoreCircuit } from "./store-circuit.js";

// A store whose every operation passes the circuit (store-circuit.ts): it
// fails at once while the database is away, and it never outlasts its time
// limit. Each method says whether it reads or writes (which decides whether
// the caller's deadline may tear it off) and hands the inner store the
// circuit's signal in place of the caller's. Written out method by method,
// so a method added to the port does not compile until it is classified.

const READ: RunOptions = { kind: "read" };
const WRITE: RunOptions = { kind: "write" };
/** Background maintenance: may take long; only the circuit stops it. */
const MAINTENANCE: RunOptions = { kind: "write", timeoutMs: null };

export function guardStore(inner: Store, circuit: StoreCircuit): Store {
  const read = <T>(options: OperationOptions | undefined, operation: (op: OperationOptions) => Promise<T>) =>
    circuit.run(options, READ, (signal) => operation({ signal }));
  const write = <T>(options: OperationOptions | undefined, operation: (op: OperationOptions) => Promise<T>) =>
    circuit.run(options, WRITE, (signal) => operation({ signal }));
  const { users, links, tombstones, claims, rateLimits, audit } = inner;

  return {
    kind: inner.kind,
    get needsPurge() {
      return inner.needsPurge;
    },
    users: {
      findById: (id, o) => read(o, (op) => users.findById(id, op)),
      findByEmail: (email, o) => read(o, (op) => users.findByEmail(email, op)),
      insert: (user, o) => write(o, (op) => users.insert(user, op)),
      update: (id, changes, o) => write(o, (op) => users.update(id, changes, op)),
      confirmEmail: (id, at, o) => write(o, (op) => users.confirmEmail(id, at, op)),
      completeEmailChange: (id, change, at, o) => write(o, (op) => users.completeEmailChange(id, change, at, op)),
      cancelEmailChange: (id, changeId, at, o) => write(o, (op) => users.cancelEmailChange(id, changeId, at, op)),
      changeEmail: (id, email, at, o) => write(o, (op) => users.changeEmail(id, email, at, op)),
      delete: (id, o) => write(o, (op) => users.delete(id, op)),
    },
    links: {
      insert: (records, o) => write(o, (op) => links.insert(records, op)),
      markIssued: (tokenHashes, o) => write(o, (op) => links.markIssued(tokenHashes, op)),
      find: (tokenHash, now, o) => read(o, (op) => links.find(tokenHash, now, op)),
      findByUser: (userId, type, o) => read(o, (op) => links.findByUser(userId, type, op)),
      findLiveByEmail: (email, type, now, limit, o) => read(o, (op) => links.findLiveByEmail(email, type, now, limit, op)),
      delete: (tokenHash, o) => write(o, (op) => links.delete(tokenHash, op)),
      list: (query, now, o) => read(o, (op) => links.list(query, now, op)),
    },
    tombstones: {
      record: (records, o) => write(o, (op) => tombstones.record(records, op)),
      find: (tokenHash, now, o) => read(o, (op) => tombstones.find(tokenHash, now, op)),
      list: (query, now, o) => read(o, (op) => tombstones.list(query, now, op)),
    },
    claims: {
      claim: (key, expiresAt, o) => write(o, (op) => claims.claim(key, expiresAt, op)),
      claimed: (keys, now, o) => read(o, (op) => claims.claimed(keys, now, op)),
      hold: (key, holder, expiresAt, o) => write(o, (op) => claims.hold(key, holder, expiresAt, op)),
      holderOf: (key, now, o) => read(o, (op) => claims.holderOf(key, now, op)),
      release: (key, holder, o) => write(o, (op) => claims.release(key, holder, op)),
    },
    rateLimits: {
      takeSlot: (bucket, windowStart, slot, expiresAt, o) => write(o, (op) => rateLimits.takeSlot(bucket, windowStart, slot, expiresAt, op)),
      slotTaken: (bucket, windowStart, slot, o) => read(o, (op) => rateLimits.slotTaken(bucket, windowStart, slot, op)),
      highestSlot: (bucket, windowStart, o) => read(o, (op) => rateLimits.highestSlot(bucket, windowStart, op)),
    },
    audit: {
      append: (event, expiresAt) => circuit.run(undefined, WRITE, () => audit.append(event, expiresAt)),
      find: (filter, limit) => circuit.run(undefined, READ, () => audit.find(filter, limit)),
      list: (query, after, limit, o) => read(o, (op) => audit.list(query, after, limit, op)),
      storedAfter: (filter, afterId, limit, o) => read(o, (op) => audit.storedAfter(filter, afterId, limit, op)),
      appendMany: (entries) => circuit.run(undefined, WRITE, () => audit.appendMany(entries)),
    },
    purgeExpired: (now) => circuit.run(undefined, MAINTENANCE, () => inner.purgeExpired(now)),
    ping: (o) => circuit.ping(o?.signal),
    close: async () => {
      circuit.close();
      await inner.close();
    },
  };
}
