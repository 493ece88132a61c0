import { readFile } from "node:fs/promises";
import { extname, join } from "node:path";

// The admin page as Vite built it (index.html and assets/), served from its
// dist directory. Only plain file names under assets/ are served: no path
// ever leaves the directory.

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
};

export interface StaticFile {
  readonly type: string;
  readonly body: Buffer;
  /** Hashed asset names never change: cache them for good. */
  readonly immutable: boolean;
}

/** The file for a path under the page's base ("" = index.html, "assets/x.js"), or undefined. */
export async function readStaticFile(dir: string, relativePath: string): Promise<StaticFile | undefined> {
  let file: string;
  if (relativePath === "" || relativePath === "index.html") file = "index.html";
  else if (/^assets\/[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(relativePath)) file = relativePath;
  else return undefined;
  const type = TYPES[extname(file)];
  if (!type) return undefined;
  try {
    return { type, body: await readFile(join(dir, file)), immutable: file.startsWith("assets/") };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}
