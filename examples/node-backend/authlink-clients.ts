import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AdminAuthService } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { LinkAdminService } from "../../gen/authlink/v1/link_admin_service_pb.js";

// The backend's clients for authlink: gRPC over HTTP/2 with connect-node, the
// service key sent as `authorization: Bearer` on every call. The key stays in
// this process: no page, no browser and no log ever sees it.

export interface AuthlinkClients {
  readonly auth: Client<typeof AdminAuthService>;
  readonly links: Client<typeof LinkAdminService>;
}

export interface AuthlinkClientOptions {
  /** Where authlink answers RPCs, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  /** One of authlink's AUTHLINK_SERVICE_KEYS. */
  readonly serviceKey: string;
  /** Per-call deadline (default 10 s). */
  readonly timeoutMs?: number;
}

export function createAuthlinkClients(options: AuthlinkClientOptions): AuthlinkClients {
  const serviceKey: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${options.serviceKey}`);
    return next(req);
  };
  const transport = createGrpcTransport({
    baseUrl: options.url,
    interceptors: [serviceKey],
    defaultTimeoutMs: options.timeoutMs ?? 10_000,
  });
  return { auth: createClient(AdminAuthService, transport), links: createClient(LinkAdminService, transport) };
}
