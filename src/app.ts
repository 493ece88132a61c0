import type { DescService } from "@bufbuild/protobuf";
import { createServiceImplSpec, type ConnectRouter, type ServiceImpl, type ServiceImplSpec } from "@connectrpc/connect";
import { AdminAuthService } from "../gen/authlink/v1/admin_auth_service_pb.js";
import { AuditService } from "../gen/authlink/v1/audit_service_pb.js";
import { LinkAdminService } from "../gen/authlink/v1/link_admin_service_pb.js";
import { UserAdminService } from "../gen/authlink/v1/user_admin_service_pb.js";
import * as reflectionV1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as reflectionV1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_health_v1_health, Health } from "../gen/health/v1/health_pb.js";
import { createAuditTrail } from "./audit/audit-trail.js";
import { coalesceRefusals } from "./audit/refusal-coalescing.js";
import { AccessPolicies, contractPolicy, explicitPolicy } from "./call/access-policy.js";
import { createCallBoundary } from "./call/call-boundary.js";
import { createRefusalLimiter } from "./call/refusal-limiter.js";
import type { Config } from "./config/config.js";
import { createAssertionSigner } from "./crypto/assertion-signer.js";
import { createOtpCodec } from "./crypto/otp.js";
import { createPageTokenCodec, pageTokenKey } from "./crypto/page-token.js";
import { createArgon2Hasher } from "./crypto/passwords.js";
import { createAuditReader } from "./domain/audit-reader.js";
import type { Clock } from "./domain/clock.js";
import { BulkGeneration } from "./domain/bulk-generation.js";
import { LinkAdmin } from "./domain/link-admin.js";
import { LinkService } from "./domain/link-service.js";
import { RateLimiter } from "./domain/rate-limiter.js";
import { UserAdmin } from "./domain/user-admin.js";
import type { Store } from "./domain/store.js";
import { createServiceKeyMatcher } from "./identity/service-keys.js";
import type { Logger } from "./log/logger.js";
import { createHealthHttpHandler } from "./ops/health-http.js";
import { createHealthService } from "./ops/health-service.js";
import type { Metrics } from "./ops/metrics.js";
import { createProtocolRefusals } from "./ops/protocol-refusals.js";
import { createReadiness, type Readiness } from "./ops/readiness.js";
import { createServerReflection } from "./ops/reflection.js";
import { createAdminAuthService } from "./rpc/admin-auth-service.js";
import { createAuditService } from "./rpc/audit-service.js";
import { createBulkGenerationHandlers } from "./rpc/bulk-generation-handlers.js";
import { createCallAdapter } from "./rpc/call-adapter.js";
import { createLinkAdminService } from "./rpc/link-admin-service.js";
import { createGrpcJsRoutes, type GrpcJsRoutes } from "./rpc/grpc-js-adapter.js";
import { createUserAdminService } from "./rpc/user-admin-service.js";
import { createHttpHandler } from "./server/http-handler.js";
import type { RequestHandler } from "./server/http-server.js";
import { startPurgeLoop } from "./store/purge-loop.js";
import { createCors } from "./web/cors.js";
import { createJwksHandler } from "./web/jwks.js";
import { createVerifyPageHandler } from "./web/verify-page.js";

// The composition root: builds authlink from its dependencies. Nothing here
// reads the environment or listens on a port (that is main.ts and
// authlink.ts), so tests build the same app with their own store, clock and
// logger.

export interface AppDeps {
  readonly config: Config;
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often expired documents are purged where the store needs it. */
  readonly purgeIntervalMs?: number;
  /** Prometheus metrics (one per process); without them nothing is counted. */
  readonly metrics?: Metrics | undefined;
}

export interface App {
  readonly handler: RequestHandler;
  /** The same services for a grpc-js server (the AUTHLINK_GRPC_ADDR listener). */
  readonly grpcJs: GrpcJsRoutes;
  readonly links: LinkService;
  /** Whether the app can serve; turned false first during a graceful shutdown. */
  readonly readiness: Readiness;
  /** Stops background work and stores the audit events still being counted; the store is the caller's to close. */
  close(): Promise<void>;
}

/** authlink's own services (the contract in proto/authlink/v1/). */
const AUTHLINK_SERVICES: readonly DescService[] = [AdminAuthService, LinkAdminService, UserAdminService, AuditService];

