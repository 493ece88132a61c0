import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { openSync, closeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import net from "node:net";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { CONFIG_VARIABLES } from "../src/config/config.js";
import { installFerretDB, startFerretDB, type RunningFerretDB } from "../test/support/ferretdb.js";
import { freePort } from "../test/support/ports.js";
import { measureCryptoFloor } from "./crypto-floor.js";

// authlink's benchmark (issue 9): authlink against bare references serving the
// same AdminAuthService, driven by a compiled Go load generator. See
// bench/README.md.
//
//   npm run bench               the full run (under 10 minutes)
//   npm run bench -- --smoke    tiny rounds, the same table (about a minute)
//   npm run bench -- --help     the options

const USAGE = `npm run bench [-- OPTIONS]

  --smoke               tiny rounds (about a minute), the same table; CI runs it
  --only=SECTIONS       run only these sections, comma-separated (default: all):
                          embedded  closed loop c=32, c=1 and paced, embedded store, with the references
                          ferretdb  authlink on FerretDB c=8 (limits on, off) and the raw driver ceiling
                          memory    RSS over links issued and expired
                          size      per-pair cost at 1k / 10k / 100k users and outstanding links
  --baseline=DIR        also measure another build of authlink side by side (its rows say
                          "baseline"): DIR holds that build's package.json and dist/ (and
                          node_modules or a link to it); used in the c=32, c=1, FerretDB, memory
                          and size rows
  --cpu-prof-dir=DIR    every authlink process writes a V8 CPU profile there when it stops
  --help                this text
`;
const SECTIONS = ["embedded", "ferretdb", "memory", "size"] as const;
type Section = (typeof SECTIONS)[number];

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const node = process.execPath;
const option = (name: string) => process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
if (process.argv.includes("--help")) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const smoke = process.argv.includes("--smoke");
const cores = availableParallelism();
/** --cpu-prof-dir=DIR: every authlink process the bench starts writes a V8 CPU profile there when it stops. */
const cpuProfDir = option("cpu-prof-dir");
const only = option("only")?.split(",");
for (const section of only ?? []) {
  if (!(SECTIONS as readonly string[]).includes(section)) throw new Error(`--only: unknown section ${section} (${SECTIONS.join(", ")})\n\n${USAGE}`);
}
const wanted = (section: Section) => only === undefined || only.includes(section);
/** --baseline=DIR: another build's main.js, measured beside this one. */
const baselineMain = option("baseline") && join(option("baseline") as string, "dist", "src", "main.js");

const settings = smoke
  ? { rounds: 2, latencyRounds: 1, warmup: "250ms", duration: "1s", c1Duration: "1s", pacedDuration: "1s", ferretRounds: 1, memoryLinks: 3_000, sizes: [1_000, 5_000], sizeRounds: 1, fillBudget: "20s", waitForSweep: false }
  : { rounds: 3, latencyRounds: 3, warmup: "1s", duration: "4s", c1Duration: "2s", pacedDuration: "3s", ferretRounds: 3, memoryLinks: 20_000, sizes: [1_000, 10_000, 100_000], sizeRounds: 2, fillBudget: "100s", waitForSweep: true };

const serviceKey = randomBytes(36).toString("base64url");
const otpSecret = randomBytes(36).toString("base64url");
const children = new Set<ChildProcess>();
const notes: string[] = [];

// ---- processes

interface Server {
  readonly name: string;
  readonly addr: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** Every rate-limit variable authlink reads: "off" for the limits-off rows. */
const RATE_LIMITS = CONFIG_VARIABLES.filter((name) => name.startsWith("AUTHLINK_RATE_LIMIT_"));

/**
 * "on": every limiter counts, with ceilings the bench never reaches (the
 * defaults would refuse a single client after 120 verifications a minute);
 * per-address-and-type generation keeps its default (every pair is a fresh address).
 */
function rateLimitEnv(on: boolean): Record<string, string> {
  if (!on) return Object.fromEntries(RATE_LIMITS.map((name) => [name, "off"]));
  return {
    AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER: "1000000/1m",
    AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "1000000/1m",
  };
}

function spawnTracked(args: string[], env: NodeJS.ProcessEnv, stdout: "ignore" | "pipe" | number): ChildProcess {
  const child = spawn(node, args, { cwd: root, env, stdio: ["ignore", stdout, "pipe"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new ExitedError(stderr());
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => (socket.destroy(), resolve(true)));
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port} after 30 s:\n${stderr()}`);
    await sleep(50);
  }
}

class ExitedError extends Error {}

interface AuthlinkOptions {
  readonly rateLimits: boolean;
  readonly env?: Record<string, string>;
  /** Also serve gRPC on @grpc/grpc-js on this port (AUTHLINK_GRPC_ADDR). */
  readonly grpcPort?: number;
  readonly stdout?: "ignore" | "pipe";
  /** The main.js to run (default: this build's). */
  readonly main?: string;
}

interface Authlink extends Server {
  readonly child: ChildProcess;
}

async function startAuthlink(name: string, options: AuthlinkOptions): Promise<Authlink> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    AUTHLINK_ADDR: `127.0.0.1:${port}`,
    AUTHLINK_SERVICE_KEYS: serviceKey,
    AUTHLINK_OTP_SECRET: otpSecret,
    ...rateLimitEnv(options.rateLimits),
    ...(options.grpcPort ? { AUTHLINK_GRPC_ADDR: `127.0.0.1:${options.grpcPort}` } : {}),
    ...options.env,
  };
  // The JSON log (one audit line per call at the default level "info") goes
  // to /dev/null: formatted and written as in production, but not kept.
  const devNull = options.stdout === "pipe" ? undefined : openSync("/dev/null", "w");
  const profile = cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=${slug(name)}.cpuprofile`] : [];
  const child = spawnTracked([...profile, options.main ?? "dist/src/main.js"], env, devNull ?? "pipe");
  if (devNull !== undefined) closeSync(devNull);
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  await waitForPort(port, child, () => stderr);
  if (options.grpcPort) await waitForPort(options.grpcPort, child, () => stderr);
  return { name, addr: `127.0.0.1:${port}`, pid: child.pid ?? 0, child, stop: () => stopChild(child) };
}

async function startReference(kind: "connect-node" | "grpc-js"): Promise<Server> {
  const port = await freePort();
  const child = spawnTracked(["dist/bench/reference-server.js", kind, String(port)], { PATH: process.env.PATH }, "ignore");
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  await waitForPort(port, child, () => stderr);
  return { name: `bare ${kind}`, addr: `127.0.0.1:${port}`, pid: child.pid ?? 0, stop: () => stopChild(child) };
}

// ---- the load generator

const loadgen = join(root, "dist", "bench", "loadgen");

async function buildLoadgen(): Promise<void> {
  await run("go", ["build", "-o", loadgen, "."], { cwd: join(root, "bench", "loadgen") });
}

interface Result {
  pairs: number;
  errors: number;
  firstError?: string;
  seconds: number;
  pairsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  loadgenCpuMs: number;
  serverCpuMs: number;
  dropped?: number;
}

let runs = 0;
async function drive(server: Server, args: Record<string, string | number>): Promise<Result> {
  const flags = Object.entries({
    addr: server.addr,
    key: serviceKey,
    "server-pid": server.pid,
    prefix: `r${++runs}x${randomBytes(3).toString("hex")}`,
    ...args,
  }).map(([name, value]) => `-${name}=${value}`);
  const { stdout } = await run(loadgen, flags, { maxBuffer: 1024 * 1024 });
  const result = JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as Result;
  if (result.errors > 0) notes.push(`${server.name} ${args.protocol} ${args.mode}: ${result.errors} failed pairs, e.g. ${result.firstError}`);
  return result;
}

async function ceiling(uri: string, concurrency: number): Promise<Result> {
  const { stdout } = await run(node, [
    join(root, "dist", "bench", "mongo-pair-ceiling.js"),
    uri,
    String(concurrency),
    String(ms(settings.warmup)),
    String(ms(settings.duration)),
  ]);
  return JSON.parse(stdout.trim()) as Result;
}

// ---- rows: several rounds each, interleaved, medians

interface Row {
  readonly label: string;
  readonly measure: () => Promise<Result>;
  readonly results: Result[];
}

function row(label: string, measure: () => Promise<Result>): Row {
  return { label, measure, results: [] };
}

/** Round by round, every row once per round in the order given (alternate authlink and a reference). */
async function measureInterleaved(rows: Row[], rounds: number): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    for (const r of rows) r.results.push(await r.measure());
  }
}

