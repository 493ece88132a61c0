import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, createContextValues, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { AdminAuthService } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { createAuditTrail } from "../../src/audit/audit-trail.js";
import { AccessPolicies, contractPolicy, explicitPolicy } from "../../src/call/access-policy.js";
import { createCallBoundary } from "../../src/call/call-boundary.js";
import { systemClock } from "../../src/domain/clock.js";
import { AuthlinkError } from "../../src/domain/errors.js";
import { createServiceKeyMatcher } from "../../src/identity/service-keys.js";
import { Secret } from "../../src/crypto/secret.js";
import { callOf, peerKey } from "../../src/rpc/context-values.js";
import { createCallAdapter } from "../../src/rpc/call-adapter.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { startHttpServer, type RunningHttpServer } from "../../src/server/http-server.js";

// The call boundary on its own, mounted on connect-node with services made for
// the test: a server stream that fails after its first message, one that
// finishes, a handler that outlives the server's call cap, and a service no
// policy names. Every protocol, over real sockets.

const store = createMemoryStore();
const { logger, lines } = createCapturedLogger();
const audit = createAuditTrail({ store: store.audit, logger, retentionMs: 3_600_000 });
/** What the boundary told the metrics, in order: "start Method protocol" and "end Method CODE". */
const observed: string[] = [];
const KEY = "k".repeat(40);
let endsSeenAfterFirstMessage: string[] | undefined;

/** Health's descriptors, with behaviour made for the test. */
const testHealth: ServiceImpl<typeof Health> = {
  async check(request, context) {
    const call = callOf(context);
    if (request.service === "slow") {
      // Waits for the call's own signal: only the server's cap can end it.
      await new Promise((_, reject) => call.signal.addEventListener("abort", () => reject(call.signal.reason)));
    }
    if (request.service === "crash") throw new Error("driver said: secret-ish internals at 10.0.0.7");
    return { status: Status.SERVING };
  },
  async *watch(request, context) {
    yield { status: Status.SERVING };
    // Once the first message has gone out, the call is still running.
    endsSeenAfterFirstMessage = observed.filter((o) => o.startsWith("end"));
    if (request.service === "fail") {
      throw new AuthlinkError("over_rate_limit", { retryAfterMs: 2_000 });
    }
    if (request.service === "slow") {
      // Only the stream cap can end it.
      const { signal } = callOf(context);
      await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
    }
    yield { status: Status.NOT_SERVING };
  },
  async list() {
    return { statuses: {} };
  },
};

let server: RunningHttpServer;

before(async () => {
  const policies = new AccessPolicies()
    .add(Health, explicitPolicy({ Check: "public", Watch: "public" })) // List: named nowhere → denied
    .add(AdminAuthService, contractPolicy);
  const boundary = createCallBoundary({
    policies,
    callers: { keys: createServiceKeyMatcher([new Secret(KEY)]), serviceIdentities: new Set() },
    maxCallDurationMs: 200,
    maxStreamDurationMs: 1_000,
    audit,
    clock: systemClock,
    logger,
    observe: (method, protocol) => {
      observed.push(`start ${method} ${protocol}`);
      return (code) => observed.push(`end ${method} ${code}`);
    },
  });
  const adapter = createCallAdapter(boundary);
  const handler = connectNodeAdapter({
    routes: (router) => {
      router.service(Health, testHealth, adapter);
      router.service(AdminAuthService, {
        generateLink: () => {
          throw new Error("not reached without the service role");
        },
        verifyLink: () => {
          throw new Error("not used");
        },
      }, adapter);
    },
    contextValues: (req) => createContextValues().set(peerKey, { certificate: { presented: false }, clientAddress: req.socket.remoteAddress ?? "" }),
  });
  server = await startHttpServer(handler, { host: "127.0.0.1", port: 0, tls: undefined });
});
after(async () => {
  await server.close(1_000);
  audit.close();
});

const protocols = {
  "gRPC (HTTP/2)": () => createGrpcTransport({ baseUrl: server.url }),
  "Connect (HTTP/1.1)": () => createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }),
  "gRPC-Web (HTTP/1.1)": () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1" }),
};

for (const [name, transport] of Object.entries(protocols)) {
  describe(`streaming through the boundary: ${name}`, () => {
    test("an error thrown after the first message keeps its code and reason; metrics see it only at the end", async () => {
      const client = createClient(Health, transport());
      const received: Status[] = [];
      observed.length = 0;
      endsSeenAfterFirstMessage = undefined;
      let failure: ConnectError | undefined;
      try {
        for await (const message of client.watch({ service: "fail" })) {
          received.push(message.status);
        }
      } catch (error) {
        failure = ConnectError.from(error);
      }
      assert.deepEqual(received, [Status.SERVING]);
      assert.deepEqual(endsSeenAfterFirstMessage, [], "not ended (nor reported OK) when the first message went out");
      assert.equal(failure?.code, Code.ResourceExhausted);
      assert.equal(failure?.findDetails(ErrorInfoSchema)[0]?.reason, "over_rate_limit");
      assert.match(failure?.metadata.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/, "the request id travels with the error");
      assert.deepEqual(observed.filter((o) => o.startsWith("end")), ["end Watch RESOURCE_EXHAUSTED"]);
    });

    test("a stream that finishes ends OK after its last message", async () => {
      const client = createClient(Health, transport());
      observed.length = 0;
      const received: Status[] = [];
      for await (const message of client.watch({ service: "" })) received.push(message.status);
      assert.deepEqual(received, [Status.SERVING, Status.NOT_SERVING]);
      assert.deepEqual(observed.filter((o) => o.startsWith("end")), ["end Watch OK"]);
    });
  });
}

