import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { MongoClient } from "mongodb";
import { Health } from "../../gen/health/v1/health_pb.js";
import { createHealthHttpHandler } from "../../src/ops/health-http.js";
import { createHealthService } from "../../src/ops/health-service.js";
import { createReadiness, type Readiness, type ReadinessOptions } from "../../src/ops/readiness.js";
import { testMongoUri } from "../support/mongo.js";
import { mongoHostPort, startTcpProxy, viaProxy } from "../support/tcp-proxy.js";

// Health and readiness over real sockets, on a real MongoDB reached through a
// TCP proxy that takes it away and brings it back: grpc.health.v1 answered to
// @grpc/grpc-js (its own protobuf implementation, reading grpc-health-check's
// .proto), and /healthz and /readyz answered to fetch.

const ADMIN_SERVICE = "authlink.v1.AdminAuthService";
const WATCH_INTERVAL_MS = 100;

const mongoUri = testMongoUri();
const target = mongoHostPort(mongoUri);
const proxy = await startTcpProxy(target.host, target.port);
// Short timeouts so that a cut database is noticed, and a restored one found
// again, within a test's patience.
const mongo = new MongoClient(viaProxy(mongoUri, proxy), {
  serverSelectionTimeoutMS: 300,
  connectTimeoutMS: 300,
  heartbeatFrequencyMS: 500,
});
await mongo.connect();
after(async () => {
  await mongo.close();
  await proxy.close();
});

const pingMongo = async (signal: AbortSignal): Promise<void> => {
  await mongo.db("admin").command({ ping: 1 }, { signal });
};

/** Resolves once `predicate` holds; fails after `timeoutMs`. */
async function eventually(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Readiness on the proxied MongoDB that counts its pings. */
function countedReadiness(options: Omit<ReadinessOptions, "ping"> = {}, ping = pingMongo) {
  const counter = { pings: 0, signals: [] as AbortSignal[] };
  const readiness = createReadiness({
    ...options,
    ping: (signal) => {
      counter.pings++;
      counter.signals.push(signal);
      return ping(signal);
    },
  });
  return { readiness, counter };
}

/** Delegates to `readiness` and counts its onChange subscriptions (open now, and ever made). */
function withSubscriptionCount(readiness: Readiness): { readiness: Readiness; open: () => number; made: () => number } {
  let open = 0;
  let made = 0;
  return {
    open: () => open,
    made: () => made,
    readiness: {
      check: () => readiness.check(),
      get shuttingDown() {
        return readiness.shuttingDown;
      },
      markShuttingDown: () => readiness.markShuttingDown(),
      onChange(listener) {
        open++;
        made++;
        const unsubscribe = readiness.onChange(listener);
        let subscribed = true;
        return () => {
          if (subscribed) open--;
          subscribed = false;
          unsubscribe();
        };
      },
    },
  };
}

/** Takes the database away; the returned function (or the end of the test) brings it back. */
async function cutDatabase(t: TestContext): Promise<() => Promise<void>> {
  let restored = false;
  const restore = async () => {
    if (restored) return;
    restored = true;
    await proxy.restore();
  };
  await proxy.cut();
  t.after(restore);
  return restore;
}

// ---- servers ------------------------------------------------------------

interface HealthServers {
  /** host:port of the h2c server (gRPC). */
  readonly h2Address: string;
  /** Base URL of the HTTP/1.1 server (probes first, then Connect). */
  readonly httpUrl: string;
  /** Paths the probe handler declined and passed on. */
  readonly passedOn: string[];
  close(): Promise<void>;
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}

async function startHealthServers(readiness: Readiness, watchIntervalMs: number): Promise<HealthServers> {
  const routes = (router: ConnectRouter) =>
    router.service(Health, createHealthService({ readiness, services: [ADMIN_SERVICE], watchIntervalMs }));
  const probes = createHealthHttpHandler(readiness);
  const connect = connectNodeAdapter({ routes });
  const passedOn: string[] = [];

  const sessions = new Set<http2.ServerHttp2Session>();
  const h2 = http2.createServer((req, res) => {
    if (!probes(req, res)) connect(req, res);
  });
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  const h1 = http.createServer((req, res) => {
    if (probes(req, res)) return;
    passedOn.push(req.url ?? "");
    connect(req, res);
  });
  const [h2Port, h1Port] = [await listen(h2), await listen(h1)];
  return {
    h2Address: `127.0.0.1:${h2Port}`,
    httpUrl: `http://127.0.0.1:${h1Port}`,
    passedOn,
    async close() {
      const closed = Promise.all([
        new Promise((resolve) => h2.close(resolve)),
        new Promise((resolve) => h1.close(resolve)),
      ]);
      for (const session of sessions) session.destroy();
      h1.closeAllConnections();
      await closed;
    },
  };
}

// ---- @grpc/grpc-js health client ----------------------------------------

type ServingStatusName = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

const healthProto = join(
  dirname(createRequire(import.meta.url).resolve("grpc-health-check/package.json")),
  "proto/health/v1/health.proto",
);
const loaded = grpc.loadPackageDefinition(
  protoLoader.loadSync(healthProto, { keepCase: true, enums: String, defaults: true }),
) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };

