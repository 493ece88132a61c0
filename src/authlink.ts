import { createApp, STREAMING_REQUEST_PATHS, type App } from "./app.js";
import { withBoundPort, type Config } from "./config/config.js";
import { systemClock, type Clock } from "./domain/clock.js";
import type { Logger } from "./log/logger.js";
import { createMetrics, type Metrics } from "./ops/metrics.js";
import { startMetricsServer, type RunningMetricsServer } from "./ops/metrics-server.js";
import { startGrpcJsServer, type RunningGrpcJsServer } from "./server/grpc-js-server.js";
import { startHttpServer, type RequestHandler, type RunningHttpServer } from "./server/http-server.js";
import { openStore } from "./store/open-store.js";
import type { Store } from "./domain/store.js";

// A running authlink: the store opened, the app built, the port bound. main.ts
// starts one for the process; end-to-end tests start their own.

export interface StartOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Use this store instead of opening the configured one (tests). Not closed by close(). */
  readonly store?: Store;
  readonly purgeIntervalMs?: number;
  /** Use these metrics (tests); otherwise they are created when AUTHLINK_METRICS_ADDR is set. */
  readonly metrics?: Metrics;
}

export interface RunningAuthlink {
  readonly url: string;
  readonly port: number;
  readonly store: Store;
  /** http://host:port of the metrics listener, when it runs. */
  readonly metricsUrl: string | undefined;
  /** host:port of the grpc-js listener (AUTHLINK_GRPC_ADDR), when it runs. */
  readonly grpcAddress: string | undefined;
  /** Graceful: stop accepting, finish in-flight calls, close the store. */
  close(): Promise<void>;
}

export async function startAuthlink(options: StartOptions): Promise<RunningAuthlink> {
  const { config, logger } = options;
  const store = options.store ?? (await openStore(config, logger));
  const ownsStore = options.store === undefined;
  const metrics = options.metrics ?? (config.metricsListen ? createMetrics() : undefined);
  let app: App | undefined;
  let metricsServer: RunningMetricsServer | undefined;
  let server: RunningHttpServer | undefined;
  let grpcServer: RunningGrpcJsServer | undefined;
  try {
    if (metrics && config.metricsListen) metricsServer = await startMetricsServer(metrics, config.metricsListen);
    // Bound first, so that links can name a port picked by the system; the
    // app is built in the same turn of the event loop, before any request
    // can be read.
    let handler: RequestHandler | undefined;
    server = await startHttpServer((req, res) => handler?.(req, res), {
      ...config.listen,
      tls: config.tls,
      connections: config.connections,
      // A trusted proxy carries many clients: the per-address cap is for clients.
      sharedAddress: (address) => config.trustedProxies.has(address),
      // A bidi stream (StreamGenerateLinks) sends its body for as long as the call runs.
      streamingRequests: {
        matches: (path) => STREAMING_REQUEST_PATHS.has(path),
        timeoutMs: config.maxStreamDurationMs + config.connections.requestTimeoutMs,
      },
    });
    app = createApp({
      config: withBoundPort(config, server.port),
      store,
      logger,
      clock: options.clock ?? systemClock,
      purgeIntervalMs: options.purgeIntervalMs,
      metrics,
    });
    handler = app.handler;
    if (config.grpcListen) {
      grpcServer = await startGrpcJsServer(app.grpcJs, {
        ...config.grpcListen,
        tls: config.tls,
        connections: config.connections,
        maxRequestBytes: config.maxRequestBytes,
      });
    }
    const [running, listening, grpcListening] = [app, server, grpcServer];
    return {
      url: server.url,
      port: server.port,
      store,
      metricsUrl: metricsServer?.url,
      grpcAddress: grpcServer?.address,
      async close() {
        // Not ready first, so load balancers stop sending new calls while
        // the ones in flight finish.
        running.readiness.markShuttingDown();
        await Promise.all([listening.close(config.shutdownTimeoutMs), grpcListening?.close(config.shutdownTimeoutMs)]);
        await running.close();
        await metricsServer?.close();
        if (ownsStore) await store.close();
      },
    };
  } catch (error) {
    await server?.close(0);
    await grpcServer?.close(0);
    await app?.close();
    await metricsServer?.close();
    if (ownsStore) await store.close();
    throw error;
  }
}
