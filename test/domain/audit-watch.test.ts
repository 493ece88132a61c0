import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { AuditEvent, StoredAuditEvent } from "../../src/domain/audit-event.js";
import { auditIdTime } from "../../src/domain/audit-event-id.js";
import { startAuditWatch, type AuditWatchOptions } from "../../src/domain/audit-watch.js";
import { StoreUnavailableError, type AuditStore, type Store } from "../../src/domain/store.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { openTestStore, useTestDatabase } from "../support/mongo.js";
import { createAuditTrail } from "../../src/audit/audit-trail.js";
import { createCapturedLogger } from "../support/captured-logger.js";

// The audit watch (domain/audit-watch.ts) on real stores: only what is stored
// from its start (or replayed from `since`), each event once, oldest stored
// first; events that become visible out of id order (another instance whose
// clock is behind) are caught by the look-back and would be missed without
// it; a database outage pauses the stream without losing anything; the
// signal ends it at once, with no poll or timer left behind; an event the
// audit trail stores late (a retry after an outage) is watched when stored.

const database = await useTestDatabase("audit_watch");

const POLL_MS = 50;
const HOUR = 3_600_000;

function event(email: string, label: string): AuditEvent {
  return {
    at: new Date(),
    method: "VerifyLink",
    caller: "anonymous",
    clientAddress: "192.0.2.1",
    email,
    hashedTokens: [],
    outcome: "ok",
    durationMs: 1,
    requestId: label,
  };
}

const append = (store: Store, email: string, label: string) => store.audit.append(event(email, label), new Date(Date.now() + HOUR));

/** Reads events from a watch until `count` arrived; fails after `timeoutMs`. */
async function take(events: AsyncIterator<StoredAuditEvent>, count: number, timeoutMs = 5_000): Promise<string[]> {
  const labels: string[] = [];
  const deadline = AbortSignal.timeout(timeoutMs);
  while (labels.length < count) {
    const next = await Promise.race([
      events.next(),
      new Promise<never>((_, reject) => deadline.addEventListener("abort", () => reject(new Error(`only ${labels.join(",")} within ${timeoutMs} ms`)), { once: true })),
    ]);
    if (next.done) throw new Error("the watch ended");
    labels.push(next.value.requestId ?? "");
  }
  return labels;
}

/** Whether the watch yields anything within `ms` (it should not); the pending next() is left to the caller's abort. */
async function quietFor(events: AsyncIterator<StoredAuditEvent>, ms: number): Promise<{ quiet: boolean; pending: Promise<unknown> }> {
  const pending = events.next();
  const result = await Promise.race([pending.then(() => "event"), new Promise((resolve) => setTimeout(() => resolve("quiet"), ms))]);
  return { quiet: result === "quiet", pending: pending.catch(() => undefined) };
}

async function watch(store: Pick<AuditStore, "storedAfter">, email: string, options: Partial<AuditWatchOptions> & { since?: Date } = {}) {
  const controller = new AbortController();
  const iterable = await startAuditWatch(
    { store, pollIntervalMs: POLL_MS, lookBackMs: 10_000, ...options },
    { filter: { email }, since: options.since, signal: controller.signal },
  );
  return { events: iterable[Symbol.asyncIterator](), controller };
}

