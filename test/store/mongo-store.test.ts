import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";
import { ObjectId, type Db } from "mongodb";
import { credentialRedactor, describeTarget, openMongoStore } from "../../src/store/mongo-store.js";
import { StoreUnavailableError, type Store } from "../../src/domain/store.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { openTestStore, testMongoUri, useTestDatabase, type TestDatabase } from "../support/mongo.js";
import { mongoHostPort, startTcpProxy, viaProxy } from "../support/tcp-proxy.js";
import { newLink, newUser, runStoreContract } from "./store-contract.js";
import { settleBy } from "../../src/domain/abort.js";
import { tombstoneOf } from "../../src/domain/link.js";
import { auditIdTime } from "../../src/domain/audit-event-id.js";

// The MongoDB store: the shared contract (each test on a database of its
// own), plus what only a real server can tell — indexes, TTL support as the
// server reports it, idempotent start-up, the documents as stored, and
// unreachable, closed, lost or silent connections. Without
// AUTHLINK_TEST_MONGODB_URI this file fails (it never skips).

const database = await useTestDatabase("store");
const db = database.client.db(database.name);

let databases = 0;
/** A database of its own for one test, dropped when the test is done. */
function scratchDatabase(): TestDatabase {
  return { ...database, name: `${database.name}_${++databases}` };
}

runStoreContract("MongoDB store", async () => {
  const scratch = scratchDatabase();
  const store = await openTestStore(scratch);
  return { store, cleanup: async () => void (await database.client.db(scratch.name).dropDatabase()) };
});

interface IndexInfo {
  readonly name: string;
  readonly key: string;
  readonly unique: boolean;
  readonly expireAfterSeconds: number | undefined;
}

async function indexes(on: Db, collection: string): Promise<IndexInfo[]> {
  return (await on.collection(collection).indexes()).map((i) => ({
    name: String(i.name),
    key: JSON.stringify(i.key),
    unique: i.unique === true,
    expireAfterSeconds: i.expireAfterSeconds,
  }));
}

/** Ask the server itself whether it supports TTL indexes, in a collection of its own. */
async function serverSupportsTtl(on: Db): Promise<boolean> {
  const probe = on.collection(`ttl_probe_${randomUUID().slice(0, 8)}`);
  try {
    await probe.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0, name: "probe_ttl" });
    const created = (await probe.indexes()).find((i) => i.name === "probe_ttl");
    return created?.expireAfterSeconds === 0;
  } catch {
    return false;
  } finally {
    await probe.drop().catch(() => undefined);
  }
}

/** Open a store, run `body`, close it whatever happens. */
async function withStore<T>(open: Promise<Store>, body: (store: Store) => Promise<T>): Promise<T> {
  const store = await open;
  try {
    return await body(store);
  } finally {
    await store.close();
  }
}

/**
 * Runs every store operation once and lists those that did not reject with
 * StoreUnavailableError (with what they did instead).
 */
