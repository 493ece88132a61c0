import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import type { Readiness } from "./readiness.js";

// grpc.health.v1.Health, as load balancers, Kubernetes gRPC probes and
// grpc-health-probe expect it. Every known service shares one answer: they all
// stand or fall with the store, so readiness is the status of each of them.

export interface HealthServiceOptions {
  readonly readiness: Readiness;
  /**
   * Fully-qualified names answered besides "" (the server as a whole), e.g.
   * "authlink.v1.AdminAuthService". Any other name is unknown.
   */
  readonly services: readonly string[];
  /**
   * How often an open Watch asks readiness (default 1000 ms). Readiness caches
   * and shares its pings, so many watchers still cost one ping per cache period.
   */
  readonly watchIntervalMs?: number;
}

export function createHealthService(options: HealthServiceOptions): ServiceImpl<typeof Health> {
  const { readiness } = options;
  const known = new Set(["", ...options.services]);
  const watchIntervalMs = options.watchIntervalMs ?? 1000;

  const currentStatus = async (): Promise<ServingStatus> =>
    (await readiness.check()) ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;

  return {
    async check(request) {
      if (!known.has(request.service)) throw new ConnectError("unknown service", Code.NotFound);
      return { status: await currentStatus() };
    },

    async *watch(request, context: HandlerContext) {
      const { signal } = context;
      if (!known.has(request.service)) {
        // The spec: tell the watcher, but keep the call open (a service may
        // become known later; ours never do, so this waits for the client).
        yield { status: ServingStatus.SERVICE_UNKNOWN };
        await abortOf(signal);
        return;
      }
      let sent: ServingStatus | undefined;
      while (!signal.aborted) {
        const status = await currentStatus();
        if (status !== sent && !signal.aborted) {
          yield { status };
          sent = status;
        }
        await changeOrTick(readiness, watchIntervalMs, signal);
      }
    },

    async list() {
      const status = await currentStatus();
      return { statuses: Object.fromEntries([...known].map((name) => [name, { status }])) };
    },
  };
}

/**
 * Resolves at the first of: readiness changed (shutdown is seen at once), the
 * interval passed (a database outage is only seen by asking), or the client
 * left. Whichever comes first, the other two are cleaned up.
 */
function changeOrTick(readiness: Readiness, intervalMs: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      unsubscribe();
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, intervalMs);
    const unsubscribe = readiness.onChange(done);
    signal.addEventListener("abort", done, { once: true });
  });
}

function abortOf(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}
