import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import * as protoLoader from "@grpc/proto-loader";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { linkParams } from "../support/links.js";
import { connectClient, grpc, rejection } from "../support/clients.js";
import { useTestDatabase } from "../support/mongo.js";
import { mongoHostPort, startTcpProxy, viaProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// The operator's view of a real authlink on MongoDB: reflection for buf curl,
// gRPC health and the HTTP probes while the database comes and goes, metrics
// that move with real calls, request ids that tie answers, logs and audit
// together — and none of the probes audited.

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..", "..");
const buf = join(repo, "node_modules", ".bin", "buf");

const database = await useTestDatabase("operations");
let proxy: TcpProxy;
let server: TestServer;

before(async () => {
  const { host, port } = mongoHostPort(database.uri);
  proxy = await startTcpProxy(host, port);
  server = await startTestServer({
    database,
    databaseUri: viaProxy(database.uri, proxy),
    dbTimeoutMs: 1_000,
    env: { AUTHLINK_METRICS_ADDR: "127.0.0.1:0" },
  });
});
after(async () => {
  await server.close();
  await proxy.close();
});

/** Polls `probe` until it returns `expected` or the deadline passes. */
async function eventually<T>(probe: () => Promise<T>, expected: T, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await probe();
    if (last === expected) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(last, expected);
}

describe("reflection", () => {
  test("buf curl --list-methods and a call without --schema", async () => {
    const { stdout } = await run(buf, ["curl", "--list-methods", "--protocol", "grpc", "--http2-prior-knowledge", server.url]);
    const methods = stdout.trim().split("\n").sort();
    assert.ok(methods.includes("authlink.v1.AdminAuthService/GenerateLink"), stdout);
    assert.ok(methods.includes("authlink.v1.AdminAuthService/VerifyLink"), stdout);
    assert.ok(methods.includes("grpc.health.v1.Health/Check"), stdout);
    const called = await run(buf, [
      "curl", "--protocol", "grpc", "--http2-prior-knowledge",
      "-H", `authorization: Bearer ${server.serviceKey}`,
      "-d", JSON.stringify({ type: "LINK_TYPE_MAGICLINK", email: "reflected@example.com" }),
      `${server.url}/authlink.v1.AdminAuthService/GenerateLink`,
    ]);
    const answer = JSON.parse(called.stdout) as { user?: { email?: string }; actionLink?: string };
    assert.equal(answer.user?.email, "reflected@example.com");
    assert.match(answer.actionLink ?? "", /^https:\/\/auth\.example\.com\/verify/);
  });

  test("AUTHLINK_REFLECTION=off: the schema is not served", async () => {
    const closed = await startTestServer({ env: { AUTHLINK_REFLECTION: "off" } });
    try {
      const failed = await run(buf, ["curl", "--list-methods", "--protocol", "grpc", "--http2-prior-knowledge", closed.url]).then(
        () => false,
        () => true,
      );
      assert.ok(failed, "buf curl cannot list methods without reflection");
    } finally {
      await closed.close();
    }
  });
});

describe("health and readiness while the database comes and goes", () => {
  const healthProto = join(dirname(createRequire(import.meta.url).resolve("grpc-health-check/package.json")), "proto");
  const loaded = grpc.loadPackageDefinition(
    protoLoader.loadSync("health/v1/health.proto", { includeDirs: [healthProto], enums: String }),
  ) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };

  const check = (service: string) =>
    new Promise<string>((resolve, reject) => {
      const client = new loaded.grpc.health.v1.Health(new URL(server.url).host, grpc.credentials.createInsecure());
      (client as unknown as { check: (r: object, cb: (e: grpc.ServiceError | null, r: { status: string }) => void) => void }).check(
        { service },
        (error, response) => {
          client.close();
          if (error) reject(error);
          else resolve(response.status);
        },
      );
    });
  const readyz = async () => (await fetch(`${server.url}/readyz`)).status;

  test("SERVING and 200 while the store answers; NOT_SERVING and 503 while it is cut; back again", async () => {
    assert.equal(await check(""), "SERVING");
    assert.equal(await check("authlink.v1.AdminAuthService"), "SERVING");
    assert.equal(await readyz(), 200);
    await proxy.cut();
    try {
      await eventually(() => check(""), "NOT_SERVING");
      await eventually(readyz, 503);
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200, "liveness does not depend on the database");
    } finally {
      await proxy.restore();
    }
    await eventually(() => check(""), "SERVING");
    await eventually(readyz, 200);
  });

  test("a Check of an unknown service is NOT_FOUND", async () => {
    const error = await check("no.such.Service").then(() => undefined, (e: grpc.ServiceError) => e);
    assert.equal(error?.code, grpc.status.NOT_FOUND);
  });

  test("probes are neither audited nor limited: 200 checks leave no audit event", async () => {
    for (let i = 0; i < 200; i++) assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
    await Promise.all(Array.from({ length: 50 }, () => check("")));
    const events = await database.client.db(database.name).collection("audit_events").find({ method: { $in: ["Check", "Watch"] } }).toArray();
    assert.deepEqual(events, []);
  });
});

