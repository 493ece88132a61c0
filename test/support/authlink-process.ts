import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// authlink as a real child process (`node dist/src/main.js`), configured only
// by the environment given: what `npm start` runs.

const main = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "src", "main.js");

export interface AuthlinkProcess {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly exit: Promise<number | null>;
}

export function startProcess(env: Record<string, string>): AuthlinkProcess {
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
export async function listeningUrl(started: AuthlinkProcess, timeoutMs = 15_000): Promise<string> {
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

/** Polls /readyz until it answers 200. */
export async function readyWithin(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await fetch(`${url}/readyz`).then((r) => r.status, () => 0)) === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not become ready within ${timeoutMs} ms`);
}

/** The JSON lines of a process's log. */
export function logLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
