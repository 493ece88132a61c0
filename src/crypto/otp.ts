import { createHmac, randomInt } from "node:crypto";
import { constantTimeEqual } from "./constant-time.js";
import type { Secret } from "./secret.js";

// One-time codes: `length` digits, uniform from the CSPRNG. A code is stored as
// HMAC-SHA256 under a server secret and bound to a purpose (the link type) and
// the address it was sent to, so a stolen database does not reveal codes (a bare hash of
// 6 digits would fall to a million guesses) and a code for one address or type
// never redeems another.

export const MIN_OTP_LENGTH = 6;
export const MAX_OTP_LENGTH = 10;

export interface OtpCodec {
  readonly length: number;
  generate(): string;
  hash(type: string, email: string, otp: string): string;
  matches(storedHash: string, type: string, email: string, otp: string): boolean;
  isWellFormed(otp: string): boolean;
}

export function createOtpCodec(secret: Secret, length: number): OtpCodec {
  if (!Number.isInteger(length) || length < MIN_OTP_LENGTH || length > MAX_OTP_LENGTH) {
    throw new RangeError(`OTP length must be ${MIN_OTP_LENGTH}-${MAX_OTP_LENGTH}`);
  }
  const shape = new RegExp(`^\\d{${length}}$`);
  const hash = (type: string, email: string, otp: string): string =>
    createHmac("sha256", secret.reveal()).update(`authlink-otp\n${type}\n${email}\n${otp}`).digest("hex");
  return {
    length,
    generate: () => randomInt(0, 10 ** length).toString().padStart(length, "0"),
    hash,
    matches: (storedHash, type, email, otp) => constantTimeEqual(storedHash, hash(type, email, otp)),
    isWellFormed: (otp) => shape.test(otp),
  };
}
