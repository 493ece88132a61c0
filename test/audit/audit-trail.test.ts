import assert from "node:assert/strict";
import { after, test } from "node:test";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { startAuthlink } from "../../src/authlink.js";
import { loadConfig } from "../../src/config/config.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { StoreUnavailableError, type Store } from "../../src/domain/store.js";
import { linkParams } from "../support/links.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { Code, connectClient, reasonOf, rejection } from "../support/clients.js";
import { testEnv } from "../support/test-server.js";
import { createAuditTrail } from "../../src/audit/audit-trail.js";
import { createMetrics, type Metrics } from "../../src/ops/metrics.js";
import { ConnectError } from "@connectrpc/connect";
import { eventually } from "../support/eventually.js";

type Outcome<T> = { ok: true; value: T } | { ok: false; error: ConnectError };
const settle = <T>(call: Promise<T>): Promise<Outcome<T>> =>
  call.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error: ConnectError.from(error) }),
  );

// The audit trail: what each event holds, one log line per call, and the
// failure policy — a generation whose event cannot be stored is refused with
// nothing usable left behind; a redemption whose effect has committed stays a
// success, raises the alarm, and its event is stored once the store is back.

async function start(store: Store, metrics?: Metrics) {
  const env = testEnv();
  const { logger, lines } = createCapturedLogger();
  const running = await startAuthlink({ config: loadConfig(env), logger, store, metrics });
  after(() => running.close());
  return { running, lines, key: env.AUTHLINK_SERVICE_KEYS ?? "" };
}

/**
 * A memory store whose audit writes fail while `failing.on` is true; every
 * insert is in `batches` (the outcomes of its events); while `failing.held`
 * is set, inserts wait for it before they go on.
 */
function storeWithFailingAudit() {
  const inner = createMemoryStore();
  const failing: { on: boolean; held?: Promise<void> | undefined; batches: string[][] } = { on: false, batches: [] };
  const store: Store = {
    ...inner,
    audit: {
      ...inner.audit,
      append: async (...args) => {
        failing.batches.push([args[0].outcome]);
        await failing.held;
        if (failing.on) throw new StoreUnavailableError("audit collection unavailable");
        return inner.audit.append(...args);
      },
      appendMany: async (entries) => {
        failing.batches.push(entries.map((e) => e.event.outcome));
        await failing.held;
        if (failing.on) throw new StoreUnavailableError("audit collection unavailable");
        return inner.audit.appendMany(entries);
      },
    },
  };
  return { store, failing };
}

const tokenOf = (actionLink: string) => linkParams(actionLink).get("token") ?? "";

test("events name the caller, the subject and the outcome, and hold hashes only", async () => {
  const store = createMemoryStore();
  const { running, lines, key } = await start(store);
  const admin = connectClient(running.url, { key });
  const generated = await admin.generateLink({ type: LinkType.MAGICLINK, email: "Audit@Example.com" });
  const token = linkParams(generated.actionLink).get("token") ?? "";
  await connectClient(running.url).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
  await rejection(connectClient(running.url).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } }));

  const events = (await store.audit.find({ email: "audit@example.com" }, 10)).reverse();
  assert.deepEqual(
    events.map((e) => [e.method, e.outcome, e.linkType, e.userId, e.hashedTokens]),
    [
      ["GenerateLink", "ok", "magiclink", generated.user?.id, [generated.hashedToken]],
      ["VerifyLink", "ok", "magiclink", generated.user?.id, [generated.hashedToken]],
    ],
  );
  assert.match(events[0]?.caller ?? "", /^key:[0-9a-f]{12}$/);
  assert.equal(events[1]?.caller, "anonymous");
  assert.equal(events[0]?.clientAddress, "127.0.0.1");

  // The failed second redemption knows only the hash of the token presented.
  const callLines = lines.map((l) => JSON.parse(l) as { msg: string; audit?: { outcome: string; hashedTokens: string[] } });
  const audited = callLines.filter((l) => l.msg === "call");
  assert.equal(audited.length, 3, "one log line per call");
  assert.deepEqual(audited[2]?.audit?.outcome, "link_invalid_or_expired");
  assert.deepEqual(audited[2]?.audit?.hashedTokens, [generated.hashedToken]);
  assert.ok(!lines.join("\n").includes(token), "the raw token is never logged");
});

test("a generation that cannot be audited is refused: nothing handed out, nothing usable left, the earlier link untouched", async () => {
  const { store, failing } = storeWithFailingAudit();
  const metrics = createMetrics();
  const { running, key, lines } = await start(store, metrics);
  const admin = connectClient(running.url, { key });
  const email = "unaudited@example.com";
  const earlier = await admin.generateLink({ type: LinkType.MAGICLINK, email });
  failing.on = true;
  const error = await rejection(admin.generateLink({ type: LinkType.MAGICLINK, email }, { headers: { "x-request-id": "refused-generation" } }));
  const outcomes = lines
    .map((l) => JSON.parse(l) as { msg: string; audit?: { requestId?: string; outcome: string } })
    .filter((l) => l.msg === "call" && l.audit?.requestId === "refused-generation")
    .map((l) => l.audit?.outcome);
  assert.deepEqual(outcomes, ["store_unavailable"], "recorded as what it became, never as issued");
  assert.match(await metrics.registry.metrics(), /^authlink_links_issued_total\{type="magiclink"\} 1$/m, "only the earlier link counts");
  assert.equal(error.code, Code.Unavailable);
  assert.equal(reasonOf(error), "store_unavailable");
  assert.doesNotMatch(error.message, /audit collection/);
  failing.on = false;
  const live = await store.links.findLiveByEmail(email, "magiclink", new Date(), 10);
  assert.deepEqual(live.map((l) => l.tokenHash), [earlier.hashedToken], "only the earlier link is stored");
  await connectClient(running.url).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: tokenOf(earlier.actionLink) } });
});

