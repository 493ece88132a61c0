import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http2 from "node:http2";
import { after, before, describe, test } from "node:test";
import {
  GenerateLinkRequestSchema,
  LinkType,
  VerifyLinkRequestSchema,
} from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { connectClient } from "../support/clients.js";
import { linkParams } from "../support/links.js";
import { useTestDatabase } from "../support/mongo.js";
import { rawConnectCall, rawGrpcCall, type RawAnswer } from "../support/raw-rpc.js";
import { mongoHostPort, startTcpProxy, viaProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { eventually } from "../support/eventually.js";

// Deadlines while the database is away (cut: connections refused and
// dropped; stalled: connections open, nothing answered), for 15 s each.
//
// The rule: every call is answered by the server (not merely given up on by
// its client) no later than its deadline or the detection bound, whichever
// is sooner, plus a small slack for a shared machine:
//   - the detection bound D is 1.5 s: a refused or dropped connection opens
//     the store's circuit at the first failure; a stall is detected when an
//     operation unanswered for half the probe timeout (1 s, the default with
//     AUTHLINK_DB_TIMEOUT=5s) makes the circuit ping and that ping goes
//     unanswered for the probe timeout;
//   - a call whose deadline is longer than D + slack answers UNAVAILABLE
//     store_unavailable;
//   - a call whose deadline is shorter may instead answer DEADLINE_EXCEEDED,
//     and then only at its deadline (it waited on the database until then);
//   - once the circuit is open, every call answers UNAVAILABLE at once,
//     whatever its deadline: nothing waits behind another call's timeout.
// Calls are raw (grpc-timeout / connect-timeout-ms headers, no client-side
// timer), so a late server answer is seen as late. After the database is
// back, calls succeed again without a restart and no link was lost.

const OUTAGE_MS = 15_000;
const DETECTION_MS = 1_500;
const SLACK_MS = 750;
/**
 * Once the circuit is open an answer takes no database time at all: what is
 * left is serving 320 calls at once (160 of them on new connections), which
 * on a busy 2-core machine takes about a second. A call that did wait on the
 * database would take at least a detection (DETECTION_MS) on top of that.
 */
const OPEN_CIRCUIT_MS = DETECTION_MS;
const DEADLINES = [500, 2_000, 12_000, undefined] as const; // undefined: only the server's cap (15 s)
const CALLS_PER_KIND = 20;

const database = await useTestDatabase("outage");
let proxy: TcpProxy;
let server: TestServer;
let session: http2.ClientHttp2Session;

before(async () => {
  const { host, port } = mongoHostPort(database.uri);
  proxy = await startTcpProxy(host, port);
  server = await startTestServer({
    database,
    databaseUri: viaProxy(database.uri, proxy),
    env: {
      // Limits far above what the test spends, but on: the per-caller
      // GenerateLink bucket is shared by every call here, as in production.
      AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER: "100000/1m",
      AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "100000/1m",
      // Every call here comes from 127.0.0.1 at once: the Connect calls on a
      // connection each, the gRPC calls as streams of one HTTP/2 connection.
      // The connection caps would refuse or queue them before the server
      // sees them, which is not what this test measures (connection-limits
      // tests do that).
      AUTHLINK_CONN_MAX_PER_ADDRESS: "0",
      AUTHLINK_HTTP2_MAX_STREAMS: "1000",
    },
  });
  session = http2.connect(server.url);
});
after(async () => {
  session.close();
  await server.close();
  await proxy.close();
});

interface Outcome extends RawAnswer {
  readonly label: string;
  readonly deadlineMs: number | undefined;
}

const generatePath = "/authlink.v1.AdminAuthService/GenerateLink";
const verifyPath = "/authlink.v1.AdminAuthService/VerifyLink";

/** One call of each kind (GenerateLink, VerifyLink) x protocol (gRPC, Connect) x deadline, CALLS_PER_KIND times, all at once. */
function wave(name: string): Promise<Outcome>[] {
  const calls: Promise<Outcome>[] = [];
  const auth = { authorization: `Bearer ${server.serviceKey}` };
  for (let i = 0; i < CALLS_PER_KIND; i++) {
    for (const deadlineMs of DEADLINES) {
      const giveUpMs = (deadlineMs ?? server.config.maxCallDurationMs) + 5_000;
      const address = `${name}-${i}-${deadlineMs ?? "cap"}@example.com`;
      const token = randomBytes(32).toString("base64url");
      const tag = (label: string) => (answer: RawAnswer): Outcome => ({ ...answer, label, deadlineMs });
      calls.push(
        rawGrpcCall(session, {
          path: generatePath,
          schema: GenerateLinkRequestSchema,
          message: { type: LinkType.MAGICLINK, email: `grpc-${address}` },
          timeoutMs: deadlineMs,
          headers: auth,
          giveUpMs,
        }).then(tag("GenerateLink/grpc")),
        rawConnectCall(server.url, {
          path: generatePath,
          json: { type: "LINK_TYPE_MAGICLINK", email: `connect-${address}` },
          timeoutMs: deadlineMs,
          headers: auth,
          giveUpMs,
        }).then(tag("GenerateLink/connect")),
        rawGrpcCall(session, {
          path: verifyPath,
          schema: VerifyLinkRequestSchema,
          message: { type: LinkType.MAGICLINK, credential: { case: "token", value: token } },
          timeoutMs: deadlineMs,
          giveUpMs,
        }).then(tag("VerifyLink/grpc")),
        rawConnectCall(server.url, {
          path: verifyPath,
          json: { type: "LINK_TYPE_MAGICLINK", token },
          timeoutMs: deadlineMs,
          giveUpMs,
        }).then(tag("VerifyLink/connect")),
      );
    }
  }
  return calls;
}

const describeOutcome = (o: Outcome) =>
  `${o.label} deadline ${o.deadlineMs ?? "none"}: ${o.code}${o.reason ? ` ${o.reason}` : ""} after ${Math.round(o.ms)} ms`;

/** The rule above, for calls that started while the circuit may still have been closed. */
function breaksRule(o: Outcome): string | undefined {
  const deadline = o.deadlineMs ?? server.config.maxCallDurationMs;
  const latest = Math.min(deadline, DETECTION_MS) + SLACK_MS;
  if (o.ms > latest) return `answered later than ${latest} ms`;
  if (o.code === "UNAVAILABLE" && o.reason === "store_unavailable") return undefined;
  if (o.code === "DEADLINE_EXCEEDED" && deadline < DETECTION_MS + SLACK_MS && o.ms >= deadline - 50) return undefined;
  return "wrong answer";
}

/** Once the circuit is open: UNAVAILABLE at once, whatever the deadline. */
function breaksOpenRule(o: Outcome): string | undefined {
  if (o.ms > OPEN_CIRCUIT_MS) return `answered later than ${OPEN_CIRCUIT_MS} ms`;
  return o.code === "UNAVAILABLE" && o.reason === "store_unavailable" ? undefined : "wrong answer";
}

function assertEvery(outcomes: readonly Outcome[], rule: (o: Outcome) => string | undefined, what: string): void {
  const broken = outcomes.flatMap((o) => {
    const why = rule(o);
    return why ? [`${describeOutcome(o)} (${why})`] : [];
  });
  assert.deepEqual(broken, [], `${what}: ${broken.length} of ${outcomes.length} calls broke the rule`);
}

async function outage(name: string, start: () => Promise<void> | void, end: () => Promise<void> | void): Promise<void> {
  const admin = connectClient(server.url, { protocol: "connect", key: server.serviceKey });
  const anyone = connectClient(server.url, { protocol: "grpc" });
  const kept = await eventually(() => admin.generateLink({ type: LinkType.MAGICLINK, email: `${name}-kept@example.com` }));
  const keptToken = linkParams(kept.actionLink).get("token") ?? "";

  await start();
  const began = Date.now();
  let firstWave: Outcome[];
  let laterWave: Outcome[];
  try {
    firstWave = await Promise.all(wave(`${name}-first`));
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    laterWave = await Promise.all(wave(`${name}-later`));
    // The rest of the 15 s: nothing is waiting that could answer late.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, OUTAGE_MS - (Date.now() - began))));
  } finally {
    await end();
  }
  assert.equal(firstWave.length, CALLS_PER_KIND * DEADLINES.length * 4);
  assertEvery(firstWave, breaksRule, `${name}: calls made as the database went away`);
  assertEvery(laterWave, breaksOpenRule, `${name}: calls made while the circuit was open`);
  const slowest = firstWave.reduce((a, b) => (b.ms > a.ms ? b : a));
  process.stderr.write(`${name}: slowest answer ${describeOutcome(slowest)}\n`);

  // Back without a restart; the link issued before the outage still works.
  await eventually(() => admin.generateLink({ type: LinkType.MAGICLINK, email: `${name}-after@example.com` }));
  await connectClient(server.url, { protocol: "grpc", key: server.serviceKey }).generateLink({
    type: LinkType.MAGICLINK,
    email: `${name}-after-grpc@example.com`,
  });
  const verified = await anyone.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: keptToken } });
  assert.equal(verified.user?.email, `${name}-kept@example.com`);
  assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
}

describe("deadlines while the database is away", () => {
  test("cut (connections refused and dropped) for 15 s", { timeout: 90_000 }, async () => {
    await outage("cut", () => proxy.cut(), () => proxy.restore());
  });

  test("stalled (connections open, nothing answered) for 15 s", { timeout: 90_000 }, async () => {
    await outage("stall", () => proxy.stall(), () => proxy.unstall());
  });
});