interface Summary {
  pairsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  cpuMsPerPair: number;
  loadgenShare: number;
  errors: number;
}

function summary(r: Row): Summary {
  const pick = (f: (x: Result) => number) => median(r.results.map(f));
  return {
    pairsPerSec: pick((x) => x.pairsPerSec),
    p50Ms: pick((x) => x.p50Ms),
    p99Ms: pick((x) => x.p99Ms),
    cpuMsPerPair: pick((x) => (x.pairs > 0 && x.serverCpuMs > 0 ? x.serverCpuMs / x.pairs : NaN)),
    loadgenShare: pick((x) => x.loadgenCpuMs / (x.seconds * 1000 * cores)),
    errors: r.results.reduce((sum, x) => sum + x.errors, 0),
  };
}

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

// ---- printing

function print(line = ""): void {
  process.stdout.write(`${line}\n`);
}
const fmt = (value: number, digits = 0) => (Number.isFinite(value) ? value.toFixed(digits) : "-");

function table(title: string, rows: Row[], extra?: (r: Row) => string): void {
  print();
  print(`## ${title}`);
  print(`| row | pairs/s | p50 ms | p99 ms | server CPU ms/pair | generator CPU | errors |${extra ? " note |" : ""}`);
  print(`|---|--:|--:|--:|--:|--:|--:|${extra ? "---|" : ""}`);
  for (const r of rows) {
    const s = summary(r);
    print(
      `| ${r.label} | ${fmt(s.pairsPerSec)} | ${fmt(s.p50Ms, 2)} | ${fmt(s.p99Ms, 2)} | ${fmt(s.cpuMsPerPair, 3)} | ${fmt(s.loadgenShare * 100)}% | ${s.errors} |${extra ? ` ${extra(r)} |` : ""}`,
    );
  }
}

