import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { MongoClient } from "mongodb";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { Code, connectClient, reasonOf } from "../support/clients.js";
import { installFerretDB, startFerretDB, type RunningFerretDB } from "../support/ferretdb.js";
import { linkParams } from "../support/links.js";
import { freePort } from "../support/ports.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// The database really dies: a FerretDB of this test's own (data kept on disk)
// is killed with SIGKILL and started again, over and over, while clients run
// generate-then-redeem pairs against authlink, retrying every UNAVAILABLE
// answer (a redemption under its own x-request-id, as docs/retries.md says).
// Afterwards, every link whose generation answered success has been redeemed
// exactly once (a new call with it is refused) or is still redeemable (and
// then redeems once now); no redemption answered success twice; no link a
// failed generation stored is usable.

const LOAD_MS = 20_000;
const WORKERS = 4;

let binary: string;
let dataDir: string;
let port: number;
let ferret: RunningFerretDB | undefined;
let inspect: MongoClient;
let server: TestServer;
const databaseName = `authlink_test_restart_${randomUUID().slice(0, 8)}`;

before(async () => {
  binary = await installFerretDB();
  dataDir = await mkdtemp(join(tmpdir(), "ferretdb-restart-"));
  port = await freePort();
  ferret = await startFerretDB(binary, { dataDir, port });
  inspect = new MongoClient(ferret.uri, { serverSelectionTimeoutMS: 10_000 });
  server = await startTestServer({
    database: { uri: ferret.uri, name: databaseName, client: inspect },
    dbTimeoutMs: 1_000,
    purgeIntervalMs: 3_600_000,
    env: {
      AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER: "100000/1m",
      AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "1000/1h",
      AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "100000/1m",
    },
  });
});
after(async () => {
  await server?.close();
  await inspect?.close();
  await ferret?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const tokenOf = (link: { actionLink: string }) => linkParams(link.actionLink).get("token") ?? "";
const admin = () => connectClient(server.url, { protocol: "connect", key: server.serviceKey });
const redeem = (token: string, requestId: string) =>
  connectClient(server.url, { protocol: "connect", headers: { "x-request-id": requestId } }).verifyLink({
    type: LinkType.MAGICLINK,
    credential: { case: "token", value: token },
  });

/** Retries while the answer is UNAVAILABLE (or the call cannot reach a database), up to `forMs`. */
async function untilAnswered<T>(call: () => Promise<T>, forMs: number): Promise<{ value?: T; error?: ConnectError }> {
  const deadline = Date.now() + forMs;
  for (;;) {
    try {
      return { value: await call() };
    } catch (thrown) {
      const error = ConnectError.from(thrown);
      if ((error.code !== Code.Unavailable && error.code !== Code.DeadlineExceeded) || Date.now() > deadline) return { error };
    }
    await sleep(100);
  }
}

interface Pair {
  readonly email: string;
  userId?: string;
  token?: string;
  hashedToken?: string;
  /** The redemption's answer: "ok", a refusal's reason, or "unanswered" when the test gave up retrying. */
  redeemed?: string;
}

test("kill -9 and restart of the database under load: no link lost, none redeemed twice, no leftover usable", async (t) => {
  const pairs: Pair[] = [];
  const stopAt = Date.now() + LOAD_MS;
  let kills = 0;

  const killer = (async () => {
    while (Date.now() < stopAt - 2_000) {
      await sleep(1_000 + Math.random() * 1_500);
      await ferret!.kill();
      kills++;
      await sleep(200 + Math.random() * 600);
      ferret = await startFerretDB(binary, { dataDir, port });
    }
  })();

  const worker = async (w: number) => {
    for (let i = 0; Date.now() < stopAt; i++) {
      const pair: Pair = { email: `restart-${w}-${i}-${randomUUID().slice(0, 6)}@example.com` };
      pairs.push(pair);
      const generated = await untilAnswered(() => admin().generateLink({ type: LinkType.MAGICLINK, email: pair.email }), 15_000);
      if (!generated.value) continue; // never answered success: nothing to redeem
      Object.assign(pair, { userId: generated.value.user?.id, token: tokenOf(generated.value), hashedToken: generated.value.hashedToken });
      const requestId = randomUUID();
      const redeemed = await untilAnswered(() => redeem(pair.token!, requestId), 15_000);
      pair.redeemed = redeemed.value ? "ok" : redeemed.error?.code === Code.Unavailable ? "unanswered" : (reasonOf(redeemed.error!) ?? String(redeemed.error));
    }
  };

  await Promise.all([killer, ...Array.from({ length: WORKERS }, (_, w) => worker(w))]);

  const issued = pairs.filter((p) => p.token !== undefined);
  const tally = (answer: string) => issued.filter((p) => p.redeemed === answer).length;
  t.diagnostic(`${kills} kills; ${pairs.length} generations tried, ${issued.length} answered success; redemptions: ${tally("ok")} ok, ${tally("unanswered")} unanswered, ${issued.length - tally("ok") - tally("unanswered")} refused`);
  assert.ok(kills >= 3, "the database was killed several times");
  assert.ok(issued.length >= 10, "the load went through");

  const refused = issued.filter((p) => p.redeemed !== "ok" && p.redeemed !== "unanswered");
  assert.deepEqual(refused.map((p) => `${p.email}: ${p.redeemed}`), [], "a link issued and never redeemed by anyone else is never refused: none lost");

  for (const pair of issued) {
    if (pair.redeemed === "unanswered") {
      const now = await untilAnswered(() => redeem(pair.token!, randomUUID()), 15_000);
      assert.ok(now.value, `still redeemable once the database is back: ${pair.email} ${now.error?.message}`);
    }
    const again = await untilAnswered(() => redeem(pair.token!, randomUUID()), 15_000);
    assert.equal(again.error && reasonOf(again.error), "link_invalid_or_expired", `redeemed once: ${pair.email}`);
    const user = await inspect.db(databaseName).collection<{ _id: string; emailConfirmedAt?: Date }>("users").findOne({ _id: pair.userId! });
    assert.ok(user?.emailConfirmedAt, `the redemption had its effect: ${pair.email}`);
  }

  // Nothing usable left for these addresses (whatever their failed
  // generations stored was replaced by the one that answered success, which
  // is redeemed): every stored link is pending, or has a fate.
  const db = inspect.db(databaseName);
  const links = await db
    .collection<{ _id: string; email: string }>("link_tokens")
    .find({ pending: { $exists: false }, email: { $in: issued.map((p) => p.email) } })
    .toArray();
  const fates = new Set((await db.collection<{ _id: string }>("link_tombstones").find({}, { projection: { _id: 1 } }).toArray()).map((f) => f._id));
  const usable = links.filter((l) => !fates.has(l._id));
  assert.deepEqual(usable.map((l) => l.email), [], "no usable link left behind by a generation that answered an error");
});
