import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import tls from "node:tls";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { ConfigError, loadConfig } from "../../src/config/config.js";
import {
  DEFAULT_CONNECTION_SETTINGS,
  startHttpServer,
  type ConnectionSettings,
  type RequestHandler,
  type RunningHttpServer,
} from "../../src/server/http-server.js";
import { createTestCa } from "../support/certs.js";
import { connectClient } from "../support/clients.js";
import { startTestServer, testEnv, type TestServer } from "../support/test-server.js";

// Connection slots (issue 10, section 1): every connection, plaintext and
// TLS, HTTP/1.1 and HTTP/2, is held to deadlines for its first bytes, its
// headers, its body and its idle time; connections are capped in total and per
// client address, shedding the longest-quiet one first and never a busy one;
// HTTP/2 advertises and enforces a bounded number of concurrent streams.
//
// Real sockets throughout. Attackers connect from their own loopback
// addresses (127.0.0.x), the legitimate clients from 127.0.0.1. Deadlines are
// short so that the tests are fast; every wait is on an event with a deadline.

const ca = createTestCa("connection limits test CA");
const serverCert = ca.issue({ usage: "server", dnsNames: ["localhost"], ips: ["127.0.0.1"] });
const caPem = Buffer.from(ca.certPem);
const tlsConfig = { cert: Buffer.from(serverCert.certPem), key: Buffer.from(serverCert.keyPem), clientCa: undefined };
const tlsFiles: Record<string, Buffer> = { "/cert.pem": tlsConfig.cert, "/key.pem": tlsConfig.key };
const tlsEnv = { AUTHLINK_TLS_CERT: "/cert.pem", AUTHLINK_TLS_KEY: "/key.pem" };
const readFile = (path: string) => tlsFiles[path] ?? Buffer.alloc(0);

const HEADERS_MS = 600;
const REQUEST_MS = 1_200;
const IDLE_MS = 900;
/** How far past its deadline a drop may land on a busy 2-CPU machine. */
const SLACK_MS = 2_000;
const DRIBBLE_MS = 100;
const N = 50;

const now = () => performance.now();

// ---- waiting on events -----------------------------------------------------

/** Resolves when `emitter` emits `event`, rejects after `ms`. */
function eventWithin(emitter: EventEmitter, event: string, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no ${event} within ${ms} ms`)), ms);
    emitter.once(event, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** `promise`, or a rejection naming `what` once `ms` have passed. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${Math.round(ms)} ms: ${what}`)), Math.max(0, ms));
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until `condition` holds, re-checking whenever `emitter` emits `event`. */
async function until(emitter: EventEmitter, event: string, condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = now() + ms;
  while (!condition()) {
    const left = deadline - now();
    if (left <= 0) throw new Error(`timed out: ${what}`);
    await eventWithin(emitter, event, left, what).catch(() => undefined);
  }
}

// ---- clients and attackers -------------------------------------------------

interface Target {
  readonly port: number;
  readonly tls: boolean;
  /**
   * Sent with requests that must reach their body: authlink refuses a call
   * without a credential from its headers alone, before reading any body.
   */
  readonly authorization?: string;
}

function tcpFrom(target: Target, address: string): net.Socket {
  return net.connect({ port: target.port, host: "127.0.0.1", localAddress: address }).on("error", () => undefined);
}

function tlsFrom(target: Target, address: string, alpn: string | undefined): tls.TLSSocket {
  const socket = tls.connect({ socket: tcpFrom(target, address), ca: caPem, servername: "localhost", ALPNProtocols: alpn ? [alpn] : undefined });
  return socket.on("error", () => undefined);
}

/**
 * A TCP (or TLS) connection from `address`, once connected (TLS: after the
 * handshake, with this ALPN). It reads and discards what the server sends: a
 * socket that does not read never sees the server close it.
 */
async function connectFrom(target: Target, address: string, alpn?: string): Promise<net.Socket> {
  const socket = (target.tls ? tlsFrom(target, address, alpn) : tcpFrom(target, address)).resume();
  await eventWithin(socket, target.tls ? "secureConnect" : "connect", 5_000, "connect");
  return socket;
}

