import type { PlainHttpHandler } from "../server/http-handler.js";
import { loadPageAssets, type PageAsset, type PageAssets } from "./page-assets.js";
import { renderVerifyPage } from "./verify-page-html.js";

// The page a person lands on from an action link, served by authlink itself:
//
//   {public URL path}/verify                          the HTML document
//   {public URL path}/verify/assets/verify-page.<hash>.js|css
//
// GET and HEAD only (405 otherwise). Serving the page never touches a link:
// the token is in the fragment, which browsers do not send, and the page's
// script redeems nothing until the person presses its button.

export interface VerifyPageOptions {
  /** AUTHLINK_PUBLIC_URL: its path, if any, is where the page lives. */
  readonly publicUrl: URL;
  /** AUTHLINK_PAGE_TITLE. */
  readonly title: string;
  /** The built script and stylesheet (default: dist/web/, read now). */
  readonly assets?: PageAssets;
}

/**
 * Only what the page itself needs: its own script, stylesheet and RPCs; no
 * framing, no <base>, forms only to itself. img-src allows the empty data:
 * favicon, which keeps browsers from asking for /favicon.ico.
 */
export const VERIFY_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join("; ");

const PAGE_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": VERIFY_PAGE_CSP,
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
};

const ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable";

interface PlainResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(): unknown;
  end(body: Buffer): unknown;
}

export function createVerifyPageHandler(options: VerifyPageOptions): PlainHttpHandler {
  const assets = options.assets ?? loadPageAssets();
  const base = options.publicUrl.pathname.replace(/\/+$/, "");
  const pagePath = `${base}/verify`;
  const assetDir = `${pagePath}/assets/`;
  const byPath = new Map<string, PageAsset>([
    [`${assetDir}${assets.script.name}`, assets.script],
    [`${assetDir}${assets.style.name}`, assets.style],
  ]);
  const html = Buffer.from(
    renderVerifyPage({
      title: options.title,
      scriptPath: `${assetDir}${assets.script.name}`,
      scriptIntegrity: assets.script.integrity,
      stylePath: `${assetDir}${assets.style.name}`,
      styleIntegrity: assets.style.integrity,
    }),
    "utf8",
  );

  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0] ?? "";
    const asset = byPath.get(path);
    if (path !== pagePath && !asset && !path.startsWith(assetDir)) return false;
    const head = req.method === "HEAD";
    if (req.method !== "GET" && !head) {
      req.resume(); // a body we will not read must not hold the connection
      reply(res, head, 405, Buffer.from("method not allowed\n"), { "content-type": "text/plain; charset=utf-8", allow: "GET, HEAD" });
    } else if (path === pagePath) {
      reply(res, head, 200, html, PAGE_HEADERS);
    } else if (asset) {
      const gzip = acceptsGzip(req.headers["accept-encoding"]);
      reply(res, head, 200, gzip ? asset.gzipped : asset.body, {
        "content-type": asset.contentType,
        "cache-control": ASSET_CACHE_CONTROL,
        "x-content-type-options": "nosniff",
        vary: "accept-encoding",
        ...(gzip ? { "content-encoding": "gzip" } : {}),
      });
    } else {
      // An asset of another build (or no asset at all): not cacheable.
      reply(res, head, 404, Buffer.from("not found\n"), { "content-type": "text/plain; charset=utf-8" });
    }
    return true;
  };
}

function acceptsGzip(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header.join(",") : (header ?? "");
  return value
    .split(",")
    .some((part) => {
      const [coding, ...params] = part.trim().toLowerCase().split(";");
      const refused = params.some((p) => /^\s*q\s*=\s*0(\.0*)?\s*$/.test(p));
      return coding?.trim() === "gzip" && !refused;
    });
}

function reply(res: PlainResponse, head: boolean, status: number, body: Buffer, headers: Readonly<Record<string, string>>): void {
  res.statusCode = status;
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader("content-length", String(body.length));
  if (head) res.end();
  else res.end(body);
}
