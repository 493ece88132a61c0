import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { constantTimeEqual } from "../../src/crypto/constant-time.js";
import { hashLinkToken, isWellFormedLinkToken, newLinkToken } from "../../src/crypto/link-token.js";
import { createOtpCodec } from "../../src/crypto/otp.js";
import { createArgon2Hasher, meetsOwaspMinimum, standardPhc } from "../../src/crypto/passwords.js";
import { Secret } from "../../src/crypto/secret.js";
import { createServiceKeyMatcher, serviceKeyIdentity } from "../../src/identity/service-keys.js";

describe("link tokens", () => {
  test("256 bits, base64url, stored as their SHA-256 hex", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const { token, tokenHash } = newLinkToken();
      assert.match(token, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(Buffer.from(token, "base64url").length, 32);
      assert.equal(tokenHash, createHash("sha256").update(token).digest("hex"));
      assert.equal(hashLinkToken(token), tokenHash);
      seen.add(token);
    }
    assert.equal(seen.size, 1000);
    assert.ok(!isWellFormedLinkToken("A".repeat(42)) && !isWellFormedLinkToken(`${"A".repeat(42)}=`) && !isWellFormedLinkToken(`${"A".repeat(42)}/`));
  });
});

describe("one-time codes", () => {
  const secret = new Secret("s".repeat(32));
  test("length 6 to 10", () => {
    assert.throws(() => createOtpCodec(secret, 5), RangeError);
    assert.throws(() => createOtpCodec(secret, 11), RangeError);
    assert.equal(createOtpCodec(secret, 10).generate().length, 10);
  });

  test("digits only, leading zeros kept, first digit roughly uniform", () => {
    const codec = createOtpCodec(secret, 6);
    const firstDigits = new Array<number>(10).fill(0);
    for (let i = 0; i < 20_000; i++) {
      const code = codec.generate();
      assert.ok(codec.isWellFormed(code), code);
      firstDigits[Number(code[0])]! += 1;
    }
    // 2000 expected per digit; a 25% band is about 11 standard deviations wide.
    for (const count of firstDigits) assert.ok(count > 1500 && count < 2500, `first digits ${firstDigits}`);
  });

  test("the stored hash is bound to the secret, the type and the address", () => {
    const codec = createOtpCodec(secret, 6);
    const hash = codec.hash("magiclink", "a@example.com", "123456");
    assert.ok(codec.matches(hash, "magiclink", "a@example.com", "123456"));
    assert.ok(!codec.matches(hash, "recovery", "a@example.com", "123456"));
    assert.ok(!codec.matches(hash, "magiclink", "b@example.com", "123456"));
    assert.ok(!codec.matches(hash, "magiclink", "a@example.com", "123457"));
    assert.notEqual(createOtpCodec(new Secret("t".repeat(32)), 6).hash("magiclink", "a@example.com", "123456"), hash);
    assert.notEqual(hash, createHash("sha256").update("123456").digest("hex"));
  });
});

describe("service keys", () => {
  const key = "k".repeat(40);
  const matcher = createServiceKeyMatcher([new Secret(key), new Secret("j".repeat(40))]);
  test("exact match only, named by a digest prefix", () => {
    assert.equal(matcher.match(key), serviceKeyIdentity(key));
    assert.match(serviceKeyIdentity(key), /^key:[0-9a-f]{12}$/);
    assert.notEqual(serviceKeyIdentity(key), serviceKeyIdentity("j".repeat(40)));
    for (const near of [`${key}k`, key.slice(1), key.toUpperCase(), "", ` ${key}`]) assert.equal(matcher.match(near), undefined);
  });

  test("constant-time comparison compares content, whatever the lengths", () => {
    assert.ok(constantTimeEqual("abc", "abc"));
    assert.ok(!constantTimeEqual("abc", "abd"));
    assert.ok(!constantTimeEqual("abc", "abcd"));
    assert.ok(!constantTimeEqual("", "a"));
  });
});

describe("passwords", () => {
  test("argon2id PHC strings that verify", async () => {
    const hasher = createArgon2Hasher({ memoryKiB: 19456, iterations: 2, parallelism: 1 });
    const phc = await hasher.hash("correct horse");
    // The standard PHC order (m, t, p), which other argon2 libraries expect.
    assert.match(phc, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.ok(await hasher.verify(phc, "correct horse"));
    assert.ok(!(await hasher.verify(phc, "correct horse ")));
  });

  test("hashes stored in the argon2 package's old order (m, p, t) still verify", async () => {
    const hasher = createArgon2Hasher({ memoryKiB: 19456, iterations: 2, parallelism: 1 });
    const old = (await hasher.hash("correct horse")).replace(/m=(\d+),t=(\d+),p=(\d+)/, "m=$1,p=$3,t=$2");
    assert.match(old, /m=19456,p=1,t=2\$/);
    assert.ok(await hasher.verify(old, "correct horse"));
    assert.equal(standardPhc(old).includes("m=19456,t=2,p=1$"), true);
  });

  test("OWASP minimums", () => {
    assert.ok(meetsOwaspMinimum({ memoryKiB: 19456, iterations: 2, parallelism: 1 }));
    assert.ok(meetsOwaspMinimum({ memoryKiB: 7168, iterations: 5, parallelism: 1 }));
    assert.ok(!meetsOwaspMinimum({ memoryKiB: 19455, iterations: 2, parallelism: 1 }));
    assert.ok(!meetsOwaspMinimum({ memoryKiB: 47103, iterations: 1, parallelism: 1 }));
  });
});
