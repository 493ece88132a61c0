import { randomBytes } from "node:crypto";
import { after } from "node:test";
import { MongoClient } from "mongodb";
import { settleBy } from "../../src/domain/abort.js";
import { openMongoStore, type MongoStore } from "../../src/store/mongo-store.js";
import type { Logger } from "../../src/log/logger.js";
import { createCapturedLogger } from "./captured-logger.js";

// Each test file gets its own database on the suite's MongoDB and drops it
// when done. Without AUTHLINK_TEST_MONGODB_URI the tests fail: run them with
// `npm test`, which provides one.

export function testMongoUri(): string {
  const uri = process.env.AUTHLINK_TEST_MONGODB_URI;
  if (!uri) {
    throw new Error(
      "AUTHLINK_TEST_MONGODB_URI is not set: run the suite with `npm test` (it starts FerretDB) or point it at a MongoDB",
    );
  }
  return uri;
}

export interface TestDatabase {
  readonly uri: string;
  readonly name: string;
  /** A client for inspecting the database directly. */
  readonly client: MongoClient;
}

/**
 * A fresh database for this test file, dropped after the file's tests. Call it
 * at the top level of the file (top-level await), not inside a hook, so that
 * the drop is registered for the end of the file.
 */
export async function useTestDatabase(label: string): Promise<TestDatabase> {
  const uri = testMongoUri();
  const name = `authlink_test_${label.replace(/[^a-z0-9]/gi, "_")}_${randomBytes(4).toString("hex")}`;
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5_000 });
  await client.connect();
  after(async () => {
    await client.db(name).dropDatabase().catch(() => undefined);
    await client.close();
  });
  return { uri, name, client };
}

/**
 * authlink's MongoDB store on a test database (optionally through another
 * URI, e.g. a proxy), once it has connected and set up its indexes (the
 * store itself opens at once and connects in the background).
 */
export async function openTestStore(
  database: TestDatabase,
  options: { readonly uri?: string; readonly timeoutMs?: number; readonly logger?: Logger; readonly now?: () => number } = {},
): Promise<MongoStore> {
  const store = await openMongoStore({
    uri: options.uri ?? database.uri,
    database: database.name,
    timeoutMs: options.timeoutMs ?? 5_000,
    socketTimeoutMs: 30_000,
    logger: options.logger ?? createCapturedLogger().logger,
    now: options.now,
  });
  const giveUp = AbortSignal.timeout(30_000);
  try {
    await settleBy(store.ready, giveUp);
  } catch (error) {
    await store.close();
    throw new Error("the test store did not connect within 30 s", { cause: error });
  }
  return store;
}
