import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createMemoryStore } from "../../src/store/memory-store.js";
import type { LinkRecord } from "../../src/domain/link.js";
import type { Store } from "../../src/domain/store.js";
import type { RateLimitSettings } from "../../src/domain/rate-limiter.js";
import { linkParams } from "../support/links.js";
import { createLogger } from "../../src/log/logger.js";
import { HOUR, makeLinkService, NO_RATE_LIMITS, TEST_LINK_SETTINGS } from "../support/link-service-fixture.js";
import { fillForgottenAt, fillStore } from "../store/memory-store-fill.js";

// What the embedded store costs as it fills up (not a test: it prints).
//
// 1. GenerateLink + VerifyLink (magic link, by token, through LinkService)
//    per call, with 0 / 10k / 100k other links outstanding and 1k / 100k users.
// 2. Memory while 1M links are issued on an injected clock, each expiring 2 s
//    after it is issued (half of them redeemed first), with the expiry sweep
//    run every simulated second: RSS should level off, not grow.
// 3. One expiry sweep that finds 1,000 links due beside 0 / 100k / 300k that
//    are not.
//
//   npm run build --silent && node --expose-gc dist/test/bench/memory-store-cost.js [churn-links]

/** Limits high enough never to refuse, so that their windows are stored and swept like in production. */
const WIDE_LIMITS: RateLimitSettings = {
  ...NO_RATE_LIMITS,
  generatePerCaller: { limit: 1_000_000, windowMs: 60_000 },
  generatePerEmail: { limit: 1_000, windowMs: 60_000 },
  verifyPerAddress: { limit: 1_000_000, windowMs: 60_000 },
};

type Sizes = Record<string, number>;
const sizesOf = (store: Store): Sizes | undefined => (store as { sizes?: () => Sizes }).sizes?.();

const magicLink = (email: string, expiresInMs?: number) => ({
  type: "magiclink" as const,
  email,
  redirectTo: "",
  data: undefined,
  password: "",
  newEmail: "",
  expiresInMs,
});
const tokenOf = (actionLink: string) => linkParams(actionLink).get("token") ?? "";

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

async function callCost(outstanding: number, userCount: number, rounds: number) {
  const store = createMemoryStore();
  const { links, clock } = makeLinkService(store, { rateLimits: WIDE_LIMITS, logger: createLogger("silent") });
  const now = clock.now();
  for (let i = 0; i < userCount; i++) {
    await store.users.insert({ id: `user-${i}`, email: `user-${i}@example.com`, createdAt: now, updatedAt: now, userMetadata: {} });
  }
  // Other people's outstanding links, stored directly (their users need not exist for the store).
  for (let i = 0; i < outstanding; i++) {
    const record: LinkRecord = {
      tokenHash: i.toString(16).padStart(64, "0"),
      otpHash: "f".repeat(64),
      type: i % 2 === 0 ? "magiclink" : "recovery",
      userId: `other-${i}`,
      email: `other-${i}@example.com`,
      issueId: `issue-${i}`,
      issuedAt: now,
      expiresAt: new Date(now.getTime() + HOUR),
      retainUntil: new Date(now.getTime() + HOUR + TEST_LINK_SETTINGS.tombstoneGraceMs),
    };
    await store.links.insert([record]);
  }
  const generate: number[] = [];
  const verify: number[] = [];
  const warmup = Math.min(500, rounds);
  for (let i = 0; i < warmup + rounds; i++) {
    const email = `user-${i % userCount}@example.com`;
    const t0 = process.hrtime.bigint();
    const generated = await links.generate(magicLink(email));
    const t1 = process.hrtime.bigint();
    await links.verify({ type: "magiclink", credential: { kind: "token", token: tokenOf(generated.link.actionLink) } });
    const t2 = process.hrtime.bigint();
    clock.advance(1);
    if (i >= warmup) {
      generate.push(Number(t1 - t0) / 1e3);
      verify.push(Number(t2 - t1) / 1e3);
    }
  }
  await store.close();
  return { generate, verify };
}

