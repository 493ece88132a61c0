import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { createAuditTrail } from "../../src/audit/audit-trail.js";
import { mapBounded } from "../../src/domain/bounded-concurrency.js";
import {
  BulkGeneration,
  MAX_BULK_ROWS,
  REPLAYED_OUTCOME,
  type BulkRowInput,
  type BulkRowResult,
} from "../../src/domain/bulk-generation.js";
import { internalCall, type Call } from "../../src/domain/call.js";
import { AuthlinkError } from "../../src/domain/errors.js";
import type { GenerateLinkInput } from "../../src/domain/link-requests.js";
import type { RateLimitSettings } from "../../src/domain/rate-limiter.js";
import { StoreUnavailableError, type Store } from "../../src/domain/store.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { HOUR, makeLinkService, NO_RATE_LIMITS, type LinkServiceFixture } from "../support/link-service-fixture.js";

// Bulk generation in the domain, on the embedded store: one GenerateLink per
// row (per-row errors, per-row rate limits, per-row audit events), replay by
// idempotency key, the race for one key, a key freed after a failed row, the
// row cap, a database outage ending the run, and the bounded, backpressured
// concurrency. The same over real sockets and on MongoDB:
// test/e2e/bulk-generation.test.ts.

interface Fixture extends LinkServiceFixture {
  readonly bulk: BulkGeneration;
}

function makeBulk(options: { store?: Store; rateLimits?: RateLimitSettings; concurrency?: number } = {}): Fixture {
  const store = options.store ?? createMemoryStore();
  const fixture = makeLinkService(store, { rateLimits: options.rateLimits });
  const audit = createAuditTrail({ store: store.audit, logger: createCapturedLogger().logger, retentionMs: 30 * 24 * HOUR });
  const bulk = new BulkGeneration({
    links: fixture.links,
    store,
    clock: fixture.clock,
    audit,
    rowTimeoutMs: 15_000,
    concurrency: options.concurrency,
  });
  return { ...fixture, bulk };
}

let counter = 0;
const uniqueEmail = (label: string) => `${label}-${++counter}-${Date.now().toString(36)}@example.com`;

function magiclink(email: string, extra: Partial<GenerateLinkInput> = {}): GenerateLinkInput {
  return { type: "magiclink", email, redirectTo: "", data: undefined, password: "", newEmail: "", expiresInMs: undefined, ...extra };
}

const row = (idempotencyKey: string, email: string, extra: Partial<GenerateLinkInput> = {}): BulkRowInput => ({
  idempotencyKey,
  request: magiclink(email, extra),
});

const bulkCall = (fields: Partial<Call> = {}) =>
  internalCall("BulkGenerateLinks", { serviceIdentity: "key:ops", callerName: "key:ops", ...fields });

async function collect(results: AsyncIterable<BulkRowResult>): Promise<BulkRowResult[]> {
  const all: BulkRowResult[] = [];
  for await (const result of results) all.push(result);
  return all.sort((a, b) => a.index - b.index);
}

const issuedHash = (result: BulkRowResult | undefined): string => {
  if (result?.outcome.kind === "issued") return result.outcome.link.link.hashedToken;
  if (result?.outcome.kind === "replayed") return result.outcome.link.hashedToken;
  throw new Error(`row has no link: ${JSON.stringify(result)}`);
};
const errorOf = (result: BulkRowResult | undefined): AuthlinkError => {
  if (result?.outcome.kind !== "failed") throw new Error(`row did not fail: ${JSON.stringify(result?.outcome.kind)}`);
  return result.outcome.error;
};

/** GenerateLink issues for this address, counted in the audit trail (one "ok" event per issue). */
async function issuesFor(store: Store, email: string): Promise<number> {
  const events = await store.audit.find({ email }, 1_000);
  return events.filter((e) => e.outcome === "ok").length;
}

