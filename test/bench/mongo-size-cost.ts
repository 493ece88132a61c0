import { createHash, randomBytes, randomUUID } from "node:crypto";
import { MongoClient } from "mongodb";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { connectClient } from "../support/clients.js";
import { benchDatabase } from "../support/ferretdb.js";
import { linkParams } from "../support/links.js";
import { startTestServer } from "../support/test-server.js";

// What one person's link costs on MongoDB as the database fills up (issue 9,
// goal 1, MongoDB half): for each size, a fresh database is filled directly
// (insertMany, fast) with that many confirmed users and as many outstanding
// magic links (one per user), then authlink is started on it and times, one
// call at a time over the real server:
//   - GenerateLink MAGICLINK for a fresh address (creates a user),
//   - VerifyLink by token of that link,
//   - GenerateLink MAGICLINK for an address of the fill (replaces its link),
//   - VerifyLink by code of that new link.
// It also times the start-up (index set-up and any migration over the fill).
// Numbers are printed, never asserted.
//
//   npm run build && node dist/test/bench/mongo-size-cost.js [sizes] [pairs]
//   (sizes: comma-separated, default 1000,20000; pairs per size: default 30)
// Uses AUTHLINK_TEST_MONGODB_URI, else starts a FerretDB 1.24.2 (SQLite).

const sizes = (process.argv[2] ?? "1000,20000").split(",").map(Number);
const pairs = Number(process.argv[3] ?? 30);

const ferret = await benchDatabase();
const { uri } = ferret;
const client = new MongoClient(uri);
await client.connect();

const HOUR = 3_600_000;
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const fillAddress = (size: number, i: number) => `fill-${size}-${i}@example.com`;

/** Users and their outstanding links, in the documents' stored shape, written directly. */
async function fill(db: ReturnType<MongoClient["db"]>, size: number): Promise<void> {
  const now = Date.now();
  const batch = 1_000;
  for (let start = 0; start < size; start += batch) {
    const users = [];
    const links = [];
    for (let i = start; i < Math.min(size, start + batch); i++) {
      const id = randomUUID();
      const email = fillAddress(size, i);
      const at = new Date(now - HOUR);
      users.push({ _id: id, email, emailConfirmedAt: at, createdAt: at, updatedAt: at, userMetadataJson: "{}" });
      const expiresAt = new Date(now + 23 * HOUR);
      links.push({
        _id: sha256(randomBytes(32).toString("hex")),
        otpHash: sha256(randomBytes(16).toString("hex")),
        type: "magiclink",
        userId: id,
        email,
        issueId: `fill-${i}`,
        issuedAt: at,
        expiresAt,
        retainUntil: new Date(expiresAt.getTime() + 24 * HOUR),
        issuedBy: "bench",
      });
    }
    await db.collection("users").insertMany(users as never[], { ordered: false });
    await db.collection("link_tokens").insertMany(links as never[], { ordered: false });
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
const fmt = (ms: number) => `${ms.toFixed(1).padStart(7)} ms`;

console.log(`per-call latency on MongoDB at size (median of ${pairs}, one call at a time; ${uri.replace(/\/\/[^@]*@/, "//")})`);
console.log(`${"size".padEnd(26)} ${"start-up".padStart(10)} ${"Gen new".padStart(10)} ${"Verify tok".padStart(10)} ${"Gen again".padStart(10)} ${"Verify code".padStart(11)}`);
const databases: string[] = [];
try {
  for (const size of sizes) {
    const name = `authlink_bench_size_${size}_${Date.now()}`;
    databases.push(name);
    const db = client.db(name);
    const filling = performance.now();
    await fill(db, size);
    const fillMs = performance.now() - filling;
    const starting = performance.now();
    const server = await startTestServer({
      database: { uri, name, client },
      env: {
        AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER: "off",
        AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "off",
        AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "off",
        AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL: "off",
        AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL_AND_CLIENT: "off",
      },
      dbTimeoutMs: 60_000,
      purgeIntervalMs: 3_600_000,
    });
    const startMs = performance.now() - starting;
    const admin = connectClient(server.url, { protocol: "grpc", key: server.serviceKey });
    const anyone = connectClient(server.url, { protocol: "grpc" });
    const timed = async <T>(into: number[], call: () => Promise<T>): Promise<T> => {
      const began = performance.now();
      const result = await call();
      into.push(performance.now() - began);
      return result;
    };
    const genNew: number[] = [];
    const verifyToken: number[] = [];
    const genAgain: number[] = [];
    const verifyCode: number[] = [];
    try {
      for (let i = 0; i < pairs; i++) {
        const fresh = await timed(genNew, () => admin.generateLink({ type: LinkType.MAGICLINK, email: `fresh-${size}-${i}@example.com` }));
        const token = linkParams(fresh.actionLink).get("token") ?? "";
        await timed(verifyToken, () => anyone.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } }));
        const email = fillAddress(size, Math.floor((i * size) / pairs));
        const again = await timed(genAgain, () => admin.generateLink({ type: LinkType.MAGICLINK, email }));
        await timed(verifyCode, () =>
          anyone.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "emailOtp", value: { email, otp: again.emailOtp } } }),
        );
      }
    } finally {
      await server.close();
    }
    console.log(
      `${`${size} users + ${size} links`.padEnd(26)} ${fmt(startMs).padStart(10)} ${fmt(median(genNew)).padStart(10)} ${fmt(median(verifyToken)).padStart(10)} ${fmt(median(genAgain)).padStart(10)} ${fmt(median(verifyCode)).padStart(11)}   (filled in ${(fillMs / 1000).toFixed(1)} s)`,
    );
  }
} finally {
  for (const name of databases) await client.db(name).dropDatabase().catch(() => undefined);
  await client.close();
  await ferret.stop();
}
