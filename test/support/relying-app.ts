import { build } from "esbuild";
import http from "node:http";
import type net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// A stand-in for the application a person returns to after redeeming a link,
// on its own origin (another port): it serves the redirect target (/callback),
// and a page (/client) whose script calls authlink cross-origin with
// connect-web, as a browser app on an allowed (or not allowed) origin would.
// Every request it receives is recorded, so tests can check what reached a
// server (never the assertion: that travels in the fragment).

export interface RelyingApp {
  /** http://127.0.0.1:PORT */
  readonly origin: string;
  /** Paths with query of every request received (a fragment never arrives). */
  readonly requests: string[];
  close(): Promise<void>;
}

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/**
 * The browser client: connect-web's Connect transport and the generated
 * AdminAuthService, bundled like the verify page's own script. It exposes
 * `authlinkCall(baseUrl, method, request)`, returning the answer as JSON or
 * `{ error: { code, message } }`.
 */
const CLIENT_SOURCE = `
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { toJson } from "@bufbuild/protobuf";
import { AdminAuthService } from "./gen/authlink/v1/admin_auth_service_pb.ts";

window.authlinkCall = async (baseUrl, method, request, headers) => {
  const client = createClient(AdminAuthService, createConnectTransport({ baseUrl }));
  try {
    const answer = await client[method](request, { headers });
    return { answer: toJson(AdminAuthService.method[method].output, answer) };
  } catch (error) {
    const e = ConnectError.from(error);
    return { error: { code: e.code, message: e.rawMessage } };
  }
};
`;

let clientBundle: Promise<string> | undefined;

function bundleClient(): Promise<string> {
  clientBundle ??= build({
    stdin: { contents: CLIENT_SOURCE, resolveDir: repoRoot, loader: "ts", sourcefile: "relying-app-client.ts" },
    bundle: true,
    write: false,
    format: "iife",
    target: "es2020",
    logLevel: "silent",
  }).then((result) => result.outputFiles[0]?.text ?? "");
  return clientBundle;
}

const CALLBACK_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Relying app</title>
<style>body{font-family:system-ui,sans-serif;margin:40px;color:#111}code{word-break:break-all}</style></head>
<body><h1>Relying app: back from the link</h1><p>The assertion, if any, is in this page's fragment.</p></body></html>
`;

const CLIENT_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Relying app client</title>
<script src="/client.js"></script></head>
<body><h1>Relying app (Connect-web client)</h1></body></html>
`;

export async function startRelyingApp(): Promise<RelyingApp> {
  const script = await bundleClient();
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? "");
    const path = (req.url ?? "").split("?", 1)[0];
    const send = (type: string, body: string) => {
      res.writeHead(200, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    if (path === "/callback") send("text/html; charset=utf-8", CALLBACK_PAGE);
    else if (path === "/client") send("text/html; charset=utf-8", CLIENT_PAGE);
    else if (path === "/client.js") send("text/javascript; charset=utf-8", script);
    else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
