import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { listeningUrl, logLines, readyWithin, startProcess } from "../support/authlink-process.js";
import { Code, connectClient, reasonOf, rejection } from "../support/clients.js";
import { useTestDatabase } from "../support/mongo.js";
import { mongoHostPort, startTcpProxy, viaProxy } from "../support/tcp-proxy.js";

// The real process, as `npm start` runs it: configuration from the
// environment, the embedded default or MongoDB, a development key printed
// when none is configured, exit code 2 with the variable's name for bad
// configuration, a clean exit 0 on SIGTERM, and a database that is down at
// start-up: the process serves, not ready, until it answers.

const database = await useTestDatabase("process");

test("embedded default: warns loudly, prints a development key that works, stops cleanly on SIGTERM", async () => {
  const started = startProcess({ AUTHLINK_ADDR: "127.0.0.1:0" });
  try {
    const url = await listeningUrl(started);
    assert.match(started.stdout(), /NOTHING SURVIVES A RESTART/);
    assert.match(started.stdout(), /AUTHLINK_OTP_SECRET is not set/);
    const key = /authorization: Bearer (\S+)/.exec(started.stderr())?.[1];
    assert.ok(key, "the generated development key is printed");
    const generated = await connectClient(url, { key }).generateLink({ type: LinkType.MAGICLINK, email: "dev@example.com" });
    assert.ok(generated.actionLink.startsWith(`${url}/verify#`), "the default public URL follows the bound address");
    assert.ok(!started.stdout().includes(key), "the key is not in the JSON log");
  } finally {
    started.child.kill("SIGTERM");
  }
  assert.equal(await started.exit, 0);
  assert.match(started.stdout(), /"stopped"/);
});

test("MongoDB from AUTHLINK_MONGODB_URI; no development key when keys are configured", async () => {
  const key = "k".repeat(40);
  const started = startProcess({
    AUTHLINK_ADDR: "127.0.0.1:0",
    AUTHLINK_MONGODB_URI: database.uri,
    AUTHLINK_MONGODB_DATABASE: database.name,
    AUTHLINK_SERVICE_KEYS: key,
    AUTHLINK_OTP_SECRET: "o".repeat(40),
  });
  try {
    const url = await listeningUrl(started);
    await readyWithin(url, 15_000); // the store connects in the background
    assert.match(started.stdout(), /"store":"mongodb"/);
    assert.doesNotMatch(started.stderr(), /Bearer/);
    await connectClient(url, { key }).generateLink({ type: LinkType.MAGICLINK, email: "proc@example.com" });
    const stored = await database.client.db(database.name).collection("users").findOne({ email: "proc@example.com" });
    assert.ok(stored, "the user is in the configured database");
  } finally {
    started.child.kill("SIGINT");
  }
  assert.equal(await started.exit, 0);
});

test("bad configuration: exit code 2 and every problem named by its variable", async () => {
  const started = startProcess({
    AUTHLINK_ADDR: "nonsense",
    AUTHLINK_OTP_LENGTH: "4",
    AUTHLINK_REDIRECT_ALLOW_LIST: "http://app.example.com/**",
    AUTHLINK_REDIRECT_ALLOWLIST: "typo",
  });
  assert.equal(await started.exit, 2);
  for (const name of ["AUTHLINK_ADDR", "AUTHLINK_OTP_LENGTH", "AUTHLINK_REDIRECT_ALLOW_LIST", "AUTHLINK_REDIRECT_ALLOWLIST"]) {
    assert.match(started.stderr(), new RegExp(`${name}:`), name);
  }
});

