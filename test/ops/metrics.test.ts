import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { createMetrics, grpcCodeName, safeLabel, type Metrics } from "../../src/ops/metrics.js";
import { startMetricsServer } from "../../src/ops/metrics-server.js";
import { createMemoryStore } from "../../src/store/memory-store.js";

// The metrics as Prometheus sees them: calls on the Metrics interface and on
// an instrumented embedded store, then a real scrape of the metrics listener,
// parsed, with every counter and histogram count checked exactly. Each test
// builds its own Metrics (its own registry), so the numbers start at zero.

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The exposition format's sample lines: `name{a="x",b="y"} value`. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    assert.ok(match, `unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, raw] of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = raw!.replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the one series of `name` with exactly `labels`; 0 when it does not exist (yet). */
function valueOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels);
  const found = samples.filter(
    (s) => s.name === name && Object.keys(s.labels).length === wanted.length && wanted.every(([k, v]) => s.labels[k] === v),
  );
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} series`);
  return found[0]?.value ?? 0;
}

const seriesOf = (samples: readonly Sample[], name: string) => samples.filter((s) => s.name === name);

let metrics: Metrics;
let server: Awaited<ReturnType<typeof startMetricsServer>>;

before(async () => {
  metrics = createMetrics();
  server = await startMetricsServer(metrics, { host: "127.0.0.1", port: 0 });
});
after(() => server.close());

async function scrape(): Promise<{ samples: Sample[]; text: string }> {
  const response = await fetch(`${server.url}/metrics`);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), metrics.registry.contentType);
  const text = await response.text();
  return { samples: parseExposition(text), text };
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

test("calls, audit events, store operations and refusals show up exactly in a scrape", async () => {
  // RPC calls: two finished GenerateLink, one VerifyLink still running, one
  // ended twice (counts once), and methods outside the known set.
  metrics.callStarted("GenerateLink", "grpc")("OK");
  metrics.callStarted("GenerateLink", "grpc")("INVALID_ARGUMENT");
  const running = metrics.callStarted("VerifyLink", "connect");
  const endTwice = metrics.callStarted("VerifyLink", "grpc-web");
  endTwice("PERMISSION_DENIED");
  endTwice("PERMISSION_DENIED");
  metrics.callStarted("DropDatabase", "connect")("UNIMPLEMENTED");
  metrics.callStarted("someone@example.com", "connect")("UNIMPLEMENTED");

  // Audit events of every kind.
  const hashes = [sha256("a"), sha256("b")];
  metrics.observeAuditEvent({ method: "GenerateLink", outcome: "ok", linkType: "signup", hashedTokens: [hashes[0]!] });
  metrics.observeAuditEvent({ method: "GenerateLink", outcome: "ok", linkType: "email_change", hashedTokens: hashes });
  metrics.observeAuditEvent({ method: "GenerateLink", outcome: "over_rate_limit", linkType: "magiclink", hashedTokens: [], rateLimitRule: "generate-email" });
  metrics.observeAuditEvent({ method: "GenerateLink", outcome: "credentials_missing", hashedTokens: [] });
  metrics.observeAuditEvent({ method: "VerifyLink", outcome: "ok", linkType: "magiclink", hashedTokens: [hashes[0]!], linkAgeMs: 2_000 });
  metrics.observeAuditEvent({ method: "VerifyLink", outcome: "ok", linkType: "magiclink", hashedTokens: [hashes[1]!], linkAgeMs: 3 * 86_400_000 });
  metrics.observeAuditEvent({ method: "VerifyLink", outcome: "link_invalid_or_expired", linkType: "magiclink", hashedTokens: [], linkAgeMs: 500 });
  metrics.observeAuditEvent({ method: "VerifyLink", outcome: "over_rate_limit", linkType: "recovery", hashedTokens: [], rateLimitRule: "verify-address" });
  metrics.observeAuditEvent({ method: "VerifyLink", outcome: "over_rate_limit", linkType: "recovery", hashedTokens: [], rateLimitRule: "verify-code" });
  metrics.auditWriteFailed();
  metrics.auditWriteFailed();
  metrics.auditEventsDropped(3);
  metrics.auditEventsDropped(0);
  metrics.setAuditQueueLength(7);
  metrics.setAuditQueueLength(5);
  metrics.protocolRefusal("bad_content_type");
  metrics.protocolRefusal("bad_content_type");
  metrics.protocolRefusal("message_too_large");

  // Real operations on the embedded store, one of which fails.
  const store = metrics.instrumentStore(createMemoryStore());
  assert.equal(store.kind, "memory");
  assert.equal(store.needsPurge, true);
  const now = new Date();
  const user = { id: "u1", email: "metrics@example.com", createdAt: now, updatedAt: now, userMetadata: {} };
  assert.equal(await store.users.insert(user), "inserted");
  assert.equal(await store.users.insert(user), "email_taken");
  assert.equal((await store.users.findByEmail("metrics@example.com"))?.id, "u1");
  assert.equal(await store.users.findByEmail("nobody@example.com"), undefined);
  const link = {
    tokenHash: sha256("token"),
    otpHash: sha256("otp"),
    type: "magiclink" as const,
    userId: "u1",
    email: "metrics@example.com",
    issueId: "i1",
    issuedAt: now,
    expiresAt: new Date(now.getTime() + 60_000),
    retainUntil: new Date(now.getTime() + 60_000),
  };
  await store.links.insert([link]);
  const failed = store.links.insert([link]);
  assert.ok(failed instanceof Promise, "a store call still returns its promise");
  await assert.rejects(failed, /duplicate token hash/);
  assert.equal((await store.links.find(link.tokenHash, now))?.userId, "u1");
  assert.equal(await store.links.delete(link.tokenHash), true);
  assert.equal(await store.purgeExpired(new Date(now.getTime() + 120_000)), 0);
  await store.close();

  const { samples } = await scrape();
  const rpc = (method: string, protocol: string, code: string) => ({ method, protocol, code });

  assert.equal(valueOf(samples, "authlink_rpc_requests_total", rpc("GenerateLink", "grpc", "OK")), 1);
  assert.equal(valueOf(samples, "authlink_rpc_requests_total", rpc("GenerateLink", "grpc", "INVALID_ARGUMENT")), 1);
  assert.equal(valueOf(samples, "authlink_rpc_requests_total", rpc("VerifyLink", "grpc-web", "PERMISSION_DENIED")), 1);
  assert.equal(valueOf(samples, "authlink_rpc_requests_total", rpc("other", "connect", "UNIMPLEMENTED")), 2);
  assert.equal(seriesOf(samples, "authlink_rpc_requests_total").length, 4);
  assert.equal(valueOf(samples, "authlink_rpc_duration_seconds_count", rpc("GenerateLink", "grpc", "OK")), 1);
  assert.equal(valueOf(samples, "authlink_rpc_duration_seconds_count", rpc("VerifyLink", "grpc-web", "PERMISSION_DENIED")), 1);
  assert.equal(valueOf(samples, "authlink_rpc_duration_seconds_bucket", { ...rpc("GenerateLink", "grpc", "OK"), le: "15" }), 1);
  assert.equal(valueOf(samples, "authlink_rpc_duration_seconds_bucket", { ...rpc("GenerateLink", "grpc", "OK"), le: "+Inf" }), 1);
  assert.ok(seriesOf(samples, "authlink_rpc_duration_seconds_bucket").some((s) => s.labels.le === "0.0005"));
  assert.equal(valueOf(samples, "authlink_rpc_in_flight", { method: "VerifyLink", protocol: "connect" }), 1);
  assert.equal(valueOf(samples, "authlink_rpc_in_flight", { method: "VerifyLink", protocol: "grpc-web" }), 0);
  assert.equal(valueOf(samples, "authlink_rpc_in_flight", { method: "GenerateLink", protocol: "grpc" }), 0);

  assert.equal(valueOf(samples, "authlink_links_issued_total", { type: "signup" }), 1);
  assert.equal(valueOf(samples, "authlink_links_issued_total", { type: "email_change" }), 2);
  assert.equal(seriesOf(samples, "authlink_links_issued_total").length, 2, "failed GenerateLink calls issue nothing");

  assert.equal(valueOf(samples, "authlink_link_redemptions_total", { type: "magiclink", outcome: "ok" }), 2);
  assert.equal(valueOf(samples, "authlink_link_redemptions_total", { type: "magiclink", outcome: "link_invalid_or_expired" }), 1);
  assert.equal(valueOf(samples, "authlink_link_redemptions_total", { type: "recovery", outcome: "over_rate_limit" }), 2);
  assert.equal(seriesOf(samples, "authlink_link_redemptions_total").length, 3);
  // Only the two successful redemptions are timed: 2 s and 3 days.
  const age = (le: string) => valueOf(samples, "authlink_link_redemption_age_seconds_bucket", { type: "magiclink", le });
  assert.equal(valueOf(samples, "authlink_link_redemption_age_seconds_count", { type: "magiclink" }), 2);
  assert.equal(valueOf(samples, "authlink_link_redemption_age_seconds_sum", { type: "magiclink" }), 2 + 3 * 86_400);
  assert.equal(age("1"), 0);
  assert.equal(age("5"), 1);
  assert.equal(age("86400"), 1);
  assert.equal(age("259200"), 2);
  assert.equal(age("604800"), 2);

  assert.equal(valueOf(samples, "authlink_rate_limit_refusals_total", { rule: "generate-email" }), 1);
  assert.equal(valueOf(samples, "authlink_rate_limit_refusals_total", { rule: "verify-address" }), 1);
  assert.equal(valueOf(samples, "authlink_rate_limit_refusals_total", { rule: "verify-code" }), 1);
  assert.equal(seriesOf(samples, "authlink_rate_limit_refusals_total").length, 3);

  assert.equal(valueOf(samples, "authlink_audit_write_failures_total"), 2);
  assert.equal(valueOf(samples, "authlink_audit_events_dropped_total"), 3);
  assert.equal(valueOf(samples, "authlink_audit_queue_length"), 5);
  assert.equal(valueOf(samples, "authlink_protocol_refusals_total", { kind: "bad_content_type" }), 2);
  assert.equal(valueOf(samples, "authlink_protocol_refusals_total", { kind: "message_too_large" }), 1);

  const storeCalls = (operation: string) => valueOf(samples, "authlink_store_operation_duration_seconds_count", { operation });
  assert.equal(storeCalls("users.insert"), 2);
  assert.equal(storeCalls("users.findByEmail"), 2);
  assert.equal(storeCalls("links.insert"), 2, "the failed call is timed too");
  assert.equal(storeCalls("links.find"), 1);
  assert.equal(storeCalls("links.delete"), 1);
  assert.equal(storeCalls("purgeExpired"), 1);
  assert.equal(storeCalls("close"), 0, "close is not a store operation");
  assert.deepEqual(
    seriesOf(samples, "authlink_store_operation_duration_seconds_count").map((s) => s.labels.operation).sort(),
    ["links.delete", "links.find", "links.insert", "purgeExpired", "users.findByEmail", "users.insert"],
  );
  assert.equal(valueOf(samples, "authlink_store_errors_total", { operation: "links.insert", kind: "other" }), 1);
  assert.equal(seriesOf(samples, "authlink_store_errors_total").length, 1);

  // Nothing from the calls' data leaks into a label.
  for (const sample of samples.filter((s) => s.name.startsWith("authlink_"))) {
    for (const value of Object.values(sample.labels)) {
      assert.match(value, /^[A-Za-z0-9_.+-]{1,64}$/, `${sample.name} label ${value}`);
      assert.ok(!hashes.includes(value) && !value.includes("example.com"), `${sample.name} label ${value}`);
    }
  }
});

test("label values that look like emails, hashes, ids or tokens become \"other\"", async () => {
  const hash = sha256("secret");
  metrics.protocolRefusal("someone@example.com");
  metrics.protocolRefusal(hash);
  metrics.protocolRefusal("content type: text/html");
  metrics.observeAuditEvent({ method: "VerifyLink", outcome: hash, linkType: "a@b.c", hashedTokens: [hash] });
  metrics.observeAuditEvent({ method: "GenerateLink", outcome: "over_rate_limit", hashedTokens: [], rateLimitRule: `caller-${hash}` });
  metrics.callStarted("GenerateLink", "x@y")(hash);

  const { samples } = await scrape();
  assert.equal(valueOf(samples, "authlink_protocol_refusals_total", { kind: "other" }), 3);
  assert.equal(valueOf(samples, "authlink_link_redemptions_total", { type: "other", outcome: "other" }), 1);
  assert.equal(valueOf(samples, "authlink_rate_limit_refusals_total", { rule: "other" }), 1);
  assert.equal(valueOf(samples, "authlink_rpc_requests_total", { method: "GenerateLink", protocol: "other", code: "other" }), 1);

  // The sanitizer on its own: names pass, secrets and identifiers do not.
  for (const name of ["GenerateLink", "users.completeEmailChange", "links.findLiveByEmail", "link_invalid_or_expired", "RESOURCE_EXHAUSTED", "grpc-web", "verify-code", "email_change"]) {
    assert.equal(safeLabel(name), name);
  }
  const identifiers = [hash, hash.toUpperCase(), "507f1f77bcf86cd799439011", "0b6f7a0c-1a9e-4d3c-8a47-5e0f3c2b9d11", "1234567", "a@b", "", "x".repeat(65)];
  for (const value of identifiers) assert.equal(safeLabel(value), "other", value);
  for (let i = 0; i < 2_000; i++) {
    const token = randomBytes(32).toString("base64url");
    assert.equal(safeLabel(token), "other", token);
  }
});

test("the metrics listener answers only GET /metrics", async () => {
  const notFound = await fetch(`${server.url}/other`);
  assert.equal(notFound.status, 404);
  await notFound.arrayBuffer();
  const root = await fetch(`${server.url}/`);
  assert.equal(root.status, 404);
  await root.arrayBuffer();
  const post = await fetch(`${server.url}/metrics`, { method: "POST", body: "x" });
  assert.equal(post.status, 404);
  await post.arrayBuffer();
  const withQuery = await fetch(`${server.url}/metrics?name[]=x`);
  assert.equal(withQuery.status, 200);
  assert.match(withQuery.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  await withQuery.arrayBuffer();
});

test("Node process metrics are exposed under their standard, unprefixed names", async () => {
  const { samples, text } = await scrape();
  const names = new Set(samples.map((s) => s.name));
  for (const name of ["process_cpu_seconds_total", "process_start_time_seconds", "nodejs_eventloop_lag_seconds", "nodejs_heap_size_used_bytes"]) {
    assert.ok(names.has(name), `${name} missing`);
  }
  assert.match(text, /^# TYPE nodejs_gc_duration_seconds histogram$/m);
  assert.ok(![...names].some((name) => name.startsWith("authlink_nodejs_") || name.startsWith("authlink_process_")));
});

test("separate Metrics have separate registries", async () => {
  const a = createMetrics();
  const b = createMetrics();
  assert.notEqual(a.registry, b.registry);
  a.auditWriteFailed();
  const count = async (m: Metrics) => valueOf(parseExposition(await m.registry.metrics()), "authlink_audit_write_failures_total");
  assert.equal(await count(a), 1);
  assert.equal(await count(b), 0);
});

test("instrumentStore keeps `this`, the returned promise and plain properties; StoreUnavailableError counts as unavailable", async () => {
  // Matched by name, as the store's class is: metrics need not import the store port.
  class StoreUnavailableError extends Error {
    override readonly name = "StoreUnavailableError";
  }
  class ClassLinks {
    readonly #hashes = new Set<string>(["h1"]);
    lastPromise: Promise<boolean> | undefined;
    has(hash: string): Promise<boolean> {
      this.lastPromise = Promise.resolve(this.#hashes.has(hash));
      return this.lastPromise;
    }
    async consume(): Promise<never> {
      throw new StoreUnavailableError("no server");
    }
    count(): number {
      return this.#hashes.size;
    }
    explode(): never {
      throw new StoreUnavailableError("sync failure");
    }
  }
  class ClassStore {
    readonly kind = "class";
    readonly links = new ClassLinks();
    readonly #pings: string[] = [];
    get needsPurge() {
      return this.#pings.length > 100;
    }
    async ping() {
      this.#pings.push("ping");
      return this.#pings.length;
    }
    async close() {
      this.#pings.length = 0;
    }
  }
  const m = createMetrics();
  const raw = Object.freeze(new ClassStore());
  const store = m.instrumentStore(raw);
  assert.ok(store instanceof ClassStore);
  assert.equal(store.kind, "class");
  assert.equal(store.needsPurge, false);
  assert.equal(store.links, store.links, "a sub-store keeps its identity");
  const pending = store.links.has("h1");
  assert.equal(pending, raw.links.lastPromise, "the store's own promise is returned");
  assert.equal(await pending, true);
  assert.equal(store.links.count(), 1);
  assert.equal(await store.ping(), 1);
  await assert.rejects(store.links.consume(), StoreUnavailableError);
  assert.throws(() => store.links.explode(), StoreUnavailableError);
  await store.close();

  const samples = parseExposition(await m.registry.metrics());
  const calls = (operation: string) => valueOf(samples, "authlink_store_operation_duration_seconds_count", { operation });
  assert.equal(calls("links.has"), 1);
  assert.equal(calls("links.count"), 1);
  assert.equal(calls("links.consume"), 1);
  assert.equal(calls("links.explode"), 1);
  assert.equal(calls("ping"), 1);
  assert.equal(calls("close"), 0);
  assert.equal(valueOf(samples, "authlink_store_errors_total", { operation: "links.consume", kind: "unavailable" }), 1);
  assert.equal(valueOf(samples, "authlink_store_errors_total", { operation: "links.explode", kind: "unavailable" }), 1);
});

test("grpcCodeName gives the gRPC status names", () => {
  assert.equal(grpcCodeName(undefined), "OK");
  assert.equal(grpcCodeName(0), "OK");
  assert.equal(grpcCodeName(3), "INVALID_ARGUMENT");
  assert.equal(grpcCodeName(8), "RESOURCE_EXHAUSTED");
  assert.equal(grpcCodeName(16), "UNAUTHENTICATED");
  assert.equal(grpcCodeName(99), "UNKNOWN");
});

test("close ends idle keep-alive connections and stops listening", async () => {
  const m = createMetrics();
  const own = await startMetricsServer(m, { host: "127.0.0.1", port: 0 });
  // fetch keeps its connection alive; close must not wait for it to time out.
  const response = await fetch(`${own.url}/metrics`);
  await response.text();
  const started = performance.now();
  await own.close();
  assert.ok(performance.now() - started < 1_000, "close waited for an idle connection");
  await assert.rejects(fetch(`${own.url}/metrics`));
});
