import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createRemoteJWKSet, decodeJwt, jwtVerify } from "jose";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { connectClient, grpcJsClient } from "../support/clients.js";
import { linkParams } from "../support/links.js";
import { useTestDatabase } from "../support/mongo.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// The proof of redemption end to end: VerifyLink answers a JWT that a relying
// backend verifies against authlink's published JWKS, with the claims the
// README promises, for a link, a code and an email change — on MongoDB.

const database = await useTestDatabase("assertion");
let server: TestServer;

before(async () => {
  server = await startTestServer({ database, env: { AUTHLINK_ASSERTION_AUDIENCE: "https://app.example.com" } });
});
after(() => server.close());

const tokenOf = (actionLink: string) => linkParams(actionLink).get("token") ?? "";

async function verifyAsRelyingBackend(assertion: string) {
  const jwks = createRemoteJWKSet(new URL(`${server.url}/.well-known/jwks.json`));
  return jwtVerify(assertion, jwks, { issuer: "https://auth.example.com", audience: "https://app.example.com" });
}

describe("assertion", () => {
  test("a magic link redeemed by its token: verifiable, with the documented claims and nothing secret", async () => {
    const admin = connectClient(server.url, { key: server.serviceKey });
    const generated = await admin.generateLink({ type: LinkType.MAGICLINK, email: "proof@example.com" });
    const token = tokenOf(generated.actionLink);
    const verified = await connectClient(server.url).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
    const { payload, protectedHeader } = await verifyAsRelyingBackend(verified.assertion);
    assert.equal(protectedHeader.alg, "EdDSA");
    assert.equal(payload.sub, verified.user?.id);
    assert.equal(payload.email, "proof@example.com");
    assert.equal(payload.email_verified, true);
    assert.deepEqual(payload.amr, ["magiclink"]);
    assert.equal(payload.authlink_type, "magiclink");
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 300);
    assert.equal(Number(verified.assertionExpiresAt?.seconds), payload.exp);
    assert.deepEqual(Object.keys(payload).sort(), ["amr", "aud", "authlink_type", "email", "email_verified", "exp", "iat", "iss", "jti", "sub"]);
    for (const secret of [token, generated.emailOtp, generated.hashedToken, server.serviceKey]) {
      assert.ok(!verified.assertion.includes(secret) && !JSON.stringify(payload).includes(secret));
    }
  });

  test("redeemed by code: amr otp; every redemption has its own jti; grpc-js callers get it too", async () => {
    const admin = connectClient(server.url, { key: server.serviceKey });
    const generated = await admin.generateLink({ type: LinkType.MAGICLINK, email: "code-proof@example.com" });
    const grpcJs = grpcJsClient(new URL(server.url).host);
    try {
      const verified = await grpcJs.verifyLink({
        type: "LINK_TYPE_MAGICLINK",
        email_otp: { email: "code-proof@example.com", otp: generated.emailOtp },
      });
      const { payload } = await verifyAsRelyingBackend(String(verified.assertion));
      assert.deepEqual(payload.amr, ["otp"]);
      const again = await admin.generateLink({ type: LinkType.MAGICLINK, email: "code-proof@example.com" });
      const second = await connectClient(server.url).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: tokenOf(again.actionLink) } });
      assert.notEqual(decodeJwt(second.assertion).jti, payload.jti);
    } finally {
      grpcJs.close();
    }
  });

  test("a secure email change: pending after the first address, complete with old and new after the second", async () => {
    const admin = connectClient(server.url, { key: server.serviceKey });
    await admin.generateLink({ type: LinkType.MAGICLINK, email: "old-address@example.com" });
    const change = await admin.generateLink({ type: LinkType.EMAIL_CHANGE, email: "old-address@example.com", newEmail: "new-address@example.com" });
    const anyone = connectClient(server.url);
    const first = await anyone.verifyLink({ type: LinkType.EMAIL_CHANGE, credential: { case: "token", value: tokenOf(change.actionLink) } });
    const pending = (await verifyAsRelyingBackend(first.assertion)).payload;
    assert.equal(pending.email, "old-address@example.com");
    assert.equal(pending.authlink_email_change, "pending");
    assert.equal(pending.authlink_new_email, "new-address@example.com");
    const second = await anyone.verifyLink({
      type: LinkType.EMAIL_CHANGE,
      credential: { case: "token", value: tokenOf(change.currentEmailConfirmation?.actionLink ?? "") },
    });
    const complete = (await verifyAsRelyingBackend(second.assertion)).payload;
    assert.equal(complete.email, "new-address@example.com");
    assert.equal(complete.authlink_old_email, "old-address@example.com");
    assert.equal(complete.authlink_new_email, "new-address@example.com");
    assert.equal(complete.authlink_email_change, "complete");
  });

  test("a wrong audience or a forged signature is refused by the relying backend", async () => {
    const admin = connectClient(server.url, { key: server.serviceKey });
    const generated = await admin.generateLink({ type: LinkType.MAGICLINK, email: "forged@example.com" });
    const verified = await connectClient(server.url).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: tokenOf(generated.actionLink) } });
    const jwks = createRemoteJWKSet(new URL(`${server.url}/.well-known/jwks.json`));
    await assert.rejects(jwtVerify(verified.assertion, jwks, { issuer: "https://auth.example.com", audience: "https://other.example.com" }));
    const [header, payload] = verified.assertion.split(".");
    const tampered = JSON.parse(Buffer.from(payload ?? "", "base64url").toString()) as Record<string, unknown>;
    tampered.email = "admin@example.com";
    const forged = `${header}.${Buffer.from(JSON.stringify(tampered)).toString("base64url")}.${verified.assertion.split(".")[2]}`;
    await assert.rejects(jwtVerify(forged, jwks, { issuer: "https://auth.example.com", audience: "https://app.example.com" }));
  });
});
