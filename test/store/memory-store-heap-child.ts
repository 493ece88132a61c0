import { createMemoryStore } from "../../src/store/memory-store.js";
import { fillForgottenAt, fillStore } from "./memory-store-fill.js";

// Run by memory-store-growth.test.ts in a child process with --expose-gc:
// the embedded store's heap empty, filled with `count` links (and what
// traffic leaves beside them), and after they expired and were swept.
// Prints one JSON line.

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --expose-gc");
const heapUsed = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const fill = { count: Number(process.argv[2] ?? 200_000), at: new Date("2030-01-01T00:00:00Z"), lifetimeMs: 60_000, prefix: "heap" };
const store = createMemoryStore();
const empty = heapUsed();
await fillStore(store, fill);
const filled = heapUsed();
const purged = await store.purgeExpired(fillForgottenAt(fill));
const swept = heapUsed();
console.log(JSON.stringify({ empty, filled, swept, purged, sizes: store.sizes() }));