test("concurrent generations whose shared audit insert fails: each is refused, and none of their links is usable", async () => {
  const { store, failing } = storeWithFailingAudit();
  const { running, key } = await start(store);
  const admin = connectClient(running.url, { key });
  const emails = Array.from({ length: 8 }, (_, i) => `batch-refused-${i}@example.com`);
  const earlier = await admin.generateLink({ type: LinkType.MAGICLINK, email: emails[0] as string });
  // Inserts wait until every call has stored its (pending) links and handed
  // its event in: then the events wait together behind the first insert.
  let release = () => {};
  failing.held = new Promise<void>((resolve) => (release = resolve));
  failing.on = true;
  failing.batches.length = 0;
  const calls = emails.map((email) => settle(admin.generateLink({ type: LinkType.MAGICLINK, email })));
  await eventually(async () => {
    for (const email of emails) {
      const user = await store.users.findByEmail(email);
      const links = user ? await store.links.findByUser(user.id, "magiclink") : [];
      assert.ok(links.some((l) => l.tokenHash !== earlier.hashedToken), `${email}: its link is stored`);
    }
  });
  release();
  const outcomes = await Promise.all(calls);
  // The generations' events ("ok" until stored), then the refusals' ("store_unavailable", queued for retry).
  const issued = failing.batches.map((batch) => batch.filter((outcome) => outcome === "ok").length);
  assert.ok(issued.some((size) => size > 1), `the events shared an insert: ${JSON.stringify(failing.batches)}`);
  assert.equal(issued.reduce((a, b) => a + b, 0), emails.length, "each generation's event in one insert");
  for (const outcome of outcomes) {
    assert.ok(!outcome.ok, "refused");
    assert.equal(outcome.error.code, Code.Unavailable);
    assert.equal(reasonOf(outcome.error), "store_unavailable");
  }
  failing.on = false;
  failing.held = undefined;
  for (const email of emails) {
    const live = await store.links.findLiveByEmail(email, "magiclink", new Date(), 10);
    assert.deepEqual(live.map((l) => l.tokenHash), email === emails[0] ? [earlier.hashedToken] : [], `${email}: nothing usable but the earlier link`);
    const user = await store.users.findByEmail(email);
    const stored = user ? await store.links.findByUser(user.id, "magiclink") : [];
    assert.deepEqual(stored.map((l) => l.tokenHash).filter((h) => h !== earlier.hashedToken), [], `${email}: the withdrawn links are deleted`);
  }
  await connectClient(running.url).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: tokenOf(earlier.actionLink) } });
});

test("a redemption whose audit write fails is still a success, raises the alarm, and is stored on retry", async () => {
  const { store, failing } = storeWithFailingAudit();
  const metrics = createMetrics();
  const { running, key, lines } = await start(store, metrics);
  const generated = await connectClient(running.url, { key }).generateLink({ type: LinkType.MAGICLINK, email: "committed@example.com" });
  failing.on = true;
  const verified = await connectClient(running.url).verifyLink(
    { type: LinkType.MAGICLINK, credential: { case: "token", value: tokenOf(generated.actionLink) } },
    { headers: { "x-request-id": "redeem-while-audit-down" } },
  );
  assert.equal(verified.user?.email, "committed@example.com", "the effect stands and the caller is told so");
  assert.ok(verified.user?.emailConfirmedAt, "the address is confirmed");
  assert.ok(
    lines.some((l) => l.includes("AUDIT EVENT NOT STORED") && l.includes("redeem-while-audit-down")),
    "logged loudly, with the request id",
  );
  const exposition = await metrics.registry.metrics();
  assert.match(exposition, /^authlink_audit_write_failures_total 1$/m);
  assert.match(exposition, /^authlink_audit_queue_length 1$/m);
  failing.on = false;
  // The queue is retried every few seconds: wait for the event, with a deadline.
  const deadline = Date.now() + 15_000;
  let stored: string[] = [];
  while (Date.now() < deadline) {
    stored = (await store.audit.find({ email: "committed@example.com" }, 10)).map((e) => `${e.method}:${e.outcome}`);
    if (stored.includes("VerifyLink:ok")) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.deepEqual(stored.sort(), ["GenerateLink:ok", "VerifyLink:ok"]);
});

test("the retry queue is bounded: the oldest events are dropped and counted", async () => {
  const { store, failing } = storeWithFailingAudit();
  const metrics = createMetrics();
  const { logger } = createCapturedLogger();
  const trail = createAuditTrail({ store: store.audit, logger, retentionMs: 3_600_000, observer: metrics, maxQueued: 3, retryIntervalMs: 60_000 });
  after(() => trail.close());
  failing.on = true;
  const event = (n: number) => ({ at: new Date(), method: `M${n}`, caller: "c", clientAddress: "", hashedTokens: [], outcome: "ok", durationMs: 0 });
  for (let n = 1; n <= 5; n++) await trail.recordOutcome(event(n));
  assert.equal(trail.queued, 3);
  assert.match(await metrics.registry.metrics(), /^authlink_audit_events_dropped_total 2$/m);
  failing.on = false;
  await trail.flush();
  assert.equal(trail.queued, 0);
  const kept = (await store.audit.find({}, 10)).map((e) => e.method).sort();
  assert.deepEqual(kept, ["M3", "M4", "M5"]);
});
