import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createAuditTrail, type AuditTrail } from "../../src/audit/audit-trail.js";
import type { AuditEvent } from "../../src/domain/audit-event.js";
import { auditIdFloor } from "../../src/domain/audit-event-id.js";
import { AuthlinkError } from "../../src/domain/errors.js";
import { StoreUnavailableError, type AuditStore, type Store } from "../../src/domain/store.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { openTestStore, useTestDatabase } from "../support/mongo.js";

// Group commit of audit events (src/audit/audit-group-commit.ts), through the
// audit trail, on MongoDB and on the embedded store: a lone event is sent at
// once; concurrent events share inserts, never more than the cap; every call
// learns what became of its own event — a handout caller is answered only
// once its event is stored, and throws when it is not (the whole insert
// failed, or the database refused that one event); an outcome whose event
// was not stored is queued and retried, in batches too.

const database = await useTestDatabase("group_commit");
const HOUR = 3_600_000;

/**
 * The store's audit trail, watched: each insert's request ids in `batches`;
 * the ids the store reported stored in `stored` (before the insert's caller
 * hears of it); while `down` is set every insert fails; events whose request
 * id `refuse` names are refused one by one, as a database refuses a document.
 */
function watched(inner: AuditStore) {
  const state = {
    batches: [] as string[][],
    stored: new Set<string>(),
    down: false,
    refuse: (_requestId: string) => false,
  };
  const audit: AuditStore = {
    ...inner,
    append: () => Promise.reject(new Error("the trail writes with appendMany")),
    async appendMany(entries) {
      const ids = entries.map((e) => e.event.requestId ?? "");
      state.batches.push(ids);
      if (state.down) throw new StoreUnavailableError("down");
      const accepted = entries.flatMap((entry, index) => (state.refuse(ids[index] as string) ? [] : [{ entry, index }]));
      const failures = await inner.appendMany(accepted.map((a) => a.entry));
      const failed = new Set(failures.map((f) => accepted[f.index]?.index));
      for (const { index } of accepted) if (!failed.has(index)) state.stored.add(ids[index] as string);
      return [
        ...failures.map((f) => ({ index: accepted[f.index]?.index as number, error: f.error })),
        ...ids.flatMap((id, index) => (state.refuse(id) ? [{ index, error: new Error(`refused ${id}`) }] : [])),
      ];
    },
  };
  return { audit, state };
}

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    let store: Store;
    const trails: AuditTrail[] = [];
    before(async () => {
      store = backend === "MongoDB" ? await openTestStore(database) : createMemoryStore();
    });
    after(async () => {
      for (const trail of trails) trail.close();
      await store.close();
    });

    function trailOn(audit: AuditStore, maxBatch?: number): AuditTrail {
      const trail = createAuditTrail({ store: audit, logger: createCapturedLogger().logger, retentionMs: HOUR, retryIntervalMs: 3_600_000, maxBatch });
      trails.push(trail);
      return trail;
    }

    const label = () => `gc-${randomUUID()}`;
    const event = (requestId: string, durationMs = 0): AuditEvent => ({
      at: new Date(),
      requestId,
      method: "GenerateLink",
      caller: "key:test",
      clientAddress: "192.0.2.1",
      email: `${requestId}@example.com`,
      hashedTokens: [],
      outcome: "ok",
      durationMs,
    });
    /** Request ids of the events stored since `since`, in id order (the order they were stored). */
    const storedSince = async (since: number, prefix: string) =>
      (await store.audit.storedAfter({}, auditIdFloor(since), 1_000)).map((e) => e.requestId ?? "").filter((id) => id.startsWith(prefix));

    test("a lone event is sent at once, alone: no window to wait out", async () => {
      const { audit, state } = watched(store.audit);
      const trail = trailOn(audit);
      const id = label();
      const pending = trail.recordBeforeHandout(event(id));
      assert.deepEqual(state.batches, [[id]], "sent before recordBeforeHandout returned");
      await pending;
      assert.ok(state.stored.has(id));
    });

    test("50 concurrent handouts: fewer than 50 inserts, none over the cap, each answered only once its event is stored, ids in the order handed in", async () => {
      const { audit, state } = watched(store.audit);
      const trail = trailOn(audit, 20);
      const prefix = label();
      const since = Date.now();
      const ids = Array.from({ length: 50 }, (_, i) => `${prefix}-${String(i).padStart(2, "0")}`);
      await Promise.all(
        ids.map((id) =>
          trail.recordBeforeHandout(event(id)).then(() => assert.ok(state.stored.has(id), `${id} answered before it was stored`)),
        ),
      );
      assert.ok(state.batches.length < 50, `${state.batches.length} inserts`);
      assert.ok(state.batches.every((batch) => batch.length <= 20), `sizes ${state.batches.map((b) => b.length).join(", ")}`);
      assert.deepEqual(state.batches.flat(), ids, "each event in one insert, in the order handed in");
      assert.deepEqual(await storedSince(since, prefix), ids, "all 50 stored, their ids in the order handed in");
    });

    test("an insert that fails: each handout caller in it throws store_unavailable; each outcome is queued, then stored by the retry in batches", async () => {
      const { audit, state } = watched(store.audit);
      const trail = trailOn(audit, 4);
      const prefix = label();
      const since = Date.now();
      state.down = true;
      const handouts = Array.from({ length: 6 }, (_, i) => `${prefix}-handout-${i}`);
      const outcomes = Array.from({ length: 6 }, (_, i) => `${prefix}-outcome-${i}`);
      const calls = handouts.flatMap((h, i) => [
        trail.recordBeforeHandout(event(h)).then(
          () => assert.fail(`${h} reported stored`),
          (error: unknown) => assert.equal((error as AuthlinkError).reason, "store_unavailable"),
        ),
        trail.recordOutcome(event(outcomes[i] as string)),
      ]);
      await Promise.all(calls);
      assert.ok(state.batches.some((batch) => batch.length > 1), "the events shared inserts");
      assert.equal(trail.queued, 6, "the outcomes wait for a retry");
      assert.deepEqual(await storedSince(since, prefix), [], "nothing stored");

      state.down = false;
      state.batches.length = 0;
      await trail.flush();
      assert.equal(trail.queued, 0);
      assert.deepEqual(state.batches.map((b) => b.length), [4, 2], "retried in batches of at most the cap, oldest first");
      assert.deepEqual(await storedSince(since, prefix), outcomes, "the outcomes, none of the refused handouts");
    });

    test("events the database refuses in a shared insert fail alone: those callers throw or are queued; the others are stored", async () => {
      const { audit, state } = watched(store.audit);
      const trail = trailOn(audit);
      const prefix = label();
      const since = Date.now();
      const ids = Array.from({ length: 12 }, (_, i) => `${prefix}-${String(i).padStart(2, "0")}`);
      const refused = new Set([ids[3], ids[4], ids[9]]);
      state.refuse = (id) => refused.has(id);
      const results = await Promise.all(
        ids.map((id, i) =>
          (i % 2 === 0 ? trail.recordBeforeHandout(event(id)) : trail.recordOutcome(event(id))).then(
            () => "resolved",
            (error: unknown) => (error instanceof AuthlinkError ? error.reason : String(error)),
          ),
        ),
      );
      assert.ok(state.batches.some((batch) => batch.length > 1 && batch.some((id) => refused.has(id))), "refused events shared inserts with others");
      assert.deepEqual(
        results,
        ids.map((id, i) => (refused.has(id) && i % 2 === 0 ? "store_unavailable" : "resolved")),
        "a refused handout throws; every other call resolves",
      );
      assert.equal(trail.queued, 2, "the refused outcomes (3 and 9) are queued");
      assert.deepEqual(await storedSince(since, prefix), ids.filter((id) => !refused.has(id)), "every event but the refused ones, in order");
      state.refuse = () => false;
      await trail.flush();
      assert.equal(trail.queued, 0);
      assert.deepEqual(await storedSince(since, prefix), [...ids.filter((id) => !refused.has(id)), ids[3], ids[9]], "the refused outcomes stored on retry; the refused handout never");
    });
  });
}

