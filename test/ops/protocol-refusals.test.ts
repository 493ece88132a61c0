import assert from "node:assert/strict";
import { test } from "node:test";
import { createProtocolRefusals } from "../../src/ops/protocol-refusals.js";
import type { ProtocolRefusalKind } from "../../src/rpc/protocol-errors.js";
import { createCapturedLogger } from "../support/captured-logger.js";

// Protocol refusals: each counted, logged at most once per kind and interval
// with how many there were.

test("every refusal is counted; the log has the first at once, then one line per kind and interval with a count", async () => {
  const { logger, lines } = createCapturedLogger();
  const counted: ProtocolRefusalKind[] = [];
  const refusals = createProtocolRefusals({ logger, count: (kind) => counted.push(kind), logIntervalMs: 100 });
  const logged = () => lines.map((l) => JSON.parse(l) as { kind: string; count: number; msg: string }).filter((l) => l.msg === "requests refused by the protocol layer");
  try {
    for (let i = 0; i < 500; i++) refusals.refused("undecodable");
    refusals.refused("oversize");
    assert.equal(counted.length, 501);
    assert.deepEqual(logged().map((l) => [l.kind, l.count]), [["undecodable", 1], ["oversize", 1]]);
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.deepEqual(logged().slice(2).map((l) => [l.kind, l.count]), [["undecodable", 499]], "the rest, in one line once the interval passed");
    refusals.refused("undecodable");
    refusals.refused("undecodable");
  } finally {
    refusals.close();
  }
  // After close nothing is left unlogged: the counts in the log add up to every refusal.
  const total = logged().filter((l) => l.kind === "undecodable").reduce((sum, l) => sum + l.count, 0);
  assert.equal(total, 502, "the counts in the log add up to every refusal");
});