function ratio(label: string, a: number, b: number, unit: string): string {
  return `| ${label} | ${fmt(a, unit === "ms" ? 2 : 0)} ${unit} / ${fmt(b, unit === "ms" ? 2 : 0)} ${unit} | ${fmt(a / b, 2)} |`;
}

// ---- modes

/** The memory mode's table, with a row for this build and one for the baseline when there is one. */
async function memoryMode(): Promise<string[]> {
  const n = settings.memoryLinks;
  const rows = [await memoryRow("authlink", n)];
  if (baselineMain) rows.push(await memoryRow("baseline", n, baselineMain));
  return [
    "",
    `## Memory: RSS of authlink (embedded store) over ${n} links, expires_in ${MEMORY_EXPIRES_IN_S}s, tombstone grace 0`,
    `| build | start | peak | end of issuing | after sweep | issued at |`,
    `|---|--:|--:|--:|---|--:|`,
    ...rows,
    `(users are kept: one per address, so "after sweep" still holds ${n} users; V8 keeps freed heap, RSS shrinks late)`,
  ];
}

const MEMORY_EXPIRES_IN_S = 2;

async function memoryRow(label: string, n: number, main?: string): Promise<string> {
  const expiresIn = MEMORY_EXPIRES_IN_S;
  const server = await startAuthlink(`${label} (memory)`, {
    rateLimits: false,
    stdout: "pipe",
    main,
    env: { AUTHLINK_LINK_EXPIRY_MIN: "1s", AUTHLINK_TOMBSTONE_GRACE: "0", AUTHLINK_LOG_LEVEL: "debug" },
  });
  let purged = 0;
  let lastPurgeAt = 0;
  let pending = "";
  server.child.stdout?.on("data", (chunk: Buffer) => {
    const lines = (pending + chunk.toString()).split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      if (!line.includes("purged expired documents")) continue;
      purged += (JSON.parse(line) as { count?: number }).count ?? 0;
      lastPurgeAt = Date.now();
    }
  });
  const rss = async () => {
    const status = await readFile(`/proc/${server.pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
  };
  const start = await rss();
  let peak = start;
  const sampler = setInterval(() => void rss().then((v) => (peak = Math.max(peak, v)), () => undefined), 100);
  const filled = await drive(server, { protocol: "grpc", mode: "fill", n, c: 32, "expires-in": expiresIn });
  const end = await rss();
  peak = Math.max(peak, end);
  let afterSweep = "not waited for in --smoke (the embedded store sweeps every 60 s)";
  if (settings.waitForSweep) {
    const filledAt = Date.now();
    const deadline = filledAt + 90_000;
    while (Date.now() < deadline && !(purged >= n && lastPurgeAt > filledAt)) await sleep(500);
    await sleep(2_000);
    afterSweep = purged >= n ? `${fmt(await rss(), 1)} MiB (${purged} links swept)` : `sweep not seen within 90 s (${purged} swept)`;
  }
  clearInterval(sampler);
  await server.stop();
  return `| ${label} | ${fmt(start, 1)} MiB | ${fmt(peak, 1)} MiB | ${fmt(end, 1)} MiB | ${afterSweep} | ${fmt(filled.pairsPerSec)} links/s |`;
}

/** Each size on this build, and on the baseline when there is one. */
async function sizeMode(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const size of settings.sizes) {
    rows.push(await sizeRow("authlink", size));
    if (baselineMain) rows.push(await sizeRow("baseline", size, baselineMain));
  }
  if (smoke) rows.push(row("100000 users: skipped in --smoke", async () => ({}) as Result));
  return rows;
}

async function sizeRow(label: string, size: number, main?: string): Promise<Row> {
  const server = await startAuthlink(`${label} (${size} users)`, { rateLimits: true, main });
  // The fill has a time budget: a store that slows down as it fills must not
  // stretch the bench past its 10 minutes. The row then says how far it got.
  const filled = await drive(server, { protocol: "grpc", mode: "fill", n: size, c: 32, "max-duration": settings.fillBudget });
  const held =
    filled.pairs >= size
      ? `${size} users + ${size} outstanding links (filled at ${fmt(filled.pairsPerSec)}/s)`
      : `${filled.pairs} of ${size} users + links (the fill's ${settings.fillBudget} budget ran out, ${fmt(filled.pairsPerSec)}/s on average)`;
  const r = row(`${label}: ${held}, gRPC c=32`, () =>
    drive(server, { protocol: "grpc", mode: "closed", c: 32, warmup: settings.warmup, duration: settings.duration }),
  );
  await measureInterleaved([r], settings.sizeRounds);
  await server.stop();
  return r;
}

// ---- main

async function main(): Promise<void> {
  const startedAt = Date.now();
  process.stderr.write(`bench${smoke ? " --smoke" : ""}: building the Go load generator\n`);
  await buildLoadgen();
  const ferretBinary = wanted("ferretdb") ? installFerretDB((line) => process.stderr.write(`${line}\n`)) : undefined;
  const embedded = wanted("embedded") ? await embeddedSections() : undefined;

  const ferretRows: Row[] = [];
  if (ferretBinary) {
    process.stderr.write("bench: FerretDB, c=8\n");
    let ferret: RunningFerretDB | undefined;
    const started: Authlink[] = [];
    try {
      ferret = await startFerretDB(await ferretBinary);
      const uri = ferret.uri;
      const onFerret = (name: string, rateLimits: boolean, database: string, main?: string) =>
        startAuthlink(name, { rateLimits, main, env: { AUTHLINK_MONGODB_URI: uri, AUTHLINK_MONGODB_DATABASE: database } }).then((server) => {
          started.push(server);
          return server;
        });
      const on = await onFerret("authlink on FerretDB", true, "authlink_bench_on");
      const off = await onFerret("authlink on FerretDB (limits off)", false, "authlink_bench_off");
      ferretRows.push(
        row("authlink gRPC on FerretDB c=8 (limits on)", closed(on, "grpc", 8)),
        row("raw driver insertOne+findOneAndDelete c=8 (ceiling)", () => ceiling(uri, 8)),
        row("authlink gRPC on FerretDB c=8 (limits off)", closed(off, "grpc", 8)),
      );
      if (baselineMain) {
        const baseOn = await onFerret("baseline on FerretDB", true, "authlink_bench_base_on", baselineMain);
        const baseOff = await onFerret("baseline on FerretDB (limits off)", false, "authlink_bench_base_off", baselineMain);
        ferretRows.push(
          row("baseline gRPC on FerretDB c=8 (limits on)", closed(baseOn, "grpc", 8)),
          row("baseline gRPC on FerretDB c=8 (limits off)", closed(baseOff, "grpc", 8)),
        );
      }
      await measureInterleaved(ferretRows, settings.ferretRounds);
    } finally {
      for (const server of started) await server.stop();
      await ferret?.stop();
    }
  }

  let memory: string[] = [];
  if (wanted("memory")) {
    process.stderr.write("bench: memory\n");
    memory = await memoryMode();
  }

  let sizeRows: Row[] = [];
  if (wanted("size")) {
    process.stderr.write("bench: size\n");
    sizeRows = await sizeMode();
  }

  // ---- the table
  print();
  print(`# authlink bench${smoke ? " --smoke (tiny rounds: numbers printed, not asserted)" : ""}${only ? ` --only=${only.join(",")}` : ""}`);
  print(
    `${cores} cores; ${settings.rounds} interleaved rounds per row at c=32, ${settings.latencyRounds} at c=1 and paced, ` +
      `${settings.ferretRounds} on FerretDB, ${settings.sizeRounds} per size; ` +
      `medians; warm-up ${settings.warmup}, measured ${settings.duration} (c=1 ${settings.c1Duration}, paced ${settings.pacedDuration}). ` +
      `A pair = GenerateLink MAGICLINK (fresh address) + VerifyLink of its token; latency per pair. ` +
      `Generator: compiled Go (bench/loadgen), its CPU as a share of all ${cores} cores.` +
      (baselineMain ? ` Baseline rows: ${baselineMain}.` : ""),
  );
  if (embedded) {
    table("Closed loop, c=32 (saturation)", embedded.throughputRows);
    table("Closed loop, c=1", embedded.oneRows);
    table("Paced at half of each server's own saturation (latency from the scheduled start)", embedded.pacedRows, (r) =>
      String(r.results.reduce((sum, x) => sum + (x.dropped ?? 0), 0) || ""),
    );
  }
  if (ferretRows.length > 0) table("FerretDB (authlink's CPU per pair; the ceiling's CPU is the driver process's, not shown)", ferretRows);
  for (const line of memory) print(line);
  if (sizeRows.length > 0) table("Size: per-pair cost with many users and outstanding links (embedded store, limits on)", sizeRows.filter((r) => r.results.length > 0));

  const s = (r: Row) => summary(r);
  print();
  print("## Ratios (issue 9)");
  print("| ratio | values | authlink / reference |");
  print("|---|--:|--:|");
  if (embedded) {
    const { t, one, paced } = embedded;
    print(ratio("gRPC c=32 pairs/s: authlink vs bare connect-node", s(t.alGrpc).pairsPerSec, s(t.cnGrpc).pairsPerSec, "/s"));
    print(ratio("gRPC c=32 pairs/s: authlink vs bare grpc-js", s(t.alGrpc).pairsPerSec, s(t.gjGrpc).pairsPerSec, "/s"));
    if (t.alListener) print(ratio("gRPC c=32 pairs/s: authlink grpc-js listener vs bare grpc-js", s(t.alListener).pairsPerSec, s(t.gjGrpc).pairsPerSec, "/s"));
    print(ratio("Connect JSON c=32 pairs/s: authlink vs bare connect-node", s(t.alConnect).pairsPerSec, s(t.cnConnect).pairsPerSec, "/s"));
    print(ratio("gRPC p99 at half saturation: authlink vs bare connect-node", s(paced.alGrpc).p99Ms, s(paced.cnGrpc).p99Ms, "ms"));
    print(ratio("gRPC p99 at half saturation: authlink vs bare grpc-js", s(paced.alGrpc).p99Ms, s(paced.gjGrpc).p99Ms, "ms"));
    if (paced.alListener) print(ratio("gRPC p99 at half saturation: authlink grpc-js listener vs bare grpc-js", s(paced.alListener).p99Ms, s(paced.gjGrpc).p99Ms, "ms"));
    print(ratio("Connect JSON p99 at half saturation: authlink vs bare connect-node", s(paced.alConnect).p99Ms, s(paced.cnConnect).p99Ms, "ms"));
    print(ratio("gRPC p99 at c=1: authlink vs bare connect-node", s(one.alGrpc).p99Ms, s(one.cnGrpc).p99Ms, "ms"));
    print(ratio("gRPC p99 at c=1: authlink vs bare grpc-js", s(one.alGrpc).p99Ms, s(one.gjGrpc).p99Ms, "ms"));
    if (one.alListener) print(ratio("gRPC p99 at c=1: authlink grpc-js listener vs bare grpc-js", s(one.alListener).p99Ms, s(one.gjGrpc).p99Ms, "ms"));
    print(ratio("Connect JSON p99 at c=1: authlink vs bare connect-node", s(one.alConnect).p99Ms, s(one.cnConnect).p99Ms, "ms"));
    if (t.baseGrpc) print(ratio("gRPC c=32 pairs/s: authlink vs baseline", s(t.alGrpc).pairsPerSec, s(t.baseGrpc).pairsPerSec, "/s"));
    if (t.baseConnect) print(ratio("Connect JSON c=32 pairs/s: authlink vs baseline", s(t.alConnect).pairsPerSec, s(t.baseConnect).pairsPerSec, "/s"));
    if (one.baseGrpc) print(ratio("gRPC p50 at c=1: authlink vs baseline", s(one.alGrpc).p50Ms, s(one.baseGrpc).p50Ms, "ms"));
    if (one.baseConnect) print(ratio("Connect JSON p50 at c=1: authlink vs baseline", s(one.alConnect).p50Ms, s(one.baseConnect).p50Ms, "ms"));
    if (!embedded.grpcListener) print("authlink grpc-js listener: (AUTHLINK_GRPC_ADDR not supported by this build)");
  }
  const [ferretOn, ferretCeiling, ferretOff, baseOn, baseOff] = ferretRows;
  if (ferretOn && ferretCeiling && ferretOff) {
    print(ratio("FerretDB c=8 pairs/s: authlink (limits on) vs raw driver", s(ferretOn).pairsPerSec, s(ferretCeiling).pairsPerSec, "/s"));
    print(ratio("FerretDB c=8 pairs/s: authlink (limits off) vs raw driver", s(ferretOff).pairsPerSec, s(ferretCeiling).pairsPerSec, "/s"));
  }
  if (ferretOn && ferretOff && baseOn && baseOff) {
    print(ratio("FerretDB c=8 pairs/s: authlink vs baseline (limits on)", s(ferretOn).pairsPerSec, s(baseOn).pairsPerSec, "/s"));
    print(ratio("FerretDB c=8 pairs/s: authlink vs baseline (limits off)", s(ferretOff).pairsPerSec, s(baseOff).pairsPerSec, "/s"));
  }
  const sizeRatio = (label: string) => {
    const measured = sizeRows.filter((r) => r.label.startsWith(`${label}: `) && r.results.length > 0);
    const [smallest, largest] = [measured[0], measured[measured.length - 1]];
    if (smallest && largest && smallest !== largest) {
      print(ratio(`Size: ${label} pairs/s, largest vs smallest store`, s(largest).pairsPerSec, s(smallest).pairsPerSec, "/s"));
    }
  };
  sizeRatio("authlink");
  if (baselineMain) sizeRatio("baseline");
  if (embedded) printCryptoFloor(embedded.t);
  for (const note of notes) print(`note: ${note}`);
  print(`(bench took ${fmt((Date.now() - startedAt) / 1000)} s)`);
}

/**
 * How close to a bare reference any server doing the contract's cryptography
 * could get, by CPU (bench/crypto-floor.ts): the reference's CPU per pair
 * over that plus the floor, beside what authlink reached.
 */
function printCryptoFloor(t: { alGrpc: Row; cnGrpc: Row; alConnect: Row; cnConnect: Row; gjGrpc: Row; alListener?: Row | undefined }): void {
  const floor = measureCryptoFloor(smoke ? 1_000 : 5_000);
  const s = (r: Row) => summary(r);
  print();
  print("## The contract's own cryptography per pair (in process, this machine, now)");
  print(
    `Ed25519 signature ${fmt(floor.signEddsaUs, 1)} µs, ES256 ${fmt(floor.signEs256Us, 1)} µs; with the token, jti and code bytes, ` +
      `the code's HMAC and 4 SHA-256: ${fmt(floor.eddsaUs, 1)} µs per pair with Ed25519, ${fmt(floor.es256Us, 1)} µs with ES256. ` +
      "A server that did nothing but this on top of a bare reference would spend the reference's CPU per pair plus this; " +
      "by CPU its pairs/s could reach at most reference / (reference + floor) of the reference's.",
  );
  print("| transport | reference CPU ms/pair | best possible ratio (Ed25519 / ES256) | authlink's ratio (pairs/s) | authlink CPU ms/pair |");
  print("|---|--:|--:|--:|--:|");
  const line = (label: string, al: Row | undefined, ref: Row) => {
    if (!al) return;
    const refCpu = s(ref).cpuMsPerPair;
    const best = (floorUs: number) => refCpu / (refCpu + floorUs / 1000);
    print(
      `| ${label} | ${fmt(refCpu, 3)} | ${fmt(best(floor.eddsaUs), 2)} / ${fmt(best(floor.es256Us), 2)} | ${fmt(s(al).pairsPerSec / s(ref).pairsPerSec, 2)} | ${fmt(s(al).cpuMsPerPair, 3)} |`,
    );
  };
  line("gRPC, main port vs bare connect-node", t.alGrpc, t.cnGrpc);
  line("Connect JSON, main port vs bare connect-node", t.alConnect, t.cnConnect);
  line("gRPC, grpc-js listener vs bare grpc-js", t.alListener, t.gjGrpc);
}

const closed = (server: Server, protocol: string, c: number, duration = settings.duration) => () =>
  drive(server, { protocol, mode: "closed", c, warmup: settings.warmup, duration });

/** Embedded store: authlink with rate limits on and off, and the references; closed loop c=32, c=1, paced. */
async function embeddedSections() {
  const grpcPort = await freePort();
  let authlinkOn: Authlink;
  let grpcListener: Server | undefined;
  try {
    authlinkOn = await startAuthlink("authlink", { rateLimits: true, grpcPort });
    grpcListener = { ...authlinkOn, name: "authlink grpc-js listener", addr: `127.0.0.1:${grpcPort}` };
  } catch (error) {
    if (!(error instanceof ExitedError) || !error.message.includes("is not a known variable")) throw error;
    authlinkOn = await startAuthlink("authlink", { rateLimits: true });
  }
  const authlinkOff = await startAuthlink("authlink (limits off)", { rateLimits: false });
  const bareConnect = await startReference("connect-node");
  const bareGrpcJs = await startReference("grpc-js");
  const baseline = baselineMain ? await startAuthlink("baseline", { rateLimits: true, main: baselineMain }) : undefined;

  process.stderr.write("bench: closed loop, c=32\n");
  const t = {
    alGrpc: row("authlink gRPC (limits on)", closed(authlinkOn, "grpc", 32)),
    cnGrpc: row("bare connect-node gRPC", closed(bareConnect, "grpc", 32)),
    alConnect: row("authlink Connect JSON (limits on)", closed(authlinkOn, "connect", 32)),
    cnConnect: row("bare connect-node Connect JSON", closed(bareConnect, "connect", 32)),
    alOffGrpc: row("authlink gRPC (limits off)", closed(authlinkOff, "grpc", 32)),
    gjGrpc: row("bare grpc-js gRPC", closed(bareGrpcJs, "grpc", 32)),
    alOffConnect: row("authlink Connect JSON (limits off)", closed(authlinkOff, "connect", 32)),
    alListener: grpcListener ? row("authlink grpc-js listener gRPC (limits on)", closed(grpcListener, "grpc", 32)) : undefined,
    baseGrpc: baseline ? row("baseline gRPC (limits on)", closed(baseline, "grpc", 32)) : undefined,
    baseConnect: baseline ? row("baseline Connect JSON (limits on)", closed(baseline, "connect", 32)) : undefined,
  };
  const throughputRows = Object.values(t).filter((r): r is Row => r !== undefined);
  await measureInterleaved(throughputRows, settings.rounds);

  process.stderr.write("bench: closed loop, c=1\n");
  const one = {
    alGrpc: row("authlink gRPC c=1", closed(authlinkOn, "grpc", 1, settings.c1Duration)),
    cnGrpc: row("bare connect-node gRPC c=1", closed(bareConnect, "grpc", 1, settings.c1Duration)),
    alConnect: row("authlink Connect JSON c=1", closed(authlinkOn, "connect", 1, settings.c1Duration)),
    cnConnect: row("bare connect-node Connect JSON c=1", closed(bareConnect, "connect", 1, settings.c1Duration)),
    gjGrpc: row("bare grpc-js gRPC c=1", closed(bareGrpcJs, "grpc", 1, settings.c1Duration)),
    alListener: grpcListener ? row("authlink grpc-js listener gRPC c=1", closed(grpcListener, "grpc", 1, settings.c1Duration)) : undefined,
    baseGrpc: baseline ? row("baseline gRPC c=1", closed(baseline, "grpc", 1, settings.c1Duration)) : undefined,
    baseConnect: baseline ? row("baseline Connect JSON c=1", closed(baseline, "connect", 1, settings.c1Duration)) : undefined,
  };
  const oneRows = Object.values(one).filter((r): r is Row => r !== undefined);
  await measureInterleaved(oneRows, settings.latencyRounds);

  process.stderr.write("bench: paced at half of each server's own saturation\n");
  const pacedRow = (label: string, server: Server, protocol: string, saturated: Row) => {
    const rate = Math.max(1, Math.round(summary(saturated).pairsPerSec / 2));
    return row(`${label} at ${rate}/s`, () =>
      drive(server, { protocol, mode: "paced", rate, warmup: settings.warmup, duration: settings.pacedDuration }),
    );
  };
  const paced = {
    alGrpc: pacedRow("authlink gRPC", authlinkOn, "grpc", t.alGrpc),
    cnGrpc: pacedRow("bare connect-node gRPC", bareConnect, "grpc", t.cnGrpc),
    alConnect: pacedRow("authlink Connect JSON", authlinkOn, "connect", t.alConnect),
    cnConnect: pacedRow("bare connect-node Connect JSON", bareConnect, "connect", t.cnConnect),
    gjGrpc: pacedRow("bare grpc-js gRPC", bareGrpcJs, "grpc", t.gjGrpc),
    alListener: grpcListener && t.alListener ? pacedRow("authlink grpc-js listener gRPC", grpcListener, "grpc", t.alListener) : undefined,
  };
  const pacedRows = Object.values(paced).filter((r): r is Row => r !== undefined);
  await measureInterleaved(pacedRows, settings.latencyRounds);

  for (const server of [authlinkOn, authlinkOff, bareConnect, bareGrpcJs, ...(baseline ? [baseline] : [])]) await server.stop();
  return { t, one, paced, throughputRows, oneRows, pacedRows, grpcListener };
}

function ms(duration: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(duration);
  if (!match) throw new Error(`bad duration ${duration}`);
  return Number(match[1]) * (match[2] === "s" ? 1000 : 1);
}

function slug(text: string): string {
  return text.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "").toLowerCase();
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

const killAll = () => {
  for (const child of children) child.kill("SIGKILL");
};
process.once("SIGINT", () => (killAll(), process.exit(130)));
process.once("SIGTERM", () => (killAll(), process.exit(143)));
main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    killAll();
    process.exit(1);
  },
);
