import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import {
  BulkLinkRowSchema,
  StreamGenerateLinksRequestSchema,
  type BulkLinkResult,
  type BulkLinkRow,
  type StreamGenerateLinksRequest,
} from "../../gen/authlink/v1/link_admin_service_pb.js";
import { Code, connectClient, grpc, grpcJsReason, reasonOf, rejection } from "../support/clients.js";
import { grpcJsLinkAdminClient, linkAdminClient, type GrpcJsMessage, type Wire } from "../support/link-admin-clients.js";
import { linkParams } from "../support/links.js";
import { useTestDatabase } from "../support/mongo.js";
import { GRPC_JS_LISTENER, grpcAddressOf, startTestServer, type TestServer } from "../support/test-server.js";

// BulkGenerateLinks and StreamGenerateLinks end to end, on MongoDB (FerretDB)
// and on the embedded store, over real sockets: every protocol that can carry
// each method (and what happens over one that cannot), per-row errors, links
// that really redeem, a resend replayed link for link with nothing issued
// twice, the race for one key across 20 calls, the row cap, the refusals, a
// long stream on HTTP/2 past the request deadline, and the grpc-js listener
// with a real @grpc/grpc-js client.

const database = await useTestDatabase("bulk_generation");

let emailCounter = 0;
const email = (label: string) => `${label}-${++emailCounter}-${Date.now().toString(36)}@example.com`;
let keyCounter = 0;
const key = (label: string) => `${label}-${++keyCounter}-${Date.now().toString(36)}`;

const rowOf = (idempotencyKey: string, address: string, type = LinkType.MAGICLINK): BulkLinkRow =>
  create(BulkLinkRowSchema, { idempotencyKey, request: { type, email: address } });

async function collect(results: AsyncIterable<{ result?: BulkLinkResult | undefined }>): Promise<BulkLinkResult[]> {
  const all: BulkLinkResult[] = [];
  for await (const response of results) if (response.result) all.push(response.result);
  return all.sort((a, b) => a.index - b.index);
}

