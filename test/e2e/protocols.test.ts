import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import {
  Code,
  connectClient,
  grpc,
  grpcJsClient,
  grpcJsReason,
  reasonOf,
  rejection,
  webClient,
  type AdminClient,
} from "../support/clients.js";
import { linkParams } from "../support/links.js";
import { useTestDatabase } from "../support/mongo.js";
import { GRPC_JS_LISTENER, GRPC_LISTENERS, grpcAddressOf, grpcUrlOf, startTestServer, type TestServer } from "../support/test-server.js";

// Every protocol and client stack authlink promises, over real sockets, on the
// MongoDB store: generate a link, redeem it, and read a typed error back.

const database = await useTestDatabase("protocols");
let server: TestServer;

before(async () => {
  server = await startTestServer({ database, env: GRPC_JS_LISTENER });
});
after(() => server.close());

const stacks: [string, (key?: string | null) => AdminClient][] = [
  ["connect-node gRPC over HTTP/2 (h2c)", (key) => connectClient(server.url, { protocol: "grpc", key })],
  ["connect-node Connect JSON over HTTP/1.1", (key) => connectClient(server.url, { protocol: "connect", key })],
  [
    "connect-node Connect binary over HTTP/2",
    (key) => connectClient(server.url, { protocol: "connect", httpVersion: "2", useBinaryFormat: true, key }),
  ],
  ["connect-node gRPC-Web over HTTP/1.1", (key) => connectClient(server.url, { protocol: "grpcweb", key })],
  ["connect-web (fetch) Connect JSON", (key) => webClient(server.url, key ?? undefined)],
  ["connect-node gRPC to the grpc-js listener", (key) => connectClient(grpcUrlOf(server, "grpc-js"), { protocol: "grpc", key })],
];

for (const [name, makeClient] of stacks) {
  describe(name, () => {
    test("generates a magic link and redeems it once by token", async () => {
      const client = makeClient(server.serviceKey);
      const email = `${name.replace(/[^a-z0-9]/gi, "").toLowerCase()}@example.com`;
      const generated = await client.generateLink({ type: LinkType.MAGICLINK, email, redirectTo: "https://app.example.com/home" });
      assert.equal(generated.verificationType, LinkType.MAGICLINK);
      assert.equal(generated.user?.email, email);
      assert.match(generated.emailOtp, /^\d{6}$/);
      assert.match(generated.hashedToken, /^[0-9a-f]{64}$/);
      const link = new URL(generated.actionLink);
      assert.equal(link.origin, "https://auth.example.com");
      assert.equal(link.pathname, "/verify");
      assert.equal(link.search, "", "nothing secret in the query: the parameters travel in the fragment");
      const params = linkParams(generated.actionLink);
      assert.equal(params.get("type"), "magiclink");
      assert.equal(params.get("redirect_to"), "https://app.example.com/home");
      const token = params.get("token") ?? "";

      const anonymous = makeClient(null);
      const verified = await anonymous.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
      assert.equal(verified.user?.id, generated.user?.id);
      assert.ok(verified.user?.emailConfirmedAt, "a redeemed magic link confirms the address");
      assert.equal(verified.redirectTo, "https://app.example.com/home");

      const again = await rejection(anonymous.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } }));
      assert.equal(again.code, Code.PermissionDenied);
      assert.equal(reasonOf(again), "link_invalid_or_expired");
    });

    test("GenerateLink without a key is UNAUTHENTICATED with a reason", async () => {
      const error = await rejection(makeClient(null).generateLink({ type: LinkType.MAGICLINK, email: "x@example.com" }));
      assert.equal(error.code, Code.Unauthenticated);
      assert.equal(reasonOf(error), "credentials_missing");
    });
  });
}

for (const listener of GRPC_LISTENERS) {
describe(`@grpc/grpc-js with @grpc/proto-loader, ${listener} listener`, () => {
  test("generates by signup and redeems by email and code", async () => {
    const email = `grpc.js-${listener}@example.com`;
    const client = grpcJsClient(grpcAddressOf(server, listener), { key: server.serviceKey });
    after(() => client.close());
    const generated = await client.generateLink({
      type: "LINK_TYPE_SIGNUP",
      email: email.replace("grpc.js", "Grpc.JS").replace("example", "Example"),
      password: "a long enough passphrase",
      data: { fields: { plan: { stringValue: "pro" } } },
    });
    assert.equal(generated.verification_type, "LINK_TYPE_SIGNUP");
    const user = generated.user as Record<string, unknown>;
    assert.equal(user.email, email);
    assert.equal(user.email_confirmed_at, null);

    const anonymous = grpcJsClient(grpcAddressOf(server, listener));
    after(() => anonymous.close());
    const verified = await anonymous.verifyLink({
      type: "LINK_TYPE_SIGNUP",
      email_otp: { email, otp: generated.email_otp },
    });
    assert.ok((verified.user as Record<string, unknown>).email_confirmed_at);
  });

  test("errors carry the reason in grpc-status-details-bin", async () => {
    const client = grpcJsClient(grpcAddressOf(server, listener), { key: server.serviceKey });
    after(() => client.close());
    const error = (await client
      .generateLink({ type: "LINK_TYPE_RECOVERY", email: "nobody@example.com" })
      .then(() => assert.fail("expected NOT_FOUND"), (e: unknown) => e)) as grpc.ServiceError;
    assert.equal(error.code, grpc.status.NOT_FOUND);
    assert.equal(grpcJsReason(error), "user_not_found");
  });


  test("the request id: the caller's own is echoed in the answer's headers, on errors too; a malformed one is replaced", async () => {
    const client = connectClient(grpcUrlOf(server, listener), { protocol: "grpc", key: server.serviceKey });
    let echoed: string | null = null;
    await client.generateLink(
      { type: LinkType.MAGICLINK, email: `request-id-${listener}@example.com` },
      { headers: { "x-request-id": `ticket-${listener}` }, onHeader: (headers) => (echoed = headers.get("x-request-id")) },
    );
    assert.equal(echoed, `ticket-${listener}`);
    const error = await rejection(
      client.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: "A".repeat(43) } }, { headers: { "x-request-id": "ticket-4711" } }),
    );
    assert.equal(reasonOf(error), "link_invalid_or_expired");
    assert.equal(error.metadata.get("x-request-id"), "ticket-4711");
    const replaced = await rejection(
      client.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: "A".repeat(43) } }, { headers: { "x-request-id": "x".repeat(200) } }),
    );
    assert.match(replaced.metadata.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
  });
});
}
