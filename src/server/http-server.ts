import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { TLSSocket } from "node:tls";
import type { TlsConfig } from "../config/config.js";
import { createConnectionGuard, type ConnectionLimits, type StreamingRequests } from "./connection-guard.js";

// One port for every protocol: gRPC clients speak HTTP/2, browsers and curl
// speak HTTP/1.1, and connect-node answers gRPC, gRPC-Web and Connect over
// both.
//
// One TCP listener accepts every connection and hands it to the connection
// guard (caps and deadlines, see connection-guard.ts), then to a server:
// - TLS: ALPN picks h2 or http/1.1. Client certificates are requested when a
//   client CA is configured but never required by the handshake: the caller
//   interceptor turns a missing or bad certificate into a gRPC status.
// - Plaintext: Node's HTTP/2 server cannot fall back to HTTP/1.1 without TLS,
//   so each connection's first bytes decide: the HTTP/2 preface ("PRI * ...")
//   goes to the HTTP/2 server, anything else to the HTTP/1.1 server.

export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface ConnectionSettings extends ConnectionLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams one HTTP/2 connection may have open. */
  readonly http2MaxConcurrentStreams: number;
  /** Request headers at most, in bytes (HTTP/1.1 header section; HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE). */
  readonly maxHeaderBytes: number;
}

export const DEFAULT_CONNECTION_SETTINGS: ConnectionSettings = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
  maxConnections: 1_024,
  maxConnectionsPerAddress: 128,
  http2MaxConcurrentStreams: 100,
  maxHeaderBytes: 16_384,
};

export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsConfig | undefined;
  /** Deadlines, caps and protocol limits; DEFAULT_CONNECTION_SETTINGS for what is left out. */
  readonly connections?: Partial<ConnectionSettings>;
  /** Addresses that carry many clients (trusted proxies): exempt from the per-address cap. */
  readonly sharedAddress?: (address: string) => boolean;
  /** Streaming RPCs whose request body may outlast the request deadline (connection-guard.ts). */
  readonly streamingRequests?: StreamingRequests | undefined;
}

export interface RunningHttpServer {
  /** e.g. http://127.0.0.1:8080 (the port actually bound). */
  readonly url: string;
  readonly port: number;
  /**
   * Stop accepting, let in-flight calls finish, then close every connection;
   * after `graceMs` whatever is left is cut.
   */
  close(graceMs: number): Promise<void>;
}

const HTTP2_PREFACE_START = Buffer.from("PRI ", "latin1");

/** HTTP/2 limits beyond the configurable ones: small, fixed bounds on what a peer may make the server hold. */
function http2Options(settings: ConnectionSettings): http2.ServerOptions {
  return {
    settings: {
      maxConcurrentStreams: settings.http2MaxConcurrentStreams,
      maxHeaderListSize: settings.maxHeaderBytes,
      enablePush: false,
    },
    maxHeaderListPairs: 128,
    maxSessionMemory: 10, // MiB per session; new streams are refused beyond it
    maxSettings: 32, // entries per SETTINGS frame
    maxOutstandingPings: 10,
    maxSessionInvalidFrames: 100,
    maxSessionRejectedStreams: 100,
  };
}

/**
 * An HTTP/2 stream lives until the peer has sent its whole request, even once
 * it has been answered. A request answered without reading its body (refused
 * from its headers, or cut at the size limit) would otherwise sit paused: it
 * counts against the connection's concurrent streams, and the bytes the peer
 * already sent are never credited back to the connection's flow-control
 * window, so after a few hundred oversized messages a client's connection
 * refuses new streams (ENHANCE_YOUR_CALM) or stalls. Node's HTTP/1.1 server
 * discards such a body; this does the same for HTTP/2, once the response is
 * complete (the compatibility layer always asks for trailers). Resetting the
 * stream instead (RST_STREAM NO_ERROR, RFC 9113 §8.1) is not enough with
 * Node: data still in flight lands on a closed stream and its connection
 * window is never restored. The request deadline (connection-guard.ts)
 * still bounds how long a peer may keep sending.
 */
