import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

// The verify page's script and stylesheet, as `npm run build` bundles them
// (esbuild, from src/web/page/) into dist/web/. Read once at start-up and
// named by their content hash, so browsers may cache them forever: a new
// build is a new name.

export interface PageAsset {
  /** The file name the browser asks for, e.g. verify-page.3f9a0c1d2b4e5f60.js. */
  readonly name: string;
  readonly contentType: string;
  readonly body: Buffer;
  /** The same, gzip-compressed, for browsers that accept it. */
  readonly gzipped: Buffer;
  /** Subresource integrity of the body (sha384-…). */
  readonly integrity: string;
}

export interface PageAssets {
  readonly script: PageAsset;
  readonly style: PageAsset;
}

/** dist/web/, next to dist/src/ where this module runs from. */
const BUILT_ASSETS_DIR = fileURLToPath(new URL("../../web/", import.meta.url));

const cache = new Map<string, PageAssets>();

/** The built assets in `dir` (default dist/web/); fails naming the missing file when the page was not built. */
export function loadPageAssets(dir: string = BUILT_ASSETS_DIR): PageAssets {
  let assets = cache.get(dir);
  if (!assets) {
    assets = {
      script: loadAsset(dir, "verify-page", ".js", "text/javascript; charset=utf-8"),
      style: loadAsset(dir, "verify-page", ".css", "text/css; charset=utf-8"),
    };
    cache.set(dir, assets);
  }
  return assets;
}

function loadAsset(dir: string, stem: string, extension: string, contentType: string): PageAsset {
  const path = `${dir}${stem}${extension}`;
  let body: Buffer;
  try {
    body = readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new Error(`the verify page is not built (${path}: ${code}); run \`npm run build\``, { cause: error });
  }
  const hash = createHash("sha256").update(body).digest("hex").slice(0, 16);
  return {
    name: `${stem}.${hash}${extension}`,
    contentType,
    body,
    gzipped: gzipSync(body, { level: 9 }),
    integrity: `sha384-${createHash("sha384").update(body).digest("base64")}`,
  };
}
