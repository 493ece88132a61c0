import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { AuditEvent } from "../../src/domain/audit-event.js";
import { createMemoryStore, DEFAULT_MAX_AUDIT_EVENTS } from "../../src/store/memory-store.js";
import { runStoreContract } from "./store-contract.js";

// The embedded store against the shared contract (store-contract.ts).

runStoreContract("embedded store", async () => ({ store: createMemoryStore() }));

describe("embedded store: bounded audit trail", () => {
  const event = (n: number): AuditEvent => ({
    at: new Date(n),
    method: "VerifyLink",
    caller: "anonymous",
    clientAddress: "192.0.2.1",
    email: "bounded@example.com",
    hashedTokens: [],
    outcome: "ok",
    durationMs: n,
  });

  test("past maxAuditEvents the oldest events are dropped", async () => {
    const store = createMemoryStore({ maxAuditEvents: 3 });
    for (let n = 1; n <= 5; n++) await store.audit.append(event(n), new Date(1_000 + n));
    assert.deepEqual((await store.audit.find({ email: "bounded@example.com" }, 10)).map((e) => e.durationMs), [5, 4, 3]);
  });

  test("purge drops expired events from the oldest end and stops at the first live one", async () => {
    const store = createMemoryStore({ maxAuditEvents: 100 });
    for (let n = 1; n <= 10; n++) await store.audit.append(event(n), new Date(1_000 + n));
    assert.equal(await store.purgeExpired(new Date(1_004)), 4);
    assert.deepEqual((await store.audit.find({}, 100)).map((e) => e.durationMs), [10, 9, 8, 7, 6, 5]);
    // Appending after a purge keeps the order (the ring wraps).
    for (let n = 11; n <= 105; n++) await store.audit.append(event(n), new Date(1_000 + n));
    const kept = (await store.audit.find({}, 1_000)).map((e) => e.durationMs);
    assert.equal(kept.length, 100);
    assert.deepEqual([kept[0], kept.at(-1)], [105, 6]);
    assert.equal(await store.purgeExpired(new Date(2_000)), 100);
    assert.deepEqual(await store.audit.find({}, 10), []);
  });

  test("the default bound", () => {
    assert.equal(DEFAULT_MAX_AUDIT_EVENTS, 10_000);
  });
});
