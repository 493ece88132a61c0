import type http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import type { TLSSocket } from "node:tls";

// Every connection on the shared port, from accept to close: admitted under
// the caps, held to deadlines for what the client owes, closed gracefully at
// shutdown.
//
// A connection is busy while a request on it is in flight (HTTP/1.1: until
// the request is fully received and answered; HTTP/2: while any stream is
// open). Otherwise it is quiet, in one of two ways:
// - awaiting: the client owes request headers, since the connection was
//   accepted or (HTTP/1.1 keep-alive) since the next request's first byte;
// - idle: the last request was answered and nothing has arrived since.
//
// Deadlines are this guard's own timers: Node enforces http's headersTimeout
// and requestTimeout only on a server that called listen(), and every socket
// here is handed to its server with emit("connection").
// - awaiting: headers within headersTimeoutMs (for a new connection that
//   includes the TLS handshake and the HTTP/2 preface), or the connection is cut;
// - each request: its body within requestTimeoutMs of its start, or HTTP/1.1
//   loses the connection and HTTP/2 the stream (RST_STREAM CANCEL); an
//   HTTP/2 streaming RPC's body has the longer streamingRequests limit;
// - idle: closed after idleTimeoutMs (HTTP/2 with GOAWAY first).
//
// Caps: a connection that would exceed the total or its address's cap makes
// room by shedding the connection that has been quiet the longest (of that
// address, for the per-address cap). A busy connection is never cut to make
// room: when every candidate is busy, the new connection is refused.

export interface ConnectionLimits {
  /** Time to send complete request headers (see above). */
  readonly headersTimeoutMs: number;
  /** Time to send a whole request, body included, from its start. */
  readonly requestTimeoutMs: number;
  /** A connection with nothing in flight is closed after this long. */
  readonly idleTimeoutMs: number;
  /** Open connections at most; 0: no cap. */
  readonly maxConnections: number;
  /** Open connections per client address at most; 0: no cap. */
  readonly maxConnectionsPerAddress: number;
}

export interface ConnectionGuardOptions extends ConnectionLimits {
  /** Addresses that carry many clients (trusted proxies): exempt from the per-address cap. */
  readonly sharedAddress?: (address: string) => boolean;
  /** HTTP/2 requests whose body is a stream by design (see StreamingRequests). */
  readonly streamingRequests?: StreamingRequests | undefined;
}

/**
 * HTTP/2 requests whose body is a stream of messages by design (a
 * client- or bidi-streaming RPC, told by its :path): a client sends rows for
 * as long as the call runs, so the body is held to `timeoutMs` (the call's
 * own cap plus a margin) instead of requestTimeoutMs. Their headers are held
 * to headersTimeoutMs like any other. HTTP/1.1 carries no such call
 * (connect-node refuses bidi streaming over HTTP/1.1).
 */
export interface StreamingRequests {
  readonly matches: (path: string) => boolean;
  readonly timeoutMs: number;
}

export interface ConnectionGuard {
  /** A freshly accepted TCP connection: true if admitted (possibly after shedding another), false if refused (and destroyed). */
  admit(socket: net.Socket): boolean;
  /** The TLS socket of an admitted connection, once the handshake is done (ALPN decides the protocol). */
  attachTls(socket: TLSSocket): void;
  /** An admitted connection was handed to the HTTP/1.1 server. */
  attachHttp1(socket: net.Socket): void;
  attachHttp2(session: http2.Http2Session): void;
  /** Every HTTP/1.1 request, before it is handled. */
  onHttp1Request(req: http.IncomingMessage, res: http.ServerResponse): void;
  /** Graceful shutdown: let what is in flight finish, close the rest; after graceMs cut everything. */
  drain(graceMs: number): Promise<void>;
}

type State = "awaiting" | "idle" | "busy";

interface Connection {
  /** The TCP socket: destroying it closes whatever runs on top of it. */
  readonly socket: net.Socket;
  readonly address: string;
  readonly peer: string;
  session: http2.Http2Session | undefined;
  state: State;
  /** awaiting: when the client's turn to send a request began. */
  turnStartedAt: number;
  /** Requests (HTTP/1.1) or streams (HTTP/2) in flight. */
  inFlight: number;
  timer: NodeJS.Timeout | undefined;
  /** Still counted against the caps (false once shed or closed). */
  counted: boolean;
  closed: boolean;
}

