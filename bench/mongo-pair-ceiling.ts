import { randomBytes } from "node:crypto";
import { MongoClient } from "mongodb";

// The database ceiling for a pair: what the raw `mongodb` driver gets from the
// same server with nothing else in the way — insertOne of a link-sized
// document, then findOneAndDelete of it by _id — closed loop, c at once.
// Prints one JSON line shaped like the Go generator's.
//
//   node dist/bench/mongo-pair-ceiling.js URI CONCURRENCY WARMUP_MS DURATION_MS

const [uri = "", concurrencyText = "8", warmupText = "1000", durationText = "4000"] = process.argv.slice(2);
const concurrency = Number(concurrencyText);
const client = new MongoClient(uri, { maxPoolSize: concurrency * 2 });
const links = client.db(`authlink_bench_ceiling_${Date.now()}`).collection<{ _id: string } & Record<string, unknown>>("link_tokens");

const latencies: number[] = [];
let errors = 0;
let firstError: string | undefined;
let measuring = false;
let stopping = false;

async function worker(): Promise<void> {
  while (!stopping) {
    const started = performance.now();
    try {
      const id = randomBytes(32).toString("hex");
      const now = new Date();
      await links.insertOne({
        _id: id,
        email: `${id.slice(0, 12)}@bench.example.com`,
        type: "magiclink",
        userId: randomBytes(16).toString("hex"),
        otpHash: randomBytes(32).toString("hex"),
        otpAttempts: 0,
        redirectTo: null,
        createdAt: now,
        expiresAt: new Date(now.getTime() + 3_600_000),
      });
      const removed = await links.findOneAndDelete({ _id: id });
      if (!removed) throw new Error("findOneAndDelete found nothing");
      if (measuring) latencies.push(performance.now() - started);
    } catch (error) {
      if (measuring) {
        errors++;
        firstError ??= String(error);
      }
    }
  }
}

await client.connect();
const workers = Array.from({ length: concurrency }, () => worker());
await new Promise((resolve) => setTimeout(resolve, Number(warmupText)));
const cpuBefore = process.cpuUsage();
const startedAt = performance.now();
measuring = true;
await new Promise((resolve) => setTimeout(resolve, Number(durationText)));
measuring = false;
const seconds = (performance.now() - startedAt) / 1000;
const cpu = process.cpuUsage(cpuBefore);
stopping = true;
await Promise.all(workers);
await links.drop().catch(() => undefined);
await client.close();

const sorted = [...latencies].sort((a, b) => a - b);
const quantile = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
process.stdout.write(
  `${JSON.stringify({
    pairs: sorted.length,
    errors,
    firstError,
    seconds,
    pairsPerSec: sorted.length / seconds,
    p50Ms: quantile(0.5),
    p99Ms: quantile(0.99),
    loadgenCpuMs: (cpu.user + cpu.system) / 1000,
    serverCpuMs: 0,
  })}\n`,
);
