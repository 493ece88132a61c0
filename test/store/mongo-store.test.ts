import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { openMongoStore } from "../../src/store/mongo-store.js";
import { StoreUnavailableError } from "../../src/store/store.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { openTestStore, useTestDatabase } from "../support/mongo.js";
import { newLink, runStoreContract } from "./store-contract.js";

// The MongoDB store: the shared contract, plus what only a real server can
// tell — indexes, TTL support as the server reports it, idempotent start-up,
// the documents as stored, and unreachable or closed connections.

const database = await useTestDatabase("store");
const db = database.client.db(database.name);

runStoreContract("MongoDB store", () => openTestStore(database));

describe("MongoDB store: on the server", () => {
  test("indexes exist after opening, and opening again is idempotent", async () => {
    const first = await openTestStore(database);
    const second = await openTestStore(database);
    after(async () => {
      await first.close();
      await second.close();
    });
    const keys = async (collection: string) => (await db.collection(collection).indexes()).map((i) => ({ key: i.key, unique: i.unique === true, ttl: i.expireAfterSeconds }));
    const users = await keys("users");
    assert.ok(users.some((i) => JSON.stringify(i.key) === '{"email":1}' && i.unique));
    const links = await keys("link_tokens");
    assert.ok(links.some((i) => JSON.stringify(i.key) === '{"email":1,"type":1}'));
    assert.ok(links.some((i) => JSON.stringify(i.key) === '{"userId":1,"type":1}'));
    const expiry = links.find((i) => JSON.stringify(i.key) === '{"expiresAt":1}');
    assert.ok(expiry, "an index on expiresAt");
    // needsPurge must agree with what the server says about TTL indexes.
    assert.equal(first.needsPurge, expiry.ttl === undefined);
    for (const collection of ["claims", "rate_limits", "audit_events"]) {
      assert.ok((await keys(collection)).some((i) => JSON.stringify(i.key) === '{"expiresAt":1}'), collection);
    }
  });

  test("needsPurge is what the server answers when asked for a TTL index", async () => {
    const probe = db.collection("ttl_probe");
    let ttlSupported: boolean;
    try {
      await probe.createIndex({ at: 1 }, { expireAfterSeconds: 60 });
      ttlSupported = true;
    } catch (error) {
      assert.equal((error as { code?: number }).code, 238, "the only accepted refusal is NotImplemented");
      ttlSupported = false;
    }
    const store = await openTestStore(database);
    after(() => store.close());
    assert.equal(store.needsPurge, !ttlSupported);
  });

  test("links are stored as hashes: _id is the token hash, no token or code field", async () => {
    const store = await openTestStore(database);
    after(() => store.close());
    const link = newLink();
    await store.links.insert([link]);
    const doc = await db.collection("link_tokens").findOne({ _id: link.tokenHash as never });
    assert.ok(doc);
    assert.deepEqual(Object.keys(doc).sort(), ["_id", "email", "expiresAt", "issueId", "issuedAt", "otpHash", "type", "userId"]);
  });

  test("an unreachable server fails start-up with an error", async () => {
    await assert.rejects(
      openMongoStore({ uri: "mongodb://127.0.0.1:1/", database: "x", timeoutMs: 300, socketTimeoutMs: 1_000, logger: createCapturedLogger().logger }),
    );
  });

  test("a store whose connection is gone answers StoreUnavailableError", async () => {
    const store = await openTestStore(database);
    await store.close();
    await assert.rejects(store.users.findByEmail("a@example.com"), StoreUnavailableError);
    await assert.rejects(store.links.insert([newLink()]), StoreUnavailableError);
  });
});
