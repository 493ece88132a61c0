import { randomBytes } from "node:crypto";
import { startAuthlink, type RunningAuthlink } from "../../src/authlink.js";
import { loadConfig, type Config, type LoadConfigOptions } from "../../src/config/config.js";
import { systemClock, type Clock } from "../../src/domain/clock.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import type { Store } from "../../src/domain/store.js";
import { createCapturedLogger } from "./captured-logger.js";
import { openTestStore, type TestDatabase } from "./mongo.js";

// A real authlink on an ephemeral loopback port, configured through the same
// loadConfig as production, with its log lines captured.

export const TEST_REDIRECT_ALLOW_LIST = "https://app.example.com/**,http://localhost:3000/**";

export interface TestServerOptions {
  /** Extra or overriding AUTHLINK_* variables. */
  readonly env?: Readonly<Record<string, string>>;
  /** A database to use (MongoDB store); without it the embedded store is used. */
  readonly database?: TestDatabase;
  /** Reach the database through this URI instead (e.g. a fault-injecting proxy). */
  readonly databaseUri?: string;
  /** How long the store waits for an unreachable database (default 5 s). */
  readonly dbTimeoutMs?: number;
  readonly clock?: Clock;
  readonly readFile?: LoadConfigOptions["readFile"];
  /** How often expired documents are purged (default: the app's). */
  readonly purgeIntervalMs?: number;
}

export interface TestServer {
  readonly url: string;
  readonly port: number;
  /** The metrics listener, when AUTHLINK_METRICS_ADDR is set. */
  readonly metricsUrl: string | undefined;
  /** host:port of the grpc-js listener, when AUTHLINK_GRPC_ADDR is set (see GRPC_JS_LISTENER). */
  readonly grpcAddress: string | undefined;
  readonly config: Config;
  readonly store: Store;
  readonly serviceKey: string;
  /** Every log line so far (JSON). */
  readonly logs: string[];
  close(): Promise<void>;
}

/** Starts the grpc-js listener too, on any free port (env for startTestServer). */
export const GRPC_JS_LISTENER: Readonly<Record<string, string>> = { AUTHLINK_GRPC_ADDR: "127.0.0.1:0" };

/** The two listeners that serve gRPC: connect-node's main port and the grpc-js one. */
export const GRPC_LISTENERS = ["connect-node", "grpc-js"] as const;
export type GrpcListener = (typeof GRPC_LISTENERS)[number];

/** host:port where a listener of this server answers gRPC. */
export function grpcAddressOf(server: TestServer, listener: GrpcListener): string {
  if (listener === "connect-node") return new URL(server.url).host;
  if (!server.grpcAddress) throw new Error("the test server was started without AUTHLINK_GRPC_ADDR (GRPC_JS_LISTENER)");
  return server.grpcAddress;
}

/** Base URL of a listener for connect-node's gRPC client (http:// or https://). */
export function grpcUrlOf(server: TestServer, listener: GrpcListener): string {
  return `${new URL(server.url).protocol}//${grpcAddressOf(server, listener)}`;
}

export function testEnv(overrides: Readonly<Record<string, string>> = {}): Record<string, string> {
  return {
    AUTHLINK_ADDR: "127.0.0.1:0",
    AUTHLINK_SERVICE_KEYS: `test-key-${randomBytes(24).toString("base64url")}`,
    AUTHLINK_OTP_SECRET: randomBytes(32).toString("base64url"),
    AUTHLINK_REDIRECT_ALLOW_LIST: TEST_REDIRECT_ALLOW_LIST,
    AUTHLINK_PUBLIC_URL: "https://auth.example.com",
    AUTHLINK_SHUTDOWN_TIMEOUT: "5s",
    ...overrides,
  };
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const env = testEnv(options.env);
  const config = loadConfig(env, { readFile: options.readFile });
  const { logger, lines } = createCapturedLogger();
  const store = options.database
    ? await openTestStore(options.database, { uri: options.databaseUri, timeoutMs: options.dbTimeoutMs, logger })
    : createMemoryStore();
  let running: RunningAuthlink;
  try {
    running = await startAuthlink({ config, logger, store, clock: options.clock ?? systemClock, purgeIntervalMs: options.purgeIntervalMs });
  } catch (error) {
    await store.close();
    throw error;
  }
  return {
    url: running.url,
    port: running.port,
    metricsUrl: running.metricsUrl,
    grpcAddress: running.grpcAddress,
    config,
    store,
    serviceKey: (env.AUTHLINK_SERVICE_KEYS ?? "").split(",")[0] ?? "",
    logs: lines,
    async close() {
      await running.close();
      await store.close();
    },
  };
}