interface HealthClient {
  check(service: string): Promise<ServingStatusName>;
  /** Starts a Watch; `statuses` fills as messages arrive. */
  watch(service: string): { statuses: ServingStatusName[]; ended(): boolean; cancel(): void };
  close(): void;
}

function healthClient(address: string): HealthClient {
  type Callback = (error: grpc.ServiceError | null, response?: { status: ServingStatusName }) => void;
  const client = new loaded.grpc.health.v1.Health(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check(request: { service: string }, options: grpc.CallOptions, callback: Callback): void;
    Watch(request: { service: string }): grpc.ClientReadableStream<{ status: ServingStatusName }>;
  };
  return {
    check: (service) =>
      new Promise((resolve, reject) => {
        client.Check({ service }, { deadline: Date.now() + 5_000 }, (error, response) =>
          error ? reject(error) : resolve(response?.status ?? "UNKNOWN"),
        );
      }),
    watch(service) {
      const statuses: ServingStatusName[] = [];
      let ended = false;
      const call = client.Watch({ service });
      call.on("data", (message: { status: ServingStatusName }) => statuses.push(message.status));
      call.on("status", () => (ended = true));
      call.on("error", () => undefined); // cancel() ends the call with CANCELLED
      return { statuses, ended: () => ended, cancel: () => call.cancel() };
    },
    close: () => client.close(),
  };
}

// ---- readiness ----------------------------------------------------------

describe("readiness on a real MongoDB", () => {
  test("50 concurrent checks cause one ping", async () => {
    const { readiness, counter } = countedReadiness();
    const answers = await Promise.all(Array.from({ length: 50 }, () => readiness.check()));
    assert.deepEqual(new Set(answers), new Set([true]));
    assert.equal(counter.pings, 1);
  });

  test("an answer stands for cacheMs, then the next check pings again", async () => {
    let now = 0;
    const { readiness, counter } = countedReadiness({ cacheMs: 1_500, now: () => now });
    assert.equal(await readiness.check(), true);
    now += 1_499;
    assert.equal(await readiness.check(), true);
    assert.equal(counter.pings, 1);
    now += 1;
    assert.equal(await readiness.check(), true);
    assert.equal(counter.pings, 2);
  });

  test("a database that hangs is down after timeoutMs, and the ping is aborted", async (t) => {
    const { readiness, counter } = countedReadiness({ timeoutMs: 200 });
    proxy.stall();
    t.after(() => proxy.unstall());
    const started = Date.now();
    assert.equal(await readiness.check(), false);
    assert.ok(Date.now() - started < 2_000, `answered after ${Date.now() - started} ms`);
    assert.equal(counter.pings, 1);
    assert.equal(counter.signals[0]?.aborted, true);
  });

  test("no second ping while one that ignored its abort is still out", async (t) => {
    let now = 0;
    const deaf = new AbortController().signal; // the ping below never gives up on its own
    const { readiness, counter } = countedReadiness({ timeoutMs: 200, cacheMs: 100, now: () => now }, () => pingMongo(deaf));
    proxy.stall();
    t.after(() => proxy.unstall());
    assert.equal(await readiness.check(), false);
    now += 1_000;
    assert.equal(await readiness.check(), false, "still down while the first ping hangs");
    assert.equal(counter.pings, 1);

    proxy.unstall();
    await eventually("the store is back", async () => {
      now += 1_000;
      return readiness.check();
    });
  });

  test("markShuttingDown answers false at once and tells the listeners", async () => {
    const { readiness, counter } = countedReadiness();
    assert.equal(await readiness.check(), true);
    const heard: boolean[] = [];
    const unsubscribe = readiness.onChange((ready) => heard.push(ready));
    readiness.markShuttingDown();
    unsubscribe();
    readiness.markShuttingDown();
    assert.equal(readiness.shuttingDown, true);
    assert.equal(await readiness.check(), false);
    assert.deepEqual(heard, [false]);
    assert.equal(counter.pings, 1, "shutting down asks no store");
  });
});

