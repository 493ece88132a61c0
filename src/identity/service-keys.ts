import { createHash } from "node:crypto";
import { constantTimeEqual } from "../crypto/constant-time.js";
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
  const entries = keys.map((key) => ({ key, identity: serviceKeyIdentity(key.reveal()) }));
  return {
    match(presented) {
      // Compare against every key, without stopping early, so timing says
      // nothing about which key (or how many) came close.
      let found: string | undefined;
      for (const entry of entries) {
        if (constantTimeEqual(presented, entry.key.reveal())) found ??= entry.identity;
      }
      return found;
    },
  };
}
