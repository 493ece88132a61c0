import { MongoClient } from "mongodb";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { connectClient, type AdminClient } from "../support/clients.js";
import { benchDatabase } from "../support/ferretdb.js";
import { linkParams } from "../support/links.js";
import { mongoHostPort, startTcpProxy, viaProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// What one instance costs and sustains, for docs/capacity.md:
//   1. database commands per call, counted on the wire (a proxy between
//      authlink and MongoDB reads each client message's command name);
//   2. audit events per insert command under concurrent load (how many events
//      of concurrent calls share one insert);
//   3. pairs per second (GenerateLink of a new magic link + VerifyLink of its
//      token) from a small concurrent loop, on the embedded store and on
//      MongoDB (AUTHLINK_TEST_MONGODB_URI, else a FerretDB started here),
//      with the default rate limits and without them.
//
//   npm run bench:capacity [-- seconds concurrency]

const seconds = Number(process.argv[2] ?? 10);
const concurrency = Number(process.argv[3] ?? 16);
const DRIVER_CHATTER = new Set(["hello", "ismaster", "isMaster", "ping", "endSessions", "saslStart", "saslContinue"]);

const ferret = await benchDatabase();
const { uri } = ferret;
const client = new MongoClient(uri);
await client.connect();
const databases: string[] = [];
const database = (label: string) => {
  const name = `authlink_bench_${label}_${Date.now()}`;
  databases.push(name);
  return { uri: uri, name, client };
};

/** Counts MongoDB wire messages by command name, and by command and collection ("insert audit_events"). */
function wireCounter() {
  const counts = new Map<string, number>();
  const byCollection = new Map<string, number>();
  const pending = new Map<number, Buffer>();
  const onClientData = (connection: number, chunk: Buffer) => {
    let buffer = Buffer.concat([pending.get(connection) ?? Buffer.alloc(0), chunk]);
    while (buffer.length >= 4 && buffer.length >= buffer.readInt32LE(0)) {
      const length = buffer.readInt32LE(0);
      const { name, collection } = commandOf(buffer.subarray(0, length));
      counts.set(name, (counts.get(name) ?? 0) + 1);
      if (collection !== undefined) byCollection.set(`${name} ${collection}`, (byCollection.get(`${name} ${collection}`) ?? 0) + 1);
      buffer = buffer.subarray(length);
    }
    pending.set(connection, buffer);
  };
  return { counts, byCollection, onClientData };
}

function commandOf(message: Buffer): { name: string; collection?: string } {
  const opCode = message.readInt32LE(12);
  if (opCode !== 2013) return { name: `opcode ${opCode}` }; // OP_MSG; anything else is handshake chatter
  // header (16) + flagBits (4) + section kind 0 (1) + BSON size (4) + element type (1) = 26
  const start = 26;
  const end = message.indexOf(0, start);
  const name = message.subarray(start, end).toString("utf8");
  if (message[25] !== 0x02) return { name }; // the command's value is not a string: no collection
  const size = message.readInt32LE(end + 1);
  return { name, collection: message.subarray(end + 5, end + 4 + size).toString("utf8") };
}

const tokenOf = (actionLink: string) => linkParams(actionLink).get("token") ?? "";

interface Setup {
  readonly server: TestServer;
  readonly admin: AdminClient;
  readonly anyone: AdminClient;
  readonly proxy?: TcpProxy;
  readonly counts?: Map<string, number>;
  readonly byCollection?: Map<string, number>;
  readonly databaseName?: string;
}

async function setUp(store: "embedded" | "mongodb", limits: "defaults" | "off", count = false): Promise<Setup> {
  const env: Record<string, string> =
    limits === "off"
      ? {
          AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER: "off",
          AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "off",
          AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "off",
        }
      : // On, as in production, but high enough for one client address
        // that stands for many.
        { AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "1000000/1m" };
  let proxy: TcpProxy | undefined;
  let counts: Map<string, number> | undefined;
  let byCollection: Map<string, number> | undefined;
  let databaseUri: string | undefined;
  if (store === "mongodb" && count) {
    const counter = wireCounter();
    const { host, port } = mongoHostPort(uri);
    proxy = await startTcpProxy(host, port, { onClientData: counter.onClientData });
    counts = counter.counts;
    byCollection = counter.byCollection;
    databaseUri = viaProxy(uri, proxy);
  }
  const db = store === "mongodb" ? database(limits) : undefined;
  const server = await startTestServer({ env, database: db, databaseUri });
  return {
    server,
    admin: connectClient(server.url, { protocol: "grpc", key: server.serviceKey }),
    anyone: connectClient(server.url, { protocol: "grpc" }),
    proxy,
    counts,
    byCollection,
    databaseName: db?.name,
  };
}

async function tearDown(setup: Setup): Promise<void> {
  await setup.server.close();
  await setup.proxy?.close();
}

// ---- 1. database commands per call ---------------------------------------

async function commandsPerCall(): Promise<void> {
  const setup = await setUp("mongodb", "defaults", true);
  const counts = setup.counts as Map<string, number>;
  const { admin, anyone } = setup;
  const rounds = 40;
  let n = 0;
  const measure = async (label: string, prepare: () => Promise<unknown>, call: (prepared: unknown) => Promise<unknown>) => {
    const prepared = [];
    for (let i = 0; i < rounds; i++) prepared.push(await prepare());
    await new Promise((resolve) => setTimeout(resolve, 200));
    const before = new Map(counts);
    for (const p of prepared) await call(p);
    const per: Record<string, number> = {};
    let total = 0;
    for (const [name, value] of counts) {
      if (DRIVER_CHATTER.has(name) || name.startsWith("opcode")) continue;
      const delta = (value - (before.get(name) ?? 0)) / rounds;
      if (delta > 0) {
        per[name] = Math.round(delta * 100) / 100;
        total += delta;
      }
    }
    const detail = Object.entries(per).map(([name, value]) => `${name} ${value}`).join(", ");
    console.log(`  ${label.padEnd(44)} ${total.toFixed(2).padStart(5)}  (${detail})`);
  };
  const email = () => `ops-${++n}@example.com`;
  console.log(`database commands per call (FerretDB/MongoDB, default rate limits, mean of ${rounds}):`);
  await measure("GenerateLink magiclink, new user", async () => email(), (e) => admin.generateLink({ type: LinkType.MAGICLINK, email: e as string }));
  await measure(
    "GenerateLink magiclink, user with a live link",
    async () => {
      const e = email();
      await admin.generateLink({ type: LinkType.MAGICLINK, email: e });
      return e;
    },
    (e) => admin.generateLink({ type: LinkType.MAGICLINK, email: e as string }),
  );
  await measure(
    "VerifyLink by token (magiclink)",
    async () => tokenOf((await admin.generateLink({ type: LinkType.MAGICLINK, email: email() })).actionLink),
    (t) => anyone.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: t as string } }),
  );
  await measure(
    "VerifyLink by code (magiclink)",
    async () => {
      const e = email();
      return { e, otp: (await admin.generateLink({ type: LinkType.MAGICLINK, email: e })).emailOtp };
    },
    (p) => {
      const { e, otp } = p as { e: string; otp: string };
      return anyone.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "emailOtp", value: { email: e, otp } } });
    },
  );
  await measure(
    "VerifyLink of an unknown token",
    async () => "U".repeat(43),
    (t) => anyone.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: t as string } }).catch(() => undefined),
  );
  await measure(
    "PreviewLink of a live link",
    async () => tokenOf((await admin.generateLink({ type: LinkType.MAGICLINK, email: email() })).actionLink),
    (t) => anyone.previewLink({ type: LinkType.MAGICLINK, token: t as string }),
  );
  await tearDown(setup);
}

