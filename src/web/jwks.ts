import type http from "node:http";
import type http2 from "node:http2";
import type { JsonWebKeySet } from "../crypto/assertion-signer.js";

// GET/HEAD /.well-known/jwks.json: the public keys that verify assertions.
// Served at the root, and also under the public URL's path when it has one
// (https://example.com/auth/.well-known/jwks.json), where a relying party
// that derives it from the issuer will look. Anything else is not ours: the
// handler returns false and the caller passes the request on.
//
// - cache-control: public, max-age=300. Short, so that a key rotated in is
//   fetched within minutes; keep a retired key listed for at least this plus
//   the assertion lifetime. (jose's createRemoteJWKSet also refetches on an
//   unknown kid, at most every 30 s by default.)
// - access-control-allow-origin: *. The set holds public keys only, is the
//   same for everyone, and is fetched without credentials, so letting any
//   page read it discloses nothing; it lets a relying app verify in a browser.
//   A plain GET needs no preflight, so OPTIONS is refused like other methods.
//
// The server sets cache-control: no-store on every response before handlers
// run; setHeader here replaces it.

export type JwksHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => boolean;

export interface JwksHandlerOptions {
  /** The public URL's path (e.g. "/auth"); the set is served under it as well as at the root. */
  readonly basePath?: string;
}

/** The part of both response types this file uses. */
interface PlainResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(): unknown;
  end(body: Buffer): unknown;
}

export const JWKS_PATH = "/.well-known/jwks.json";
const MAX_AGE_SECONDS = 300;

export function createJwksHandler(signer: { jwks(): JsonWebKeySet }, options: JwksHandlerOptions = {}): JwksHandler {
  const prefix = (options.basePath ?? "").replace(/\/+$/, "");
  const paths = new Set([JWKS_PATH, `${prefix}${JWKS_PATH}`]);
  // The keys are fixed for the life of the process: encode them once.
  const body = Buffer.from(JSON.stringify(signer.jwks()), "utf8");

  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0] ?? "";
    if (!paths.has(path)) return false;
    const head = req.method === "HEAD";
    if (req.method !== "GET" && !head) {
      req.resume(); // a body we will not read must not hold the connection
      const text = Buffer.from("method not allowed\n", "utf8");
      reply(res, head, 405, text, {
        "content-type": "text/plain; charset=utf-8",
        "cache-control": "no-store",
        allow: "GET, HEAD",
      });
      return true;
    }
    reply(res, head, 200, body, {
      "content-type": "application/jwk-set+json",
      "cache-control": `public, max-age=${MAX_AGE_SECONDS}`,
      "access-control-allow-origin": "*",
    });
    return true;
  };
}

function reply(res: PlainResponse, head: boolean, status: number, body: Buffer, headers: Record<string, string>): void {
  try {
    res.statusCode = status;
    for (const [name, value] of Object.entries({ ...headers, "content-length": String(body.length), "x-content-type-options": "nosniff" })) {
      res.setHeader(name, value);
    }
    if (head) res.end();
    else res.end(body);
  } catch {
    // The client went away: nobody to tell.
  }
}