function http2From(target: Target, address: string): http2.ClientHttp2Session {
  const url = `${target.tls ? "https" : "http"}://127.0.0.1:${target.port}`;
  const session = http2.connect(url, {
    createConnection: () => (target.tls ? tlsFrom(target, address, "h2") : tcpFrom(target, address)),
  });
  session.on("error", () => undefined);
  return session;
}

/** Writes `text` one byte every `intervalMs` until it is written or the socket closes. */
function dribble(socket: net.Socket, text: string, intervalMs = DRIBBLE_MS): void {
  let i = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || i >= text.length) clearInterval(timer);
    else socket.write(text[i++] ?? "");
  }, intervalMs);
  socket.once("close", () => clearInterval(timer));
}

/** Sends one HTTP/1.1 request and resolves once its whole (small, content-length) response has arrived. */
function http1Exchange(socket: net.Socket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      const length = /content-length: (\d+)/i.exec(text)?.[1];
      if (end >= 0 && length !== undefined && text.length >= end + 4 + Number(length)) {
        socket.off("data", onData);
        socket.off("close", onClose);
        resolve(text);
      }
    };
    const onClose = () => reject(new Error(`connection closed before the response to ${path}`));
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  });
}

function http2Exchange(session: http2.ClientHttp2Session, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":path": path });
    let body = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => (body += chunk));
    stream.on("end", () => resolve(body));
    stream.on("error", reject);
  });
}

/** One attacking connection: when the server's clock for it started, and when it was dropped. */
interface Hold {
  readonly since: number;
  readonly dropped: Promise<number>;
}

interface Attack {
  readonly name: string;
  readonly deadlineMs: number;
  readonly tls: "both" | "plaintext" | "tls";
  open(target: Target, address: string): Promise<Hold>;
}

const closedAt = (emitter: EventEmitter): Promise<number> => new Promise((resolve) => emitter.once("close", () => resolve(now())));

const slowBodyHead = (target: Target) =>
  "POST /authlink.v1.AdminAuthService/GenerateLink HTTP/1.1\r\nHost: localhost\r\n" +
  (target.authorization ? `Authorization: ${target.authorization}\r\n` : "") +
  "Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n";

