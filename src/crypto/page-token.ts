import { createHash, createHmac, hkdfSync } from "node:crypto";
import { constantTimeEqual } from "./constant-time.js";
import type { Secret } from "./secret.js";

// Opaque page tokens for list calls (ListLinks, ListAuditEvents). A token
// carries where the next page starts, a fingerprint of the query it belongs
// to and its expiry, and is signed (HMAC-SHA256 under a key derived from the
// server's OTP secret, so every instance sharing that secret accepts the
// others' tokens). A forged token, one from another query, and an expired
// one all decode to undefined; the caller answers INVALID_ARGUMENT.
//
// The position is the sort key of the last item served (not an offset), so
// items added meanwhile never shift a page.

export type JsonPosition = string | number | boolean | null | JsonPosition[] | { [key: string]: JsonPosition };

export interface PageTokenCodec {
  /** A token that resumes `query` after `position`, valid until `now` plus the codec's lifetime. */
  encode(query: unknown, position: JsonPosition, now: Date): string;
  /** The position in a token issued for this same query and not expired at `now`; undefined otherwise. */
  decode(token: string, query: unknown, now: Date): JsonPosition | undefined;
}

export interface PageTokenOptions {
  /** How long a token stays valid (default 1 hour). */
  readonly ttlMs?: number;
}

/** The key for page tokens, derived from the OTP secret (a separate key for a separate purpose). */
export function pageTokenKey(secret: Secret): Buffer {
  return Buffer.from(hkdfSync("sha256", secret.reveal(), "authlink", "authlink page tokens v1", 32));
}

export function createPageTokenCodec(key: Uint8Array, options: PageTokenOptions = {}): PageTokenCodec {
  const ttlMs = options.ttlMs ?? 60 * 60_000;
  const sign = (body: string) => createHmac("sha256", key).update(body).digest("base64url");
  return {
    encode(query, position, now) {
      const body = Buffer.from(JSON.stringify({ q: fingerprint(query), p: position, e: now.getTime() + ttlMs })).toString("base64url");
      return `${body}.${sign(body)}`;
    },
    decode(token, query, now) {
      const dot = token.indexOf(".");
      if (dot <= 0 || token.length > 4096) return undefined;
      const body = token.slice(0, dot);
      if (!constantTimeEqual(token.slice(dot + 1), sign(body))) return undefined;
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.from(body, "base64url").toString("utf8"));
      } catch {
        return undefined;
      }
      if (typeof parsed !== "object" || parsed === null) return undefined;
      const { q, p, e } = parsed as { q?: unknown; p?: JsonPosition; e?: unknown };
      if (q !== fingerprint(query) || typeof e !== "number" || now.getTime() >= e || p === undefined) return undefined;
      return p;
    },
  };
}

/** SHA-256 of the query's canonical JSON (keys sorted, dates as ISO strings, undefined dropped). */
function fingerprint(query: unknown): string {
  return createHash("sha256").update(canonicalJson(query)).digest("base64url");
}

function canonicalJson(value: unknown): string {
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}