const email = () => `watch-${randomUUID().slice(0, 8)}@example.com`;

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    let store: Store;
    before(async () => {
      store = backend === "MongoDB" ? await openTestStore(database) : createMemoryStore();
    });
    after(() => store.close());

    test("only events stored from the start on, oldest stored first, each once; the filter applies", async () => {
      const address = email();
      await append(store, address, "before");
      const { events, controller } = await watch(store.audit, address);
      for (const label of ["one", "two", "three"]) await append(store, address, label);
      await append(store, email(), "someone else");
      assert.deepEqual(await take(events, 3), ["one", "two", "three"]);
      await append(store, address, "four");
      assert.deepEqual(await take(events, 1), ["four"]);
      const { quiet, pending } = await quietFor(events, POLL_MS * 6);
      assert.ok(quiet, "nothing is sent twice, however many polls read it again");
      controller.abort();
      await pending;
    });

    test("since: what was stored at or after it is replayed first, then new events follow", async () => {
      const address = email();
      await append(store, address, "too early");
      await new Promise((resolve) => setTimeout(resolve, 5));
      const since = new Date();
      for (const label of ["old-1", "old-2"]) await append(store, address, label);
      const { events, controller } = await watch(store.audit, address, { since, batchSize: 1 });
      assert.deepEqual(await take(events, 2), ["old-1", "old-2"]);
      await append(store, address, "new");
      assert.deepEqual(await take(events, 1), ["new"]);
      controller.abort();
    });

    test("many events written while the watch polls in small batches: each arrives exactly once", async () => {
      const address = email();
      const { events, controller } = await watch(store.audit, address, { batchSize: 3 });
      const labels = Array.from({ length: 40 }, (_, i) => `e${i}`);
      const writing = (async () => {
        for (let i = 0; i < labels.length; i += 8) {
          await Promise.all(labels.slice(i, i + 8).map((label) => append(store, address, label)));
          await new Promise((resolve) => setTimeout(resolve, POLL_MS / 2));
        }
      })();
      const received = await take(events, labels.length, 15_000);
      await writing;
      assert.deepEqual([...received].sort(), [...labels].sort());
      const { quiet, pending } = await quietFor(events, POLL_MS * 4);
      assert.ok(quiet, "and nothing more");
      controller.abort();
      await pending;
    });

    test("the signal ends the watch at once: the iteration throws its reason, no poll and no timer are left", async () => {
      let reads = 0;
      const counting: Pick<AuditStore, "storedAfter"> = {
        storedAfter: (...args) => {
          reads++;
          return store.audit.storedAfter(...args);
        },
      };
      const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length;
      const timersBefore = timers();
      const { events, controller } = await watch(counting, email(), { pollIntervalMs: 60_000 });
      const waiting = events.next();
      await new Promise((resolve) => setTimeout(resolve, 20));
      const started = performance.now();
      const reason = new DOMException("the client went away", "AbortError");
      controller.abort(reason);
      await assert.rejects(waiting, (error) => error === reason);
      assert.ok(performance.now() - started < 100, "it did not wait for the next poll");
      const readsAtEnd = reads;
      assert.deepEqual(await events.next(), { done: true, value: undefined }, "and it stays ended");
      await new Promise((resolve) => setTimeout(resolve, POLL_MS * 3));
      assert.equal(reads, readsAtEnd, "no poll after the end");
      assert.equal(timers(), timersBefore, "no timer left behind");
    });

    test("the database away mid-watch: the stream waits, then sends what was stored meanwhile, once", async () => {
      const address = email();
      let down = false;
      const flaky: Pick<AuditStore, "storedAfter"> = {
        storedAfter: (...args) => (down ? Promise.reject(new StoreUnavailableError("down")) : store.audit.storedAfter(...args)),
      };
      const { events, controller } = await watch(flaky, address);
      await append(store, address, "before the outage");
      assert.deepEqual(await take(events, 1), ["before the outage"]);
      down = true;
      // Stored by another instance while this one cannot read.
      await append(store, address, "during");
      const { quiet, pending } = await quietFor(events, POLL_MS * 4);
      assert.ok(quiet, "nothing while the database is away");
      down = false;
      assert.equal(((await pending) as IteratorResult<StoredAuditEvent>).value?.requestId, "during");
      await append(store, address, "after");
      assert.deepEqual(await take(events, 1), ["after"]);
      controller.abort();
    });
  });
}

describe("the audit trail's retries", () => {
  test("an event the trail could not store at first is watched when it is stored, with its original (old) `at`", async () => {
    const store = createMemoryStore();
    let down = true;
    const flakyAudit: AuditStore = {
      ...store.audit,
      append: (...args) => (down ? Promise.reject(new StoreUnavailableError("down")) : store.audit.append(...args)),
      appendMany: (...args) => (down ? Promise.reject(new StoreUnavailableError("down")) : store.audit.appendMany(...args)),
    };
    const trail = createAuditTrail({ store: flakyAudit, logger: createCapturedLogger().logger, retentionMs: HOUR, retryIntervalMs: 60_000 });
    try {
      const address = email();
      const { events, controller } = await watch(store.audit, address);
      const old = { ...event(address, "retried"), at: new Date(Date.now() - HOUR / 2) };
      await trail.recordOutcome(old); // queued: the store is down
      assert.equal(trail.queued, 1);
      const { quiet, pending } = await quietFor(events, POLL_MS * 3);
      assert.ok(quiet);
      down = false;
      await trail.flush();
      const received = ((await pending) as IteratorResult<StoredAuditEvent>).value;
      assert.equal(received?.requestId, "retried");
      assert.deepEqual(received?.at, old.at, "half an hour old, far outside the look-back, and still watched");
      controller.abort();
    } finally {
      trail.close();
    }
  });
});

describe("two instances on one MongoDB, one clock 3 s behind", () => {
  const SKEW_MS = 3_000;
  let a: Store;
  let b: Store;
  before(async () => {
    [a, b] = await Promise.all([openTestStore(database), openTestStore(database, { now: () => Date.now() - SKEW_MS })]);
  });
  after(async () => {
    await Promise.all([a.close(), b.close()]);
  });

  test("the lagging instance's event becomes visible after newer ids were sent: the look-back still sends it, once", async () => {
    const address = email();
    const { events, controller } = await watch(a.audit, address, { lookBackMs: 10_000 });
    await append(a, address, "A first");
    assert.deepEqual(await take(events, 1), ["A first"]);
    await append(b, address, "B later, with an older id");
    const [late] = await b.audit.storedAfter({ email: address }, "", 10).then((found) => found.filter((e) => e.requestId?.startsWith("B")));
    assert.ok(late && (auditIdTime(late.id) ?? 0) < Date.now() - SKEW_MS / 2, "B's id is from its clock, behind A's");
    assert.deepEqual(await take(events, 1), ["B later, with an older id"]);
    await append(a, address, "A again");
    assert.deepEqual(await take(events, 1), ["A again"]);
    controller.abort();
  });

  test("with a look-back shorter than the skew the same event is missed (what the look-back is for)", async () => {
    const address = email();
    const { events, controller } = await watch(a.audit, address, { lookBackMs: 1_000 });
    await append(a, address, "A first");
    assert.deepEqual(await take(events, 1), ["A first"]);
    // Let the watch's window move past B's clock.
    await new Promise((resolve) => setTimeout(resolve, POLL_MS * 3));
    await append(b, address, "B, missed");
    await append(a, address, "A again");
    assert.deepEqual(await take(events, 1), ["A again"]);
    controller.abort();
  });
});