// ---- gRPC health and HTTP probes ----------------------------------------

describe("grpc.health.v1 and /readyz while the database comes and goes", () => {
  let servers: HealthServers;
  let client: HealthClient;
  let subscriptions: () => number;
  let subscriptionsMade: () => number;

  /** Every Watch has stopped: no subscription open, and none made over a few watch intervals. */
  const noWatchLeft = async () => {
    await eventually("no subscription open", () => subscriptions() === 0);
    const made = subscriptionsMade();
    await new Promise((resolve) => setTimeout(resolve, 3 * WATCH_INTERVAL_MS));
    assert.equal(subscriptionsMade(), made, "a Watch is still polling after its client left");
    assert.equal(subscriptions(), 0);
  };

  before(async () => {
    const counted = withSubscriptionCount(createReadiness({ ping: pingMongo, timeoutMs: 500, cacheMs: 100 }));
    subscriptions = counted.open;
    subscriptionsMade = counted.made;
    servers = await startHealthServers(counted.readiness, WATCH_INTERVAL_MS);
    client = healthClient(servers.h2Address);
  });
  after(async () => {
    client.close();
    await servers.close();
  });

  test("Check: SERVING, NOT_SERVING once the database is cut, SERVING once it is back", async (t) => {
    assert.equal(await client.check(""), "SERVING");
    assert.equal(await client.check(ADMIN_SERVICE), "SERVING");
    const restoreDatabase = await cutDatabase(t);
    await eventually("NOT_SERVING", async () => (await client.check("")) === "NOT_SERVING");
    assert.equal(await client.check(ADMIN_SERVICE), "NOT_SERVING");
    await restoreDatabase();
    await eventually("SERVING", async () => (await client.check("")) === "SERVING");
    assert.equal(await client.check(ADMIN_SERVICE), "SERVING");
  });

  test("Check of an unknown service is NOT_FOUND", async () => {
    const error = (await client.check("authlink.v1.NoSuchService").then(
      () => assert.fail("expected NOT_FOUND"),
      (e: unknown) => e,
    )) as grpc.ServiceError;
    assert.equal(error.code, grpc.status.NOT_FOUND);
    assert.match(error.details, /unknown service/);
  });

  test("Watch: SERVING at once, NOT_SERVING after the cut, SERVING after the restore", async (t) => {
    const watch = client.watch("");
    t.after(() => watch.cancel());
    await eventually("the first message", () => watch.statuses.length > 0);
    assert.deepEqual(watch.statuses, ["SERVING"]);
    const restoreDatabase = await cutDatabase(t);
    await eventually("NOT_SERVING pushed", () => watch.statuses.includes("NOT_SERVING"));
    await restoreDatabase();
    await eventually("SERVING pushed", () => watch.statuses.length === 3);
    assert.deepEqual(watch.statuses, ["SERVING", "NOT_SERVING", "SERVING"], "one message per change");
    watch.cancel();
    await noWatchLeft();
  });

  test("Watch of an unknown service sends SERVICE_UNKNOWN and stays open until the client leaves", async () => {
    const watch = client.watch("authlink.v1.NoSuchService");
    await eventually("the first message", () => watch.statuses.length > 0);
    assert.deepEqual(watch.statuses, ["SERVICE_UNKNOWN"]);
    const known = client.watch(ADMIN_SERVICE);
    await eventually("a known service's watch", () => known.statuses.length > 0);
    assert.deepEqual(known.statuses, ["SERVING"]);
    assert.equal(watch.ended(), false, "the unknown service's watch is still open");
    assert.deepEqual(watch.statuses, ["SERVICE_UNKNOWN"]);
    watch.cancel();
    known.cancel();
    await noWatchLeft();
  });

  test("/healthz and /readyz over HTTP/1.1", async () => {
    const live = await fetch(`${servers.httpUrl}/healthz`);
    assert.equal(live.status, 200);
    assert.equal(await live.text(), "ok\n");
    assert.equal(live.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(live.headers.get("cache-control"), "no-store");

    const ready = await fetch(`${servers.httpUrl}/readyz?verbose`);
    assert.equal(ready.status, 200);
    assert.equal(await ready.text(), "ready\n");
    assert.equal(ready.headers.get("cache-control"), "no-store");

    const head = await fetch(`${servers.httpUrl}/readyz`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), "6");
    assert.equal(await head.text(), "");
    assert.deepEqual(servers.passedOn, []);
  });

  test("/readyz is 503 while the database is cut; /healthz stays 200", async (t) => {
    const restoreDatabase = await cutDatabase(t);
    await eventually("503", async () => {
      const res = await fetch(`${servers.httpUrl}/readyz`);
      const body = await res.text();
      return res.status === 503 && body === "not ready\n";
    });
    const live = await fetch(`${servers.httpUrl}/healthz`);
    assert.equal(live.status, 200);
    assert.equal(await live.text(), "ok\n");
    await restoreDatabase();
    await eventually("200 again", async () => (await fetch(`${servers.httpUrl}/readyz`).then((r) => r.text())) === "ready\n");
  });

  test("other methods on the probe paths are 405; other paths are passed on", async () => {
    for (const path of ["/healthz", "/readyz"]) {
      const res = await fetch(`${servers.httpUrl}${path}`, { method: "POST", body: "x" });
      assert.equal(res.status, 405);
      assert.equal(res.headers.get("allow"), "GET, HEAD");
      await res.body?.cancel();
    }
    const other = await fetch(`${servers.httpUrl}/healthzz`);
    await other.body?.cancel();
    assert.equal(other.status, 404, "the Connect router answers what the probes declined");
    const rpc = await fetch(`${servers.httpUrl}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(rpc.status, 200);
    assert.deepEqual(await rpc.json(), { status: "SERVING" });
    assert.deepEqual(servers.passedOn, ["/healthzz", "/grpc.health.v1.Health/Check"]);
  });

  test("/readyz over HTTP/2 (the same handler on an h2c server)", async (t) => {
    const session = http2.connect(`http://${servers.h2Address}`);
    t.after(() => session.close());
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const stream = session.request({ ":method": "GET", ":path": "/readyz" });
      let status = 0;
      let body = "";
      stream.on("response", (headers) => (status = Number(headers[":status"])));
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => (body += chunk));
      stream.on("end", () => resolve({ status, body }));
      stream.on("error", reject);
    });
    assert.equal(status, 200);
    assert.equal(body, "ready\n");
  });
});