describe("metrics", () => {
  const scrape = async () => {
    assert.ok(server.metricsUrl, "the metrics listener runs");
    const response = await fetch(`${server.metricsUrl}/metrics`);
    assert.equal(response.status, 200);
    return response.text();
  };
  /** The value of one sample, 0 when absent. */
  const sample = (text: string, name: string, labels: Record<string, string> = {}) => {
    for (const line of text.split("\n")) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(" ") + 1));
    }
    return 0;
  };

  test("counters move with real calls; no label carries an address, token or hash", async () => {
    const before = await scrape();
    const admin = connectClient(server.url, { protocol: "grpc", key: server.serviceKey });
    const a = await admin.generateLink({ type: LinkType.MAGICLINK, email: "metrics-a@example.com" });
    await admin.generateLink({ type: LinkType.RECOVERY, email: "metrics-a@example.com" });
    const token = linkParams(a.actionLink).get("token") ?? "";
    await connectClient(server.url, { protocol: "connect" }).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
    await rejection(connectClient(server.url, { protocol: "connect" }).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } }));
    await rejection(connectClient(server.url, { protocol: "grpc", key: null }).generateLink({ type: LinkType.MAGICLINK, email: "x@example.com" }));
    const after = await scrape();
    const moved = (name: string, labels: Record<string, string>) => sample(after, name, labels) - sample(before, name, labels);

    assert.equal(moved("authlink_rpc_requests_total", { method: "GenerateLink", protocol: "grpc", code: "OK" }), 2);
    assert.equal(moved("authlink_rpc_requests_total", { method: "GenerateLink", protocol: "grpc", code: "UNAUTHENTICATED" }), 1);
    assert.equal(moved("authlink_rpc_requests_total", { method: "VerifyLink", protocol: "connect", code: "PERMISSION_DENIED" }), 1);
    assert.equal(moved("authlink_links_issued_total", { type: "magiclink" }), 1);
    assert.equal(moved("authlink_links_issued_total", { type: "recovery" }), 1);
    assert.equal(moved("authlink_link_redemptions_total", { type: "magiclink", outcome: "ok" }), 1);
    assert.equal(moved("authlink_link_redemptions_total", { type: "magiclink", outcome: "link_invalid_or_expired" }), 1);
    assert.equal(moved("authlink_link_redemption_age_seconds_count", { type: "magiclink" }), 1);
    assert.ok(moved("authlink_store_operation_duration_seconds_count", { operation: "links.find" }) >= 2);
    assert.ok(sample(after, "nodejs_eventloop_lag_seconds") >= 0 && after.includes("nodejs_heap_size_used_bytes"));
    assert.doesNotMatch(after, /metrics-a@example\.com|@example\.com/);
    assert.ok(!after.includes(a.hashedToken) && !after.includes(token));
  });

  test("/metrics is not served on the public port", async () => {
    assert.equal((await fetch(`${server.url}/metrics`)).status, 404);
  });
});

describe("request ids", () => {
  test("one id in the response header, the call's log line and its audit event", async () => {
    let header: string | null = null;
    await connectClient(server.url, { key: server.serviceKey }).generateLink(
      { type: LinkType.MAGICLINK, email: "traced@example.com" },
      { headers: { "x-request-id": "support-ticket-77" }, onHeader: (h) => (header = h.get("x-request-id")) },
    );
    assert.equal(header, "support-ticket-77");
    const logged = server.logs.map((l) => JSON.parse(l) as { msg: string; requestId?: string }).filter((l) => l.requestId === "support-ticket-77");
    assert.deepEqual(logged.map((l) => l.msg), ["call"]);
    const events = await server.store.audit.find({ email: "traced@example.com" }, 10);
    assert.deepEqual(events.map((e) => e.requestId), ["support-ticket-77"]);
  });
});
