import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, test } from "node:test";
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from "jose";
import { parseSigningKey, type SigningKey } from "../../src/config/config.js";
import { createAssertionSigner, type AssertionSigner } from "../../src/crypto/assertion-signer.js";
import type { RedemptionProof } from "../../src/domain/assertion.js";
import { LINK_TYPES } from "../../src/domain/link-type.js";
import { createJwksHandler } from "../../src/web/jwks.js";

const ISSUER = "https://auth.example.com";
const AUDIENCE = "https://app.example.com";
const TTL_MS = 300_000;

// Keys go through the configuration's parser, from the formats operators use.
function ed25519Key(format: "pem" | "jwk" = "pem"): SigningKey {
  const { privateKey } = generateKeyPairSync("ed25519");
  return parsed(format === "pem" ? privateKey.export({ type: "pkcs8", format: "pem" }) : JSON.stringify(privateKey.export({ format: "jwk" })));
}

function p256Key(format: "pem" | "jwk" = "pem"): SigningKey {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return parsed(format === "pem" ? privateKey.export({ type: "sec1", format: "pem" }) : JSON.stringify(privateKey.export({ format: "jwk" })));
}

function parsed(content: string | Buffer): SigningKey {
  const key = parseSigningKey(Buffer.from(content));
  assert.ok(typeof key !== "string", `parseSigningKey: ${String(key)}`);
  return key;
}

function signer(keys: readonly SigningKey[], overrides: { issuer?: string; audience?: string; ttlMs?: number } = {}): AssertionSigner {
  return createAssertionSigner({ keys, issuer: ISSUER, audience: AUDIENCE, ttlMs: TTL_MS, ...overrides });
}

