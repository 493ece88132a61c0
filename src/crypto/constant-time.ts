import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Compare two secrets in time that depends on neither their content nor their
 * lengths: both sides are hashed to fixed-size digests first.
 */
export function constantTimeEqual(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const da = createHash("sha256").update(a).digest();
  const db = createHash("sha256").update(b).digest();
  return timingSafeEqual(da, db);
}
