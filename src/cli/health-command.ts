import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Command } from "commander";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import { callFailureOf } from "./failure.js";
import { DEFAULT_CALL_TIMEOUT_MS, type Connection } from "./connection.js";
import type { CliContext } from "./context.js";

// `health`: the server's gRPC health (grpc.health.v1.Health/Check, as load
// balancers ask it) for the server and each authlink service, and its HTTP
// readiness probe (GET /readyz). Public: no service key needed. Exit 1 when
// anything is not serving.

const AUTHLINK_SERVICES = [
  "authlink.v1.AdminAuthService",
  "authlink.v1.LinkAdminService",
  "authlink.v1.UserAdminService",
  "authlink.v1.AuditService",
];

interface HealthFlags {
  readonly service?: string[];
  readonly readiness?: boolean;
}

interface Probe {
  readonly check: string;
  readonly status: string;
  readonly ok: boolean;
}

export function registerHealthCommand(program: Command, ctx: CliContext): void {
  program
    .command("health")
    .description("check the server: gRPC health of the server and its services, and HTTP readiness (/readyz)")
    .option("--service <name...>", `services to check (default: "" (the server) and ${AUTHLINK_SERVICES.join(", ")})`)
    .option("--no-readiness", "skip the HTTP readiness probe (e.g. behind a gRPC-only proxy)")
    .action(async (flags: HealthFlags) => {
      const connection = ctx.connection();
      const health = connection.client(Health);
      const services = flags.service ?? ["", ...AUTHLINK_SERVICES];
      const probes: Probe[] = await Promise.all(
        services.map(async (service): Promise<Probe> => {
          const check = `grpc ${service === "" ? "(server)" : service}`;
          try {
            const { status } = await health.check({ service }, connection.callOptions(DEFAULT_CALL_TIMEOUT_MS, ctx.signal));
            const name = HealthCheckResponse_ServingStatus[status] ?? String(status);
            return { check, status: name, ok: status === HealthCheckResponse_ServingStatus.SERVING };
          } catch (error) {
            const failure = callFailureOf(error);
            return { check, status: `${failure.status}: ${failure.message}`, ok: false };
          }
        }),
      );
      if (flags.readiness !== false) probes.push(await readiness(connection, ctx.signal));
      ctx.printer().plain({ checks: probes }, () => probes.map((p) => [p.check, p.status] as const));
      if (probes.some((p) => !p.ok)) ctx.exitCode = 1;
    });
}

/** GET /readyz on the same server (with the same TLS material). */
function readiness(connection: Connection, signal: AbortSignal): Promise<Probe> {
  const url = new URL("/readyz", connection.url);
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  const check = "http /readyz";
  return new Promise((resolve) => {
    const req = request(
      url,
      { method: "GET", ...connection.tls, signal: AbortSignal.any([signal, AbortSignal.timeout(connection.timeoutMs || DEFAULT_CALL_TIMEOUT_MS)]) },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ check, status: `${res.statusCode} ${body.trim()}`, ok: res.statusCode === 200 }));
        res.on("error", (error) => resolve({ check, status: error.message, ok: false }));
      },
    );
    req.on("error", (error) => resolve({ check, status: error.message, ok: false }));
    req.end();
  });
}