async function churn(total: number, userCount: number) {
  const store = createMemoryStore();
  const { links, clock } = makeLinkService(store, {
    rateLimits: { ...WIDE_LIMITS, generatePerEmail: { limit: 1_000, windowMs: 1_000 } },
    settings: { expiry: { ...TEST_LINK_SETTINGS.expiry, minMs: 1_000 }, tombstoneGraceMs: 2_000 },
    logger: createLogger("silent"),
  });
  const gc = (globalThis as { gc?: () => void }).gc;
  const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(0).padStart(6);
  let peakRss = 0;
  const report = (issued: number) => {
    gc?.();
    const { rss, heapUsed, heapTotal } = process.memoryUsage();
    peakRss = Math.max(peakRss, rss);
    const sizes = sizesOf(store);
    const shown = sizes ? Object.entries(sizes).map(([k, v]) => `${k}=${v}`).join(" ") : "";
    console.log(`${String(issued).padStart(9)} ${mb(rss)} ${mb(heapTotal)} ${mb(heapUsed)}   ${shown}`);
  };
  console.log(`   issued  RSS MiB  heap MiB: total  used (after gc${gc ? "" : " — not exposed: run with --expose-gc"})`);
  report(0);
  for (let i = 1; i <= total; i++) {
    const generated = await links.generate(magicLink(`churn-${i % userCount}@example.com`, 2_000));
    if (i % 2 === 0) {
      await links.verify({ type: "magiclink", credential: { kind: "token", token: tokenOf(generated.link.actionLink) } });
    }
    clock.advance(1);
    if (i % 1_000 === 0) await store.purgeExpired(clock.now());
    if (i % 100_000 === 0) report(i);
  }
  // Everything issued is now past its retention: one last sweep.
  clock.advance(10 * 60_000);
  const t0 = process.hrtime.bigint();
  const purged = await store.purgeExpired(clock.now());
  console.log(`final sweep: ${purged} entries in ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1)} ms`);
  report(total);
  console.log(`peak RSS ${mb(peakRss).trim()} MiB`);
}

// Each measurement runs in a fresh process of its own, so that none inherits
// another's heap.
const [mode, arg] = process.argv.slice(2);
/** One sweep that finds `due` entries due beside `waiting` that are not (links with their claims, windows, audit events). */
async function sweepCost(waiting: number, due: number) {
  const store = createMemoryStore();
  const at = new Date("2030-01-01T00:00:00Z");
  await fillStore(store, { count: waiting, at, lifetimeMs: HOUR, prefix: "waiting" });
  const fill = { count: due, at, lifetimeMs: 60_000, prefix: "due" };
  await fillStore(store, fill);
  await store.purgeExpired(new Date(at.getTime() + 60_000)); // the due links' claims and windows
  const t0 = process.hrtime.bigint();
  const purged = await store.purgeExpired(fillForgottenAt(fill));
  return { purged, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

const SHAPES = ["0,1000", "10000,1000", "100000,1000", "0,100000", "100000,100000"];
const PASSES = 3;

if (mode === "cost") {
  const [outstanding, users] = (arg ?? "0,1000").split(",").map(Number) as [number, number];
  const { generate, verify } = await callCost(outstanding, users, 3_000);
  console.log(JSON.stringify([median(generate), mean(generate), median(verify), mean(verify)]));
} else if (mode === "sweep") {
  const [waiting, due] = (arg ?? "0,1000").split(",").map(Number) as [number, number];
  const { purged, ms } = await sweepCost(waiting, due);
  console.log(JSON.stringify([purged, ms]));
} else if (mode === "churn") {
  const total = Number(arg ?? 1_000_000);
  console.log(`\nmemory while ${total.toLocaleString("en")} links are issued (10k users, each link expires after 2 s, half redeemed, sweep every second):`);
  await churn(total, 10_000);
} else {
  const churnTotal = mode ?? "1000000";
  const child = (...args: string[]) => [...process.execArgv, fileURLToPath(import.meta.url), ...args];
  console.log(`node ${process.version}, embedded store`);
  // The shapes in turn, PASSES times, so that a change in the machine's load hits them alike.
  const results = new Map<string, number[][]>(SHAPES.map((shape) => [shape, []]));
  for (let pass = 0; pass < PASSES; pass++) {
    for (const shape of SHAPES) {
      const out = spawnSync(process.execPath, child("cost", shape), { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
      results.get(shape)?.push(JSON.parse(out.stdout) as number[]);
    }
  }
  console.log(`\nper call, µs: median / mean over 3,000 rounds of GenerateLink then VerifyLink by token (each the median of ${PASSES} runs)`);
  console.log("outstanding    users   generate median/mean   verify median/mean");
  for (const [shape, runs] of results) {
    const [outstanding, users] = shape.split(",");
    const [gMedian, gMean, vMedian, vMean] = [0, 1, 2, 3].map((k) => median(runs.map((r) => r[k] as number)).toFixed(0));
    console.log(`${outstanding?.padStart(11)} ${users?.padStart(8)} ${gMedian?.padStart(12)} / ${gMean?.padEnd(8)} ${vMedian?.padStart(10)} / ${vMean}`);
  }
  console.log(`\none expiry sweep: links waiting (not due), links due (half redeemed), entries purged, ms (the median of ${PASSES} runs)`);
  console.log("    waiting      due   purged        ms");
  for (const shape of ["0,1000", "100000,1000", "300000,1000"]) {
    const runs = Array.from({ length: PASSES }, () => {
      const out = spawnSync(process.execPath, child("sweep", shape), { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
      return JSON.parse(out.stdout) as [number, number];
    });
    const [waiting, due] = shape.split(",");
    const purged = String(runs[0]?.[0]);
    console.log(`${waiting?.padStart(11)} ${due?.padStart(8)} ${purged.padStart(8)} ${median(runs.map((r) => r[1])).toFixed(1).padStart(9)}`);
  }
  spawnSync(process.execPath, child("churn", churnTotal), { stdio: "inherit" });
}