describe("MongoDB: a document the server itself refuses in a shared insert", () => {
  test("the refused handout throws, the refused outcome is queued, the rest of the insert is stored", async () => {
    const scratch = { ...database, name: `${database.name}_refusing` };
    const store = await openTestStore(scratch);
    const trail = createAuditTrail({ store: store.audit, logger: createCapturedLogger().logger, retentionMs: HOUR, retryIntervalMs: 3_600_000 });
    try {
      // A constraint authlink never sets: a unique request id. An event with
      // a request id already stored is refused by the server.
      await database.client.db(scratch.name).collection("audit_events").createIndex({ requestId: 1 }, { unique: true, name: "test_unique_request" });
      const event = (requestId: string, durationMs: number): AuditEvent => ({
        at: new Date(),
        requestId,
        method: "GenerateLink",
        caller: "key:test",
        clientAddress: "",
        hashedTokens: [],
        outcome: "ok",
        durationMs,
      });
      await trail.recordBeforeHandout(event("taken", 0));
      // Handed in together: the first goes alone, the other five share the next insert.
      const results = await Promise.all(
        [
          trail.recordBeforeHandout(event("first", 1)),
          trail.recordBeforeHandout(event("a", 2)),
          trail.recordBeforeHandout(event("taken", 3)),
          trail.recordOutcome(event("taken", 4)),
          trail.recordBeforeHandout(event("b", 5)),
          trail.recordOutcome(event("c", 6)),
        ].map((call) => call.then(() => "resolved", (error: unknown) => (error as AuthlinkError).reason)),
      );
      assert.deepEqual(results, ["resolved", "resolved", "store_unavailable", "resolved", "resolved", "resolved"]);
      assert.equal(trail.queued, 1, "the refused outcome waits for a retry");
      const stored = await store.audit.storedAfter({}, "", 100);
      assert.deepEqual(stored.map((e) => e.durationMs), [0, 1, 2, 5, 6], "all but the refused, in the order handed in");
    } finally {
      trail.close();
      await store.close();
      await database.client.db(scratch.name).dropDatabase();
    }
  });
});