const ATTACKS: readonly Attack[] = [
  {
    name: "connects and sends nothing",
    deadlineMs: HEADERS_MS,
    tls: "both",
    async open(target, address) {
      const socket = tcpFrom(target, address).resume();
      await eventWithin(socket, "connect", 5_000, "connect");
      return { since: now(), dropped: closedAt(socket) };
    },
  },
  {
    name: "sends only the start of the HTTP/2 preface",
    deadlineMs: HEADERS_MS,
    tls: "plaintext",
    async open(target, address) {
      const socket = await connectFrom(target, address);
      const since = now();
      socket.write("PRI * HTTP/2.0\r\n");
      return { since, dropped: closedAt(socket) };
    },
  },
  {
    name: "completes the TLS handshake with ALPN h2, then sends nothing",
    deadlineMs: HEADERS_MS,
    tls: "tls",
    async open(target, address) {
      const since = now();
      const socket = await connectFrom(target, address, "h2");
      return { since, dropped: closedAt(socket) };
    },
  },
  {
    name: "opens an HTTP/2 session (preface, SETTINGS, PINGs) but never a stream",
    deadlineMs: HEADERS_MS,
    tls: "both",
    async open(target, address) {
      const since = now();
      const session = http2From(target, address);
      await eventWithin(session, "connect", 5_000, "http2 connect");
      const pings = setInterval(() => session.ping(() => undefined), DRIBBLE_MS);
      session.once("close", () => clearInterval(pings));
      return { since, dropped: closedAt(session) };
    },
  },
  {
    name: "sends HTTP/1.1 headers one byte at a time (slowloris)",
    deadlineMs: HEADERS_MS,
    tls: "both",
    async open(target, address) {
      const since = now();
      const socket = await connectFrom(target, address, "http/1.1");
      socket.write("GET /healthz HTTP/1.1\r\n");
      dribble(socket, `X-Slow: ${"a".repeat(1_000)}\r\n\r\n`);
      return { since, dropped: closedAt(socket) };
    },
  },
  {
    name: "sends one HTTP/1.1 request, then the next one's headers one byte at a time",
    deadlineMs: HEADERS_MS,
    tls: "both",
    async open(target, address) {
      const socket = await connectFrom(target, address, "http/1.1");
      await http1Exchange(socket, "/healthz");
      // The clock starts at the next request's first byte, not when the last one was answered.
      const since = now();
      socket.write("G");
      dribble(socket, `ET /healthz HTTP/1.1\r\nX-Slow: ${"a".repeat(1_000)}\r\n\r\n`);
      return { since, dropped: closedAt(socket) };
    },
  },
  {
    name: "sends an HTTP/1.1 body of 10000 bytes one byte at a time",
    deadlineMs: REQUEST_MS,
    tls: "both",
    async open(target, address) {
      const since = now();
      const socket = await connectFrom(target, address, "http/1.1");
      socket.write(slowBodyHead(target));
      dribble(socket, "x".repeat(10_000));
      return { since, dropped: closedAt(socket) };
    },
  },
  {
    name: "sends an HTTP/2 request body one byte at a time (the stream is reset)",
    deadlineMs: REQUEST_MS,
    tls: "both",
    async open(target, address) {
      const session = http2From(target, address);
      await eventWithin(session, "connect", 5_000, "http2 connect");
      const since = now();
      const stream = session.request({
        ":method": "POST",
        ":path": "/authlink.v1.AdminAuthService/GenerateLink",
        "content-type": "application/json",
        ...(target.authorization ? { authorization: target.authorization } : {}),
      });
      stream.on("error", () => undefined);
      stream.resume();
      let i = 0;
      const timer = setInterval(() => stream.write("x", () => undefined) && i++, DRIBBLE_MS);
      const dropped = closedAt(stream).then((at) => {
        clearInterval(timer);
        assert.equal(stream.rstCode, http2.constants.NGHTTP2_CANCEL, "the stream is reset with CANCEL");
        session.destroy();
        return at;
      });
      return { since, dropped };
    },
  },
  {
    name: "stays idle on an HTTP/1.1 keep-alive connection after one request",
    deadlineMs: IDLE_MS,
    tls: "both",
    async open(target, address) {
      const socket = await connectFrom(target, address, "http/1.1");
      await http1Exchange(socket, "/healthz");
      return { since: now(), dropped: closedAt(socket) };
    },
  },
  {
    name: "stays idle on an HTTP/2 session after one request",
    deadlineMs: IDLE_MS,
    tls: "both",
    async open(target, address) {
      const session = http2From(target, address);
      await http2Exchange(session, "/healthz");
      return { since: now(), dropped: closedAt(session) };
    },
  },
];

interface Measured {
  readonly name: string;
  readonly deadlineMs: number;
  readonly dropMs: number[];
}

/** N connections of every attack that applies, each from its own address; resolves once all are dropped. */
async function attack(target: Target): Promise<{ opened: Promise<void>; measured: Promise<Measured[]> }> {
  const applicable = ATTACKS.filter((a) => a.tls === "both" || (a.tls === "tls") === target.tls);
  const holds = applicable.map((a, index) =>
    Promise.all(Array.from({ length: N }, () => a.open(target, `127.0.0.${10 + index}`))),
  );
  const opened = Promise.all(holds).then(() => undefined);
  const measured = Promise.all(
    holds.map(async (all, index) => {
      const a = applicable[index] as Attack;
      const dropMs = await Promise.all(
        (await all).map(async (hold) => {
          const limit = a.deadlineMs + SLACK_MS;
          const droppedAt = await within(hold.dropped, limit - (now() - hold.since), `"${a.name}" dropped within ${limit} ms`);
          return droppedAt - hold.since;
        }),
      );
      return { name: a.name, deadlineMs: a.deadlineMs, dropMs };
    }),
  );
  return { opened, measured };
}

const summary = (ms: number[]) => {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
  return `min ${at(0)} ms, median ${at(0.5)} ms, max ${at(1)} ms`;
};

// ---- the whole service under attack -----------------------------------------