describe("bulk generation", () => {
  test("each row is one GenerateLink with its own request id and audit event; results carry index and key", async () => {
    const f = makeBulk();
    const emails = [uniqueEmail("a"), uniqueEmail("b"), uniqueEmail("c")];
    const results = await collect(f.bulk.generateAll(emails.map((e, i) => row(`k-${i}`, e)), bulkCall({ requestId: "req-1" })));
    assert.deepEqual(results.map((r) => [r.index, r.idempotencyKey, r.outcome.kind]), [
      [0, "k-0", "issued"],
      [1, "k-1", "issued"],
      [2, "k-2", "issued"],
    ]);
    for (const [i, email] of emails.entries()) {
      const [event] = await f.store.audit.find({ email }, 10);
      assert.equal(event?.method, "BulkGenerateLinks");
      assert.equal(event?.requestId, `req-1.${i}`);
      assert.equal(event?.caller, "key:ops");
      assert.deepEqual(event?.hashedTokens, [issuedHash(results[i])]);
    }
  });

  test("a row sent again answers the earlier link (replayed, no secrets, same hash) and issues nothing", async () => {
    const f = makeBulk();
    const email = uniqueEmail("again");
    const [first] = await collect(f.bulk.generateAll([row("same", email, { redirectTo: "https://app.example.com/x" })], bulkCall()));
    assert.equal(first?.outcome.kind, "issued");
    f.clock.advance(10 * 60_000);
    const [second] = await collect(f.bulk.generateAll([row("same", email)], bulkCall()));
    assert.equal(second?.outcome.kind, "replayed");
    assert.equal(issuedHash(second), issuedHash(first));
    if (second?.outcome.kind !== "replayed" || first?.outcome.kind !== "issued") throw new Error("unreachable");
    assert.equal(second.outcome.link.type, "magiclink");
    assert.equal(second.outcome.link.userId, first.outcome.link.user.id);
    assert.equal(second.outcome.link.user?.email, email);
    assert.equal(second.outcome.link.redirectTo, "https://app.example.com/x");
    assert.equal(second.outcome.link.expiresAt.getTime(), first.outcome.link.expiresAt.getTime());
    assert.ok(!("actionLink" in second.outcome.link) && !("otp" in second.outcome.link), "a replay holds no secret");
    assert.equal(await issuesFor(f.store, email), 1);
    const events = await f.store.audit.find({ email }, 10);
    assert.ok(events.some((e) => e.outcome === REPLAYED_OUTCOME && e.hashedTokens[0] === issuedHash(first)), "the replay is audited");
  });

  test("keys are per caller: another caller's same key is another row", async () => {
    const f = makeBulk();
    const email = uniqueEmail("callers");
    const [a] = await collect(f.bulk.generateAll([row("shared", email)], bulkCall({ serviceIdentity: "key:a" })));
    const [b] = await collect(f.bulk.generateAll([row("shared", email)], bulkCall({ serviceIdentity: "key:b" })));
    assert.equal(a?.outcome.kind, "issued");
    assert.equal(b?.outcome.kind, "issued");
    assert.notEqual(issuedHash(a), issuedHash(b));
  });

  test("once the link has expired, its key issues a new link", async () => {
    const f = makeBulk();
    const email = uniqueEmail("expired");
    const [first] = await collect(f.bulk.generateAll([row("k", email)], bulkCall()));
    f.clock.advance(HOUR);
    const [second] = await collect(f.bulk.generateAll([row("k", email)], bulkCall()));
    assert.equal(second?.outcome.kind, "issued");
    assert.notEqual(issuedHash(second), issuedHash(first));
  });

  for (const shape of ["20 rows of one request", "20 concurrent requests"] as const) {
    test(`the race: one key in ${shape} issues exactly one link; the others are replayed or in use`, async () => {
      const f = makeBulk({ concurrency: 20 });
      const email = uniqueEmail("race");
      const results =
        shape === "20 rows of one request"
          ? await collect(f.bulk.generateAll(Array.from({ length: 20 }, () => row("race-key", email)), bulkCall()))
          : (await Promise.all(Array.from({ length: 20 }, () => collect(f.bulk.generateAll([row("race-key", email)], bulkCall()))))).flat();
      const issued = results.filter((r) => r.outcome.kind === "issued");
      assert.equal(issued.length, 1, JSON.stringify(results.map((r) => r.outcome.kind)));
      for (const result of results) {
        if (result.outcome.kind === "replayed") assert.equal(issuedHash(result), issuedHash(issued[0]));
        if (result.outcome.kind === "failed") {
          assert.equal(result.outcome.error.reason, "idempotency_key_in_use");
          assert.equal(result.outcome.error.kind, "aborted");
          assert.ok((result.outcome.error.retryAfterMs ?? 0) > 0);
        }
      }
      assert.equal(await issuesFor(f.store, email), 1, "one GenerateLink issue in the audit trail");
      assert.equal((await f.store.links.findByUser(issued[0]!.outcome.kind === "issued" ? issued[0]!.outcome.link.user.id : "", "magiclink")).length, 1);
      const [again] = await collect(f.bulk.generateAll([row("race-key", email)], bulkCall()));
      assert.equal(again?.outcome.kind, "replayed", "once settled, every send replays");
    });
  }

  test("a bad row fails alone, with the status GenerateLink would answer; the others are issued", async () => {
    const f = makeBulk();
    const results = await collect(
      f.bulk.generateAll([row("ok-1", uniqueEmail("ok")), row("bad", "not an address"), row("ok-2", uniqueEmail("ok"))], bulkCall()),
    );
    assert.deepEqual(results.map((r) => r.outcome.kind), ["issued", "failed", "issued"]);
    const error = errorOf(results[1]);
    assert.equal(error.reason, "validation_failed");
    assert.deepEqual(error.violations.map((v) => v.field), ["email"]);
    const recovery = await collect(f.bulk.generateAll([{ idempotencyKey: "r", request: { ...magiclink(uniqueEmail("nobody")), type: "recovery" } }], bulkCall()));
    assert.equal(errorOf(recovery[0]).reason, "user_not_found");
  });

  test("a failed row leaves its key free: sent again (fixed) with the same key, it is issued", async () => {
    const f = makeBulk();
    const [bad] = await collect(f.bulk.generateAll([row("fix-me", "broken@")], bulkCall()));
    assert.equal(errorOf(bad).reason, "validation_failed");
    const email = uniqueEmail("fixed");
    const [fixed] = await collect(f.bulk.generateAll([row("fix-me", email)], bulkCall()));
    assert.equal(fixed?.outcome.kind, "issued");
    const [again] = await collect(f.bulk.generateAll([row("fix-me", email)], bulkCall()));
    assert.equal(again?.outcome.kind, "replayed");
  });

  test("idempotency keys: missing, over 200 characters or not printable ASCII is that row's INVALID_ARGUMENT", async () => {
    const f = makeBulk();
    const email = uniqueEmail("keys");
    const keys = ["", "x".repeat(201), "tab\there", "é", "x".repeat(200)];
    const results = await collect(f.bulk.generateAll(keys.map((key) => row(key, key.length === 200 ? email : uniqueEmail("nokey"))), bulkCall()));
    for (const result of results.slice(0, 4)) {
      const error = errorOf(result);
      assert.equal(error.reason, "validation_failed");
      assert.deepEqual(error.violations.map((v) => v.field), ["idempotency_key"]);
    }
    assert.equal(results[4]?.outcome.kind, "issued", "200 printable characters are fine");
  });

  test("rate limits apply per row: rows over the per-address limit answer over_rate_limit with a retry delay, the rest are issued", async () => {
    const f = makeBulk({ rateLimits: { ...NO_RATE_LIMITS, generatePerEmail: { limit: 2, windowMs: HOUR } } });
    const busy = uniqueEmail("busy");
    const rows = [row("b1", busy), row("b2", busy), row("o1", uniqueEmail("other")), row("b3", busy), row("b4", busy), row("o2", uniqueEmail("other"))];
    const results = await collect(f.bulk.generateAll(rows, bulkCall()));
    const limited = results.filter((r) => r.outcome.kind === "failed");
    assert.equal(limited.length, 2);
    for (const result of limited) {
      assert.ok(result.idempotencyKey.startsWith("b"));
      const error = errorOf(result);
      assert.equal(error.reason, "over_rate_limit");
      assert.ok((error.retryAfterMs ?? 0) > 0);
    }
    assert.equal(results.filter((r) => r.outcome.kind === "issued").length, 4);
  });

  test(`more than ${MAX_BULK_ROWS} rows: INVALID_ARGUMENT for the request, before any row is issued`, async () => {
    const f = makeBulk();
    const email = uniqueEmail("cap");
    const rows = Array.from({ length: MAX_BULK_ROWS + 1 }, (_, i) => row(`cap-${i}`, email));
    await assert.rejects(collect(f.bulk.generateAll(rows, bulkCall())), (error: unknown) => {
      assert.ok(error instanceof AuthlinkError);
      assert.equal(error.reason, "validation_failed");
      assert.deepEqual(error.violations.map((v) => v.field), ["rows"]);
      return true;
    });
    assert.equal(await issuesFor(f.store, email), 0);
  });

  test("the database goes away: the rows in flight are answered UNAVAILABLE, then the run ends with UNAVAILABLE; no row reads as issued", async () => {
    const inner = createMemoryStore();
    let failing = false;
    const store: Store = {
      ...inner,
      links: {
        ...inner.links,
        insert: (records, options) => (failing ? Promise.reject(new StoreUnavailableError("down")) : inner.links.insert(records, options)),
      },
    };
    const f = makeBulk({ store, concurrency: 4 });
    const answered: BulkRowResult[] = [];
    const rows = Array.from({ length: 40 }, (_, i) => row(`down-${i}`, uniqueEmail("down")));
    async function* stream() {
      for (const [i, r] of rows.entries()) {
        if (i === 6) failing = true;
        yield r;
      }
    }
    await assert.rejects(
      (async () => {
        for await (const result of f.bulk.generateStream(stream(), bulkCall())) answered.push(result);
      })(),
      (error: unknown) => error instanceof AuthlinkError && error.reason === "store_unavailable",
    );
    assert.ok(answered.length < rows.length, `stopped early (${answered.length} answered)`);
    for (const result of answered) {
      if (result.outcome.kind === "failed") assert.equal(result.outcome.error.reason, "store_unavailable");
      else assert.ok(result.index < 6 + 4, "only rows read before the outage can have been issued");
    }
    assert.ok(answered.some((r) => r.outcome.kind === "failed"));
    for (const result of answered.filter((r) => r.outcome.kind === "issued")) {
      assert.ok(await f.store.links.find(issuedHash(result), f.clock.now()), "an issued row's link is stored");
    }
  });

  test("a key held by a row that vanished is in use until its hold expires, then free", async () => {
    const f = makeBulk();
    const scope = createHash("sha256").update("key:ops\0ghost").digest("hex");
    await f.store.claims.hold(`bulk:${scope}`, "a-vanished-row", new Date(f.clock.now().getTime() + 60_000));
    const email = uniqueEmail("ghost");
    const [blocked] = await collect(f.bulk.generateAll([row("ghost", email)], bulkCall()));
    assert.equal(errorOf(blocked).reason, "idempotency_key_in_use");
    f.clock.advance(60_000);
    const [free] = await collect(f.bulk.generateAll([row("ghost", email)], bulkCall()));
    assert.equal(free?.outcome.kind, "issued", "the expired (unpurged) hold no longer blocks the key");
  });
});

