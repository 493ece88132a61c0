import { RateLimiter } from "../../src/domain/rate-limiter.js";
import type { RateLimitStore } from "../../src/domain/store.js";
import { openMongoStore } from "../../src/store/mongo-store.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { benchDatabase } from "../support/ferretdb.js";

// Store operations per rate-limit hit on one hot bucket (the per-caller one),
// from one instance and from two instances at once, for docs/rate-limits.md:
//
//   node dist/test/bench/rate-limit-conflicts.js [hits concurrency]

const hits = Number(process.argv[2] ?? 400);
const concurrency = Number(process.argv[3] ?? 16);

const ferret = await benchDatabase();
const { uri } = ferret;
const store = await openMongoStore({ uri, database: `authlink_bench_rl_${Date.now()}`, timeoutMs: 10_000, socketTimeoutMs: 30_000, logger: createCapturedLogger().logger });
await store.ready;

function counted(inner: RateLimitStore) {
  const ops = new Map<string, number>();
  const add = (name: string) => ops.set(name, (ops.get(name) ?? 0) + 1);
  const rateLimits: RateLimitStore = {
    takeSlot: (...a) => (add("takeSlot"), inner.takeSlot(...a)),
    slotTaken: (...a) => (add("slotTaken"), inner.slotTaken(...a)),
    highestSlot: (...a) => (add("highestSlot"), inner.highestSlot(...a)),
  };
  return { rateLimits, ops };
}

const clock = { now: () => new Date() };
for (const instances of [1, 2]) {
  const { rateLimits, ops } = counted(store.rateLimits);
  const limiters = Array.from({ length: instances }, () => new RateLimiter(rateLimits, clock));
  const key = `caller-${instances}-${Date.now()}`;
  let next = 0;
  let admitted = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < hits) {
        const i = next++;
        await limiters[i % instances]!.take("bench", key, { limit: 1_000_000, windowMs: 3_600_000 });
        admitted++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const total = [...ops.values()].reduce((a, b) => a + b, 0);
  const detail = [...ops].map(([k, v]) => `${k} ${(v / hits).toFixed(2)}`).join(", ");
  console.log(`${instances} instance(s), ${concurrency} loops, ${hits} hits on one bucket: ${(total / hits).toFixed(2)} store operations per hit (${detail}), ${(admitted / seconds).toFixed(0)} hits/s`);
}
await store.close();
await ferret.stop();