/** After GOAWAY, the most a peer gets to close its side before the socket is destroyed. */
const GOAWAY_LINGER_MS = 1_000;

export function createConnectionGuard(options: ConnectionGuardOptions): ConnectionGuard {
  const { headersTimeoutMs, requestTimeoutMs, idleTimeoutMs, maxConnections, maxConnectionsPerAddress } = options;
  const sharedAddress = options.sharedAddress ?? (() => false);
  const { streamingRequests } = options;
  /** Every connection until its socket closes (shed ones too, while they linger). */
  const live = new Set<Connection>();
  /** Counted quiet connections, the longest quiet first (a Set keeps insertion order). */
  const quiet = new Set<Connection>();
  const perAddress = new Map<string, number>();
  let counted = 0;
  /** TCP and TLS sockets to their connection. */
  const bySocket = new WeakMap<object, Connection>();
  /** `address|port`: how an HTTP/2 session finds its connection (session.socket is a proxy). */
  const byPeer = new Map<string, Connection>();
  let draining = false;
  let onAllClosed: (() => void) | undefined;

  const now = () => performance.now();

  const setTimer = (conn: Connection, ms: number, onExpiry: () => void) => {
    clearTimeout(conn.timer);
    conn.timer = setTimeout(onExpiry, Math.max(0, ms)).unref();
  };

  const uncount = (conn: Connection) => {
    if (!conn.counted) return;
    conn.counted = false;
    counted--;
    quiet.delete(conn);
    const left = (perAddress.get(conn.address) ?? 1) - 1;
    if (left > 0) perAddress.set(conn.address, left);
    else perAddress.delete(conn.address);
  };

  /** The client did not do its part: no goodbye. */
  const cut = (conn: Connection) => {
    uncount(conn);
    conn.socket.destroy();
  };

  /** Nothing in flight is lost: HTTP/2 gets GOAWAY (new streams refused, so clients retry elsewhere). */
  const closeQuiet = (conn: Connection) => {
    uncount(conn);
    if (!conn.session || conn.session.destroyed) {
      conn.socket.destroy();
      return;
    }
    conn.session.close();
    // A stream that slipped in before the GOAWAY keeps the session (which
    // closes itself after its last stream); otherwise the socket goes.
    setTimeout(() => {
      if (conn.state !== "busy") conn.socket.destroy();
    }, GOAWAY_LINGER_MS).unref();
  };

  const becomeQuiet = (conn: Connection, state: "awaiting" | "idle", since: number) => {
    if (conn.closed) return;
    conn.state = state;
    conn.turnStartedAt = since;
    if (conn.counted) {
      quiet.delete(conn);
      quiet.add(conn);
    }
    if (draining) {
      closeQuiet(conn);
      return;
    }
    if (state === "awaiting") setTimer(conn, headersTimeoutMs - (now() - since), () => cut(conn));
    else setTimer(conn, idleTimeoutMs, () => closeQuiet(conn));
  };

  const becomeBusy = (conn: Connection) => {
    conn.state = "busy";
    quiet.delete(conn);
    clearTimeout(conn.timer);
  };

  const requestStarted = (conn: Connection): number => {
    const startedAt = conn.state === "awaiting" ? conn.turnStartedAt : now();
    conn.inFlight++;
    becomeBusy(conn);
    return startedAt;
  };

  const requestFinished = (conn: Connection) => {
    conn.inFlight--;
    if (conn.inFlight === 0) becomeQuiet(conn, "idle", now());
  };

  const longestQuiet = (address?: string): Connection | undefined => {
    for (const conn of quiet) if (address === undefined || conn.address === address) return conn;
    return undefined;
  };

  /** Makes room for one more connection from this address, or says there is none. */
  const makeRoom = (address: string): boolean => {
    const addressFull =
      maxConnectionsPerAddress > 0 && !sharedAddress(address) && (perAddress.get(address) ?? 0) >= maxConnectionsPerAddress;
    if (addressFull) {
      const victim = longestQuiet(address);
      if (!victim) return false;
      closeQuiet(victim);
    }
    if (maxConnections > 0 && counted >= maxConnections) {
      const victim = longestQuiet();
      if (!victim) return false;
      closeQuiet(victim);
    }
    return true;
  };

  return {
    admit(socket) {
      socket.on("error", () => socket.destroy());
      const address = unmapped(socket.remoteAddress ?? "");
      if (draining || !makeRoom(address)) {
        socket.destroy();
        return false;
      }
      const conn: Connection = {
        socket,
        address,
        peer: peerOf(socket),
        session: undefined,
        state: "awaiting",
        turnStartedAt: now(),
        inFlight: 0,
        timer: undefined,
        counted: true,
        closed: false,
      };
      counted++;
      perAddress.set(address, (perAddress.get(address) ?? 0) + 1);
      live.add(conn);
      bySocket.set(socket, conn);
      byPeer.set(conn.peer, conn);
      socket.once("close", () => {
        conn.closed = true;
        uncount(conn);
        clearTimeout(conn.timer);
        live.delete(conn);
        if (byPeer.get(conn.peer) === conn) byPeer.delete(conn.peer);
        if (live.size === 0) onAllClosed?.();
      });
      becomeQuiet(conn, "awaiting", conn.turnStartedAt);
      return true;
    },

    attachTls(socket) {
      const conn = byPeer.get(peerOf(socket));
      if (!conn) return;
      bySocket.set(socket, conn);
      if (socket.alpnProtocol !== "h2") observeHttp1(conn, socket);
    },

    attachHttp1(socket) {
      const conn = bySocket.get(socket);
      if (conn) observeHttp1(conn, socket);
    },

    attachHttp2(session) {
      const conn = byPeer.get(peerOf(session.socket));
      if (!conn) {
        session.destroy();
        return;
      }
      conn.session = session;
      session.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
        const startedAt = requestStarted(conn);
        const received = () => stream.destroyed || stream.state.remoteClose === 1;
        const path = headers[":path"] ?? "";
        const timeoutMs = streamingRequests?.matches(path) ? streamingRequests.timeoutMs : requestTimeoutMs;
        const deadline = setTimeout(() => {
          if (!received()) stream.close(http2.constants.NGHTTP2_CANCEL);
        }, timeoutMs - (now() - startedAt)).unref();
        stream.once("end", () => clearTimeout(deadline));
        stream.once("close", () => {
          clearTimeout(deadline);
          requestFinished(conn);
        });
      });
      if (draining) session.close();
    },

    onHttp1Request(req, res) {
      const conn = bySocket.get(req.socket);
      if (!conn) return;
      const startedAt = requestStarted(conn);
      if (draining) res.setHeader("connection", "close");
      const deadline = setTimeout(() => {
        if (!req.complete) cut(conn);
      }, requestTimeoutMs - (now() - startedAt)).unref();
      const received = new Promise<void>((resolve) => {
        if (req.complete) resolve();
        else req.once("end", resolve);
      }).then(() => clearTimeout(deadline));
      // Answered early (e.g. too large), the request is still read to its end
      // before the connection can carry another.
      res.once("close", () => {
        if (req.complete) requestFinished(conn);
        else void received.then(() => requestFinished(conn));
      });
    },

    async drain(graceMs) {
      draining = true;
      for (const conn of live) {
        if (conn.session) conn.session.close();
        else if (conn.state !== "busy") closeQuiet(conn);
      }
      if (live.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          onAllClosed = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      for (const conn of live) conn.socket.destroy(); // what the grace period did not see finish
    },
  };

  /**
   * HTTP/1.1 gives no event when a request starts, only when its headers are
   * complete: the first byte after an idle spell starts the next request's
   * clock. (Listening to "data" makes Node's HTTP parser read in JavaScript
   * instead of straight from the socket; requests are small, so this costs little.)
   */
  function observeHttp1(conn: Connection, socket: net.Socket): void {
    socket.on("data", () => {
      if (conn.state === "idle") becomeQuiet(conn, "awaiting", now());
    });
  }
}

function peerOf(socket: net.Socket): string {
  return `${socket.remoteAddress ?? ""}|${socket.remotePort ?? ""}`;
}

/** "::ffff:10.0.0.1" (an IPv4 peer on a dual-stack socket) as "10.0.0.1". */
function unmapped(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
