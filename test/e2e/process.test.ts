import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { connectClient } from "../support/clients.js";
import { useTestDatabase } from "../support/mongo.js";

// The real process, as `npm start` runs it: configuration from the
// environment, the embedded default or MongoDB, a development key printed
// when none is configured, exit code 2 with the variable's name for bad
// configuration, and a clean exit 0 on SIGTERM.

const main = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "src", "main.js");
const database = await useTestDatabase("process");

interface Started {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly exit: Promise<number | null>;
}

function startProcess(env: Record<string, string>): Started {
  const child = spawn(process.execPath, [main], {
    // Only what is given: no AUTHLINK_* leaks in from the test environment.
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exit };
}

/** Waits (with a deadline) for the "authlink listening" line and returns its URL. */
async function listeningUrl(started: Started, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const line of started.stdout().split("\n")) {
      if (line.includes('"authlink listening"')) return (JSON.parse(line) as { url: string }).url;
    }
    if (started.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`authlink did not start:\n${started.stdout()}\n${started.stderr()}`);
}

test("embedded default: warns loudly, prints a development key that works, stops cleanly on SIGTERM", async () => {
  const started = startProcess({ AUTHLINK_ADDR: "127.0.0.1:0" });
  try {
    const url = await listeningUrl(started);
    assert.match(started.stdout(), /NOTHING SURVIVES A RESTART/);
    assert.match(started.stdout(), /AUTHLINK_OTP_SECRET is not set/);
    const key = /authorization: Bearer (\S+)/.exec(started.stderr())?.[1];
    assert.ok(key, "the generated development key is printed");
    const generated = await connectClient(url, { key }).generateLink({ type: LinkType.MAGICLINK, email: "dev@example.com" });
    assert.ok(generated.actionLink.startsWith(`${url}/verify#`), "the default public URL follows the bound address");
    assert.ok(!started.stdout().includes(key), "the key is not in the JSON log");
  } finally {
    started.child.kill("SIGTERM");
  }
  assert.equal(await started.exit, 0);
  assert.match(started.stdout(), /"stopped"/);
});

test("MongoDB from AUTHLINK_MONGODB_URI; no development key when keys are configured", async () => {
  const key = "k".repeat(40);
  const started = startProcess({
    AUTHLINK_ADDR: "127.0.0.1:0",
    AUTHLINK_MONGODB_URI: database.uri,
    AUTHLINK_MONGODB_DATABASE: database.name,
    AUTHLINK_SERVICE_KEYS: key,
    AUTHLINK_OTP_SECRET: "o".repeat(40),
  });
  try {
    const url = await listeningUrl(started);
    assert.match(started.stdout(), /"store":"mongodb"/);
    assert.doesNotMatch(started.stderr(), /Bearer/);
    await connectClient(url, { key }).generateLink({ type: LinkType.MAGICLINK, email: "proc@example.com" });
    const stored = await database.client.db(database.name).collection("users").findOne({ email: "proc@example.com" });
    assert.ok(stored, "the user is in the configured database");
  } finally {
    started.child.kill("SIGINT");
  }
  assert.equal(await started.exit, 0);
});

test("bad configuration: exit code 2 and every problem named by its variable", async () => {
  const started = startProcess({
    AUTHLINK_ADDR: "nonsense",
    AUTHLINK_OTP_LENGTH: "4",
    AUTHLINK_REDIRECT_ALLOW_LIST: "http://app.example.com/**",
    AUTHLINK_REDIRECT_ALLOWLIST: "typo",
  });
  assert.equal(await started.exit, 2);
  for (const name of ["AUTHLINK_ADDR", "AUTHLINK_OTP_LENGTH", "AUTHLINK_REDIRECT_ALLOW_LIST", "AUTHLINK_REDIRECT_ALLOWLIST"]) {
    assert.match(started.stderr(), new RegExp(`${name}:`), name);
  }
});

test("an unreachable MongoDB at start-up: exit code 1 with a message, no stack", async () => {
  const started = startProcess({
    AUTHLINK_ADDR: "127.0.0.1:0",
    AUTHLINK_MONGODB_URI: "mongodb://127.0.0.1:1/",
    AUTHLINK_DB_TIMEOUT: "300ms",
    AUTHLINK_SERVICE_KEYS: "k".repeat(40),
  });
  assert.equal(await started.exit, 1);
  assert.match(started.stderr(), /failed to start/);
  assert.doesNotMatch(started.stderr(), /\n\s+at /);
});
