import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { startAuthlink } from "../../src/authlink.js";
import { loadConfig } from "../../src/config/config.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import type { Store } from "../../src/domain/store.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { createTestCa } from "../support/certs.js";
import { connectClient } from "../support/clients.js";
import { testEnv } from "../support/test-server.js";

// Graceful shutdown (what SIGTERM triggers): stop accepting, let the call in
// flight finish with its real answer, then close. A store whose lookup waits
// on a gate holds a call in flight for exactly as long as the test wants.

function gatedStore(): { store: Store; reached: Promise<void>; release: () => void } {
  const inner = createMemoryStore();
  let signalReached!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((resolve) => (signalReached = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  const store: Store = {
    ...inner,
    users: {
      ...inner.users,
      async findByEmail(...args) {
        signalReached();
        await gate;
        return inner.users.findByEmail(...args);
      },
    },
  };
  return { store, reached, release };
}

async function connectable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

const ca = createTestCa("shutdown test CA");
const serverCert = ca.issue({ usage: "server", dnsNames: ["localhost"], ips: ["127.0.0.1"] });
const tlsFiles: Record<string, string> = { "/cert.pem": serverCert.certPem, "/key.pem": serverCert.keyPem };
const tlsEnv = { AUTHLINK_TLS_CERT: "/cert.pem", AUTHLINK_TLS_KEY: "/key.pem" };
const readFile = (path: string) => Buffer.from(tlsFiles[path] ?? "");

for (const [protocol, tls] of [["grpc", false], ["connect", false], ["grpc", true], ["connect", true]] as const) {
  test(`a ${protocol} call in flight at shutdown completes${tls ? " (TLS)" : ""}; new connections are refused`, async () => {
    const env = testEnv(tls ? tlsEnv : {});
    const { store, reached, release } = gatedStore();
    const running = await startAuthlink({ config: loadConfig(env, { readFile }), logger: createCapturedLogger().logger, store });
    const client = connectClient(running.url, {
      protocol,
      key: env.AUTHLINK_SERVICE_KEYS,
      tls: tls ? { ca: Buffer.from(ca.certPem) } : undefined,
    });

    const call = client.generateLink({ type: LinkType.MAGICLINK, email: "inflight@example.com" });
    await reached; // the call is inside the service now
    let closed = false;
    const closing = running.close().then(() => (closed = true));

    // Stopped accepting while the call is still held.
    for (let i = 0; i < 100 && (await connectable(running.port)); i++) await new Promise((r) => setImmediate(r));
    assert.equal(await connectable(running.port), false, "the port no longer accepts connections");
    assert.equal(closed, false, "close waits for the call in flight");

    release();
    const response = await call;
    assert.equal(response.user?.email, "inflight@example.com");
    await closing;
    assert.equal(closed, true);
  });
}

test("idle keep-alive connections do not hold shutdown up", async () => {
  const env = testEnv();
  const running = await startAuthlink({ config: loadConfig(env), logger: createCapturedLogger().logger, store: createMemoryStore() });
  // Leave an HTTP/2 session and an HTTP/1.1 keep-alive connection open.
  await connectClient(running.url, { protocol: "grpc", key: env.AUTHLINK_SERVICE_KEYS }).generateLink({ type: LinkType.MAGICLINK, email: "a@example.com" });
  await connectClient(running.url, { protocol: "connect", key: env.AUTHLINK_SERVICE_KEYS }).generateLink({ type: LinkType.MAGICLINK, email: "b@example.com" });
  const started = process.hrtime.bigint();
  await running.close();
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  // The grace period is 5 s (testEnv); idle connections must be closed at once, not waited out.
  assert.ok(ms < 4_000, `close took ${ms} ms`);
});

test("a call still running when the grace period ends is cut, and close() returns", async () => {
  const env = testEnv({ AUTHLINK_SHUTDOWN_TIMEOUT: "200ms" });
  const { store, reached } = gatedStore(); // never released
  const running = await startAuthlink({ config: loadConfig(env), logger: createCapturedLogger().logger, store });
  const call = connectClient(running.url, { protocol: "grpc", key: env.AUTHLINK_SERVICE_KEYS })
    .generateLink({ type: LinkType.MAGICLINK, email: "stuck@example.com" })
    .then(
      () => "answered",
      () => "cut",
    );
  await reached;
  await running.close();
  assert.equal(await call, "cut");
});