for (const useTls of [false, true]) {
  describe(`authlink under connection-slot attacks (${useTls ? "TLS" : "plaintext"})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({
        env: {
          ...(useTls ? tlsEnv : {}),
          AUTHLINK_CONN_HEADERS_TIMEOUT: `${HEADERS_MS}ms`,
          AUTHLINK_CONN_REQUEST_TIMEOUT: `${REQUEST_MS}ms`,
          AUTHLINK_CONN_IDLE_TIMEOUT: `${IDLE_MS}ms`,
          AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "off",
        },
        readFile,
      });
    });
    after(() => server.close());

    test(`${N} connections of each attack are dropped within their deadline while gRPC and Connect calls succeed`, async (t) => {
      const target = { port: server.port, tls: useTls, authorization: `Bearer ${server.serviceKey}` };
      const tlsClient = useTls ? { ca: caPem } : undefined;
      const grpc = connectClient(server.url, { protocol: "grpc", key: server.serviceKey, tls: tlsClient });
      const connectJson = connectClient(server.url, { protocol: "connect", key: server.serviceKey, tls: tlsClient });

      const { opened, measured } = await attack(target);
      let attacking = true;
      const done = measured.finally(() => (attacking = false));
      // The legitimate clients call throughout: while the attackers connect,
      // hold their connections, and are dropped.
      let calls = 0;
      const failures: string[] = [];
      const legitimate = (async () => {
        while (attacking) {
          const email = `legit-${useTls ? "tls" : "plain"}-${calls}@example.com`;
          const results = await Promise.allSettled([
            grpc.generateLink({ type: LinkType.MAGICLINK, email }),
            connectJson.generateLink({ type: LinkType.MAGICLINK, email: `json-${email}` }),
          ]);
          for (const r of results) if (r.status === "rejected") failures.push(String(r.reason));
          calls += 2;
        }
      })();
      await opened;
      const callsBeforeHeld = calls;
      const results = await done;
      await legitimate;
      const callsWhileHeld = calls - callsBeforeHeld;

      for (const { name, deadlineMs, dropMs } of results) {
        t.diagnostic(`${name}: ${dropMs.length} dropped (deadline ${deadlineMs} ms): ${summary(dropMs)}`);
        for (const ms of dropMs) assert.ok(ms >= deadlineMs - 50, `"${name}" dropped after ${Math.round(ms)} ms, before its ${deadlineMs} ms deadline`);
      }
      t.diagnostic(`legitimate calls: ${calls}, ${callsWhileHeld} of them after every attacker had connected; ${failures.length} failed`);
      assert.deepEqual(failures, []);
      assert.ok(callsWhileHeld >= 10, `calls kept succeeding while the attackers held their connections (${callsWhileHeld})`);
    });
  });
}

// ---- caps, with a bare server ----------------------------------------------

/** A server whose requests to /hold wait until released; anything else answers "ok". */
async function startHoldingServer(useTls: boolean, connections: Partial<ConnectionSettings>) {
  const events = new EventEmitter();
  const held: Array<() => void> = [];
  let active = 0;
  let maxActive = 0;
  const handler: RequestHandler = (req, res) => {
    active++;
    maxActive = Math.max(maxActive, active);
    res.once("close", () => active--);
    req.resume();
    req.once("end", () => {
      const answer = () => {
        res.setHeader("content-length", "2");
        res.end("ok");
      };
      if (req.url === "/hold") {
        held.push(answer);
        events.emit("held");
      } else answer();
    });
  };
  const server: RunningHttpServer = await startHttpServer(handler, {
    host: "127.0.0.1",
    port: 0,
    tls: useTls ? tlsConfig : undefined,
    connections,
  });
  return {
    server,
    target: { port: server.port, tls: useTls },
    events,
    held,
    get maxActive() {
      return maxActive;
    },
    releaseAll: () => held.splice(0).forEach((answer) => answer()),
  };
}

/** A client connection that can be kept open, busy with a held request or idle. */
interface CapClient {
  readonly closed: Promise<number>;
  isClosed(): boolean;
  request(path: string): Promise<string>;
}

async function capClient(target: Target, address: string, protocol: "h1" | "h2"): Promise<CapClient> {
  if (protocol === "h1") {
    const socket = await connectFrom(target, address, "http/1.1");
    return { closed: closedAt(socket), isClosed: () => socket.destroyed, request: (path) => http1Exchange(socket, path) };
  }
  const session = http2From(target, address);
  await eventWithin(session, "connect", 5_000, "http2 connect");
  return { closed: closedAt(session), isClosed: () => session.closed || session.destroyed, request: (path) => http2Exchange(session, path) };
}

for (const [protocol, useTls] of [["h1", false], ["h2", true], ["h2", false], ["h1", true]] as const) {
  const label = `${protocol === "h1" ? "HTTP/1.1" : "HTTP/2"}${useTls ? " over TLS" : ""}`;

  test(`per-address cap (${label}): refuses a new connection when all are busy, sheds the longest idle otherwise`, async () => {
    const cap = 5;
    const bare = await startHoldingServer(useTls, { maxConnectionsPerAddress: cap, idleTimeoutMs: 60_000 });
    try {
      const crowd = "127.0.0.2";
      const clients = await Promise.all(Array.from({ length: cap }, () => capClient(bare.target, crowd, protocol)));
      const answers = clients.map((c) => c.request("/hold"));
      await until(bare.events, "held", () => bare.held.length === cap, 5_000, "every connection busy");

      // All busy: the next one from that address is refused...
      await refused(bare.target, crowd);
      // ...while another address is served, and no busy connection was cut.
      const other = await capClient(bare.target, "127.0.0.3", protocol);
      assert.equal(bodyOf(await other.request("/")), "ok", "another address is served");
      assert.equal(clients.filter((c) => c.isClosed()).length, 0, "no busy connection was cut");

      // Answered one after the other: the first answered has been idle the longest.
      const order = await answerOneByOne(bare.held, answers);
      const newcomer = await capClient(bare.target, crowd, protocol);
      assert.equal(bodyOf(await within(newcomer.request("/"), 2_000, "the newcomer is served")), "ok");
      const longestIdle = clients[order[0] as number] as CapClient;
      await within(longestIdle.closed, 2_000, "the longest idle connection is shed");
      assert.deepEqual(
        clients.map((c) => c.isClosed()),
        clients.map((_, i) => i === order[0]),
        "only the longest idle connection was shed",
      );
    } finally {
      bare.releaseAll();
      await bare.server.close(0);
    }
  });
}

test("total cap: refuses a new connection when all are busy, sheds the longest quiet one (of any address) otherwise", async () => {
  const cap = 4;
  const bare = await startHoldingServer(false, { maxConnections: cap, maxConnectionsPerAddress: 0 });
  try {
    const clients = await Promise.all(Array.from({ length: cap }, (_, i) => capClient(bare.target, `127.0.0.${20 + i}`, "h1")));
    const answers = clients.map((c) => c.request("/hold"));
    await until(bare.events, "held", () => bare.held.length === cap, 5_000, "every connection busy");
    await refused(bare.target, "127.0.0.30");
    assert.equal(clients.filter((c) => c.isClosed()).length, 0, "no busy connection was cut");

    const order = await answerOneByOne(bare.held, answers);
    const newcomer = await capClient(bare.target, "127.0.0.30", "h1");
    assert.equal(bodyOf(await within(newcomer.request("/"), 2_000, "the newcomer is served")), "ok");
    const longestIdle = clients[order[0] as number] as CapClient;
    await within(longestIdle.closed, 2_000, "the longest idle connection is shed");
    assert.deepEqual(
      clients.map((c) => c.isClosed()),
      clients.map((_, i) => i === order[0]),
    );
  } finally {
    bare.releaseAll();
    await bare.server.close(0);
  }
});

test("a connection that has not sent a request yet is quiet too: the oldest makes room for a new one", async () => {
  const cap = 5;
  const bare = await startHoldingServer(true, { maxConnectionsPerAddress: cap });
  try {
    const target = bare.target;
    // Connected, and not even a TLS handshake started.
    const silent: net.Socket[] = [];
    for (let i = 0; i < cap; i++) {
      const socket = tcpFrom(target, "127.0.0.2").resume();
      await eventWithin(socket, "connect", 5_000, "connect");
      silent.push(socket);
    }
    const closed = silent.map((socket) => closedAt(socket));
    // Connections are accepted in order: the five are admitted before the newcomer.
    const newcomer = await capClient(target, "127.0.0.2", "h2");
    assert.equal(await within(newcomer.request("/"), 2_000, "the newcomer is served"), "ok");
    await within(closed[0] as Promise<number>, 2_000, "the oldest silent connection is shed");
    assert.deepEqual(
      silent.map((socket) => socket.destroyed),
      [true, false, false, false, false],
    );
  } finally {
    await bare.server.close(0);
  }
});

// ---- HTTP/2 streams and header sizes ----------------------------------------

for (const useTls of [false, true]) {
  const label = useTls ? "TLS" : "plaintext";

  test(`HTTP/2 advertises bounded streams and headers; a client gets at most that many served at once (${label})`, async () => {
    const bare = await startHoldingServer(useTls, {}); // the defaults
    try {
      const session = http2From(bare.target, "127.0.0.1");
      await eventWithin(session, "remoteSettings", 5_000, "the server's SETTINGS");
      assert.equal(session.remoteSettings.maxConcurrentStreams, 100);
      assert.equal(session.remoteSettings.maxHeaderListSize, 16_384);
      assert.equal(session.remoteSettings.enablePush, false);

      // A well-behaved client queues what is over the limit: 150 calls, 100 served at once.
      const answers = Array.from({ length: 150 }, () => http2Exchange(session, "/hold"));
      await until(bare.events, "held", () => bare.held.length === 100, 5_000, "100 streams served");
      // The server answers another connection in the meantime: the other 50 were never sent.
      const other = http2From(bare.target, "127.0.0.1");
      assert.equal(await within(http2Exchange(other, "/"), 2_000, "another connection is served"), "ok");
      assert.equal(bare.held.length, 100);
      const release = () => bare.releaseAll();
      bare.events.on("held", release);
      release();
      assert.deepEqual(new Set(await within(Promise.all(answers), 5_000, "all 150 answered")), new Set(["ok"]));
      assert.ok(bare.maxActive <= 101, `at most 100 streams of the first client (and one of the other) at once, not ${bare.maxActive}`);
      bare.events.off("held", release);
      session.close();
      other.close();
    } finally {
      bare.releaseAll();
      await bare.server.close(0);
    }
  });

  test(`HTTP/2 refuses the streams of a client that ignores the limit (${label})`, async () => {
    const bare = await startHoldingServer(useTls, { http2MaxConcurrentStreams: 10 });
    try {
      const socket = await connectFrom(bare.target, "127.0.0.1", "h2");
      const frames = new EventEmitter();
      const refusedStreams: number[] = [];
      readFrames(socket, (type, streamId, payload) => {
        if (type === FRAME_RST_STREAM && payload.readUInt32BE(0) === http2.constants.NGHTTP2_REFUSED_STREAM) refusedStreams.push(streamId);
        frames.emit("frame");
      });
      // Preface, empty SETTINGS, then 15 requests at once, without waiting for the server's SETTINGS.
      const requests = Array.from({ length: 15 }, (_, i) => frame(FRAME_HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, HOLD_REQUEST_BLOCK));
      socket.write(Buffer.concat([Buffer.from(HTTP2_PREFACE), frame(FRAME_SETTINGS, 0, 0, Buffer.alloc(0)), ...requests]));
      await until(frames, "frame", () => refusedStreams.length === 5, 5_000, "5 streams refused");
      await until(bare.events, "held", () => bare.held.length === 10, 5_000, "10 streams served");
      assert.deepEqual(refusedStreams, [21, 23, 25, 27, 29]);
      assert.equal(bare.maxActive, 10);
      socket.destroy();
    } finally {
      bare.releaseAll();
      await bare.server.close(0);
    }
  });

  test(`request headers over the limit are refused (${label})`, async () => {
    const bare = await startHoldingServer(useTls, { maxHeaderBytes: 4_096 });
    try {
      const socket = await connectFrom(bare.target, "127.0.0.1", "http/1.1");
      const response = new Promise<string>((resolve) => {
        let text = "";
        socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
        socket.once("close", () => resolve(text));
      });
      socket.write(`GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"a".repeat(5_000)}\r\n\r\n`);
      assert.match(await within(response, 2_000, "an HTTP/1.1 answer"), /^HTTP\/1\.1 431 /);

      const session = http2From(bare.target, "127.0.0.1");
      // Sent at once, before the server's SETTINGS arrive (afterwards the Node client would check the limit itself).
      const stream = session.request({ ":path": "/", "x-big": "a".repeat(5_000) });
      stream.on("error", () => undefined);
      stream.resume();
      const status = new Promise<unknown>((resolve) => stream.once("response", (headers) => resolve(headers[":status"])));
      assert.equal(await within(status, 2_000, "an HTTP/2 answer"), 431);
      assert.equal(bare.maxActive, 0, "neither request reached the handler");
      session.destroy();
    } finally {
      await bare.server.close(0);
    }
  });
}

// ---- configuration ------------------------------------------------------------

test("the connection settings come from AUTHLINK_* variables, with defaults, and bad values are named", () => {
  assert.deepEqual(loadConfig(testEnv()).connections, DEFAULT_CONNECTION_SETTINGS);
  assert.deepEqual(
    loadConfig(
      testEnv({
        AUTHLINK_CONN_HEADERS_TIMEOUT: "5s",
        AUTHLINK_CONN_REQUEST_TIMEOUT: "1m",
        AUTHLINK_CONN_IDLE_TIMEOUT: "2m",
        AUTHLINK_CONN_MAX: "5000",
        AUTHLINK_CONN_MAX_PER_ADDRESS: "0",
        AUTHLINK_HTTP2_MAX_STREAMS: "50",
        AUTHLINK_MAX_HEADER_BYTES: "8192",
      }),
    ).connections,
    {
      headersTimeoutMs: 5_000,
      requestTimeoutMs: 60_000,
      idleTimeoutMs: 120_000,
      maxConnections: 5_000,
      maxConnectionsPerAddress: 0,
      http2MaxConcurrentStreams: 50,
      maxHeaderBytes: 8_192,
    },
  );
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(testEnv(env));
      return [];
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.problems.map((p) => p.split(":")[0]);
    }
  };
  assert.deepEqual(problems({ AUTHLINK_CONN_HEADERS_TIMEOUT: "soon" }), ["AUTHLINK_CONN_HEADERS_TIMEOUT"]);
  assert.deepEqual(problems({ AUTHLINK_CONN_HEADERS_TIMEOUT: "20s", AUTHLINK_CONN_REQUEST_TIMEOUT: "10s" }), ["AUTHLINK_CONN_REQUEST_TIMEOUT"]);
  assert.deepEqual(problems({ AUTHLINK_HTTP2_MAX_STREAMS: "0" }), ["AUTHLINK_HTTP2_MAX_STREAMS"]);
  assert.deepEqual(problems({ AUTHLINK_CONN_MAX: "-1" }), ["AUTHLINK_CONN_MAX"]);
  assert.deepEqual(problems({ AUTHLINK_MAX_HEADER_BYTES: "100" }), ["AUTHLINK_MAX_HEADER_BYTES"]);
});

// ---- raw HTTP/2 frames (for a client that breaks the rules) -----------------

const HTTP2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS = 0x1;
const FRAME_RST_STREAM = 0x3;
const FRAME_SETTINGS = 0x4;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
/** HPACK: :method GET, :scheme http, :path /hold, :authority x (static table, no indexing). */
const HOLD_REQUEST_BLOCK = Buffer.concat([Buffer.from([0x82, 0x86, 0x04, 5]), Buffer.from("/hold"), Buffer.from([0x01, 1]), Buffer.from("x")]);

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

function readFrames(socket: net.Socket, onFrame: (type: number, streamId: number, payload: Buffer) => void): void {
  let buffered = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3);
      if (buffered.length < 9 + length) return;
      onFrame(buffered[3] ?? 0, buffered.readUInt32BE(5) & 0x7fffffff, buffered.subarray(9, 9 + length));
      buffered = buffered.subarray(9 + length);
    }
  });
}

/** Releases held requests one at a time, each after the previous answer arrived; the clients' indexes in answer order. */
async function answerOneByOne(held: Array<() => void>, answers: Array<Promise<string>>): Promise<number[]> {
  const order: number[] = [];
  const tagged = answers.map((answer, i) => answer.then(() => i));
  while (order.length < answers.length) {
    held.shift()?.();
    const pending = tagged.filter((_, i) => !order.includes(i));
    order.push(await within(Promise.race(pending), 2_000, "a released request is answered"));
  }
  return order;
}

/** A new connection from `address` is closed by the server at once, before any byte of a handshake or request. */
async function refused(target: Target, address: string): Promise<void> {
  const socket = tcpFrom(target, address).resume();
  await within(closedAt(socket), 1_000, `a connection from ${address} over the cap is refused`);
}

function bodyOf(response: string): string {
  const end = response.indexOf("\r\n\r\n");
  return end >= 0 ? response.slice(end + 4) : response;
}
