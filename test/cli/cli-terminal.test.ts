import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { CLI_PATH, cliEnv, expectExit } from "../support/cli-process.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// `authlink bulk` on a terminal: run under a pseudo-terminal (util-linux
// `script`), its stderr is a TTY, so it draws a progress bar redrawn in place
// (carriage returns, done/total, rate and ETA changing) instead of the plain
// lines it prints when stderr is a pipe.

const scratch = mkdtempSync(join(tmpdir(), "authlink-tty-"));
let server: TestServer;
before(async () => {
  server = await startTestServer({
    env: { AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER: "1000000/1m", AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "1000/1m" },
  });
});
after(() => server.close());

const quote = (text: string) => `'${text.replace(/'/g, "'\\''")}'`;

function writeInput(name: string, size: number): string {
  const path = join(scratch, name);
  writeFileSync(path, `email\n${Array.from({ length: size }, (_, i) => `${name}-${i}@example.com`).join("\n")}\n`);
  return path;
}

/** Runs a shell command under a pseudo-terminal; answers everything the terminal showed. */
function underTerminal(command: string, env: Record<string, string>): Promise<{ code: number | null; screen: string }> {
  const child = spawn("script", ["-qfec", command, "/dev/null"], { env: cliEnv({ ...env, TERM: "xterm", COLUMNS: "160" }) });
  let screen = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (screen += chunk));
  child.stdin.end();
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, screen })));
}

test("on a terminal: a progress bar redrawn in place with done/total, rate and ETA, then the summary", async () => {
  const input = writeInput("tty", 2_000);
  const out = join(scratch, "tty-out.csv");
  const command = [process.execPath, CLI_PATH, "bulk", input, "--type", "magiclink", "--out", out, "--concurrency", "2", "--chunk-size", "20"]
    .map(quote)
    .join(" ");
  const { code, screen } = await underTerminal(command, { AUTHLINK_CLI_URL: server.url, AUTHLINK_CLI_SERVICE_KEY: server.serviceKey });
  assert.equal(code, 0, screen);
  const frames = [...screen.matchAll(/bulk \|[█░]+\| (\d+)\/2000 rows \| +(\d+)% \| ([\d.]+) rows\/s \| ETA (\S+) \| (\d+) failed/g)];
  assert.ok(frames.length >= 3, `several redraws, got ${frames.length}:\n${JSON.stringify(screen.slice(0, 2000))}`);
  assert.ok(screen.includes("\r") || screen.includes("\u001b[0G") || screen.includes("\u001b[1G"), "redrawn in place, not line by line");
  const done = frames.map((f) => Number(f[1]));
  assert.ok(new Set(done).size >= 3, "done/total advances");
  assert.ok(frames.some((f) => Number(f[3]) > 0), "a rate is shown");
  assert.ok(frames.some((f) => /^\d+(s|m\d\ds)$/.test(f[4] ?? "")), "an ETA is shown");
  assert.equal(frames.at(-1)?.[1], "2000");
  assert.match(screen, /bulk: 2000 of 2000 rows in .*: 2000 issued, 0 failed; results in /);
  assert.ok(!/^bulk: \d+\/2000 rows \(/m.test(screen), "no plain progress lines on a terminal");
  assert.equal(readFileSync(out, "utf8").trim().split("\n").length, 2_001);
});

test("not on a terminal: plain progress lines every --progress-interval, no bar, no escape codes", async () => {
  const input = writeInput("pipe", 2_000);
  const result = await expectExit(
    0,
    ["bulk", input, "--type", "magiclink", "--out", join(scratch, "pipe-out.csv"), "--concurrency", "2", "--chunk-size", "20", "--progress-interval", "100ms"],
    { env: { AUTHLINK_CLI_URL: server.url, AUTHLINK_CLI_SERVICE_KEY: server.serviceKey } },
  );
  const lines = result.stderr.match(/^bulk: \d+\/2000 rows \(\d+\.\d%\), \d+\.\d rows\/s, ETA \S+, 0 failed$/gm) ?? [];
  assert.ok(lines.length >= 2, result.stderr);
  assert.ok(!result.stderr.includes("\u001b") && !result.stderr.includes("\r"), "no terminal control in a log");
});
