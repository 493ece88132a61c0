import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// The built admin CLI (dist/src/cli/main.js) run as a child process on this
// Node (24), as `npx authlink` runs it: real argv, real env, real exit code,
// stdin a pipe (not a terminal). Nothing of the parent's AUTHLINK_CLI_*
// environment leaks in.

export const CLI_PATH = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "src", "cli", "main.js");

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliRunOptions {
  readonly env?: Readonly<Record<string, string>>;
  /** Written to stdin, which is then closed (empty when not given). */
  readonly input?: string;
  readonly cwd?: string;
  /** Kill the CLI if it runs longer (a hung CLI fails the test rather than the suite). */
  readonly timeoutMs?: number;
}

/** The environment of a CLI child: PATH and HOME, plus `env`. */
export function cliEnv(env: Readonly<Record<string, string>> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env };
}

export function spawnCli(args: readonly string[], options: CliRunOptions = {}): ChildProcess {
  const child = spawn(process.execPath, [CLI_PATH, ...args], {
    env: cliEnv(options.env),
    cwd: options.cwd,
    stdio: ["pipe", "pipe", "pipe"],
  });
  child.stdin?.end(options.input ?? "");
  return child;
}

export function collect(child: ChildProcess, timeoutMs = 120_000): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export function runCli(args: readonly string[], options: CliRunOptions = {}): Promise<CliResult> {
  return collect(spawnCli(args, options), options.timeoutMs);
}

/** A CLI run that must exit with `code`; otherwise an error that shows what it printed. */
export async function expectExit(code: number, args: readonly string[], options: CliRunOptions = {}): Promise<CliResult> {
  const result = await runCli(args, options);
  if (result.code !== code) {
    throw new Error(
      `authlink ${args.join(" ")} exited ${result.code ?? result.signal} (expected ${code})\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`,
    );
  }
  return result;
}
