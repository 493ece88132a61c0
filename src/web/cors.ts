import type { DescService } from "@bufbuild/protobuf";
import { cors as connectCors } from "@connectrpc/connect";
import createCorsMiddleware from "cors";
import type http from "node:http";
import type http2 from "node:http2";
import { contractPolicy, type ServicePolicy } from "../call/access-policy.js";
import { REQUEST_ID_HEADER } from "../call/request-id.js";

// CORS for browsers on other origins (Connect-web): the exact origins of
// AUTHLINK_CORS_ORIGINS may call the public methods — the ones the contract
// marks `(authlink.v1.access) = ACCESS_PUBLIC`, e.g. VerifyLink and
// PreviewLink. Preflights for those are answered here with the methods and
// headers the Connect protocols need (connect's own `cors` constants);
// credentials are never allowed. Service-role methods, other paths and other
// origins get no CORS headers at all, so the browser blocks the call.

export type CorsMiddleware = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  next: () => void,
) => void;

export interface CorsOptions {
  /** Exact origins (scheme://host[:port]), already validated by the config. */
  readonly allowedOrigins: readonly string[];
  /** The services whose public methods browsers may call. */
  readonly services: readonly DescService[];
  /** Which methods are public (default: the contract's access option). */
  readonly policy?: ServicePolicy;
}

/** How long a browser may reuse a preflight answer. */
const PREFLIGHT_MAX_AGE_SECONDS = 7200;

/** The request paths of the methods browsers may call: /package.Service/Method. */
export function publicMethodPaths(services: readonly DescService[], policy: ServicePolicy = contractPolicy): Set<string> {
  return new Set(
    services.flatMap((service) =>
      service.methods.filter((method) => policy.access(method) === "public").map((method) => `/${service.typeName}/${method.name}`),
    ),
  );
}

export function createCors(options: CorsOptions): CorsMiddleware {
  const origins = new Set(options.allowedOrigins);
  const paths = publicMethodPaths(options.services, options.policy);
  if (origins.size === 0 || paths.size === 0) return (_req, _res, next) => next();
  const middleware = createCorsMiddleware({
    origin: [...origins],
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, REQUEST_ID_HEADER],
    exposedHeaders: [...connectCors.exposedHeaders, REQUEST_ID_HEADER],
    credentials: false,
    maxAge: PREFLIGHT_MAX_AGE_SECONDS,
  });
  return (req, res, next) => {
    const origin = req.headers.origin;
    const path = (req.url ?? "").split("?", 1)[0] ?? "";
    if (typeof origin !== "string" || !origins.has(origin) || !paths.has(path)) {
      next();
      return;
    }
    middleware(req, res, () => next());
  };
}
