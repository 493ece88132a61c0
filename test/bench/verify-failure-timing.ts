import { MongoClient } from "mongodb";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { linkParams } from "../support/links.js";
import { connectClient } from "../support/clients.js";
import { ManualClock } from "../support/manual-clock.js";
import { startTestServer } from "../support/test-server.js";

// How long a failed VerifyLink takes, by why it failed. The four failures
// answer identically; this shows whether their timing tells them apart.
// MongoDB from AUTHLINK_TEST_MONGODB_URI if set, else the embedded store.
//
//   npm run bench:verify-timing [-- rounds]

const rounds = Number(process.argv[2] ?? 300);
const uri = process.env.AUTHLINK_TEST_MONGODB_URI;
const databaseName = `authlink_bench_${Date.now()}`;
const client = uri ? new MongoClient(uri) : undefined;
const clock = new ManualClock(new Date());
const server = await startTestServer({
  clock,
  database: uri && client ? { uri, name: databaseName, client } : undefined,
  env: { AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "off", AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "off" },
});

const admin = connectClient(server.url, { protocol: "connect", key: server.serviceKey });
const anyone = connectClient(server.url, { protocol: "connect" });
const tokenOf = (link: { actionLink: string }) => linkParams(link.actionLink).get("token") ?? "";

const used: string[] = [];
const expired: string[] = [];
const wrongType: string[] = [];
for (let i = 0; i < rounds; i++) {
  const a = await admin.generateLink({ type: LinkType.MAGICLINK, email: `used-${i}@example.com` });
  await anyone.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: tokenOf(a) } });
  used.push(tokenOf(a));
  const b = await admin.generateLink({ type: LinkType.MAGICLINK, email: `expired-${i}@example.com`, expiresIn: { seconds: 60n } });
  expired.push(tokenOf(b));
  const c = await admin.generateLink({ type: LinkType.MAGICLINK, email: `wrong-${i}@example.com` });
  wrongType.push(tokenOf(c));
}
clock.advance(61_000); // the 60 s links are now expired; the 1 h ones are not

const samples: Record<string, number[]> = { unknown: [], used: [], expired: [], "wrong type": [] };
const time = async (kind: string, type: LinkType, token: string) => {
  const started = process.hrtime.bigint();
  await anyone.verifyLink({ type, credential: { case: "token", value: token } }).catch(() => undefined);
  samples[kind]?.push(Number(process.hrtime.bigint() - started) / 1e6);
};
for (let i = 0; i < rounds; i++) {
  // Interleaved, so drift in the machine's load hits every kind alike.
  await time("unknown", LinkType.MAGICLINK, Buffer.from(`unknown-token-${i}`.padEnd(32, "x")).toString("base64url"));
  await time("used", LinkType.MAGICLINK, used[i] ?? "");
  await time("expired", LinkType.MAGICLINK, expired[i] ?? "");
  await time("wrong type", LinkType.RECOVERY, wrongType[i] ?? "");
}

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
};
console.log(`VerifyLink failures, ${rounds} rounds, store: ${server.store.kind}, Connect over HTTP/1.1 on loopback`);
console.log("kind        median ms   p90 ms");
for (const [kind, values] of Object.entries(samples)) {
  console.log(`${kind.padEnd(12)}${quantile(values, 0.5).toFixed(3).padStart(9)}${quantile(values, 0.9).toFixed(3).padStart(9)}`);
}
await server.close();
if (client) {
  await client.db(databaseName).dropDatabase();
  await client.close();
}
