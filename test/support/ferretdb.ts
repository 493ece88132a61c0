import { execFile, spawn, type ChildProcess } from "node:child_process";
import { cp, mkdir, mkdtemp, rm, stat, writeFile, chmod } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { MongoClient } from "mongodb";
import { freePort } from "./ports.js";

// FerretDB for the MongoDB suite when no AUTHLINK_TEST_MONGODB_URI is given.
//
// Pinned to v1.24.2. `go install ...@v1.24.2` builds a binary that panics at
// start (the module archive lacks build/version/version.txt, which its
// version check requires), so the pinned module is fetched through the Go
// module proxy, that one file is supplied, and it is built with `go build`.

const run = promisify(execFile);

export const FERRETDB_VERSION = "v1.24.2";
const MODULE = "github.com/FerretDB/FerretDB";

/** Where the binary lives: $AUTHLINK_TEST_FERRETDB_BIN, else a per-user cache. */
export function ferretdbBinary(): string {
  return (
    process.env.AUTHLINK_TEST_FERRETDB_BIN ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "authlink", `ferretdb-${FERRETDB_VERSION}`)
  );
}

/** Build the pinned FerretDB unless the binary is already there. */
export async function installFerretDB(log: (line: string) => void = () => {}): Promise<string> {
  const binary = ferretdbBinary();
  if (await exists(binary)) return binary;
  log(`building FerretDB ${FERRETDB_VERSION} with go (once; cached at ${binary})`);
  const { stdout } = await run("go", ["mod", "download", "-json", `${MODULE}@${FERRETDB_VERSION}`], {
    maxBuffer: 16 * 1024 * 1024,
  });
  const moduleDir = (JSON.parse(stdout) as { Dir: string }).Dir;
  const work = await mkdtemp(join(tmpdir(), "ferretdb-src-"));
  try {
    const src = join(work, "src");
    await cp(moduleDir, src, { recursive: true });
    await run("chmod", ["-R", "u+w", src]);
    await writeFile(join(src, "build", "version", "version.txt"), `${FERRETDB_VERSION}\n`);
    await mkdir(join(binary, ".."), { recursive: true });
    await run("go", ["build", "-buildvcs=false", "-o", binary, "./cmd/ferretdb"], {
      cwd: src,
      maxBuffer: 16 * 1024 * 1024,
    });
    await chmod(binary, 0o755);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return binary;
}

export interface RunningFerretDB {
  readonly uri: string;
  readonly port: number;
  /** Stop it (SIGTERM) and remove its data directory unless the caller gave one. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would: nothing is flushed or removed. */
  kill(): Promise<void>;
}

export interface FerretDBOptions {
  /**
   * Keep the data here (created if missing, never removed), so that a
   * FerretDB started again on it finds what the last one committed.
   * Default: a fresh temporary directory, removed by stop().
   */
  readonly dataDir?: string;
  /** Listen on this port (e.g. the port of the one that was killed). Default: a free one. */
  readonly port?: number;
}

/**
 * The database a script in test/bench measures: AUTHLINK_TEST_MONGODB_URI when
 * it is set (any MongoDB), else a FerretDB of its own, installed if need be,
 * which `stop` ends (a no-op for a given URI).
 */
export async function benchDatabase(): Promise<{ readonly uri: string; stop(): Promise<void> }> {
  const given = process.env.AUTHLINK_TEST_MONGODB_URI;
  if (given) return { uri: given, stop: async () => {} };
  const ferret = await startFerretDB(await installFerretDB((line) => process.stderr.write(`${line}\n`)));
  return { uri: ferret.uri, stop: () => ferret.stop() };
}

/** Start FerretDB (SQLite backend) and wait until it answers. */
export async function startFerretDB(binary: string, options: FerretDBOptions = {}): Promise<RunningFerretDB> {
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "ferretdb-data-")));
  await mkdir(dataDir, { recursive: true });
  const port = options.port ?? (await freePort());
  const child: ChildProcess = spawn(
    binary,
    [
      "--handler=sqlite",
      `--sqlite-url=file:${dataDir}/`,
      `--listen-addr=127.0.0.1:${port}`,
      "--telemetry=disable",
      "--log-level=error",
      "--debug-addr=-",
      `--state-dir=${dataDir}`,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const uri = `mongodb://127.0.0.1:${port}/`;
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  const stop = async () => {
    await end("SIGTERM");
    if (ownsDataDir) await rm(dataDir, { recursive: true, force: true });
  };
  try {
    await waitUntilAnswering(uri, 30_000, () => child.exitCode !== null || child.signalCode !== null);
  } catch (error) {
    await stop();
    throw new Error(`FerretDB did not start: ${(error as Error).message}\n${stderr}`);
  }
  return { uri, port, stop, kill: () => end("SIGKILL") };
}

async function waitUntilAnswering(uri: string, timeoutMs: number, gaveUp: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 500 });
    try {
      await client.db("admin").command({ ping: 1 });
      return;
    } catch (error) {
      if (gaveUp() || Date.now() > deadline) throw error;
    } finally {
      await client.close();
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

// `node dist/test/support/ferretdb.js install` builds it ahead of the tests (CI).
if (process.argv[1]?.endsWith("ferretdb.js") && process.argv[2] === "install") {
  installFerretDB((line) => process.stderr.write(`${line}\n`)).then(
    (binary) => process.stdout.write(`${binary}\n`),
    (error: unknown) => {
      process.stderr.write(`FerretDB install failed: ${String(error)}\n`);
      process.exit(1);
    },
  );
}
