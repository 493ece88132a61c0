import type http from "node:http";
import type http2 from "node:http2";
import type { Readiness } from "./readiness.js";

// Plain-HTTP probes for orchestrators that do not speak gRPC:
//   /healthz  liveness: 200 as long as the process answers at all. It never
//             asks the database, so a database outage does not get every
//             instance restarted (which would not bring the database back).
//   /readyz   readiness: 200 while the store answers and we are not shutting
//             down, else 503, so traffic goes elsewhere.
// Anything else is not ours: the handler returns false and the caller passes
// the request on (to the RPC router).

export type HealthHttpHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => boolean;

/** The part of both response types this file uses. */
interface PlainResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(): unknown;
  end(body: Buffer): unknown;
}

const LIVENESS_PATH = "/healthz";
const READINESS_PATH = "/readyz";

export function createHealthHttpHandler(readiness: Readiness): HealthHttpHandler {
  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0];
    if (path !== LIVENESS_PATH && path !== READINESS_PATH) return false;
    const head = req.method === "HEAD";
    if (req.method !== "GET" && !head) {
      req.resume(); // a body we will not read must not hold the connection
      reply(res, head, 405, "method not allowed\n", { allow: "GET, HEAD" });
    } else if (path === LIVENESS_PATH) {
      reply(res, head, 200, "ok\n");
    } else {
      void readiness
        .check()
        .catch(() => false)
        .then((ready) => reply(res, head, ready ? 200 : 503, ready ? "ready\n" : "not ready\n"));
    }
    return true;
  };
}

function reply(res: PlainResponse, head: boolean, status: number, text: string, extra: Record<string, string> = {}): void {
  const body = Buffer.from(text, "utf8");
  try {
    res.statusCode = status;
    const headers = {
      "content-type": "text/plain; charset=utf-8",
      "content-length": String(body.length),
      // A cached "ready" is a lie a moment later.
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      ...extra,
    };
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    if (head) res.end();
    else res.end(body);
  } catch {
    // The prober went away while readiness was being decided: nobody to tell.
  }
}
