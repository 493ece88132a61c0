import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { describe, test } from "node:test";
import { calculateJwkThumbprint, type JWK } from "jose";
import { ConfigError, loadConfig, parseSigningKey, withBoundPort, type Config } from "../../src/config/config.js";
import { createAssertionSigner } from "../../src/crypto/assertion-signer.js";

// AUTHLINK_SIGNING_KEYS: PEM or JWK files of Ed25519 or EC P-256 private
// keys; the first signs, all are published. Files are served from memory.

function files(contents: Record<string, string>): (path: string) => Buffer {
  return (path) => {
    const content = contents[path];
    if (content === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
    return Buffer.from(content);
  };
}

function load(env: Record<string, string>, contents: Record<string, string> = {}): Config {
  return loadConfig(env, { readFile: files(contents) });
}

function problemsOf(env: Record<string, string>, contents: Record<string, string> = {}): string[] {
  try {
    load(env, contents);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return [...error.problems];
  }
  assert.fail("the configuration was accepted");
}

function onlyProblem(path: string, content: string | undefined): string {
  const problems = problemsOf({ AUTHLINK_SIGNING_KEYS: path }, content === undefined ? {} : { [path]: content });
  assert.equal(problems.length, 1, problems.join("\n"));
  const [text = ""] = problems;
  assert.ok(text.startsWith("AUTHLINK_SIGNING_KEYS: "), text);
  return text;
}

const pem = (key: KeyObject, type: "pkcs8" | "spki" | "sec1" | "pkcs1" = "pkcs8") => key.export({ type, format: "pem" }) as string;
const jwk = (key: KeyObject) => JSON.stringify(key.export({ format: "jwk" }));

describe("AUTHLINK_SIGNING_KEYS", () => {
  test("unset: one Ed25519 key is generated, and says so", () => {
    const { assertions } = load({});
    assert.equal(assertions.generated, true);
    assert.equal(assertions.keys.length, 1);
    assert.equal(assertions.keys[0]?.alg, "EdDSA");
    assert.notEqual(load({}).assertions.keys[0]?.kid, assertions.keys[0]?.kid, "a new key per process");
  });

  test("two files: the first signs, both are published", async () => {
    const ed = generateKeyPairSync("ed25519").privateKey;
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    const { assertions } = load(
      { AUTHLINK_SIGNING_KEYS: "/keys/new.pem, /keys/old.jwk" },
      { "/keys/new.pem": pem(ec, "sec1"), "/keys/old.jwk": JSON.stringify({ ...ed.export({ format: "jwk" }), kid: "2024-01" }) },
    );
    assert.equal(assertions.generated, false);
    assert.deepEqual(
      assertions.keys.map((k) => [k.alg, k.kid]),
      [
        ["ES256", await calculateJwkThumbprint(ec.export({ format: "jwk" }) as JWK)],
        ["EdDSA", "2024-01"],
      ],
    );
    const signer = createAssertionSigner({ keys: assertions.keys, issuer: "https://a.example", audience: "https://a.example", ttlMs: 60_000 });
    assert.deepEqual(
      signer.jwks().keys.map((k) => k.kid),
      assertions.keys.map((k) => k.kid),
    );
  });

  test("a PEM key's id is its RFC 7638 thumbprint", async () => {
    const ed = generateKeyPairSync("ed25519").privateKey;
    const key = parseSigningKey(Buffer.from(pem(ed)));
    assert.ok(typeof key !== "string", String(key));
    assert.equal(key.kid, await calculateJwkThumbprint(ed.export({ format: "jwk" }) as JWK));
  });

  test("a file that cannot be read", () => {
    assert.match(onlyProblem("/keys/missing.pem", undefined), /cannot read \/keys\/missing\.pem: ENOENT/);
  });

  test("a public key only, as PEM or JWK", () => {
    const { publicKey } = generateKeyPairSync("ed25519");
    assert.match(onlyProblem("/k.pem", pem(publicKey, "spki")), /public key/);
    assert.match(onlyProblem("/k.jwk", jwk(publicKey)), /public key/);
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
    assert.match(onlyProblem("/ec.pem", pem(ec, "spki")), /public key/);
    assert.match(onlyProblem("/ec.jwk", jwk(ec)), /public key/);
  });

  test("a key of the wrong kind: RSA, P-384, X25519", () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
    assert.match(onlyProblem("/rsa.pem", pem(rsa, "pkcs1")), /rsa key; use Ed25519 or EC P-256/);
    assert.match(onlyProblem("/rsa.jwk", jwk(rsa)), /rsa key; use Ed25519 or EC P-256/);
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
    assert.match(onlyProblem("/p384.pem", pem(p384)), /secp384r1.*use Ed25519 or EC P-256/);
    const x25519 = generateKeyPairSync("x25519").privateKey;
    assert.match(onlyProblem("/x.pem", pem(x25519)), /x25519 key/);
  });

  test("garbage", () => {
    for (const content of ["", "not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "{", '{"kty":"OKP","crv":"Ed25519","d":"x"}']) {
      assert.match(onlyProblem("/g", content), /not a PEM or JWK private key/, JSON.stringify(content));
    }
  });

  test("an EC JWK whose public part is another key's", () => {
    const mine = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" });
    assert.match(onlyProblem("/mixed.jwk", JSON.stringify({ ...mine, x: other.x, y: other.y })), /does not match/);
  });

  test("a certificate in the same file as its private key", () => {
    const ed = generateKeyPairSync("ed25519").privateKey;
    const certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const key = parseSigningKey(Buffer.from(certificate + pem(ed)));
    assert.ok(typeof key !== "string", String(key));
    assert.match(onlyProblem("/cert.pem", certificate), /certificate/);
  });

  test("the same key twice", () => {
    const ed = pem(generateKeyPairSync("ed25519").privateKey);
    const problems = problemsOf({ AUTHLINK_SIGNING_KEYS: "/a.pem,/b.pem" }, { "/a.pem": ed, "/b.pem": ed });
    assert.deepEqual(problems, ["AUTHLINK_SIGNING_KEYS: two keys have the same key id"]);
  });

  test("every bad file is named, not only the first", () => {
    const problems = problemsOf({ AUTHLINK_SIGNING_KEYS: "/a,/b" }, { "/a": "junk" });
    assert.equal(problems.length, 2);
    assert.match(problems[0] ?? "", /^AUTHLINK_SIGNING_KEYS: \/a: /);
    assert.match(problems[1] ?? "", /^AUTHLINK_SIGNING_KEYS: cannot read \/b/);
  });
});

describe("assertion audience and lifetime", () => {
  test("defaults: the public URL without its trailing slash, 5 minutes", () => {
    const config = load({ AUTHLINK_PUBLIC_URL: "https://auth.example.com/base/" });
    assert.equal(config.assertions.audience, "https://auth.example.com/base");
    assert.equal(config.assertions.ttlMs, 300_000);
  });

  test("the default audience follows the port actually bound", () => {
    const bound = withBoundPort(load({ AUTHLINK_ADDR: "127.0.0.1:0" }), 43_210);
    assert.equal(bound.links.publicUrl.href, "http://127.0.0.1:43210/");
    assert.equal(bound.assertions.audience, "http://127.0.0.1:43210");
    const configured = withBoundPort(load({ AUTHLINK_ADDR: "127.0.0.1:0", AUTHLINK_ASSERTION_AUDIENCE: "https://app.example.com" }), 43_210);
    assert.equal(configured.assertions.audience, "https://app.example.com");
  });

  test("a configured audience and lifetime; a lifetime out of bounds is refused", () => {
    const config = load({ AUTHLINK_ASSERTION_AUDIENCE: "https://app.example.com", AUTHLINK_ASSERTION_TTL: "2m" });
    assert.equal(config.assertions.audience, "https://app.example.com");
    assert.equal(config.assertions.ttlMs, 120_000);
    assert.match(problemsOf({ AUTHLINK_ASSERTION_TTL: "1s" })[0] ?? "", /^AUTHLINK_ASSERTION_TTL: /);
    assert.match(problemsOf({ AUTHLINK_ASSERTION_TTL: "2h" })[0] ?? "", /^AUTHLINK_ASSERTION_TTL: /);
  });
});