async function notUnavailable(store: Store): Promise<string[]> {
  const now = new Date("2030-01-01T00:00:00Z");
  const user = newUser();
  const link = newLink();
  const operations: Record<string, () => Promise<unknown>> = {
    "users.findById": () => store.users.findById(user.id),
    "users.findByEmail": () => store.users.findByEmail(user.email),
    "users.insert": () => store.users.insert(user),
    "users.update": () => store.users.update(user.id, { updatedAt: now }),
    "users.confirmEmail": () => store.users.confirmEmail(user.id, now),
    "users.completeEmailChange": () => store.users.completeEmailChange(user.id, { id: "c", newEmail: "n@example.com" }, now),
    "users.cancelEmailChange": () => store.users.cancelEmailChange(user.id, "c", now),
    "links.insert": () => store.links.insert([link]),
    "links.markIssued": () => store.links.markIssued([link.tokenHash]),
    "links.find": () => store.links.find(link.tokenHash, now),
    "links.findByUser": () => store.links.findByUser(link.userId, undefined),
    "links.findLiveByEmail": () => store.links.findLiveByEmail(link.email, link.type, now, 10),
    "links.delete": () => store.links.delete(link.tokenHash),
    "tombstones.record": () => store.tombstones.record([tombstoneOf(link, "used", now)]),
    "tombstones.find": () => store.tombstones.find(link.tokenHash, now),
    "claims.claim": () => store.claims.claim("k", now),
    "claims.claimed": () => store.claims.claimed(["k"], now),
    "claims.hold": () => store.claims.hold("k", "h", now),
    "claims.holderOf": () => store.claims.holderOf("k", now),
    "rateLimits.takeSlot": () => store.rateLimits.takeSlot("b", now, 1, now),
    "rateLimits.slotTaken": () => store.rateLimits.slotTaken("b", now, 1),
    "rateLimits.highestSlot": () => store.rateLimits.highestSlot("b", now),
    "audit.append": () => store.audit.append({ at: now, method: "m", caller: "c", clientAddress: "", hashedTokens: [], outcome: "ok", durationMs: 0 }, now),
    "audit.find": () => store.audit.find({ email: "a@example.com" }, 1),
    "audit.list": () => store.audit.list({ email: "a@example.com" }, undefined, 1),
    "audit.storedAfter": () => store.audit.storedAfter({}, "", 1),
    "audit.appendMany": () => store.audit.appendMany([{ event: { at: now, method: "m", caller: "c", clientAddress: "", hashedTokens: [], outcome: "ok", durationMs: 0 }, expiresAt: now }]),
    purgeExpired: () => store.purgeExpired(now),
  };
  const wrong: string[] = [];
  for (const [name, operation] of Object.entries(operations)) {
    const outcome = await operation().then(
      () => "resolved",
      (error: unknown) => (error instanceof StoreUnavailableError ? undefined : `${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`),
    );
    if (outcome !== undefined) wrong.push(`${name} -> ${outcome}`);
  }
  return wrong;
}

const same = (actual: unknown, expected: unknown, message: string) => assert.deepStrictEqual(actual, expected, message);

