import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { StoreUnavailableError } from "../../src/domain/store.js";
import { createStoreCircuit, type StoreCircuit } from "../../src/store/store-circuit.js";
import { createCapturedLogger } from "../support/captured-logger.js";

// The circuit on its own, with a database played by hand: what opens it,
// what closes it, what a caller's deadline may tear off, and that nobody
// waits on a database that is not there.

const never = <T>() => new Promise<T>(() => {});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface FakeDatabase {
  /** "up": pings answer; "refusing": they fail at once; "stalled": they never answer. */
  mode: "up" | "refusing" | "stalled";
  pings: number;
}

function circuitOn(db: FakeDatabase, options: { operationTimeoutMs?: number; probeTimeoutMs?: number } = {}) {
  const { logger, lines } = createCapturedLogger();
  const circuit = createStoreCircuit({
    ping: async (signal) => {
      db.pings += 1;
      if (db.mode === "refusing") throw new StoreUnavailableError("connect ECONNREFUSED");
      if (db.mode === "stalled") await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
    },
    operationTimeoutMs: options.operationTimeoutMs ?? 5_000,
    probeTimeoutMs: options.probeTimeoutMs ?? 200,
    probeIntervalMs: 20,
    logger,
    target: "db.example:27017",
  });
  return { circuit, lines };
}

/** How an operation ended, and after how long. */
async function outcome(promise: Promise<unknown>): Promise<{ result: string; ms: number }> {
  const started = performance.now();
  const result = await promise.then(
    () => "resolved",
    (error: unknown) => (error instanceof StoreUnavailableError ? "unavailable" : ((error as Error).name ?? String(error))),
  );
  return { result, ms: performance.now() - started };
}

const read = { kind: "read" } as const;
const write = { kind: "write" } as const;

async function until(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error("condition not met in time");
    await sleep(5);
  }
}

function started(db: FakeDatabase, options?: { operationTimeoutMs?: number; probeTimeoutMs?: number }) {
  const made = circuitOn(db, options);
  made.circuit.start();
  return made;
}

