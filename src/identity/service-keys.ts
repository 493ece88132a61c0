import { createHash, hash, timingSafeEqual } from "node:crypto";
import type { Secret } from "../crypto/secret.js";

export const MIN_SERVICE_KEY_LENGTH = 32;

export interface ServiceKeyMatcher {
  /** The identity of the matching key (`key:` + a digest prefix), or undefined. */
  match(presented: string): string | undefined;
}

/** A key's public name in logs and audit: never the key, only a short digest. */
export function serviceKeyIdentity(key: string): string {
  return `key:${createHash("sha256").update(key).digest("hex").slice(0, 12)}`;
}

export function createServiceKeyMatcher(keys: readonly Secret[]): ServiceKeyMatcher {
  // Each configured key's SHA-256 is taken once; a presented key is hashed
  // once per call and compared with every digest in constant time (fixed-size
  // digests: the time says nothing about lengths either).
  const entries = keys.map((key) => ({ digest: createHash("sha256").update(key.reveal()).digest(), identity: serviceKeyIdentity(key.reveal()) }));
  return {
    match(presented) {
      // Compare against every key, without stopping early, so timing says
      // nothing about which key (or how many) came close.
      let found: string | undefined;
      const digest = hash("sha256", presented, "buffer"); // one-shot: no Hash object per call
      for (const entry of entries) {
        if (timingSafeEqual(digest, entry.digest)) found ??= entry.identity;
      }
      return found;
    },
  };
}
