import { createHmac, generateKeyPairSync, hash, randomBytes, randomInt, sign } from "node:crypto";

// The CPU that any server honouring authlink's contract spends on one pair,
// whatever its transport or store: the cryptography the contract itself asks
// for. The ratio goals compare authlink with bare servers that answer fixed
// bytes; this floor says how close to them a server that does this work can
// get at all, measured on the same machine in the same run.
//
// Per pair (GenerateLink MAGICLINK + VerifyLink of its token):
//   - 32 CSPRNG bytes for the link token, 16 for the assertion's jti, and a
//     6-digit code (randomInt) with its HMAC-SHA-256 (the code is stored hashed)
//   - SHA-256 of the token at issue and again at redemption, and of the
//     presented service key on each of the two calls (4 digests)
//   - one assertion signature: Ed25519 (the key authlink generates) or ES256
//     (P-256, which an operator may configure instead)
// It leaves out everything a server could conceivably do cheaper (JSON, logs,
// the store, protobuf), so it is a lower bound.

export interface CryptoFloor {
  /** µs of CPU per pair with an Ed25519 signing key. */
  readonly eddsaUs: number;
  /** µs of CPU per pair with an ES256 (P-256) signing key. */
  readonly es256Us: number;
  /** The signature alone, µs: Ed25519, ES256. */
  readonly signEddsaUs: number;
  readonly signEs256Us: number;
}

export function measureCryptoFloor(iterations: number): CryptoFloor {
  const ed = generateKeyPairSync("ed25519").privateKey;
  const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
  const hmacKey = randomBytes(32);
  const serviceKey = randomBytes(36).toString("base64url");
  const claims = Buffer.from(`eyJhbGciOiJFZERTQSIsImtpZCI6IngiLCJ0eXAiOiJKV1QifQ.${randomBytes(210).toString("base64url")}`);

  const signEd = () => sign(null, claims, ed);
  const signEc = () => sign("sha256", claims, { key: ec, dsaEncoding: "ieee-p1363" });
  const rest = () => {
    const token = randomBytes(32).toString("base64url");
    hash("sha256", token, "hex");
    hash("sha256", token, "hex");
    hash("sha256", serviceKey, "buffer");
    hash("sha256", serviceKey, "buffer");
    const code = randomInt(0, 1_000_000).toString().padStart(6, "0");
    createHmac("sha256", hmacKey).update(`authlink-otp\nmagiclink\nperson@example.com\n${code}`).digest("hex");
    randomBytes(16).toString("base64url");
  };
  const cpuUs = (work: () => unknown) => {
    for (let i = 0; i < Math.min(500, iterations); i++) work(); // warm-up
    const start = process.cpuUsage();
    for (let i = 0; i < iterations; i++) work();
    const used = process.cpuUsage(start);
    return (used.user + used.system) / iterations;
  };
  const restUs = cpuUs(rest);
  const signEddsaUs = cpuUs(signEd);
  const signEs256Us = cpuUs(signEc);
  return { eddsaUs: restUs + signEddsaUs, es256Us: restUs + signEs256Us, signEddsaUs, signEs256Us };
}
