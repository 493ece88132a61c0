import { createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type http from "node:http";
import type http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { peerKey } from "../rpc/context-values.js";
import type { ProtocolRefusalKind } from "../rpc/protocol-errors.js";
import { clientAddress, type TrustedProxies } from "../identity/client-address.js";
import { readPeerCertificate } from "../identity/peer-certificate.js";
import type { CorsMiddleware } from "../web/cors.js";
import type { RequestHandler } from "./http-server.js";

// The HTTP request handler: plain HTTP endpoints first (/healthz, /readyz,
// the JWKS, the verify page), then CORS for browsers on other origins, then
// connect-node's router for gRPC, gRPC-Web and Connect, with the peer's TLS facts handed to interceptors, hard message
// size limits, and headers that keep responses (which carry link secrets) out
// of caches and referrers. Requests the router refuses before any handler
// runs (unknown path, wrong HTTP method, content type or HTTP version) are
// reported to `protocolRefusals`; those refused while being read are reported
// by the call adapter (rpc/call-adapter.ts).

/** A plain HTTP endpoint: answers and returns true, or returns false to pass the request on. */
export type PlainHttpHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => boolean;

export interface HttpHandlerOptions {
  /** The RPC services; each is mounted with its own interceptors (the call boundary). */
  readonly routes: (router: ConnectRouter) => void;
  /** Plain HTTP endpoints, tried in order before the RPC router. */
  readonly plainHandlers?: readonly PlainHttpHandler[];
  /** CORS for the RPCs browsers on other origins may call: answers their preflights, marks their responses. */
  readonly cors?: CorsMiddleware;
  /** Largest request message, checked before it is parsed. */
  readonly maxRequestBytes: number;
  readonly trustedProxies: TrustedProxies;
  /** Told of each request the router refuses before any handler runs. */
  readonly protocolRefusals?: { refused(kind: ProtocolRefusalKind): void } | undefined;
}

/** The statuses connect-node's router answers itself, before any handler or interceptor. */
const ROUTER_REFUSALS: Readonly<Record<number, ProtocolRefusalKind>> = {
  405: "method_not_allowed",
  415: "unsupported_media_type",
  505: "http_version_not_supported",
};

const SECURITY_HEADERS: readonly (readonly [string, string])[] = Object.entries({
  "cache-control": "no-store",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
}); // as pairs once, not Object.entries per request

/** Responses are small; anything near this is a bug, not a reply. */
const MAX_RESPONSE_BYTES = 1_048_576;

export function createHttpHandler(options: HttpHandlerOptions): RequestHandler {
  const refused = (kind: ProtocolRefusalKind) => options.protocolRefusals?.refused(kind);
  const connect = connectNodeAdapter({
    routes: (router) => {
      options.routes(router);
      router.handlers.forEach((handler, i) => (router.handlers[i] = reportingRefusals(handler, refused)));
    },
    fallback: (_req, res) => {
      refused("unknown_path");
      res.writeHead(404);
      res.end();
    },
    readMaxBytes: options.maxRequestBytes,
    writeMaxBytes: MAX_RESPONSE_BYTES,
    contextValues: (req) => {
      const socket = req.socket as TLSSocket;
      const forwardedFor = req.headers["x-forwarded-for"];
      return createContextValues().set(peerKey, {
        certificate: readPeerCertificate(socket),
        clientAddress: clientAddress(
          socket.remoteAddress ?? "",
          Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor,
          options.trustedProxies,
        ),
      });
    },
  });
  return (req, res) => {
    for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
    for (const plain of options.plainHandlers ?? []) if (plain(req, res)) return;
    if (options.cors) options.cors(req, res, () => connect(req, res));
    else connect(req, res);
  };
}

/** A route's handler that reports the requests it refuses before any handler runs. */
function reportingRefusals(handler: UniversalHandler, refused: (kind: ProtocolRefusalKind) => void): UniversalHandler {
  return Object.assign(async (request: Parameters<UniversalHandler>[0]) => {
    const response = await handler(request);
    const kind = ROUTER_REFUSALS[response.status];
    if (kind) refused(kind);
    return response;
  }, handler);
}
