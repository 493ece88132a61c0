import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { Code, connectClient, grpc, grpcJsClient, grpcJsReason, reasonOf, rejection } from "../support/clients.js";
import { linkParams } from "../support/links.js";
import { GRPC_JS_LISTENER, grpcUrlOf, startTestServer, type TestServer } from "../support/test-server.js";

// The grpc-js listener (AUTHLINK_GRPC_ADDR) on its own: what only it has.
// The behaviour both listeners share runs against both in the other e2e tests.

let server: TestServer;

before(async () => {
  server = await startTestServer({ env: { ...GRPC_JS_LISTENER, AUTHLINK_METRICS_ADDR: "127.0.0.1:0" } });
});
after(() => server.close());

describe("smoke", () => {
  test("generate and verify over grpc-js and connect-node's gRPC client", async () => {
    const client = grpcJsClient(server.grpcAddress ?? "", { key: server.serviceKey });
    after(() => client.close());
    const generated = await client.generateLink({ type: "LINK_TYPE_MAGICLINK", email: "smoke@example.com" });
    const token = linkParams(generated.action_link as string).get("token") ?? "";
    const connect = connectClient(grpcUrlOf(server, "grpc-js"), { protocol: "grpc" });
    const verified = await connect.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
    assert.equal(verified.user?.email, "smoke@example.com");
    const again = await rejection(connect.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } }));
    assert.equal(again.code, Code.PermissionDenied);
    assert.equal(reasonOf(again), "link_invalid_or_expired");
    const anon = grpcJsClient(server.grpcAddress ?? "");
    after(() => anon.close());
    const error = (await anon.generateLink({ type: "LINK_TYPE_MAGICLINK", email: "x@example.com" }).catch((e: unknown) => e)) as grpc.ServiceError;
    assert.equal(error.code, grpc.status.UNAUTHENTICATED);
    assert.equal(grpcJsReason(error), "credentials_missing");
  });
});