// ---- 2. audit events per insert under load ---------------------------------

async function auditInsertsUnderLoad(): Promise<void> {
  const setup = await setUp("mongodb", "defaults", true);
  const byCollection = setup.byCollection as Map<string, number>;
  const events = client.db(setup.databaseName).collection("audit_events");
  const [eventsBefore, insertsBefore] = [await events.countDocuments(), byCollection.get("insert audit_events") ?? 0];
  const { pairs, failures } = await pairLoop(setup, Math.min(seconds, 5));
  const stored = (await events.countDocuments()) - eventsBefore;
  const inserts = (byCollection.get("insert audit_events") ?? 0) - insertsBefore;
  console.log(
    `  ${concurrency} concurrent loops, ${pairs} pairs (${failures} failed): ${stored} audit events in ${inserts} insert commands` +
      ` = ${(stored / Math.max(1, inserts)).toFixed(2)} events per insert`,
  );
  await tearDown(setup);
}

// ---- 3. pairs per second --------------------------------------------------

/** `concurrency` loops of pairs (GenerateLink of a new magic link, VerifyLink of its token) for `forSeconds`. */
async function pairLoop(setup: Setup, forSeconds: number) {
  const { admin, anyone } = setup;
  const latencies: number[] = [];
  let failures = 0;
  let n = 0;
  const until = performance.now() + forSeconds * 1_000;
  const worker = async () => {
    while (performance.now() < until) {
      const started = performance.now();
      try {
        const issued = await admin.generateLink({ type: LinkType.MAGICLINK, email: `pair-${++n}@example.com` });
        await anyone.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: tokenOf(issued.actionLink) } });
        latencies.push(performance.now() - started);
      } catch {
        failures += 1;
      }
    }
  };
  const began = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { latencies, failures, pairs: latencies.length, elapsed: (performance.now() - began) / 1_000 };
}

async function pairsPerSecond(store: "embedded" | "mongodb", limits: "defaults" | "off"): Promise<void> {
  const setup = await setUp(store, limits);
  const { latencies, failures, elapsed } = await pairLoop(setup, seconds);
  latencies.sort((x, y) => x - y);
  const at = (q: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0);
  console.log(
    `  ${`${store}, rate limits ${limits}`.padEnd(34)} ${(latencies.length / elapsed).toFixed(0).padStart(5)} pairs/s` +
      `  p50 ${at(0.5)} ms  p99 ${at(0.99)} ms  (${latencies.length} pairs, ${failures} failed)`,
  );
  await tearDown(setup);
}

try {
  await commandsPerCall();
  console.log(`\naudit events per insert command under load (MongoDB/FerretDB, default rate limits):`);
  await auditInsertsUnderLoad();
  console.log(`\npairs per second (GenerateLink + VerifyLink by token), ${concurrency} concurrent loops for ${seconds} s, one instance:`);
  await pairsPerSecond("embedded", "defaults");
  await pairsPerSecond("mongodb", "defaults");
  await pairsPerSecond("mongodb", "off");
} finally {
  for (const name of databases) await client.db(name).dropDatabase().catch(() => undefined);
  await client.close();
  await ferret.stop();
}