describe("unary calls through the boundary", () => {
  const client = () => createClient(Health, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));

  test("a method its service's policy does not name is denied to everyone", async () => {
    const error = await client().list({}).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(error?.code, Code.PermissionDenied);
    assert.equal(error?.findDetails(ErrorInfoSchema)[0]?.reason, "method_not_exposed");
  });

  test("the server's cap ends a call the client gave no deadline: DEADLINE_EXCEEDED", async () => {
    const started = Date.now();
    const error = await client().check({ service: "slow" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(error?.code, Code.DeadlineExceeded);
    assert.equal(error?.findDetails(ErrorInfoSchema)[0]?.reason, "deadline_exceeded");
    assert.ok(Date.now() - started < 5_000);
  });

  test("a streamed answer runs under the stream cap, not the unary one, and ends by it", async () => {
    const started = Date.now();
    const seen: Status[] = [];
    const error = await (async () => {
      for await (const message of client().watch({ service: "slow" })) seen.push(message.status);
    })().then(() => undefined, (e: unknown) => ConnectError.from(e));
    const took = Date.now() - started;
    assert.deepEqual(seen, [Status.SERVING]);
    assert.equal(error?.code, Code.DeadlineExceeded);
    assert.ok(took >= 900, `ended after ${took} ms: the unary cap (200 ms) must not apply to a stream`);
    assert.ok(took < 10_000, `ended after ${took} ms`);
  });

  test("an unexpected error is a bare INTERNAL; its text stays in the log, under the request id", async () => {
    const error = await client().check({ service: "crash" }, { headers: { "x-request-id": "ticket-4711" } }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(error?.code, Code.Internal);
    assert.doesNotMatch(error?.message ?? "", /driver|10\.0\.0\.7/);
    assert.equal(error?.metadata.get("x-request-id"), "ticket-4711");
    const logged = lines.map((l) => JSON.parse(l) as { requestId?: string; msg: string }).find((l) => l.msg === "call failed unexpectedly");
    assert.equal(logged?.requestId, "ticket-4711");
  });

  test("a well-formed x-request-id is echoed; an oversized or malformed one is replaced, never echoed", async () => {
    const idOf = async (header: string | undefined) => {
      let id: string | null = null;
      await client().check({ service: "" }, {
        headers: header === undefined ? {} : { "x-request-id": header },
        onHeader: (h) => (id = h.get("x-request-id")),
      });
      return id as string | null;
    };
    assert.equal(await idOf("req-2026.11.25:abc_1"), "req-2026.11.25:abc_1");
    for (const bad of ["x".repeat(200), "a b", "id\"}{\"admin\":true", "é"]) {
      const id = await idOf(bad);
      assert.notEqual(id, bad);
      assert.match(id ?? "", /^[0-9a-f-]{36}$/);
    }
    assert.match((await idOf(undefined)) ?? "", /^[0-9a-f-]{36}$/);
  });

  test("refusals of an audited service are audited; calls to an unaudited one leave no event", async () => {
    const admin = createClient(AdminAuthService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const error = await admin.generateLink({}, { headers: { "x-request-id": "refused-1" } }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(error?.code, Code.Unauthenticated);
    const events = await store.audit.find({}, 1_000);
    const refused = events.filter((e) => e.requestId === "refused-1");
    assert.deepEqual(refused.map((e) => [e.method, e.outcome, e.caller]), [["GenerateLink", "credentials_missing", "anonymous"]]);
    assert.ok(events.every((e) => e.method !== "Check" && e.method !== "Watch"), "health calls are not audited");
  });
});

describe("no state shared between calls", () => {
  test("concurrent calls on one connection each see their own Call", async () => {
    // 50 calls at once over one HTTP/1.1 keep-alive agent and over one HTTP/2
    // session: every answer carries the request id its own request sent.
    for (const transport of [protocols["gRPC (HTTP/2)"](), protocols["Connect (HTTP/1.1)"]()]) {
      const client = createClient(Health, transport);
      const ids = Array.from({ length: 50 }, (_, i) => `concurrent-${i}`);
      const echoed = await Promise.all(
        ids.map(async (id) => {
          let seen: string | null = null;
          await client.check({ service: "" }, { headers: { "x-request-id": id }, onHeader: (h) => (seen = h.get("x-request-id")) });
          return seen as string | null;
        }),
      );
      assert.deepEqual(echoed, ids);
    }
  });
});
