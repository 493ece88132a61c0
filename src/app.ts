import type { Config } from "./config/config.js";
import type { Clock } from "./domain/clock.js";
import { LinkService } from "./domain/link-service.js";
import { RateLimiter } from "./domain/rate-limiter.js";
import type { Logger } from "./log/logger.js";
import { AdminAuthService } from "../gen/authlink/v1/admin_auth_service_pb.js";
import { createAdminAuthService } from "./rpc/admin-auth-service.js";
import { createAuditInterceptor } from "./rpc/audit-interceptor.js";
import { createCallerInterceptor } from "./rpc/caller-interceptor.js";
import { createErrorInterceptor } from "./rpc/error-interceptor.js";
import { createOtpCodec } from "./security/otp.js";
import { createArgon2Hasher } from "./security/passwords.js";
import { createServiceKeyMatcher } from "./security/service-keys.js";
import { createHttpHandler } from "./server/http-handler.js";
import type { RequestHandler } from "./server/http-server.js";
import { startPurgeLoop } from "./store/purge-loop.js";
import type { Store } from "./store/store.js";

// The composition root: builds authlink from its dependencies. Nothing here
// reads the environment or listens on a port (that is main.ts), so tests
// build the same app with their own store, clock and logger.

export interface AppDeps {
  readonly config: Config;
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often expired documents are purged where the store needs it. */
  readonly purgeIntervalMs?: number;
}

export interface App {
  readonly handler: RequestHandler;
  readonly links: LinkService;
  /** Stops background work; the store is the caller's to close. */
  close(): void;
}

export function createApp(deps: AppDeps): App {
  const { config, store, clock, logger } = deps;
  const links = new LinkService({
    store,
    clock,
    otp: createOtpCodec(config.otp.secret, config.otp.length),
    passwords: createArgon2Hasher(config.argon2),
    redirects: config.redirects,
    settings: config.links,
    rateLimiter: new RateLimiter(store.rateLimits, clock),
    rateLimits: config.rateLimits,
  });
  const handler = createHttpHandler({
    routes: (router) =>
      router.service(AdminAuthService, createAdminAuthService(links, { maxCallDurationMs: config.maxCallDurationMs })),
    // Outermost first: errors are mapped last, so the audit sees every
    // outcome, including refusals by the caller interceptor.
    interceptors: [
      createErrorInterceptor(logger),
      createAuditInterceptor({ audit: store.audit, clock, logger, retentionMs: config.auditRetentionMs }),
      createCallerInterceptor({
        keys: createServiceKeyMatcher(config.serviceKeys),
        serviceIdentities: config.serviceIdentities,
      }),
    ],
    maxRequestBytes: config.maxRequestBytes,
    trustedProxies: config.trustedProxies,
  });
  const stopPurge = store.needsPurge ? startPurgeLoop(store, clock, deps.purgeIntervalMs ?? 60_000, logger) : () => {};
  return { handler, links, close: stopPurge };
}
