import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { linkParams } from "../support/links.js";
import { Code, connectClient, grpcJsClient, reasonOf, rejection } from "../support/clients.js";
import { useTestDatabase } from "../support/mongo.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

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

test("50 concurrent VerifyLink calls on one token: exactly one succeeds", async () => {
  const { token } = await magicLink("race-token@example.com");
  // Spread the calls over separate connections and protocols so they really run in parallel.
  const clients = Array.from({ length: 10 }, (_, i) =>
    connectClient(server.url, { protocol: i % 2 === 0 ? "grpc" : "connect" }),
  );
  const outcomes = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      clients[i % clients.length]!
        .verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } })
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

test("50 concurrent redemptions mixing the token and the code: exactly one succeeds", async () => {
  const { generated, token } = await magicLink("race-mixed@example.com");
  const client = grpcJsClient(`127.0.0.1:${server.port}`);
  after(() => client.close());
  const outcomes = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      client
        .verifyLink(
          i % 2 === 0
            ? { type: "LINK_TYPE_MAGICLINK", token }
            : { type: "LINK_TYPE_MAGICLINK", email_otp: { email: "race-mixed@example.com", otp: generated.emailOtp } },
        )
        .then(
          () => "ok",
          () => "denied",
        ),
    ),
  );
  assert.equal(outcomes.filter((o) => o === "ok").length, 1, outcomes.join(","));
});

test("OTP attempt exhaustion under concurrency: 40 parallel wrong codes, then the right code is refused", async () => {
  const { generated } = await magicLink("race-guess@example.com");
  const client = connectClient(server.url, { protocol: "grpc" });
  const right = Number(generated.emailOtp);
  const wrong = Array.from({ length: 40 }, (_, i) => String((right + 1 + i) % 1_000_000).padStart(6, "0"));
  const outcomes = await Promise.all(
    wrong.map((otp) =>
      client
        .verifyLink({ type: LinkType.MAGICLINK, credential: { case: "emailOtp", value: { email: "race-guess@example.com", otp } } })
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
      credential: { case: "emailOtp", value: { email: "race-guess@example.com", otp: generated.emailOtp } },
    }),
  );
  assert.equal(reasonOf(error), "link_invalid_or_expired");
});
