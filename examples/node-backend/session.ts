import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

// The app's own session, once authlink's assertion has been checked: a cookie
// holding who signed in and until when, signed with HMAC-SHA256 under the
// app's secret (readable by the server only through `read`, which refuses a
// forged, altered or expired cookie). HttpOnly, SameSite=Lax, and Secure when
// the app is served over https.

export interface Session {
  readonly userId: string;
  readonly email: string;
  /** How the person signed in (the assertion's `amr`). */
  readonly amr: readonly string[];
  /** Seconds since the epoch. */
  readonly issuedAt: number;
  readonly expiresAt: number;
}

export interface SessionCookies {
  /** The Set-Cookie value that starts a session. */
  start(identity: Pick<Session, "userId" | "email" | "amr">): string;
  /** The session of a request, or undefined (no cookie, bad signature, expired). */
  read(req: IncomingMessage): Session | undefined;
  /** The Set-Cookie value that ends the session. */
  clear(): string;
}

export interface SessionCookieOptions {
  /** At least 32 bytes. */
  readonly secret: string;
  readonly secure: boolean;
  /** Default 8 hours. */
  readonly maxAgeSeconds?: number;
  readonly name?: string;
}

export function createSessionCookies(options: SessionCookieOptions): SessionCookies {
  if (Buffer.byteLength(options.secret) < 32) throw new Error("the session secret must be at least 32 bytes");
  const name = options.name ?? "example_session";
  const maxAge = options.maxAgeSeconds ?? 8 * 3600;
  const attributes = `Path=/; HttpOnly; SameSite=Lax${options.secure ? "; Secure" : ""}`;
  const sign = (payload: string) => createHmac("sha256", options.secret).update(payload).digest("base64url");

  return {
    start(identity) {
      const issuedAt = Math.floor(Date.now() / 1000);
      const session: Session = { ...identity, issuedAt, expiresAt: issuedAt + maxAge };
      const payload = Buffer.from(JSON.stringify(session)).toString("base64url");
      return `${name}=${payload}.${sign(payload)}; Max-Age=${maxAge}; ${attributes}`;
    },
    read(req) {
      const value = cookieValue(req.headers.cookie ?? "", name);
      const [payload, signature, extra] = (value ?? "").split(".");
      if (!payload || !signature || extra !== undefined) return undefined;
      const expected = Buffer.from(sign(payload));
      const given = Buffer.from(signature);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
      const session = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Session;
      return session.expiresAt > Date.now() / 1000 ? session : undefined;
    },
    clear() {
      return `${name}=; Max-Age=0; ${attributes}`;
    },
  };
}

function cookieValue(header: string, name: string): string | undefined {
  for (const part of header.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return undefined;
}
