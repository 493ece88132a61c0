import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { after, before, describe, test } from "node:test";
import * as protoLoader from "@grpc/proto-loader";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import * as reflectionV1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { Code, connectClient, grpc, grpcJsClient, grpcJsReason, rejection, type GrpcJsMessage } from "../support/clients.js";
import { linkParams } from "../support/links.js";
import { GRPC_JS_LISTENER, GRPC_LISTENERS, grpcAddressOf, grpcUrlOf, startTestServer, type GrpcListener, type TestServer } from "../support/test-server.js";

// The grpc-js listener (AUTHLINK_GRPC_ADDR) against the main port: the same
// answers byte for byte, the same audit trail and metrics (protocol
// "grpc-js"), health and reflection, and a graceful shutdown. The behaviour
// both listeners share runs against both in the other e2e tests
// (adversarial, single-use, protocols, malformed, tls).

let server: TestServer;

before(async () => {
  server = await startTestServer({ env: { ...GRPC_JS_LISTENER, AUTHLINK_METRICS_ADDR: "127.0.0.1:0" } });
});
after(() => server.close());

/** A grpc-js call that must fail, with what came back. */
async function failed(call: Promise<GrpcJsMessage>): Promise<grpc.ServiceError> {
  return call.then(
    () => assert.fail("the call succeeded"),
    (error: unknown) => error as grpc.ServiceError,
  );
}

/** A grpc-js client of a listener, closed when the file's tests are done. */
const clientOf = (listener: GrpcListener, key?: string) => {
  const client = grpcJsClient(grpcAddressOf(server, listener), { key });
  after(() => client.close());
  return client;
};

const wire = (error: grpc.ServiceError) => ({
  code: error.code,
  message: error.details,
  statusDetails: (error.metadata.get("grpc-status-details-bin")[0] as Buffer | undefined)?.toString("base64"),
});

describe("audit, logs and metrics", () => {
  const scrape = async () => (await fetch(`${server.metricsUrl}/metrics`)).text();
  const sample = (text: string, name: string, labels: Record<string, string>) => {
    for (const line of text.split("\n")) {
      if (!line.startsWith(`${name}{`)) continue;
      if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(" ") + 1));
    }
    return 0;
  };

  // (Before the tests below refuse more calls from this address: repeated refusals are coalesced.)
  test("a refusal is audited with the caller and the reason", async () => {
    const client = grpcJsClient(grpcAddressOf(server, "grpc-js"), { key: "w".repeat(48) });
    after(() => client.close());
    const metadata = new grpc.Metadata();
    metadata.set("x-request-id", "grpcjs-refused-1");
    const error = await failed(client.generateLink({ type: "LINK_TYPE_MAGICLINK", email: "refused@example.com" }, metadata));
    assert.equal(grpcJsReason(error), "credentials_invalid");
    assert.equal(error.metadata.get("x-request-id")[0], "grpcjs-refused-1");
    const logged = server.logs
      .map((l) => JSON.parse(l) as { msg: string; requestId?: string; audit?: { outcome: string; caller: string } })
      .filter((l) => l.requestId === "grpcjs-refused-1" && l.audit);
    assert.deepEqual(logged.map((l) => [l.audit?.caller, l.audit?.outcome]), [["unknown", "credentials_invalid"]]);
  });

  test("a call is audited and logged under its request id; metrics count it as protocol grpc-js", async () => {
    const before = await scrape();
    const admin = connectClient(grpcUrlOf(server, "grpc-js"), { protocol: "grpc", key: server.serviceKey });
    let header: string | null = null;
    const generated = await admin.generateLink(
      { type: LinkType.MAGICLINK, email: "audited-grpcjs@example.com" },
      { headers: { "x-request-id": "grpcjs-ticket-1" }, onHeader: (h) => (header = h.get("x-request-id")) },
    );
    assert.equal(header, "grpcjs-ticket-1");
    const token = linkParams(generated.actionLink).get("token") ?? "";
    await admin.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
    await rejection(connectClient(grpcUrlOf(server, "grpc-js"), { protocol: "grpc" }).generateLink({ type: LinkType.MAGICLINK, email: "x@example.com" }));

    const events = await server.store.audit.find({ email: "audited-grpcjs@example.com" }, 10);
    assert.deepEqual(
      events.map((e) => [e.method, e.outcome, e.clientAddress]).sort(),
      [
        ["GenerateLink", "ok", "127.0.0.1"],
        ["VerifyLink", "ok", "127.0.0.1"],
      ],
    );
    assert.ok(events.some((e) => e.requestId === "grpcjs-ticket-1"));
    const logged = server.logs.map((l) => JSON.parse(l) as { msg: string; requestId?: string }).filter((l) => l.requestId === "grpcjs-ticket-1");
    assert.deepEqual(logged.map((l) => l.msg), ["call"]);

    const after = await scrape();
    const moved = (labels: Record<string, string>) =>
      sample(after, "authlink_rpc_requests_total", labels) - sample(before, "authlink_rpc_requests_total", labels);
    assert.equal(moved({ method: "GenerateLink", protocol: "grpc-js", code: "OK" }), 1);
    assert.equal(moved({ method: "VerifyLink", protocol: "grpc-js", code: "OK" }), 1);
    assert.equal(moved({ method: "GenerateLink", protocol: "grpc-js", code: "UNAUTHENTICATED" }), 1);
    assert.equal(moved({ method: "GenerateLink", protocol: "grpc", code: "OK" }), 0, "not counted as the main port's gRPC");
  });
});