/** Polls `condition` until it holds, or fails after `timeoutMs`. */
async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("MongoDB store: on the server", () => {
  test("indexes exist after opening: unique email, link lookups, and expiry as the server supports it", async () => {
    const scratch = scratchDatabase();
    const on = database.client.db(scratch.name);
    try {
      await withStore(openTestStore(scratch), async (store) => {
        const users = await indexes(on, "users");
        assert.ok(users.some((i) => i.key === '{"email":1}' && i.unique), `users indexes: ${JSON.stringify(users)}`);

        const links = await indexes(on, "link_tokens");
        assert.ok(links.some((i) => i.key === '{"email":1,"type":1}'), `link_tokens indexes: ${JSON.stringify(links)}`);
        assert.ok(links.some((i) => i.key === '{"userId":1,"type":1}'));
        assert.equal(links.filter((i) => i.key === '{"expiresAt":1}').length, 0, "links no longer go at expiresAt");
        const ttl = await serverSupportsTtl(on);
        assert.equal(store.needsPurge, !ttl, "needsPurge is true exactly when the server refuses TTL indexes");

        // Links (kept expired for the grace period) and tombstones go at retainUntil.
        for (const collection of ["link_tokens", "link_tombstones"]) {
          const retention = (await indexes(on, collection)).filter((i) => i.key === '{"retainUntil":1}');
          assert.equal(retention.length, 1, `${collection}: one index on retainUntil`);
          if (ttl) assert.equal(retention[0]!.expireAfterSeconds, 0, `${collection}: a TTL index expiring at retainUntil`);
          else assert.equal(retention[0]!.expireAfterSeconds, undefined, `${collection}: a plain index (for the purge)`);
        }

        // ListLinks: each filter's index in newest-first order on tombstones; on
        // links only the unfiltered one (by user or address the hot path's
        // indexes serve, and two more would cost every link write).
        const byUser = '{"userId":1,"issuedAt":-1,"_id":-1}';
        const byAddress = '{"email":1,"issuedAt":-1,"_id":-1}';
        const newest = '{"issuedAt":-1,"_id":-1}';
        const tombstoneKeys = (await indexes(on, "link_tombstones")).map((i) => i.key);
        for (const key of [byUser, byAddress, newest]) assert.ok(tombstoneKeys.includes(key), `link_tombstones has ${key}: ${JSON.stringify(tombstoneKeys)}`);
        const linkKeys = links.map((i) => i.key);
        assert.ok(linkKeys.includes(newest), `link_tokens has ${newest}: ${JSON.stringify(linkKeys)}`);
        for (const key of [byUser, byAddress]) assert.ok(!linkKeys.includes(key), `link_tokens has no ${key}: ${JSON.stringify(linkKeys)}`);

        for (const collection of ["claims", "rate_limits", "audit_events"]) {
          const found = (await indexes(on, collection)).filter((i) => i.key === '{"expiresAt":1}');
          assert.equal(found.length, 1, `${collection} has an expiresAt index`);
          assert.equal(found[0]!.expireAfterSeconds, ttl ? 0 : undefined, collection);
        }
      });
    } finally {
      await on.dropDatabase();
    }
  });

  test("without TTL support the fallback is logged once per start-up; with it, not at all", async () => {
    const scratch = scratchDatabase();
    try {
      const captured = createCapturedLogger();
      await withStore(openTestStore(scratch, { logger: captured.logger }), async (store) => {
        const warnings = captured.lines.filter((line) => /TTL/i.test(line));
        assert.equal(warnings.length, store.needsPurge ? 1 : 0, warnings.join("\n"));
      });
    } finally {
      await database.client.db(scratch.name).dropDatabase();
    }
  });

  test("opening again on the same database is idempotent: same indexes, shared data", async () => {
    const scratch = scratchDatabase();
    const on = database.client.db(scratch.name);
    try {
      await withStore(openTestStore(scratch), async (first) => {
        const collections = ["users", "link_tokens", "link_tombstones", "claims", "rate_limits", "audit_events"];
        const before = await Promise.all(collections.map((c) => indexes(on, c)));
        await withStore(openTestStore(scratch), async (second) => {
          const after = await Promise.all(collections.map((c) => indexes(on, c)));
          assert.deepEqual(after, before);
          assert.equal(second.needsPurge, first.needsPurge);
          const user = newUser();
          assert.equal(await first.users.insert(user), "inserted");
          assert.equal((await second.users.findById(user.id))?.email, user.email);
          assert.equal(await second.users.insert(newUser({ email: user.email })), "email_taken", "one unique index for both");
        });
        await withStore(openTestStore(scratch), async () => undefined); // a third time, after data exists
      });
    } finally {
      await on.dropDatabase();
    }
  });

  test("links are stored as hashes only: _id is the token hash, otpHash the code's HMAC, no other secret", async () => {
    await withStore(openTestStore(database), async (store) => {
      const link = newLink({ redirectTo: "https://app.example.com/" });
      await store.links.insert([link]);
      const doc = await db.collection("link_tokens").findOne({ _id: link.tokenHash as never });
      assert.ok(doc);
      assert.equal(doc._id, link.tokenHash);
      assert.equal(doc.otpHash, link.otpHash);
      assert.deepEqual(
        Object.keys(doc).sort(),
        ["_id", "email", "expiresAt", "issueId", "issuedAt", "otpHash", "redirectTo", "retainUntil", "type", "userId"],
      );
    });
  });

  test("tombstones are stored by token hash, with no code HMAC", async () => {
    await withStore(openTestStore(database), async (store) => {
      const link = newLink({ redirectTo: "https://app.example.com/" });
      await store.tombstones.record([tombstoneOf(link, "revoked", new Date("2030-06-01T12:00:05Z"))]);
      const doc = await db.collection("link_tombstones").findOne({ _id: link.tokenHash as never });
      assert.ok(doc);
      assert.deepEqual(
        Object.keys(doc).sort(),
        ["_id", "at", "email", "ending", "expiresAt", "issuedAt", "redirectTo", "retainUntil", "type", "userId"],
      );
      assert.equal(doc.ending, "revoked");
      assert.deepEqual(doc.retainUntil, link.retainUntil);
    });
  });

  test("an existing deployment: the old expiry index on expiresAt and the replaced listing indexes are dropped, and old links get a retainUntil, idempotently", async () => {
    const scratch = scratchDatabase();
    const on = database.client.db(scratch.name);
    try {
      // As the previous version left it: links expiring at expiresAt (a TTL
      // index where the server has them, else a plain one for the purge),
      // documents without retainUntil.
      const links = on.collection("link_tokens");
      const ttl = await serverSupportsTtl(on);
      if (ttl) await links.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0, name: "expiresAt_ttl" });
      else await links.createIndex({ expiresAt: 1 }, { name: "expiresAt_purge" });
      // and the listing indexes by user and address that the hot path's indexes replaced.
      await links.createIndex({ userId: 1, issuedAt: -1, _id: -1 }, { name: "user_issued" });
      await links.createIndex({ email: 1, issuedAt: -1, _id: -1 }, { name: "email_issued" });
      const old = newLink({ expiresAt: new Date("2030-06-01T13:00:00Z") });
      const { retainUntil: _, ...legacy } = old;
      await links.insertOne({ _id: legacy.tokenHash, ...legacy, tokenHash: undefined } as never, { ignoreUndefined: true });

      for (let start = 0; start < 2; start++) {
        await withStore(openTestStore(scratch), async (store) => {
          const names = (await indexes(on, "link_tokens")).map((i) => i.name);
          assert.ok(!names.includes("expiresAt_ttl") && !names.includes("expiresAt_purge"), `start ${start}: ${names.join()}`);
          assert.ok(!names.includes("user_issued") && !names.includes("email_issued"), `start ${start}: ${names.join()}`);
          assert.ok(names.includes(ttl ? "retainUntil_ttl" : "retainUntil_purge"), `start ${start}: ${names.join()}`);
          const doc = await links.findOne({ _id: old.tokenHash as never });
          assert.deepEqual(doc?.retainUntil, old.expiresAt, "an old link is kept until its expiry, as before");
          const found = await store.links.find(old.tokenHash, new Date("2030-06-01T12:00:00Z"));
          assert.equal(found?.tokenHash, old.tokenHash);
          assert.deepEqual(found?.retainUntil, old.expiresAt);
        });
      }
    } finally {
      await on.dropDatabase();
    }
  });

  test("audit events: _id is the event id; indexes for ListAuditEvents; events stored before ids existed (ObjectId) are listed and paged too", async () => {
    const scratch = scratchDatabase();
    const on = database.client.db(scratch.name);
    try {
      // As the previous version left it: {email,at} and {userId,at}, ObjectId _ids.
      const audit = on.collection("audit_events");
      await audit.createIndex({ email: 1, at: -1 }, { name: "email_at" });
      await audit.createIndex({ userId: 1, at: -1 }, { name: "user_at" });
      const at = new Date("2030-06-01T12:00:00Z");
      const email = "legacy@example.com";
      const base = { at, method: "VerifyLink", caller: "c", clientAddress: "", hashedTokens: [], outcome: "ok", email };
      const legacy = [new ObjectId(), new ObjectId()];
      await audit.insertMany(legacy.map((_id, i) => ({ _id, ...base, durationMs: i, expiresAt: new Date("2031-01-01") })) as never);
      await withStore(openTestStore(scratch), async (store) => {
        const names = (await indexes(on, "audit_events")).map((i) => i.key);
        for (const key of ['{"email":1,"at":-1,"_id":-1}', '{"userId":1,"at":-1,"_id":-1}', '{"at":-1,"_id":-1}']) {
          assert.ok(names.includes(key), `${key} in ${names.join(" ")}`);
        }
        assert.ok(!names.includes('{"email":1,"at":-1}') && !names.includes('{"userId":1,"at":-1}'), "the old indexes are dropped");
        // Two new events at the same instant as the legacy ones.
        for (const durationMs of [10, 11]) await store.audit.append({ ...base, durationMs }, new Date("2031-01-01"));
        const docs = await audit.find({ durationMs: { $gte: 10 } }).toArray();
        for (const doc of docs) assert.equal(typeof auditIdTime(doc._id as unknown as string), "number", "a new event's _id is its id");
        const all = await store.audit.list({ email }, undefined, 10);
        assert.equal(all.length, 4);
        assert.deepEqual(
          all.slice(0, 2).map((e) => e.id).sort(),
          legacy.map((id) => id.toHexString()).sort(),
          "legacy events (ObjectId) come first at a tie, listed by their hex id",
        );
        // Page by one: every event once, the ObjectId cursors included.
        const seen: string[] = [];
        let after: { at: Date; id: string } | undefined;
        for (let i = 0; i < 6; i++) {
          const [event] = await store.audit.list({ email }, after, 1);
          if (!event) break;
          seen.push(event.id);
          after = { at: event.at, id: event.id };
        }
        assert.deepEqual(seen, all.map((e) => e.id));
        const watched = await store.audit.storedAfter({ email }, "", 10);
        assert.deepEqual(watched.map((e) => e.durationMs).sort(), [10, 11], "a watch sees only events with ids");
      });
    } finally {
      await on.dropDatabase();
    }
  });

  test("audit appendMany: the events the server refuses are reported by index, the others are stored", async () => {
    const scratch = scratchDatabase();
    const on = database.client.db(scratch.name);
    try {
      await withStore(openTestStore(scratch), async (store) => {
        // A constraint authlink never sets, so that the server refuses some
        // documents of one insert: a unique request id.
        await on.collection("audit_events").createIndex({ requestId: 1 }, { unique: true, name: "test_unique_request" });
        const event = (requestId: string, durationMs: number) => ({
          event: { at: new Date(), requestId, method: "VerifyLink", caller: "c", clientAddress: "", hashedTokens: [], outcome: "ok", durationMs },
          expiresAt: new Date("2031-01-01"),
        });
        assert.deepEqual(await store.audit.appendMany([event("taken", 0)]), []);
        const failed = await store.audit.appendMany([event("a", 1), event("taken", 2), event("b", 3), event("a", 4), event("c", 5)]);
        assert.deepEqual(failed.map((f) => f.index).sort(), [1, 3], "the refused documents, by index");
        for (const f of failed) assert.ok(f.error instanceof Error);
        const stored = await store.audit.storedAfter({}, "", 10);
        assert.deepEqual(stored.map((e) => e.durationMs), [0, 1, 3, 5], "every other document stored, in order");
      });
    } finally {
      await on.dropDatabase();
    }
  });

  test("an unreachable server at start-up: the store opens at once, answers StoreUnavailableError, retries with capped backoff, and serves once the server answers", { timeout: 60_000 }, async () => {
    const { host, port } = mongoHostPort(testMongoUri());
    const proxy = await startTcpProxy(host, port);
    const scratch = scratchDatabase();
    const captured = createCapturedLogger();
    try {
      await proxy.cut(); // connections refused
      const opening = performance.now();
      const store = await openMongoStore({
        uri: viaProxy(database.uri, proxy),
        database: scratch.name,
        timeoutMs: 300,
        socketTimeoutMs: 1_000,
        logger: captured.logger,
        retry: { initialMs: 100, maxMs: 400 },
      });
      try {
        assert.ok(performance.now() - opening < 1_000, "opening does not wait for the server");
        const failing = performance.now();
        same(await notUnavailable(store), [], "operations that answered something else before the first connection");
        await assert.rejects(store.ping(), StoreUnavailableError);
        assert.ok(performance.now() - failing < 1_000, "they fail at once, without waiting for the server");

        const retries = () =>
          captured.lines.map((line) => JSON.parse(line) as { msg: string; attempt?: number; retryInMs?: number; database?: string })
            .filter((line) => line.msg.startsWith("MongoDB is not reachable"));
        await until(() => retries().length >= 4, 20_000);
        assert.deepEqual(retries().slice(0, 4).map((r) => [r.attempt, r.retryInMs]), [[1, 100], [2, 200], [3, 400], [4, 400]]);
        assert.equal(retries()[0]?.database, `127.0.0.1:${proxy.port}`, "the log names the server it tries");

        await proxy.restore();
        await settleBy(store.ready, AbortSignal.timeout(15_000));
        await store.ping();
        const user = newUser();
        assert.equal(await store.users.insert(user), "inserted");
        const userIndexes = await indexes(database.client.db(scratch.name), "users");
        assert.ok(userIndexes.some((i) => i.name === "email_unique" && i.unique), "the indexes were set up once it answered");
        assert.ok(captured.lines.some((line) => line.includes("MongoDB connected and indexes ready")));
      } finally {
        await store.close();
      }
    } finally {
      await proxy.close();
      await database.client.db(scratch.name).dropDatabase();
    }
  });

  test("closed before it ever connected: ready rejects and the retries stop", async () => {
    const captured = createCapturedLogger();
    const store = await openMongoStore({
      uri: "mongodb://127.0.0.1:1/",
      database: "x",
      timeoutMs: 200,
      socketTimeoutMs: 1_000,
      logger: captured.logger,
      retry: { initialMs: 50, maxMs: 50 },
    });
    await until(() => captured.lines.some((line) => line.includes("not reachable")), 10_000);
    await store.close();
    await assert.rejects(store.ready, StoreUnavailableError);
    const logged = captured.lines.length;
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(captured.lines.length, logged, "no attempt after close");
    same(await notUnavailable(store), [], "operations that answered something else after close");
  });

  test("a store whose client is closed answers StoreUnavailableError for every operation", async () => {
    const store = await openTestStore(database);
    await store.close();
    same(await notUnavailable(store), [], "operations that answered something else");
  });

  test("while the server is down every operation answers StoreUnavailableError; the store recovers when it is back", async () => {
    const { host, port } = mongoHostPort(testMongoUri());
    const proxy = await startTcpProxy(host, port);
    try {
      await withStore(openTestStore(database, { uri: viaProxy(database.uri, proxy), timeoutMs: 300 }), async (store) => {
        const user = newUser();
        assert.equal(await store.users.insert(user), "inserted");
        await proxy.cut();
        const wrong = await notUnavailable(store);
        await proxy.restore();
        // The circuit fails calls at once until a ping finds the server again.
        let found: string | undefined;
        await until(async () => {
          found = await store.users.findById(user.id).then((u) => u?.id, () => undefined);
          return found !== undefined;
        }, 15_000);
        assert.equal(found, user.id, "answers again once the server is back");
        same(wrong, [], "operations that answered something else while the server was down");
      });
    } finally {
      await proxy.close();
    }
  });

  test("a server that stops answering: operations in flight fail within 1.5 probe timeouts, later ones at once, and it serves again once it answers", { timeout: 60_000 }, async () => {
    const { host, port } = mongoHostPort(testMongoUri());
    const proxy = await startTcpProxy(host, port);
    try {
      // Neither the socket timeout (30 s) nor the operation time limit (4 s)
      // may be what ends these: the circuit's ping (probe timeout 1 s) is.
      const store = await openMongoStore({
        uri: viaProxy(database.uri, proxy),
        database: database.name,
        timeoutMs: 4_000,
        socketTimeoutMs: 30_000,
        logger: createCapturedLogger().logger,
      });
      try {
        await store.ready;
        await store.users.findById("warm-up");
        proxy.stall();
        const stalled = performance.now();
        const inFlight = await Promise.all(
          [store.users.findById(randomUUID()), store.users.insert(newUser()), store.links.delete("h")].map((p) =>
            p.then(
              () => "resolved",
              (error: unknown) => (error instanceof StoreUnavailableError ? "unavailable" : String(error)),
            ),
          ),
        );
        const detectedMs = performance.now() - stalled;
        assert.deepEqual(inFlight, ["unavailable", "unavailable", "unavailable"]);
        assert.ok(detectedMs < 2_500, `detected after ${Math.round(detectedMs)} ms (bound 1.5 s plus slack)`);

        const later = performance.now();
        await assert.rejects(store.users.findById(randomUUID()), StoreUnavailableError);
        assert.ok(performance.now() - later < 200, "while down, operations fail at once");

        proxy.unstall();
        await until(() => store.users.findById("back").then(() => true, () => false), 15_000);
      } finally {
        proxy.unstall();
        await store.close();
      }
    } finally {
      await proxy.close();
    }
  });
});

describe("MongoDB store: the connection string in log lines", () => {
  test("hosts are named, credentials never", () => {
    assert.equal(describeTarget("mongodb://app:s3cret@db1:27017,db2:27018/authlink?replicaSet=rs0"), "db1:27017,db2:27018");
    assert.equal(describeTarget("mongodb+srv://app:s3cret@cluster0.example.net/?retryWrites=true"), "mongodb+srv://cluster0.example.net");
    assert.equal(describeTarget("mongodb://127.0.0.1:27017"), "127.0.0.1:27017");
  });

  test("a message that echoed the user or password (as written or percent-decoded) is redacted", () => {
    const redact = credentialRedactor("mongodb://app%2Buser:p%40ss%3Aw0rd@db1:27017/authlink");
    const message = "Authentication failed for app+user with p@ss:w0rd (p%40ss%3Aw0rd) at db1:27017";
    const redacted = redact(message);
    for (const secret of ["p@ss:w0rd", "p%40ss%3Aw0rd", "app+user", "app%2Buser"]) assert.ok(!redacted.includes(secret), redacted);
    assert.match(redacted, /db1:27017/);
    assert.equal(credentialRedactor("mongodb://db1:27017/")(message), message, "nothing to redact without credentials");
  });
});