/** The :path of every served method whose request is a stream (the connection guard's long-body exemption). */
export const STREAMING_REQUEST_PATHS: ReadonlySet<string> = new Set(
  [...AUTHLINK_SERVICES, reflectionV1.ServerReflection, reflectionV1alpha.ServerReflection].flatMap((service) =>
    service.methods
      .filter((method) => method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming")
      .map((method) => `/${service.typeName}/${method.name}`),
  ),
);

export function createApp(deps: AppDeps): App {
  const { config, clock, logger, metrics } = deps;
  const store = metrics ? metrics.instrumentStore(deps.store) : deps.store;
  const trail = createAuditTrail({ store: store.audit, logger, retentionMs: config.auditRetentionMs, observer: metrics });
  // Repeated refusals become one event with a count per window, so that a
  // flood of refused calls writes a bounded number of documents.
  const audit = coalesceRefusals(trail, { clock, windowMs: config.auditCoalesceWindowMs });
  const assertions = createAssertionSigner({
    keys: config.assertions.keys,
    issuer: config.links.publicUrl.href.replace(/\/$/, ""),
    audience: config.assertions.audience,
    ttlMs: config.assertions.ttlMs,
  });
  const passwords = createArgon2Hasher(config.argon2);
  const rateLimiter = new RateLimiter(store.rateLimits, clock);
  const links = new LinkService({
    store,
    clock,
    otp: createOtpCodec(config.otp.secret, config.otp.length),
    passwords,
    redirects: config.redirects,
    settings: config.links,
    rateLimiter,
    rateLimits: config.rateLimits,
    audit,
    assertions,
  });
  // List calls (links, audit events) page with tokens every instance sharing the OTP secret accepts.
  const pageTokens = createPageTokenCodec(pageTokenKey(config.otp.secret));
  const readiness = createReadiness({ ping: (signal) => store.ping({ signal }) });

  // Every service goes through the call boundary. authlink's own take their
  // access from the contract; health and reflection are public operator
  // probes, neither audited nor rate limited. Anything else is denied.
  const policies = new AccessPolicies();
  for (const service of AUTHLINK_SERVICES) policies.add(service, contractPolicy);
  policies
    .add(Health, explicitPolicy({ Check: "public", Watch: "public", List: "public" }))
    .add(reflectionV1.ServerReflection, explicitPolicy({ ServerReflectionInfo: "public" }))
    .add(reflectionV1alpha.ServerReflection, explicitPolicy({ ServerReflectionInfo: "public" }));
  const boundary = createCallBoundary({
    policies,
    callers: { keys: createServiceKeyMatcher(config.serviceKeys), serviceIdentities: config.serviceIdentities },
    maxCallDurationMs: config.maxCallDurationMs,
    maxStreamDurationMs: config.maxStreamDurationMs,
    audit,
    clock,
    logger,
    observe: metrics && ((method, protocol) => metrics.callStarted(method, protocol)),
    refusalLimiter: createRefusalLimiter({ rule: config.refusalLimit, clock }),
  });
  const protocolRefusals = createProtocolRefusals({ logger, count: metrics && ((kind) => metrics.protocolRefusal(kind)) });
  const adapter = createCallAdapter(boundary, { onProtocolRefusal: (kind) => protocolRefusals.refused(kind) });
  // The services, mounted on connect-node's router and, when AUTHLINK_GRPC_ADDR
  // is set, on a grpc-js server too: the same implementations behind the same boundary.
  const services: ServiceImplSpec[] = [];
  const mounts: ((router: ConnectRouter) => void)[] = [];
  const serve = <T extends DescService>(desc: T, impl: ServiceImpl<T>) => {
    services.push(createServiceImplSpec(desc, impl));
    mounts.push((router) => router.service(desc, impl, adapter));
  };
  serve(AdminAuthService, createAdminAuthService(links));
  serve(LinkAdminService, {
    ...createLinkAdminService(new LinkAdmin({ store, clock, audit, links, pageTokens, settings: config.links })),
    ...createBulkGenerationHandlers(new BulkGeneration({ links, store, clock, audit, rowTimeoutMs: config.maxCallDurationMs })),
  });
  serve(
    UserAdminService,
    createUserAdminService(
      new UserAdmin({ store, clock, audit, passwords, settings: config.links, links, rateLimiter, rateLimits: config.rateLimits }),
    ),
  );
  serve(
    AuditService,
    createAuditService(
      createAuditReader({
        store: store.audit,
        audit,
        clock,
        pageTokens,
        watch: config.auditWatch,
      }),
    ),
  );
  serve(Health, createHealthService({ readiness, services: AUTHLINK_SERVICES.map((service) => service.typeName) }));
  if (config.reflection) {
    const reflection = createServerReflection({
      files: [...AUTHLINK_SERVICES.map((service) => service.file), file_health_v1_health],
      serviceNames: () => services.map((spec) => spec.service.typeName),
    });
    serve(reflectionV1.ServerReflection, reflection.v1);
    serve(reflectionV1alpha.ServerReflection, reflection.v1alpha);
  }
  const handler = createHttpHandler({
    routes: (router) => mounts.forEach((mount) => mount(router)),
    plainHandlers: [
      createHealthHttpHandler(readiness),
      createJwksHandler(assertions, { basePath: config.links.publicUrl.pathname }),
      createVerifyPageHandler({ publicUrl: config.links.publicUrl, title: config.pageTitle }),
    ],
    cors: createCors({ allowedOrigins: config.corsOrigins, services: [AdminAuthService] }),
    maxRequestBytes: config.maxRequestBytes,
    trustedProxies: config.trustedProxies,
    protocolRefusals,
  });
  // needsPurge may only become known once the store has reached its
  // database (MongoDB reports TTL support then), so the loop asks each time.
  const stopPurge = startPurgeLoop(store, clock, deps.purgeIntervalMs ?? 60_000, logger);
  return {
    handler,
    grpcJs: createGrpcJsRoutes(services, boundary, {
      trustedProxies: config.trustedProxies,
      onProtocolRefusal: (kind) => protocolRefusals.refused(kind),
    }),
    links,
    readiness,
    async close() {
      stopPurge();
      protocolRefusals.close();
      await audit.close();
      trail.close();
    },
  };
}
