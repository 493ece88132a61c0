import { hash, randomBytes } from "node:crypto";

// The link token is the credential inside an action link: 32 bytes from the
// CSPRNG (256 bits), base64url without padding (43 characters). Only its
// SHA-256 is stored; the hex digest doubles as the public `hashed_token`.

const TOKEN_BYTES = 32;
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

export interface LinkToken {
  /** Goes to the person (in the link); never stored or logged. */
  readonly token: string;
  /** SHA-256 hex of the token: what is stored and shown as hashed_token. */
  readonly tokenHash: string;
}

export function newLinkToken(): LinkToken {
  const token = randomBytes(TOKEN_BYTES).toString("base64url");
  return { token, tokenHash: hashLinkToken(token) };
}

export function hashLinkToken(token: string): string {
  return hash("sha256", token, "hex"); // one-shot: cheaper than a Hash object on the hot path
}

/** Whether a string could be a token at all (checked before any lookup). */
export function isWellFormedLinkToken(token: string): boolean {
  return TOKEN_SHAPE.test(token);
}

const HASHED_TOKEN_SHAPE = /^[0-9a-f]{64}$/;

/** Whether a string is a hashed token as authlink hands it out (64 lower-case hex characters). */
export function isWellFormedHashedToken(hashedToken: string): boolean {
  return HASHED_TOKEN_SHAPE.test(hashedToken);
}
