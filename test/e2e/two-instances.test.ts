import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { AdminAuthService, LinkState, LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { listeningUrl, readyWithin, startProcess, type AuthlinkProcess } from "../support/authlink-process.js";
import { reasonOf, type AdminClient } from "../support/clients.js";
import { linkParams } from "../support/links.js";
import { useTestDatabase } from "../support/mongo.js";

// Two authlink processes on one database, as a scaled-out deployment runs
// them: the same service keys, OTP secret and signing key, no state of their
// own. Whatever one instance did, the other must honour: single use, rate
// limits, an email change confirmed half on each, replacement, assertions,
// and an audit trail that has every call whichever instance served it.

const database = await useTestDatabase("two_instances");
const serviceKey = `two-${randomBytes(24).toString("base64url")}`;
const ISSUER = "https://auth.example.com";
const AUDIENCE = "https://app.example.com";

interface Instance {
  readonly name: "A" | "B";
  readonly process: AuthlinkProcess;
  readonly url: string;
  /** Service-role client (gRPC on A, Connect on B, so both protocols cross). */
  readonly admin: AdminClient;
  /** Anonymous client. */
  readonly anyone: AdminClient;
}

let keyDir: string;
let a: Instance;
let b: Instance;

/** Every call made here, by request id, with the outcome its caller saw. */
const calls = new Map<string, { instance: string; method: string; outcome: string }>();
let callCounter = 0;

/** Gives each call its own request id and records how it ended. */
function recording(instance: string): Interceptor {
  return (next) => async (req) => {
    const id = `two-instances-${++callCounter}-${randomBytes(4).toString("hex")}`;
    req.header.set("x-request-id", id);
    try {
      const res = await next(req);
      calls.set(id, { instance, method: req.method.name, outcome: "ok" });
      return res;
    } catch (error) {
      calls.set(id, { instance, method: req.method.name, outcome: reasonOf(ConnectError.from(error)) ?? "no reason" });
      throw error;
    }
  };
}

function clientsFor(name: "A" | "B", url: string): Pick<Instance, "admin" | "anyone"> {
  const transport = (key?: string) => {
    const interceptors: Interceptor[] = [recording(name)];
    if (key) interceptors.push((next) => (req) => (req.header.set("authorization", `Bearer ${key}`), next(req)));
    return name === "A"
      ? createGrpcTransport({ baseUrl: url, interceptors })
      : createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors });
  };
  return { admin: createClient(AdminAuthService, transport(serviceKey)), anyone: createClient(AdminAuthService, transport()) };
}

