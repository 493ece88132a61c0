import * as grpc from "@grpc/grpc-js";
import type { SecureServerOptions } from "node:http2";
import type { TlsConfig } from "../config/config.js";
import type { GrpcJsRoutes } from "../rpc/grpc-js-adapter.js";
import type { ConnectionSettings } from "./http-server.js";

// The second listener (AUTHLINK_GRPC_ADDR): gRPC only, over HTTP/2, served by
// @grpc/grpc-js, which answers the gRPC protocol several times faster than
// connect-node. The services, the call boundary and the errors are the main
// listener's (rpc/grpc-js-adapter.ts); what grpc-js offers of the main
// listener's connection hygiene is set from the same settings:
//
// - SETTINGS_MAX_CONCURRENT_STREAMS = AUTHLINK_HTTP2_MAX_STREAMS;
// - a connection with no call in flight is closed (GOAWAY) after
//   AUTHLINK_CONN_IDLE_TIMEOUT (grpc.max_connection_idle_ms);
// - TLS handshakes must finish within AUTHLINK_CONN_HEADERS_TIMEOUT;
// - messages over AUTHLINK_MAX_REQUEST_BYTES are refused from their length
//   prefix, before they are buffered; answers are capped at 1 MiB;
// - 10 MiB of HTTP/2 session memory per connection, as on the main port.
//
// What grpc-js has no hook for — the connection caps (total and per client
// address, with shedding), the deadline for a request's headers on a
// plaintext connection and for its whole body, the header list size limit —
// is not enforced here: this listener is for internal callers (see
// docs/grpc-js-listener.md).
//
// TLS: the same certificate as the main port. With a client CA, a client
// certificate is requested but not required by the handshake, so that
// callers with a service key and anonymous VerifyLink callers can connect
// as on the main port; the call boundary decides what a certificate proves.

/** Largest answer (the main listener's limit too). */
const MAX_RESPONSE_BYTES = 1_048_576;
const SESSION_MEMORY_MIB = 10;

export interface GrpcJsServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsConfig | undefined;
  readonly connections: ConnectionSettings;
  readonly maxRequestBytes: number;
}

export interface RunningGrpcJsServer {
  /** host:port actually bound (what a grpc-js client dials). */
  readonly address: string;
  readonly port: number;
  /** Stop accepting, let in-flight calls finish; after `graceMs` cut what is left. */
  close(graceMs: number): Promise<void>;
}

export async function startGrpcJsServer(routes: GrpcJsRoutes, options: GrpcJsServerOptions): Promise<RunningGrpcJsServer> {
  const { connections } = options;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": options.maxRequestBytes,
    "grpc.max_send_message_length": MAX_RESPONSE_BYTES,
    "grpc.max_concurrent_streams": connections.http2MaxConcurrentStreams,
    "grpc.max_connection_idle_ms": connections.idleTimeoutMs,
    "grpc-node.max_session_memory": SESSION_MEMORY_MIB,
    "grpc.enable_channelz": 0,
    interceptors: routes.interceptors,
  });
  routes.addTo(server);
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  const credentials = options.tls ? new AuthlinkServerCredentials(options.tls, connections) : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${options.port}`, credentials, (error, bound) => (error ? reject(error) : resolve(bound)));
  });
  return {
    address: `${host}:${port}`,
    port,
    async close(graceMs) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

/**
 * TLS as on the main port. grpc-js's own createSsl either does not ask for a
 * client certificate or requires a valid one in the handshake (a dropped
 * connection, not a status with a reason); these credentials ask for one and
 * let the call boundary decide. grpc-js reports a certificate to calls only
 * when it verified against the client CA (getAuthContext).
 */
class AuthlinkServerCredentials extends grpc.ServerCredentials {
  constructor(tls: TlsConfig, connections: ConnectionSettings) {
    const constructorOptions: SecureServerOptions = {
      minVersion: "TLSv1.2",
      requestCert: tls.clientCa !== undefined,
      rejectUnauthorized: false,
      handshakeTimeout: connections.headersTimeoutMs,
    };
    super(constructorOptions, { cert: tls.cert, key: tls.key, ...(tls.clientCa ? { ca: tls.clientCa } : {}) });
  }

  override _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}