async function* streamOf(rows: readonly BulkLinkRow[]): AsyncGenerator<StreamGenerateLinksRequest> {
  for (const row of rows) yield create(StreamGenerateLinksRequestSchema, { row });
}

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    let server: TestServer;
    /** FerretDB issues ~30 links/s here: keep its batches small. */
    const streamRows = backend === "MongoDB" ? 100 : 2_000;

    before(async () => {
      server = await startTestServer({
        database: backend === "MongoDB" ? database : undefined,
        env: { ...GRPC_JS_LISTENER, AUTHLINK_CONN_HEADERS_TIMEOUT: "500ms", AUTHLINK_CONN_REQUEST_TIMEOUT: "1s" },
      });
    });
    after(() => server.close());

    const client = (wire: Wire, serviceKey: string | null = server.serviceKey) => linkAdminClient(server.url, wire, serviceKey);
    const verifier = () => connectClient(server.url, { protocol: "connect", key: server.serviceKey });
    /** Links issued for this address by bulk rows (the audit trail's "ok" events: one per issue). */
    const issuesFor = async (address: string) =>
      (await server.store.audit.find({ email: address }, 1_000)).filter((e) => e.outcome === "ok" && e.method.endsWith("GenerateLinks")).length;

    for (const wire of ["grpc", "grpcweb/1.1", "grpcweb/2", "connect/1.1", "connect/2"] as const) {
      test(`BulkGenerateLinks over ${wire}: a bad address fails its row only; the others are issued and redeem; a resend replays every link`, async () => {
        const addresses = [email("one"), "not-an-address", email("three")];
        const rows = addresses.map((address) => rowOf(key("row"), address));
        const results = await collect(client(wire).bulkGenerateLinks({ rows }));
        assert.deepEqual(results.map((r) => [r.index, r.idempotencyKey, r.result.case]), [
          [0, rows[0]!.idempotencyKey, "link"],
          [1, rows[1]!.idempotencyKey, "error"],
          [2, rows[2]!.idempotencyKey, "link"],
        ]);
        const bad = results[1]!.result;
        assert.equal(bad.case, "error");
        assert.equal(bad.value.code, Code.InvalidArgument);
        assert.equal(bad.value.reason, "validation_failed");
        assert.deepEqual(bad.value.fieldViolations.map((v) => v.field), ["email"]);
        for (const i of [0, 2]) {
          const link = results[i]!.result;
          assert.equal(link.case, "link");
          assert.equal(results[i]!.replayed, false);
          assert.equal(link.value.user?.email, addresses[i]);
          const verified = await verifier().verifyLink({
            type: LinkType.MAGICLINK,
            credential: { case: "token", value: linkParams(link.value.actionLink).get("token") ?? "" },
          });
          assert.equal(verified.user?.email, addresses[i], "the link redeems");
        }

        const again = await collect(client(wire).bulkGenerateLinks({ rows }));
        for (const i of [0, 2]) {
          const [first, second] = [results[i]!.result, again[i]!.result];
          assert.equal(second.case, "link");
          assert.equal(again[i]!.replayed, true);
          assert.equal(second.value.hashedToken, first.case === "link" ? first.value.hashedToken : "", "the same link");
          assert.equal(second.value.actionLink, "", "no secret comes back");
          assert.equal(second.value.emailOtp, "");
          assert.equal(second.value.verificationType, LinkType.MAGICLINK);
          assert.equal(second.value.user?.email, addresses[i]);
          assert.deepEqual(second.value.expiresAt, first.case === "link" ? first.value.expiresAt : undefined);
          assert.equal(await issuesFor(addresses[i]!), 1, "issued once");
        }
        assert.equal(again[1]!.result.case, "error", "the bad row fails again");
      });
    }

    test("the race: one key in 20 concurrent calls issues exactly one link; the rest are replayed or ABORTED in use", async () => {
      const address = email("race");
      const raceKey = key("race");
      const results = (
        await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            collect(client(i % 2 === 0 ? "grpc" : "connect/2").bulkGenerateLinks({ rows: [rowOf(raceKey, address)] })),
          ),
        )
      ).flat();
      const issued = results.filter((r) => r.result.case === "link" && !r.replayed);
      assert.equal(issued.length, 1, JSON.stringify(results.map((r) => [r.result.case, r.replayed])));
      const hash = issued[0]!.result.case === "link" ? issued[0]!.result.value.hashedToken : "";
      for (const result of results) {
        if (result.result.case === "link") assert.equal(result.result.value.hashedToken, hash);
        else if (result.result.case === "error") {
          assert.equal(result.result.value.code, Code.Aborted);
          assert.equal(result.result.value.reason, "idempotency_key_in_use");
          assert.ok(result.result.value.retryDelay, "a retry delay");
        }
      }
      assert.equal(await issuesFor(address), 1);
    });

    test("1,001 rows: INVALID_ARGUMENT for the request, nothing issued", async () => {
      // Small rows, so that the request stays under AUTHLINK_MAX_REQUEST_BYTES (64 KiB).
      const address = `c${++emailCounter}@x.io`;
      const rows = Array.from({ length: 1_001 }, (_, i) => rowOf(`c${i}`, address));
      for (const wire of ["grpc", "connect/1.1"] as const) {
        const error = await rejection(collect(client(wire).bulkGenerateLinks({ rows })));
        assert.equal(error.code, Code.InvalidArgument, wire);
        assert.equal(reasonOf(error), "validation_failed");
      }
      assert.equal(await issuesFor(address), 0);
    });

    test("a row without an idempotency key, or with a bad one, is that row's INVALID_ARGUMENT", async () => {
      const rows = [rowOf("", email("nokey")), rowOf("x".repeat(201), email("long")), rowOf("new\nline", email("nl")), rowOf(key("good"), email("good"))];
      const results = await collect(client("grpc").bulkGenerateLinks({ rows }));
      for (const result of results.slice(0, 3)) {
        if (result.result.case !== "error") assert.fail(`row ${result.index} did not fail`);
        assert.equal(result.result.value.code, Code.InvalidArgument);
        assert.deepEqual(result.result.value.fieldViolations.map((v) => v.field), ["idempotency_key"]);
      }
      assert.equal(results[3]!.result.case, "link");
    });

    test("refusals: no key is UNAUTHENTICATED credentials_missing, a wrong key credentials_invalid, for both methods; nothing issued", async () => {
      const address = email("refused");
      const rows = [rowOf(key("refused"), address)];
      for (const [serviceKey, reason] of [[null, "credentials_missing"], ["x".repeat(48), "credentials_invalid"]] as const) {
        for (const wire of ["grpc", "connect/1.1"] as const) {
          const error = await rejection(collect(client(wire, serviceKey).bulkGenerateLinks({ rows })));
          assert.equal(error.code, Code.Unauthenticated, `${wire} ${reason}`);
          assert.equal(reasonOf(error), reason);
        }
        const error = await rejection(collect(client("grpc", serviceKey).streamGenerateLinks(streamOf(rows))));
        assert.equal(error.code, Code.Unauthenticated);
        assert.equal(reasonOf(error), reason);
      }
      assert.equal(await issuesFor(address), 0);
    });

    for (const wire of ["grpc", "connect/2", "grpcweb/2"] as const) {
      test(`StreamGenerateLinks over ${wire}: ${streamRows} rows streamed, each answered once, with its index`, async () => {
        const count = wire === "grpc" ? streamRows : Math.min(streamRows, 200);
        const rows = Array.from({ length: count }, (_, i) => rowOf(key(`s${i}`), email("stream")));
        const results = await collect(client(wire).streamGenerateLinks(streamOf(rows)));
        assert.equal(results.length, count);
        results.forEach((result, i) => {
          assert.equal(result.index, i);
          assert.equal(result.idempotencyKey, rows[i]!.idempotencyKey);
          assert.equal(result.result.case, "link", `row ${i}: ${result.result.case === "error" ? `${result.result.value.reason} ${result.result.value.message}` : ""}`);
        });
        const replayed = await collect(client(wire).streamGenerateLinks(streamOf(rows.slice(0, 10))));
        assert.ok(replayed.every((r) => r.replayed), "resent rows are replayed");
      });
    }

    test("StreamGenerateLinks over HTTP/1.1 (Connect, gRPC-Web) fails at once with a clear error instead of hanging", async () => {
      for (const wire of ["connect/1.1", "grpcweb/1.1"] as const) {
        const started = Date.now();
        const error = await rejection(collect(client(wire).streamGenerateLinks(streamOf([rowOf(key("h1"), email("h1"))]))));
        assert.ok(Date.now() - started < 5_000, `${wire} answered in ${Date.now() - started} ms`);
        // connect-node's router answers HTTP 505 (and closes the connection)
        // before any handler; the client reads it as UNKNOWN "HTTP 505".
        assert.equal(error.code, Code.Unknown, `${wire}: ${Code[error.code]} ${error.rawMessage}`);
        assert.match(error.rawMessage, /505/);
      }
    });

    test("a client stream that outlasts the request deadline (1 s here) is not cut on HTTP/2", async () => {
      const rows = Array.from({ length: 6 }, (_, i) => rowOf(key(`slow${i}`), email("slow")));
      async function* slowly() {
        for (const row of rows) {
          yield create(StreamGenerateLinksRequestSchema, { row });
          await new Promise((resolve) => setTimeout(resolve, 400));
        }
      }
      const results = await collect(client("grpc").streamGenerateLinks(slowly()));
      assert.equal(results.length, rows.length);
      assert.ok(results.every((r) => r.result.case === "link"));
    });

    for (const listener of ["connect-node", "grpc-js"] as const) {
      test(`a @grpc/grpc-js client on the ${listener} listener: BulkGenerateLinks and StreamGenerateLinks, refusal without a key`, async () => {
        const grpcJs = grpcJsLinkAdminClient(grpcAddressOf(server, listener), server.serviceKey);
        const anonymous = grpcJsLinkAdminClient(grpcAddressOf(server, listener), null);
        try {
          const plainRow = (idempotencyKey: string, address: string): GrpcJsMessage => ({
            idempotency_key: idempotencyKey,
            request: { type: "LINK_TYPE_MAGICLINK", email: address },
          });
          const addresses = [email("gj"), "bad address", email("gj")];
          const rows = addresses.map((address) => plainRow(key("gj"), address));
          const bulk = (await grpcJs.bulkGenerateLinks({ rows })).map((m) => m.result as GrpcJsMessage);
          bulk.sort((a, b) => Number(a.index) - Number(b.index));
          assert.deepEqual(bulk.map((r) => r.result), ["link", "error", "link"]);
          assert.equal((bulk[1]!.error as GrpcJsMessage).code, Code.InvalidArgument);

          const count = backend === "MongoDB" ? 30 : 300;
          const streamed = Array.from({ length: count }, () => plainRow(key("gjs"), email("gjs")));
          const results = (await grpcJs.streamGenerateLinks(streamed)).map((m) => m.result as GrpcJsMessage);
          assert.equal(results.length, count);
          assert.deepEqual(
            results.map((r) => Number(r.index)).sort((a, b) => a - b),
            Array.from({ length: count }, (_, i) => i),
          );
          assert.ok(results.every((r) => r.result === "link"));
          const again = (await grpcJs.streamGenerateLinks(streamed.slice(0, 5))).map((m) => m.result as GrpcJsMessage);
          assert.ok(again.every((r) => r.replayed === true));

          for (const call of [() => anonymous.bulkGenerateLinks({ rows }), () => anonymous.streamGenerateLinks(rows)]) {
            const error = (await call().then(
              () => assert.fail("a call without a key succeeded"),
              (e: unknown) => e,
            )) as grpc.ServiceError;
            assert.equal(error.code, grpc.status.UNAUTHENTICATED);
            assert.equal(grpcJsReason(error), "credentials_missing");
          }
        } finally {
          grpcJs.close();
          anonymous.close();
        }
      });
    }
  });
}
