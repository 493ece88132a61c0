import { generateKeyPairSync } from "node:crypto";
import { parseSigningKey, type SigningKey } from "../../src/config/config.js";
import { createAssertionSigner, type AssertionSigner } from "../../src/crypto/assertion-signer.js";

/** A real Ed25519 signer for tests that build the domain by hand. */
export function testAssertionSigner(issuer = "https://auth.example.com"): AssertionSigner {
  const { privateKey } = generateKeyPairSync("ed25519");
  const key = parseSigningKey(Buffer.from(privateKey.export({ format: "pem", type: "pkcs8" }))) as SigningKey;
  return createAssertionSigner({ keys: [key], issuer, audience: issuer, ttlMs: 300_000 });
}
