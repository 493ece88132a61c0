import assert from "node:assert/strict";
import { test } from "node:test";
import { coalesceRefusals } from "../../src/audit/refusal-coalescing.js";
import type { AuditEvent } from "../../src/domain/audit-event.js";
import type { AuditLog } from "../../src/domain/audit-log.js";
import { ManualClock } from "../support/manual-clock.js";

// Repeated refusals become one stored event plus one summary with a count per
// window; everything else passes through, one event per call.

function recording() {
  const stored: AuditEvent[] = [];
  const log: AuditLog = {
    recordBeforeHandout: async (event) => void stored.push(event),
    recordOutcome: async (event) => void stored.push(event),
  };
  return { stored, log };
}

const clock = new ManualClock();
const refusal = (fields: Partial<AuditEvent> = {}): AuditEvent => ({
  at: clock.now(),
  requestId: `r-${Math.random()}`,
  method: "GenerateLink",
  caller: "anonymous",
  clientAddress: "192.0.2.1",
  hashedTokens: [],
  outcome: "credentials_missing",
  durationMs: 1,
  ...fields,
});

test("the first refusal of a key is stored at once; the rest are counted into one summary per window", async () => {
  const { stored, log } = recording();
  const audit = coalesceRefusals(log, { clock, windowMs: 3_600_000 });
  try {
    const first = refusal();
    await audit.recordOutcome(first);
    assert.deepEqual(stored, [first]);
    for (let i = 0; i < 999; i++) await audit.recordOutcome(refusal({ at: new Date(first.at.getTime() + i) }));
    assert.equal(stored.length, 1, "nothing more stored until the window ends");
    await audit.flush();
    assert.equal(stored.length, 2);
    const summary = stored[1];
    assert.equal(summary?.count, 999);
    assert.equal(summary?.requestId, undefined);
    assert.equal(summary?.at.getTime(), first.at.getTime() + 998, "at: the last call it stands for");
    assert.deepEqual([summary?.method, summary?.caller, summary?.clientAddress, summary?.outcome], ["GenerateLink", "anonymous", "192.0.2.1", "credentials_missing"]);

    await audit.recordOutcome(refusal());
    await audit.flush();
    assert.equal(stored.length, 3, "a key still active: counted, then summarized");
    await audit.flush(); // a window with no refusal of the key: forgotten
    assert.equal(audit.keys, 0);
    await audit.recordOutcome(refusal());
    assert.equal(stored.length, 4, "after a quiet window the next refusal is stored at once again");
  } finally {
    await audit.close();
  }
});

test("keys: client address, caller, method, outcome and rule", async () => {
  const { stored, log } = recording();
  const audit = coalesceRefusals(log, { clock });
  try {
    const distinct = [
      refusal(),
      refusal({ clientAddress: "192.0.2.2" }),
      refusal({ caller: "unknown", outcome: "credentials_invalid" }),
      refusal({ method: "PreviewLink", outcome: "over_rate_limit", rateLimitRule: "verify-address" }),
      refusal({ method: "PreviewLink", outcome: "over_rate_limit", rateLimitRule: "refusals-per-address" }),
      refusal({ outcome: "not_service_role", caller: "spiffe://example.org/other" }),
      refusal({ outcome: "method_not_exposed" }),
    ];
    for (const event of [...distinct, ...distinct]) await audit.recordOutcome(event);
    assert.deepEqual(stored, distinct);
    await audit.flush();
    assert.deepEqual(stored.slice(distinct.length).map((e) => e.count), distinct.map(() => 1));
  } finally {
    await audit.close();
  }
});

test("anything that is not a refusal of nobody in particular passes through, one event per call", async () => {
  const { stored, log } = recording();
  const audit = coalesceRefusals(log, { clock });
  try {
    const passing = [
      refusal({ outcome: "ok" }),
      refusal({ outcome: "link_invalid_or_expired", hashedTokens: ["h"] }),
      refusal({ outcome: "validation_failed" }),
      refusal({ outcome: "over_rate_limit", rateLimitRule: "generate-email", email: "a@example.com", linkType: "magiclink" }),
      refusal({ outcome: "over_rate_limit", rateLimitRule: "verify-code", email: "a@example.com" }),
      refusal({ userId: "u1" }),
    ];
    for (const event of [...passing, ...passing]) await audit.recordOutcome(event);
    await audit.recordBeforeHandout(passing[0] as AuditEvent);
    assert.equal(stored.length, passing.length * 2 + 1);
    await audit.flush();
    assert.equal(stored.length, passing.length * 2 + 1, "no summaries");
  } finally {
    await audit.close();
  }
});

test("memory: past maxKeys, new keys are counted under an overflow key per method and outcome", async () => {
  const { stored, log } = recording();
  const audit = coalesceRefusals(log, { clock, maxKeys: 10 });
  try {
    for (let i = 0; i < 1_000; i++) await audit.recordOutcome(refusal({ clientAddress: `198.51.100.${i % 250}`, caller: `c${i}` }));
    assert.equal(stored.length, 10, "the first refusal of the first 10 keys");
    assert.equal(audit.keys, 11);
    await audit.flush();
    const overflow = stored.filter((e) => e.clientAddress === "*");
    assert.deepEqual(overflow.map((e) => [e.caller, e.count, e.outcome]), [["*", 990, "credentials_missing"]]);
    const total = stored.reduce((sum, e) => sum + (e.count ?? 1), 0);
    assert.equal(total, 1_000, "every refusal is accounted for");
  } finally {
    await audit.close();
  }
});

test("close stores what is still counted", async () => {
  const { stored, log } = recording();
  const audit = coalesceRefusals(log, { clock });
  for (let i = 0; i < 5; i++) await audit.recordOutcome(refusal());
  await audit.close();
  assert.deepEqual(stored.map((e) => e.count ?? 1), [1, 4]);
});