before(async () => {
  keyDir = await mkdtemp(join(tmpdir(), "authlink-two-"));
  const signingKey = join(keyDir, "signing.pem");
  await writeFile(signingKey, generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  const env = {
    AUTHLINK_ADDR: "127.0.0.1:0",
    AUTHLINK_MONGODB_URI: database.uri,
    AUTHLINK_MONGODB_DATABASE: database.name,
    AUTHLINK_SERVICE_KEYS: serviceKey,
    AUTHLINK_OTP_SECRET: randomBytes(32).toString("base64url"),
    AUTHLINK_SIGNING_KEYS: signingKey,
    AUTHLINK_PUBLIC_URL: ISSUER,
    AUTHLINK_ASSERTION_AUDIENCE: AUDIENCE,
    AUTHLINK_SECURE_EMAIL_CHANGE: "true",
    AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "5/1h",
    // Every anonymous call here comes from 127.0.0.1.
    AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "100000/1m",
  };
  const start = async (name: "A" | "B"): Promise<Instance> => {
    const process = startProcess(env);
    const url = await listeningUrl(process);
    await readyWithin(url, 20_000);
    return { name, process, url, ...clientsFor(name, url) };
  };
  [a, b] = await Promise.all([start("A"), start("B")]);
});

after(async () => {
  for (const instance of [a, b]) instance?.process.child.kill("SIGTERM");
  const codes = await Promise.all([a, b].map((instance) => instance?.process.exit));
  await rm(keyDir, { recursive: true, force: true });
  assert.deepEqual(codes, [0, 0], "both stop cleanly");
});

const tokenOf = (actionLink: string) => linkParams(actionLink).get("token") ?? "";
const byToken = (type: LinkType, token: string) => ({ type, credential: { case: "token" as const, value: token } });

/** How a call ended: "ok" or its reason. */
const ending = (call: Promise<unknown>) =>
  call.then(
    () => "ok",
    (error: unknown) => {
      const e = ConnectError.from(error);
      return `${Code[e.code]} ${reasonOf(e) ?? ""}`.trim();
    },
  );

const tally = (endings: readonly string[]) =>
  endings.reduce<Record<string, number>>((counts, e) => ({ ...counts, [e]: (counts[e] ?? 0) + 1 }), {});

describe("two instances, one database", () => {
  test("a link redeemed 100 times at once, split over both instances: exactly one success", async () => {
    const issued = await a.admin.generateLink({ type: LinkType.MAGICLINK, email: "race@example.com" });
    const token = tokenOf(issued.actionLink);
    const endings = await Promise.all(
      Array.from({ length: 100 }, (_, i) => ending((i % 2 === 0 ? a : b).anyone.verifyLink(byToken(LinkType.MAGICLINK, token)))),
    );
    assert.deepEqual(tally(endings), { ok: 1, "PermissionDenied link_invalid_or_expired": 99 });
    const user = await database.client.db(database.name).collection("users").findOne({ email: "race@example.com" });
    assert.ok(user?.emailConfirmedAt, "the one redemption took effect");
  });

  test("rate limits are one limit: 5/1h per address, 10 calls alternating instances, exactly 5 succeed", async () => {
    const endings = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        ending((i % 2 === 0 ? a : b).admin.generateLink({ type: LinkType.MAGICLINK, email: "limited@example.com" })),
      ),
    );
    assert.deepEqual(tally(endings), { ok: 5, "ResourceExhausted over_rate_limit": 5 });
  });

  test("a secure email change issued on B, confirmed half on each", async () => {
    await a.admin.generateLink({ type: LinkType.MAGICLINK, email: "moving@example.com" });
    const change = await b.admin.generateLink({ type: LinkType.EMAIL_CHANGE, email: "moving@example.com", newEmail: "moved@example.com" });
    assert.ok(change.currentEmailConfirmation, "secure mode: the current address confirms too");
    const half = await a.anyone.verifyLink(byToken(LinkType.EMAIL_CHANGE, tokenOf(change.actionLink)));
    assert.equal(half.user?.email, "moving@example.com", "one address confirmed: not moved yet");
    const whole = await b.anyone.verifyLink(byToken(LinkType.EMAIL_CHANGE, tokenOf(change.currentEmailConfirmation.actionLink)));
    assert.equal(whole.user?.email, "moved@example.com");
    const users = database.client.db(database.name).collection("users");
    assert.equal(await users.countDocuments({ email: "moved@example.com" }), 1);
    assert.equal(await users.countDocuments({ email: "moving@example.com" }), 0);
  });

  test("a new link on B replaces A's: A refuses the old one and previews it as REPLACED; the new one redeems on A", async () => {
    const old = await a.admin.generateLink({ type: LinkType.MAGICLINK, email: "replaced@example.com" });
    const fresh = await b.admin.generateLink({ type: LinkType.MAGICLINK, email: "replaced@example.com" });
    const preview = await a.anyone.previewLink({ type: LinkType.MAGICLINK, token: tokenOf(old.actionLink) });
    assert.equal(LinkState[preview.state], LinkState[LinkState.REPLACED]);
    assert.equal(
      await ending(a.anyone.verifyLink(byToken(LinkType.MAGICLINK, tokenOf(old.actionLink)))),
      "PermissionDenied link_invalid_or_expired",
    );
    assert.equal(await ending(a.anyone.verifyLink(byToken(LinkType.MAGICLINK, tokenOf(fresh.actionLink)))), "ok");
  });

  test("an assertion signed by A verifies against B's JWKS, and the other way round", async () => {
    for (const [signer, publisher] of [[a, b], [b, a]] as const) {
      const issued = await signer.admin.generateLink({ type: LinkType.MAGICLINK, email: `proof-${signer.name.toLowerCase()}@example.com` });
      const verified = await signer.anyone.verifyLink(byToken(LinkType.MAGICLINK, tokenOf(issued.actionLink)));
      const jwks = createRemoteJWKSet(new URL(`${publisher.url}/.well-known/jwks.json`));
      const { payload } = await jwtVerify(verified.assertion, jwks, { issuer: ISSUER, audience: AUDIENCE });
      assert.equal(payload.email, `proof-${signer.name.toLowerCase()}@example.com`);
    }
  });

  // Last: it checks every call the tests above made.
  test("the audit is complete: every call's event is stored, with its outcome, whichever instance served it", async () => {
    assert.ok(calls.size > 120, `${calls.size} calls recorded`);
    const events = await database.client
      .db(database.name)
      .collection("audit_events")
      .find({ requestId: { $in: [...calls.keys()] } })
      .toArray();
    const byId = new Map<string, { method: string; outcome: string }[]>();
    for (const event of events) {
      const list = byId.get(String(event.requestId)) ?? [];
      list.push({ method: String(event.method), outcome: String(event.outcome) });
      byId.set(String(event.requestId), list);
    }
    const wrong: string[] = [];
    for (const [id, call] of calls) {
      const found = byId.get(id) ?? [];
      if (found.length !== 1 || found[0]?.method !== call.method || found[0]?.outcome !== call.outcome) {
        wrong.push(`${call.instance} ${call.method} ${call.outcome}: stored ${JSON.stringify(found)}`);
      }
    }
    assert.deepEqual(wrong, [], `${wrong.length} of ${calls.size} calls without their one audit event`);
    const served = new Set([...calls.values()].map((c) => c.instance));
    assert.deepEqual([...served].sort(), ["A", "B"]);
  });
});