function discardBodyOnceAnswered(req: http2.Http2ServerRequest): void {
  const stream = req.stream;
  stream.once("wantTrailers", () => {
    if (req.complete) return;
    // The compatibility request's own "data" listener pauses the stream once
    // the (abandoned or destroyed) request stops taking chunks; replace it.
    stream.removeAllListeners("data");
    stream.on("data", () => undefined);
    stream.resume();
  });
}

/** RFC 9113's measure of a header list: each field's name and value plus 32 bytes. */
function headerListSize(rawHeaders: readonly string[]): number {
  let size = 0;
  for (const field of rawHeaders) size += field.length + 16; // name and value alternate: 32 per pair
  return size;
}

export async function startHttpServer(handler: RequestHandler, options: HttpServerOptions): Promise<RunningHttpServer> {
  const settings: ConnectionSettings = { ...DEFAULT_CONNECTION_SETTINGS, ...options.connections };
  const guard = createConnectionGuard({ ...settings, sharedAddress: options.sharedAddress, streamingRequests: options.streamingRequests });
  const guarded: RequestHandler = (req, res) => {
    if (req instanceof http.IncomingMessage && res instanceof http.ServerResponse) {
      guard.onHttp1Request(req, res);
    } else if (headerListSize(req.rawHeaders) > settings.maxHeaderBytes) {
      // Node advertises SETTINGS_MAX_HEADER_LIST_SIZE but enforces only its
      // own 64 KiB; HTTP/1.1's parser enforces maxHeaderSize itself.
      res.statusCode = 431;
      res.end();
      return;
    } else if (req instanceof http2.Http2ServerRequest) {
      discardBodyOnceAnswered(req);
    }
    handler(req, res);
  };
  const http1Options: http.ServerOptions = {
    maxHeaderSize: settings.maxHeaderBytes,
    // Only for the Keep-Alive header it sends: the guard closes idle connections.
    keepAliveTimeout: settings.idleTimeoutMs,
  };

  let accept: (socket: net.Socket) => void;
  if (options.tls) {
    const secure = http2.createSecureServer(
      {
        ...http2Options(settings),
        ...http1Options,
        cert: options.tls.cert,
        key: options.tls.key,
        allowHTTP1: true,
        minVersion: "TLSv1.2",
        requestCert: options.tls.clientCa !== undefined,
        ca: options.tls.clientCa,
        rejectUnauthorized: false,
      },
      guarded,
    );
    secure.on("session", (session) => guard.attachHttp2(session));
    secure.on("secureConnection", (socket: TLSSocket) => guard.attachTls(socket));
    accept = (socket) => secure.emit("connection", socket);
  } else {
    const h2 = http2.createServer(http2Options(settings), guarded);
    const h1 = http.createServer(http1Options, guarded);
    h2.on("session", (session) => guard.attachHttp2(session));
    accept = (socket) => {
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const prefix = head.subarray(0, HTTP2_PREFACE_START.length);
        const mayBeHttp2 = HTTP2_PREFACE_START.subarray(0, prefix.length).equals(prefix);
        if (mayBeHttp2 && head.length < HTTP2_PREFACE_START.length) return; // need more bytes
        socket.off("data", onData);
        socket.pause();
        socket.unshift(head);
        if (mayBeHttp2) {
          // The HTTP/2 session reads what was unshifted from the socket's
          // buffer itself; resuming here would drop it.
          h2.emit("connection", socket);
        } else {
          h1.emit("connection", socket);
          guard.attachHttp1(socket);
          socket.resume();
        }
      };
      socket.on("data", onData);
    };
  }
  const listener = net.createServer((socket) => {
    if (guard.admit(socket)) accept(socket);
  });

  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(options.port, options.host, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const address = listener.address() as net.AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `${options.tls ? "https" : "http"}://${host}:${address.port}`,
    port: address.port,
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      await guard.drain(graceMs);
      await closed;
    },
  };
}