describe("store circuit", () => {
  test("until the store has started, operations and pings fail at once", async () => {
    const { circuit } = circuitOn({ mode: "up", pings: 0 });
    assert.equal(circuit.state, "starting");
    assert.equal((await outcome(circuit.run(undefined, read, async () => 1))).result, "unavailable");
    await assert.rejects(circuit.ping(), StoreUnavailableError);
    circuit.start();
    assert.equal(await circuit.run(undefined, read, async () => 1), 1);
    await circuit.ping();
    circuit.close();
  });

  test("the first unavailable failure opens it; later operations fail at once; the first ping that answers closes it", async () => {
    const db: FakeDatabase = { mode: "refusing", pings: 0 };
    const { circuit, lines } = started(db);
    const first = await outcome(circuit.run(undefined, write, async () => Promise.reject(new StoreUnavailableError("reset"))));
    assert.equal(first.result, "unavailable");
    assert.equal(circuit.state, "down");
    let touched = false;
    const second = await outcome(circuit.run(undefined, read, async () => void (touched = true)));
    assert.equal(second.result, "unavailable");
    assert.ok(!touched, "while down, nothing reaches the database");
    assert.ok(second.ms < 20);
    await sleep(100);
    assert.ok(db.pings >= 2, "it keeps pinging while down");
    db.mode = "up";
    await until(() => circuit.state === "up");
    assert.equal(await circuit.run(undefined, read, async () => "back"), "back");
    assert.ok(lines.some((l) => l.includes("database unavailable") && l.includes("db.example:27017")));
    assert.ok(lines.some((l) => l.includes("database available again")));
    circuit.close();
  });

  test("a stall (no error, no answer): in-flight operations fail within 1.5 probe timeouts, reads and writes alike", async () => {
    const db: FakeDatabase = { mode: "up", pings: 0 };
    const { circuit } = started(db, { probeTimeoutMs: 200 });
    db.mode = "stalled";
    const results = await Promise.all([
      outcome(circuit.run(undefined, read, () => never())),
      outcome(circuit.run(undefined, write, () => never())),
    ]);
    for (const { result, ms } of results) {
      assert.equal(result, "unavailable");
      assert.ok(ms >= 250 && ms < 450, `answered after ${Math.round(ms)} ms (bound 300 ms)`);
    }
    assert.equal(circuit.state, "down");
    circuit.close();
  });

  test("a database that stalls after answering a ping: the operation waiting on it keeps asking, and fails long before its time limit", async () => {
    const db: FakeDatabase = { mode: "up", pings: 0 };
    const { circuit } = started(db, { operationTimeoutMs: 5_000, probeTimeoutMs: 200 });
    setTimeout(() => (db.mode = "stalled"), 150); // after the first ping (at 100 ms) answered
    const { result, ms } = await outcome(circuit.run(undefined, read, () => never()));
    assert.equal(result, "unavailable");
    assert.ok(db.pings >= 2);
    assert.ok(ms < 700, `answered after ${Math.round(ms)} ms (second ping at 200 ms, unanswered until 400 ms)`);
    circuit.close();
  });

  test("a slow operation on a database that answers pings opens nothing; past its time limit it fails alone", async () => {
    const db: FakeDatabase = { mode: "up", pings: 0 };
    const { circuit } = started(db, { operationTimeoutMs: 400, probeTimeoutMs: 100 });
    await sleep(100); // past the moment the start-up counts as an answer
    const slow = await outcome(circuit.run(undefined, read, async () => sleep(250)));
    assert.equal(slow.result, "resolved", "slower than the probe timeout, faster than the limit: fine");
    assert.ok(db.pings >= 1, "the slow operation made the circuit ask");
    const stuck = await outcome(circuit.run(undefined, read, () => never()));
    assert.equal(stuck.result, "unavailable");
    assert.ok(stuck.ms >= 390 && stuck.ms < 600, `${Math.round(stuck.ms)} ms`);
    assert.equal(circuit.state, "up", "one stuck operation does not fail the others");
    assert.equal(await circuit.run(undefined, read, async () => 1), 1);
    circuit.close();
  });

  test("the caller's deadline tears off a read, not a write; a write is not started once it has passed", async () => {
    const { circuit } = started({ mode: "up", pings: 0 });
    const deadline = new AbortController();
    let finishWrite!: () => void;
    const readCall = outcome(circuit.run({ signal: deadline.signal }, read, () => never()));
    const writeCall = outcome(circuit.run({ signal: deadline.signal }, write, () => new Promise<void>((resolve) => (finishWrite = resolve))));
    deadline.abort(new DOMException("the client's deadline passed", "TimeoutError"));
    assert.equal((await readCall).result, "TimeoutError");
    await sleep(20);
    finishWrite();
    assert.equal((await writeCall).result, "resolved", "the write ran to its end");
    let begun = false;
    const late = await outcome(circuit.run({ signal: deadline.signal }, write, async () => void (begun = true)));
    assert.equal(late.result, "TimeoutError");
    assert.ok(!begun);
    circuit.close();
  });

  test("pings are shared: many readiness checks at once cost one round trip", async () => {
    const db: FakeDatabase = { mode: "up", pings: 0 };
    const { circuit } = started(db);
    await Promise.all(Array.from({ length: 50 }, () => circuit.ping()));
    assert.equal(db.pings, 1);
    circuit.close();
  });

  test("a failed readiness ping opens it; a ping that answers closes it", async () => {
    const db: FakeDatabase = { mode: "refusing", pings: 0 };
    const { circuit } = started(db);
    await assert.rejects(circuit.ping(), StoreUnavailableError);
    assert.equal(circuit.state, "down");
    db.mode = "up";
    await circuit.ping();
    assert.equal(circuit.state, "up");
    circuit.close();
  });

  test("closing fails what is in flight and everything after", async () => {
    const { circuit }: { circuit: StoreCircuit } = started({ mode: "up", pings: 0 });
    const pending = outcome(circuit.run(undefined, write, () => never()));
    circuit.close();
    assert.equal((await pending).result, "unavailable");
    assert.equal((await outcome(circuit.run(undefined, read, async () => 1))).result, "unavailable");
    await assert.rejects(circuit.ping(), StoreUnavailableError);
  });
});
