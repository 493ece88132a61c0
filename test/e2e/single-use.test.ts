import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { linkParams } from "../support/links.js";
import { Code, connectClient, grpcJsClient, reasonOf, rejection } from "../support/clients.js";
import { useTestDatabase } from "../support/mongo.js";
import { GRPC_JS_LISTENER, GRPC_LISTENERS, grpcAddressOf, grpcUrlOf, startTestServer, type TestServer } from "../support/test-server.js";

// Single use under fire, through the network and MongoDB: many clients redeem
// one link at the same moment and exactly one of them wins.

const database = await useTestDatabase("single_use");
let server: TestServer;

before(async () => {
  server = await startTestServer({
    database,
    // Rate limits would refuse some of these bursts first; here the single-use
    // and attempt-limit mechanisms must hold on their own.
    env: {
      ...GRPC_JS_LISTENER,
      AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "off",
      AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL: "off",
      AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL_AND_CLIENT: "off",
    },
  });
});
after(() => server.close());

async function magicLink(email: string) {
  const generated = await connectClient(server.url, { key: server.serviceKey }).generateLink({
    type: LinkType.MAGICLINK,
    email,
  });
  return { generated, token: linkParams(generated.actionLink).get("token") ?? "" };
}

for (const listener of GRPC_LISTENERS) {
test(`${listener} listener: 50 concurrent VerifyLink calls on one token: exactly one succeeds`, async () => {
  const { token } = await magicLink(`race-token-${listener}@example.com`);
  // Spread the calls over separate connections and protocols so they really run in parallel.
  // (The grpc-js listener serves gRPC only: there, connect-node's gRPC client and grpc-js.)
  const grpcJs = grpcJsClient(grpcAddressOf(server, listener));
  after(() => grpcJs.close());
  const clients = Array.from({ length: 10 }, (_, i) =>
    listener === "connect-node"
      ? connectClient(server.url, { protocol: i % 2 === 0 ? "grpc" : "connect" })
      : connectClient(grpcUrlOf(server, listener), { protocol: "grpc" }),
  );
  const verify = (i: number) =>
    listener === "grpc-js" && i % 2 === 1
      ? grpcJs.verifyLink({ type: "LINK_TYPE_MAGICLINK", token }).catch((error: unknown) => {
          throw Object.assign(new Error(String(error)), { code: (error as { code: number }).code });
        })
      : clients[i % clients.length]!.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
  const outcomes = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      verify(i)
        .then(
          () => "ok",
          (error: unknown) => {
            const e = error as { code: Code };
            return e.code === Code.PermissionDenied ? "denied" : `unexpected ${String(error)}`;
          },
        ),
    ),
  );
  assert.equal(outcomes.filter((o) => o === "ok").length, 1, outcomes.join(","));
  assert.equal(outcomes.filter((o) => o === "denied").length, 49);
});

test(`${listener} listener: 50 concurrent redemptions mixing the token and the code: exactly one succeeds`, async () => {
  const email = `race-mixed-${listener}@example.com`;
  const { generated, token } = await magicLink(email);
  const client = grpcJsClient(grpcAddressOf(server, listener));
  after(() => client.close());
  const outcomes = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      client
        .verifyLink(
          i % 2 === 0
            ? { type: "LINK_TYPE_MAGICLINK", token }
            : { type: "LINK_TYPE_MAGICLINK", email_otp: { email, otp: generated.emailOtp } },
        )
        .then(
          () => "ok",
          () => "denied",
        ),
    ),
  );
  assert.equal(outcomes.filter((o) => o === "ok").length, 1, outcomes.join(","));
});

test(`${listener} listener: OTP attempt exhaustion under concurrency: 40 parallel wrong codes, then the right code is refused; the token still works`, async () => {
  const email = `race-guess-${listener}@example.com`;
  const { generated, token } = await magicLink(email);
  const client = connectClient(grpcUrlOf(server, listener), { protocol: "grpc" });
  const right = Number(generated.emailOtp);
  const wrong = Array.from({ length: 40 }, (_, i) => String((right + 1 + i) % 1_000_000).padStart(6, "0"));
  const outcomes = await Promise.all(
    wrong.map((otp) =>
      client
        .verifyLink({ type: LinkType.MAGICLINK, credential: { case: "emailOtp", value: { email: email, otp } } })
        .then(
          () => "ok",
          (e: unknown) => reasonOf(e as never) ?? String(e),
        ),
    ),
  );
  assert.ok(outcomes.every((o) => o === "link_invalid_or_expired"), outcomes.join(","));
  const error = await rejection(
    client.verifyLink({
      type: LinkType.MAGICLINK,
      credential: { case: "emailOtp", value: { email: email, otp: generated.emailOtp } },
    }),
  );
  assert.equal(reasonOf(error), "link_invalid_or_expired");
  const byToken = await client.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
  assert.equal(byToken.user?.email, email);
});
}
