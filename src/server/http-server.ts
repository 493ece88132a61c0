import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import type { TlsConfig } from "../config/config.js";

// One port for every protocol: gRPC clients speak HTTP/2, browsers and curl
// speak HTTP/1.1, and connect-node answers gRPC, gRPC-Web and Connect over
// both.
//
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

export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsConfig | undefined;
  /** A connection that sends nothing for this long is dropped. */
  readonly idleTimeoutMs?: number;
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

export async function startHttpServer(handler: RequestHandler, options: HttpServerOptions): Promise<RunningHttpServer> {
  const idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
  const tracker = createConnectionTracker();
  const tracked: RequestHandler = (req, res) => tracker.handle(req, res, handler);

  let listener: net.Server;
  if (options.tls) {
    const secure = http2.createSecureServer(
      {
        cert: options.tls.cert,
        key: options.tls.key,
        allowHTTP1: true,
        minVersion: "TLSv1.2",
        requestCert: options.tls.clientCa !== undefined,
        ca: options.tls.clientCa,
        rejectUnauthorized: false,
      },
      tracked,
    );
    secure.on("secureConnection", (socket: TLSSocket) => {
      tracker.addSocket(socket);
      if (socket.alpnProtocol === "h2") tracker.markHttp2(socket);
    });
    secure.on("session", (session) => tracker.addSession(session));
    secure.setTimeout(idleTimeoutMs);
    listener = secure;
  } else {
    const h2 = http2.createServer(tracked);
    const h1 = http.createServer(tracked);
    h2.on("session", (session) => tracker.addSession(session));
    h1.setTimeout(idleTimeoutMs);
    listener = net.createServer((socket) => {
      tracker.addSocket(socket);
      socket.setTimeout(idleTimeoutMs, () => socket.destroy());
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const prefix = head.subarray(0, HTTP2_PREFACE_START.length);
        const mayBeHttp2 = HTTP2_PREFACE_START.subarray(0, prefix.length).equals(prefix);
        if (mayBeHttp2 && head.length < HTTP2_PREFACE_START.length) return; // need more bytes
        socket.off("data", onData);
        socket.pause();
        socket.unshift(head);
        socket.setTimeout(0);
        if (mayBeHttp2) {
          // The HTTP/2 session reads what was unshifted from the socket's
          // buffer itself; resuming here would drop it.
          tracker.markHttp2(socket);
          h2.emit("connection", socket);
        } else {
          h1.emit("connection", socket);
          socket.resume();
        }
      };
      socket.on("data", onData);
      socket.on("error", () => socket.destroy());
    });
  }

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
      await tracker.drain(graceMs);
      await closed;
    },
  };
}

/**
 * Knows every connection, every HTTP/2 session and how many HTTP/1.1 requests
 * each connection has in flight, so that shutdown can close idle connections
 * at once and busy ones as soon as their calls finish.
 */
function createConnectionTracker() {
  const sockets = new Set<Duplex>();
  /** Connections carrying HTTP/2: their session closes them (GOAWAY, then after the last stream). */
  const http2Sockets = new WeakSet<Duplex>();
  const sessions = new Set<http2.Http2Session>();
  const inFlight = new Map<Duplex, number>();
  let draining = false;
  /** Called when the last connection closes during a drain. */
  let onAllClosed: (() => void) | undefined;

  const closeIfIdle = (socket: Duplex) => {
    if (draining && !inFlight.get(socket) && !http2Sockets.has(socket)) socket.destroy();
  };

  return {
    addSocket(socket: Duplex) {
      sockets.add(socket);
      socket.once("close", () => {
        sockets.delete(socket);
        inFlight.delete(socket);
        if (sockets.size === 0) onAllClosed?.();
      });
    },
    markHttp2(socket: Duplex) {
      http2Sockets.add(socket);
    },
    addSession(session: http2.Http2Session) {
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
      if (draining) session.close();
    },
    handle(
      req: http.IncomingMessage | http2.Http2ServerRequest,
      res: http.ServerResponse | http2.Http2ServerResponse,
      next: RequestHandler,
    ) {
      if (req.httpVersionMajor === 1) {
        const socket = req.socket;
        inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
        if (draining) res.setHeader("connection", "close");
        res.once("close", () => {
          inFlight.set(socket, (inFlight.get(socket) ?? 1) - 1);
          closeIfIdle(socket);
        });
      }
      next(req, res);
    },
    async drain(graceMs: number) {
      draining = true;
      for (const session of sessions) session.close();
      for (const socket of sockets) closeIfIdle(socket);
      if (sockets.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          onAllClosed = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      for (const socket of sockets) socket.destroy(); // what the grace period did not see finish
    },
  };
}