test("MongoDB down at start-up: serves not-ready (NOT_SERVING, 503, UNAVAILABLE), retries with backoff naming host:port, never the password, and becomes ready when it answers", { timeout: 120_000 }, async () => {
  const { host, port } = mongoHostPort(database.uri);
  const proxy = await startTcpProxy(host, port);
  await proxy.cut(); // the database port refuses connections
  const { uri, password } = await withPassword(database.uri);
  const key = "k".repeat(40);
  const started = startProcess({
    AUTHLINK_ADDR: "127.0.0.1:0",
    AUTHLINK_MONGODB_URI: viaProxy(uri, proxy),
    AUTHLINK_MONGODB_DATABASE: database.name,
    AUTHLINK_DB_TIMEOUT: "500ms",
    AUTHLINK_SERVICE_KEYS: key,
    AUTHLINK_OTP_SECRET: "o".repeat(40),
  });
  try {
    const url = await listeningUrl(started);
    const health = createClient(Health, createGrpcTransport({ baseUrl: url }));
    assert.equal((await fetch(`${url}/healthz`)).status, 200, "alive");
    assert.equal((await fetch(`${url}/readyz`)).status, 503, "not ready");
    assert.equal((await health.check({ service: "" })).status, ServingStatus.NOT_SERVING);
    const calling = performance.now();
    const refused = await rejection(connectClient(url, { key }).generateLink({ type: LinkType.MAGICLINK, email: "early@example.com" }));
    assert.equal(Code[refused.code], Code[Code.Unavailable]);
    assert.equal(reasonOf(refused), "store_unavailable");
    assert.ok(performance.now() - calling < 1_000, "answered at once, not after a database timeout");

    // Well past the old ~3 s exit: still up, still retrying, with a growing pause.
    const retries = () =>
      logLines(started.stdout()).filter((line) => String(line.msg).startsWith("MongoDB is not reachable"));
    const deadline = Date.now() + 30_000;
    while (retries().length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(started.child.exitCode, null, "the process keeps running");
    const seen = retries();
    assert.ok(seen.length >= 3, started.stdout());
    assert.deepEqual(seen.slice(0, 3).map((line) => line.retryInMs), [500, 1_000, 2_000], "exponential backoff");
    for (const line of seen) assert.equal(line.database, `127.0.0.1:${proxy.port}`, "the log names host:port");
    assert.equal((await fetch(`${url}/readyz`)).status, 503);

    await proxy.restore();
    await readyWithin(url, 20_000);
    assert.equal((await health.check({ service: "" })).status, ServingStatus.SERVING);
    const generated = await connectClient(url, { key }).generateLink({ type: LinkType.MAGICLINK, email: "late@example.com" });
    assert.ok(generated.actionLink);
    assert.match(started.stdout(), /MongoDB connected and indexes ready/);
  } finally {
    started.child.kill("SIGTERM");
    await proxy.close();
  }
  assert.equal(await started.exit, 0);
  const output = started.stdout() + started.stderr();
  assert.ok(!output.includes(password), "the connection string's password appears in no log line");
  assert.ok(!output.includes(encodeURIComponent(password)));
});

/**
 * The test URI with a password in it, to prove no log line shows it: its own
 * when it has one; else, on FerretDB (which accepts PLAIN credentials without
 * checking them on its SQLite backend), made-up ones.
 */
async function withPassword(uri: string): Promise<{ uri: string; password: string }> {
  const own = /^mongodb:\/\/[^:@/]+:([^@/]+)@/.exec(uri)?.[1];
  if (own) return { uri, password: decodeURIComponent(own) };
  const info = await database.client.db("admin").command({ buildInfo: 1 });
  if (info.ferretdbVersion === undefined) {
    throw new Error("this test needs a URI with credentials when run against MongoDB itself");
  }
  const password = "Pa55-w0rd-that-must-never-be-logged";
  const withCredentials = uri.replace(/^mongodb:\/\//, `mongodb://authlink:${encodeURIComponent(password)}@`);
  const separator = withCredentials.includes("?") ? "&" : withCredentials.includes("/", "mongodb://".length) ? "?" : "/?";
  return { uri: `${withCredentials}${separator}authMechanism=PLAIN`, password };
}