describe("bounded concurrency", () => {
  test("at most `limit` in flight, and nothing is read ahead of a consumer that does not take results", async () => {
    let reads = 0;
    async function* inputs() {
      for (let i = 0; i < 100; i++) {
        reads++;
        yield i;
      }
    }
    let inFlight = 0;
    let peak = 0;
    const work = async (n: number) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((resolve) => setTimeout(resolve, n % 3));
      inFlight--;
      return n;
    };
    const signal = new AbortController().signal;
    const outputs = mapBounded(inputs(), 4, work, { signal });
    const first = await outputs.next();
    assert.equal(first.done, false);
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.ok(reads <= 5, `read ${reads} inputs while the consumer held one result`);
    const rest: number[] = [first.value as number];
    for await (const n of outputs) rest.push(n);
    assert.deepEqual(rest.sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i));
    assert.ok(peak <= 4, `peak ${peak}`);
    assert.equal(peak, 4);
  });

  test("an abort ends it with the signal's reason; a failing input stream after the rows in flight", async () => {
    const controller = new AbortController();
    async function* endless() {
      for (let i = 0; ; i++) yield i;
    }
    const outputs = mapBounded(endless(), 2, async (n) => n, { signal: controller.signal });
    await outputs.next();
    controller.abort(new DOMException("gone", "AbortError"));
    await assert.rejects(outputs.next(), { name: "AbortError" });

    async function* broken() {
      yield 1;
      yield 2;
      throw new Error("the client's stream broke");
    }
    const seen: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const n of mapBounded(broken(), 8, async (x) => x, { signal: new AbortController().signal })) seen.push(n);
      })(),
      /stream broke/,
    );
    assert.deepEqual(seen.sort(), [1, 2]);
  });
});