describe("graceful shutdown", () => {
  test("markShuttingDown: /readyz 503, Check NOT_SERVING and Watch told at once; /healthz still 200", async (t) => {
    const readiness = createReadiness({ ping: pingMongo });
    // A long watch interval: the change must come from the subscription, not a poll.
    const servers = await startHealthServers(readiness, 60_000);
    t.after(() => servers.close());
    const client = healthClient(servers.h2Address);
    t.after(() => client.close());

    assert.equal(await client.check(""), "SERVING");
    assert.equal((await fetch(`${servers.httpUrl}/readyz`)).status, 200);
    const watch = client.watch("");
    t.after(() => watch.cancel());
    await eventually("the first message", () => watch.statuses.length > 0);

    readiness.markShuttingDown();
    const ready = await fetch(`${servers.httpUrl}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(await ready.text(), "not ready\n");
    assert.equal(await client.check(""), "NOT_SERVING");
    assert.equal(await client.check(ADMIN_SERVICE), "NOT_SERVING");
    await eventually("NOT_SERVING pushed", () => watch.statuses.length === 2, 2_000);
    assert.deepEqual(watch.statuses, ["SERVING", "NOT_SERVING"]);
    const live = await fetch(`${servers.httpUrl}/healthz`);
    assert.equal(live.status, 200);
    await live.body?.cancel();
  });
});
