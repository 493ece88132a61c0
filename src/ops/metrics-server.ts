import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Metrics } from "./metrics.js";

// The Prometheus scrape endpoint, on a listener of its own: the metrics port
// can stay on an internal interface while the RPC port faces clients, and a
// scrape never passes through the RPC stack (its auth, audit and rate limits).

export interface MetricsServerOptions {
  readonly host: string;
  /** 0 picks a free port (see RunningMetricsServer.port). */
  readonly port: number;
}

export interface RunningMetricsServer {
  /** e.g. http://127.0.0.1:9464 (the port actually bound); metrics are at `${url}/metrics`. */
  readonly url: string;
  readonly port: number;
  /** Stop listening and close every connection, idle keep-alive ones included. */
  close(): Promise<void>;
}

export async function startMetricsServer(metrics: Metrics, options: MetricsServerOptions): Promise<RunningMetricsServer> {
  const { registry } = metrics;
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://metrics").pathname;
    if (path !== "/metrics" || req.method !== "GET") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    registry.metrics().then(
      (body) => {
        res.writeHead(200, { "content-type": registry.contentType, "cache-control": "no-store" });
        res.end(body);
      },
      (error: unknown) => {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(`collecting metrics failed: ${error instanceof Error ? error.message : String(error)}\n`);
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });

  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // close() waits for open connections; a scraper's keep-alive
        // connection would hold shutdown until it times out.
        server.closeAllConnections();
      }),
  };
}