describe("the same answers on both listeners", () => {
  const cases: [string, (listener: GrpcListener) => Promise<GrpcJsMessage>][] = [
    ["an unknown token", (l) => clientOf(l).verifyLink({ type: "LINK_TYPE_MAGICLINK", token: "A".repeat(43) })],
    [
      "several bad fields at once (BadRequest)",
      (l) =>
        clientOf(l, server.serviceKey).generateLink({
          type: "LINK_TYPE_INVITE",
          email: "not an email",
          password: "x",
          new_email: "y@example.com",
        }),
    ],
    ["no credential", (l) => clientOf(l).generateLink({ type: "LINK_TYPE_MAGICLINK", email: "a@example.com" })],
    ["a wrong key", (l) => clientOf(l, "k".repeat(48)).generateLink({ type: "LINK_TYPE_MAGICLINK", email: "a@example.com" })],
    ["a message over AUTHLINK_MAX_REQUEST_BYTES", (l) => clientOf(l).previewLink({ type: "LINK_TYPE_MAGICLINK", token: "x".repeat(70_000) })],
    ["a string that is not UTF-8 (a lone surrogate)", (l) => clientOf(l).verifyLink({ type: "LINK_TYPE_MAGICLINK", token: "a\ud800b" })],
    ["a user that does not exist", (l) => clientOf(l, server.serviceKey).generateLink({ type: "LINK_TYPE_RECOVERY", email: "ghost@example.com" })],
  ];
  for (const [name, call] of cases) {
    test(`${name}: status, message and grpc-status-details-bin are identical`, async () => {
      const [main, second] = await Promise.all(GRPC_LISTENERS.map(async (listener) => wire(await failed(call(listener)))));
      assert.ok(main?.statusDetails, "the main port sends a google.rpc.Status");
      assert.deepEqual(second, main);
    });
  }

  test("a successful answer decodes the same (generated code on one side, proto-loader on the other)", async () => {
    const answers = await Promise.all(
      GRPC_LISTENERS.map(async (listener) => {
        const client = grpcJsClient(grpcAddressOf(server, listener), { key: server.serviceKey });
        try {
          return await client.generateLink({ type: "LINK_TYPE_INVITE", email: `same-${listener}@example.com`, data: { fields: { plan: { stringValue: "pro" } } } });
        } finally {
          client.close();
        }
      }),
    );
    const shape = (answer: GrpcJsMessage | undefined) => ({
      type: answer?.verification_type,
      metadata: (answer?.user as { user_metadata?: unknown } | undefined)?.user_metadata,
      otp: /^\d{6}$/.test(String(answer?.email_otp)),
    });
    assert.deepEqual(shape(answers[1]), shape(answers[0]));
  });
});

describe("health and reflection", () => {
  const healthProto = `${dirname(createRequire(import.meta.url).resolve("grpc-health-check/package.json"))}/proto`;
  const loaded = grpc.loadPackageDefinition(
    protoLoader.loadSync("health/v1/health.proto", { includeDirs: [healthProto], enums: String }),
  ) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  const check = (service: string) =>
    new Promise<string>((resolve, reject) => {
      const client = new loaded.grpc.health.v1.Health(grpcAddressOf(server, "grpc-js"), grpc.credentials.createInsecure());
      (client as unknown as { check: (r: object, cb: (e: grpc.ServiceError | null, r: { status: string }) => void) => void }).check(
        { service },
        (error, response) => {
          client.close();
          if (error) reject(error);
          else resolve(response.status);
        },
      );
    });

  test("grpc.health.v1 Check (grpc-js client): SERVING; an unknown service is NOT_FOUND", async () => {
    assert.equal(await check(""), "SERVING");
    assert.equal(await check("authlink.v1.AdminAuthService"), "SERVING");
    const error = await check("no.such.Service").then(() => undefined, (e: grpc.ServiceError) => e);
    assert.equal(error?.code, grpc.status.NOT_FOUND);
  });

  test("server reflection lists the same services as on the main port", async () => {
    const list = async (listener: GrpcListener) => {
      const client = createClient(reflectionV1.ServerReflection, createGrpcTransport({ baseUrl: grpcUrlOf(server, listener) }));
      async function* one() {
        yield { messageRequest: { case: "listServices" as const, value: "" } };
      }
      for await (const answer of client.serverReflectionInfo(one())) {
        if (answer.messageResponse.case === "listServicesResponse") return answer.messageResponse.value.service.map((s) => s.name).sort();
      }
      return [];
    };
    const [main, second] = await Promise.all(GRPC_LISTENERS.map(list));
    assert.ok(main?.includes("authlink.v1.AdminAuthService"), String(main));
    assert.deepEqual(second, main);
  });
});

describe("graceful shutdown", () => {
  test("readiness turns NOT_SERVING for a watcher, the listener stops, close() returns within the grace period", async () => {
    const closing = await startTestServer({ env: { ...GRPC_JS_LISTENER, AUTHLINK_SHUTDOWN_TIMEOUT: "1s" } });
    const baseUrl = grpcUrlOf(closing, "grpc-js");
    const health = createClient(Health, createGrpcTransport({ baseUrl }));
    const controller = new AbortController();
    const seen: ServingStatus[] = [];
    const watching = (async () => {
      try {
        for await (const answer of health.watch({ service: "" }, { signal: controller.signal })) {
          seen.push(answer.status);
          if (answer.status === ServingStatus.NOT_SERVING) controller.abort();
        }
      } catch {
        // ended by the abort above or by the shutdown
      }
    })();
    while (seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    const started = performance.now();
    await closing.close();
    assert.ok(performance.now() - started < 5_000, "close() honours the grace period");
    await watching;
    assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    const error = await rejection(connectClient(baseUrl, { protocol: "grpc" }).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: "A".repeat(43) } }));
    assert.equal(error.code, Code.Unavailable, error.message);
  });
});