const servers: http.Server[] = [];
after(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A real HTTP server publishing the signer's keys the way the service does; its JWKS URL. */
async function publish(source: AssertionSigner, options: { basePath?: string } = {}): Promise<string> {
  const handler = createJwksHandler(source, options);
  const server = http.createServer((req, res) => {
    res.setHeader("cache-control", "no-store"); // as the service's handler does first
    if (!handler(req, res)) {
      res.statusCode = 404;
      res.end();
    }
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}${(options.basePath ?? "").replace(/\/$/, "")}/.well-known/jwks.json`;
}

async function fetchText(url: string, method = "GET"): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(url, { method });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

const MAGICLINK_BY_LINK: RedemptionProof = {
  userId: "5f0c7a52-4f3e-4d7e-9a55-0d1c9f5e8a11",
  email: "ada@example.com",
  emailVerified: true,
  linkType: "magiclink",
  method: "link",
};

const DOCUMENTED_CLAIMS = ["iss", "sub", "aud", "iat", "exp", "jti", "email", "email_verified", "amr", "authlink_type"];
const EMAIL_CHANGE_CLAIMS = ["authlink_old_email", "authlink_new_email", "authlink_email_change"];

describe("assertion signer", () => {
  test("an assertion verifies against the published JWKS, with every claim", async () => {
    const key = ed25519Key();
    const s = signer([key]);
    const jwks = createRemoteJWKSet(new URL(await publish(s)));
    const now = new Date();
    const { assertion, expiresAt } = await s.issue(MAGICLINK_BY_LINK, now);

    const { payload, protectedHeader } = await jwtVerify(assertion, jwks, { issuer: ISSUER, audience: AUDIENCE });
    assert.deepEqual(protectedHeader, { alg: "EdDSA", kid: key.kid, typ: "JWT" });
    const iat = Math.floor(now.getTime() / 1000);
    assert.deepEqual(payload, {
      iss: ISSUER,
      sub: MAGICLINK_BY_LINK.userId,
      aud: AUDIENCE,
      iat,
      exp: iat + TTL_MS / 1000,
      jti: payload.jti,
      email: "ada@example.com",
      email_verified: true,
      amr: ["magiclink"],
      authlink_type: "magiclink",
    });
    assert.match(String(payload.jti), /^[A-Za-z0-9_-]{22}$/, "128 bits, base64url");
    assert.equal(expiresAt.getTime(), (iat + TTL_MS / 1000) * 1000);
  });

  test("amr: magiclink by link, otp by code, email for the other types by link", async () => {
    const s = signer([ed25519Key()]);
    const expected: Record<string, { link: string; code: string }> = {
      magiclink: { link: "magiclink", code: "otp" },
      signup: { link: "email", code: "otp" },
      invite: { link: "email", code: "otp" },
      recovery: { link: "email", code: "otp" },
      email_change: { link: "email", code: "otp" },
    };
    for (const linkType of LINK_TYPES) {
      for (const method of ["link", "code"] as const) {
        const { assertion } = await s.issue({ ...MAGICLINK_BY_LINK, linkType, method }, new Date());
        const payload = decodeJwt(assertion);
        assert.deepEqual(payload.amr, [expected[linkType]?.[method]], `${linkType} by ${method}`);
        assert.equal(payload.authlink_type, linkType);
      }
    }
  });

  test("email change: the old and new address, complete or pending", async () => {
    const s = signer([ed25519Key()]);
    const complete = decodeJwt(
      (
        await s.issue(
          {
            ...MAGICLINK_BY_LINK,
            email: "new@example.com",
            linkType: "email_change",
            emailChange: { previousEmail: "old@example.com", newEmail: "new@example.com", pending: false },
          },
          new Date(),
        )
      ).assertion,
    );
    assert.equal(complete.email, "new@example.com");
    assert.equal(complete.authlink_old_email, "old@example.com");
    assert.equal(complete.authlink_new_email, "new@example.com");
    assert.equal(complete.authlink_email_change, "complete");
    assert.deepEqual(Object.keys(complete).sort(), [...DOCUMENTED_CLAIMS, ...EMAIL_CHANGE_CLAIMS].sort());

    const pending = decodeJwt(
      (
        await s.issue(
          {
            ...MAGICLINK_BY_LINK,
            email: "old@example.com",
            linkType: "email_change",
            method: "code",
            emailChange: { previousEmail: "old@example.com", newEmail: "new@example.com", pending: true },
          },
          new Date(),
        )
      ).assertion,
    );
    assert.equal(pending.email, "old@example.com");
    assert.equal(pending.authlink_email_change, "pending");
    assert.deepEqual(pending.amr, ["otp"]);
  });

  test("email_verified false is carried as false", async () => {
    const s = signer([ed25519Key()]);
    const payload = decodeJwt((await s.issue({ ...MAGICLINK_BY_LINK, emailVerified: false, linkType: "recovery" }, new Date())).assertion);
    assert.equal(payload.email_verified, false);
  });

  test("expiry: exp - iat is the ttl, and a verification past exp fails", async () => {
    const s = signer([ed25519Key()], { ttlMs: 90_000 });
    const jwks = createRemoteJWKSet(new URL(await publish(s)));
    const now = new Date();
    const { assertion, expiresAt } = await s.issue(MAGICLINK_BY_LINK, now);
    const payload = decodeJwt(assertion);
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 90);
    assert.equal(expiresAt.getTime(), (payload.exp ?? 0) * 1000);

    const options = { issuer: ISSUER, audience: AUDIENCE };
    await jwtVerify(assertion, jwks, { ...options, currentDate: new Date(expiresAt.getTime() - 1_000) });
    await assert.rejects(jwtVerify(assertion, jwks, { ...options, currentDate: expiresAt }), { code: "ERR_JWT_EXPIRED" });
    await assert.rejects(jwtVerify(assertion, jwks, { ...options, currentDate: new Date(expiresAt.getTime() + 60_000) }), {
      code: "ERR_JWT_EXPIRED",
    });
  });

  test("the wrong audience or issuer fails", async () => {
    const s = signer([ed25519Key()]);
    const jwks = createRemoteJWKSet(new URL(await publish(s)));
    const { assertion } = await s.issue(MAGICLINK_BY_LINK, new Date());
    await assert.rejects(jwtVerify(assertion, jwks, { issuer: ISSUER, audience: "https://other.example.com" }), {
      code: "ERR_JWT_CLAIM_VALIDATION_FAILED",
      claim: "aud",
    });
    await assert.rejects(jwtVerify(assertion, jwks, { issuer: "https://evil.example.com", audience: AUDIENCE }), {
      code: "ERR_JWT_CLAIM_VALIDATION_FAILED",
      claim: "iss",
    });
  });

  test("a signature by a key that is not published fails", async () => {
    const published = signer([ed25519Key()]);
    const jwks = createRemoteJWKSet(new URL(await publish(published)));
    const { assertion } = await signer([ed25519Key()]).issue(MAGICLINK_BY_LINK, new Date());
    await assert.rejects(jwtVerify(assertion, jwks, { issuer: ISSUER, audience: AUDIENCE }), { code: "ERR_JWKS_NO_MATCHING_KEY" });
  });

  test("key rotation: assertions of the old key verify while it is published, and not after", async () => {
    const k1 = ed25519Key("jwk");
    const k2 = p256Key("jwk");
    const options = { issuer: ISSUER, audience: AUDIENCE };

    const a = signer([k1]);
    const t1 = (await a.issue(MAGICLINK_BY_LINK, new Date())).assertion;
    assert.equal(decodeProtectedHeader(t1).kid, k1.kid);

    const b = signer([k2, k1]); // k2 signs now, k1 still published
    const t2 = (await b.issue(MAGICLINK_BY_LINK, new Date())).assertion;
    assert.deepEqual(decodeProtectedHeader(t2), { alg: "ES256", kid: k2.kid, typ: "JWT" });
    const jwksB = createRemoteJWKSet(new URL(await publish(b)));
    assert.equal((await jwtVerify(t1, jwksB, options)).protectedHeader.kid, k1.kid);
    assert.equal((await jwtVerify(t2, jwksB, options)).protectedHeader.kid, k2.kid);

    const c = signer([k2]); // k1 retired
    const jwksC = createRemoteJWKSet(new URL(await publish(c)));
    await assert.rejects(jwtVerify(t1, jwksC, options), { code: "ERR_JWKS_NO_MATCHING_KEY" });
    await jwtVerify(t2, jwksC, options);
  });

  test("an ES256 key from PEM (SEC1) signs and verifies", async () => {
    const key = p256Key("pem");
    assert.equal(key.alg, "ES256");
    const s = signer([key]);
    const jwks = createRemoteJWKSet(new URL(await publish(s)));
    const { assertion } = await s.issue({ ...MAGICLINK_BY_LINK, method: "code" }, new Date());
    const { payload, protectedHeader } = await jwtVerify(assertion, jwks, { issuer: ISSUER, audience: AUDIENCE, algorithms: ["ES256"] });
    assert.equal(protectedHeader.alg, "ES256");
    assert.deepEqual(payload.amr, ["otp"]);
  });

  test("jti is unique across 1,000 assertions", async () => {
    const s = signer([ed25519Key()]);
    const now = new Date();
    const jtis = new Set<unknown>();
    for (let i = 0; i < 1_000; i++) jtis.add(decodeJwt((await s.issue(MAGICLINK_BY_LINK, now)).assertion).jti);
    assert.equal(jtis.size, 1_000);
  });

  test("the JWKS holds the public parts of every key and never a private member", async () => {
    const ed = ed25519Key("jwk");
    const ec = p256Key("pem");
    const s = signer([ed, ec]);
    const set = s.jwks();
    assert.deepEqual(Object.keys(set), ["keys"]);
    const [first, second] = set.keys;
    const edJwk = ed.privateKey.export({ format: "jwk" });
    const ecJwk = ec.privateKey.export({ format: "jwk" });
    assert.deepEqual(first, { kty: "OKP", crv: "Ed25519", x: edJwk.x, kid: ed.kid, alg: "EdDSA", use: "sig" });
    assert.deepEqual(second, { kty: "EC", crv: "P-256", x: ecJwk.x, y: ecJwk.y, kid: ec.kid, alg: "ES256", use: "sig" });

    // Served, the same: and no private value anywhere in the document.
    const served = await fetchText(await publish(s));
    assert.deepEqual(JSON.parse(served.body), set);
    for (const jwk of JSON.parse(served.body).keys as Record<string, unknown>[]) {
      for (const member of ["d", "p", "q", "dp", "dq", "qi", "k", "oth"]) assert.equal(member in jwk, false, member);
    }
    for (const privateValue of [edJwk.d, ecJwk.d]) assert.ok(privateValue && !served.body.includes(privateValue));

    // A copy each time: a caller cannot change what is published.
    (set.keys[0] as Record<string, unknown>).d = "x";
    assert.equal("d" in (s.jwks().keys[0] ?? {}), false);
  });

  test("an assertion holds the documented claims only, and no secret", async () => {
    const key = ed25519Key();
    const s = signer([key]);
    for (const method of ["link", "code"] as const) {
      const { assertion } = await s.issue({ ...MAGICLINK_BY_LINK, method }, new Date());
      const payload: JWTPayload = decodeJwt(assertion);
      assert.deepEqual(Object.keys(payload).sort(), [...DOCUMENTED_CLAIMS].sort());
      assert.deepEqual(Object.keys(decodeProtectedHeader(assertion)).sort(), ["alg", "kid", "typ"]);
      const d = key.privateKey.export({ format: "jwk" }).d;
      assert.ok(d && !Buffer.from(assertion.split(".")[1] ?? "", "base64url").toString().includes(d));
    }
  });

  test("bad options are refused when the signer is made", () => {
    assert.throws(() => signer([]), /at least one signing key/);
    const key = ed25519Key();
    assert.throws(() => signer([key, key]), /same kid/);
    assert.throws(() => signer([key], { ttlMs: 999 }), /ttlMs/);
    assert.throws(() => signer([key], { audience: "" }), /audience/);
  });
});

describe("JWKS endpoint", () => {
  test("GET and HEAD: the key set, cacheable briefly, readable from any origin", async () => {
    const s = signer([ed25519Key()]);
    const url = await publish(s);
    const get = await fetchText(url);
    assert.equal(get.status, 200);
    assert.equal(get.headers.get("content-type"), "application/jwk-set+json");
    assert.equal(get.headers.get("cache-control"), "public, max-age=300", "overrides the service's no-store");
    assert.equal(get.headers.get("access-control-allow-origin"), "*");
    assert.equal(get.headers.get("content-length"), String(Buffer.byteLength(get.body)));
    assert.deepEqual(JSON.parse(get.body), s.jwks());
    assert.equal((await fetchText(`${url}?x=1`)).status, 200, "a query does not change the path");

    const head = await fetchText(url, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
    assert.equal(head.headers.get("content-length"), get.headers.get("content-length"));
  });

  test("other methods: 405 with Allow; other paths are passed on", async () => {
    const url = await publish(signer([ed25519Key()]));
    for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
      const res = await fetchText(url, method);
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get("allow"), "GET, HEAD");
      assert.equal(res.headers.get("cache-control"), "no-store");
      assert.equal(res.headers.get("access-control-allow-origin"), null);
    }
    const base = url.replace("/.well-known/jwks.json", "");
    for (const path of ["/.well-known/jwks.json/", "/.well-known/jwks", "/jwks.json", "/verify"]) {
      assert.equal((await fetchText(`${base}${path}`)).status, 404, path);
    }
  });

  test("under the public URL's path as well as at the root", async () => {
    const s = signer([ed25519Key()]);
    const url = await publish(s, { basePath: "/auth/" });
    assert.match(url, /\/auth\/\.well-known\/jwks\.json$/);
    assert.equal((await fetchText(url)).status, 200);
    assert.equal((await fetchText(url.replace("/auth", ""))).status, 200);
    assert.equal((await fetchText(url.replace("/auth", "/other"))).status, 404);
    const jwks = createRemoteJWKSet(new URL(url));
    await jwtVerify((await s.issue(MAGICLINK_BY_LINK, new Date())).assertion, jwks, { issuer: ISSUER, audience: AUDIENCE });
  });
});
