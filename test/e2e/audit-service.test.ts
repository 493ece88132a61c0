import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { AdminAuthService, LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import {
  AuditEventSchema,
  AuditService,
  ListAuditEventsRequestSchema,
  WatchAuditEventsRequestSchema,
  type AuditEvent,
} from "../../gen/authlink/v1/audit_service_pb.js";
import { listeningUrl, readyWithin, startProcess, type AuthlinkProcess } from "../support/authlink-process.js";
import { fieldViolationsOf, reasonOf, rejection } from "../support/clients.js";
import { eventually } from "../support/eventually.js";
import { linkParams } from "../support/links.js";
import { ManualClock } from "../support/manual-clock.js";
import { useTestDatabase } from "../support/mongo.js";
import { GRPC_JS_LISTENER, grpcUrlOf, startTestServer, type TestServer } from "../support/test-server.js";

// AuditService end to end, on MongoDB (FerretDB) and on the embedded store,
// over real sockets: ListAuditEvents with each filter, pages that stay put
// while events are written, bad page tokens, the page size cap;
// WatchAuditEvents over gRPC (connect-node and the grpc-js listener) and
// Connect over HTTP/1.1, receiving what the server it is connected to stores
// and what a second authlink process on the same database stores, replaying
// from `since`, ending on cancel (no poll after it) and at the deadline; a
// quiet watch outlives the connection timeouts; refusals without or with a
// wrong key; and no secret in any event.

const database = await useTestDatabase("audit_service");

type AuditClient = Client<typeof AuditService>;
type AdminClient = Client<typeof AdminAuthService>;
type Protocol = "grpc" | "connect";
type ListRequest = MessageInitShape<typeof ListAuditEventsRequestSchema>;
type WatchRequest = MessageInitShape<typeof WatchAuditEventsRequestSchema>;

const withKey =
  (key: string | null): Interceptor =>
  (next) =>
  (req) => {
    if (key) req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };

function transportFor(baseUrl: string, protocol: Protocol, key: string | null) {
  const interceptors = [withKey(key)];
  return protocol === "grpc"
    ? createGrpcTransport({ baseUrl, interceptors })
    : createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors });
}

const auditClient = (baseUrl: string, protocol: Protocol, key: string | null): AuditClient =>
  createClient(AuditService, transportFor(baseUrl, protocol, key));
const adminClient = (baseUrl: string, protocol: Protocol, key: string | null): AdminClient =>
  createClient(AdminAuthService, transportFor(baseUrl, protocol, key));

/** A running watch: events as they arrive, and how it ended. */
interface Watch {
  /** Waits until `count` events (in all) arrived, returns them all; fails after `timeoutMs`. */
  events(count: number, timeoutMs?: number): Promise<AuditEvent[]>;
  /** Resolves with the error the stream ended with (undefined: it ended OK). */
  readonly ended: Promise<ConnectError | undefined>;
  cancel(): void;
}

function startWatch(client: AuditClient, request: WatchRequest, options: { timeoutMs?: number } = {}): Watch {
  const controller = new AbortController();
  const received: AuditEvent[] = [];
  let wake = () => {};
  const ended = (async () => {
    try {
      for await (const response of client.watchAuditEvents(request, { signal: controller.signal, timeoutMs: options.timeoutMs })) {
        if (response.event) received.push(response.event);
        wake();
      }
      return undefined;
    } catch (error) {
      return ConnectError.from(error);
    } finally {
      wake();
    }
  })();
  let done = false;
  void ended.then(() => (done = true));
  return {
    async events(count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count) {
        if (done) throw new Error(`the watch ended after ${received.length} events: ${(await ended)?.message}`);
        if (Date.now() > deadline) throw new Error(`only ${received.length} of ${count} events within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 100);
        });
      }
      return [...received];
    },
    ended,
    cancel: () => controller.abort(),
  };
}

const unique = (label: string) => `${label}-${randomBytes(4).toString("hex")}@example.com`;
const atOf = (event: AuditEvent) => timestampDate(event.at!).getTime();

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    const clock = new ManualClock(new Date());
    const secondKey = `second-${randomBytes(24).toString("base64url")}`;
    let server: TestServer;
    let key: string;
    let list: (request: ListRequest, protocol?: Protocol) => Promise<{ events: AuditEvent[]; nextPageToken: string }>;

    before(async () => {
      const first = `first-${randomBytes(24).toString("base64url")}`;
      server = await startTestServer({
        database: backend === "MongoDB" ? database : undefined,
        clock,
        env: {
          ...GRPC_JS_LISTENER,
          AUTHLINK_SERVICE_KEYS: `${first},${secondKey}`,
          AUTHLINK_AUDIT_WATCH_POLL_INTERVAL: "100ms",
          AUTHLINK_METRICS_ADDR: "127.0.0.1:0",
          AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "1000/1h",
        },
      });
      key = server.serviceKey;
      list = (request, protocol = "connect") => auditClient(server.url, protocol, key).listAuditEvents(request);
    });
    after(() => server.close());

    const admin = (protocol: Protocol = "grpc", k: string | null = key) => adminClient(server.url, protocol, k);

    describe("ListAuditEvents", () => {
      let ann: string;
      let userId: string;
      let t0: number;
      let end: number;
      const methods = (events: AuditEvent[]) => events.map((e) => `${e.method}:${e.outcome}`);

      before(async () => {
        ann = unique("ann");
        t0 = clock.now().getTime();
        clock.advance(1_000);
        const generated = await admin().generateLink({ type: LinkType.MAGICLINK, email: ann });
        userId = generated.user!.id;
        clock.advance(1_000);
        await rejection(admin().generateLink({ type: LinkType.RECOVERY, email: unique("nobody") }));
        clock.advance(1_000);
        const token = linkParams(generated.actionLink).get("token") ?? "";
        await adminClient(server.url, "connect", null).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
        clock.advance(1_000);
        await adminClient(server.url, "grpc", secondKey).generateLink({ type: LinkType.MAGICLINK, email: ann });
        clock.advance(1_000);
        end = clock.now().getTime();
      });

      const window = () => ({ since: timestampFromDate(new Date(t0)), until: timestampFromDate(new Date(end)) });

      test("by user, by address (normalized), newest first; over gRPC and Connect alike", async () => {
        for (const protocol of ["grpc", "connect"] as const) {
          const byUser = await list({ userId, ...window() }, protocol);
          assert.deepEqual(methods(byUser.events), ["GenerateLink:ok", "VerifyLink:ok", "GenerateLink:ok"], protocol);
          assert.equal(byUser.nextPageToken, "");
          const times = byUser.events.map(atOf);
          assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first");
          const byAddress = await list({ email: ann.toUpperCase(), ...window() }, protocol);
          assert.deepEqual(byAddress.events.map((e) => e.id), byUser.events.map((e) => e.id));
          for (const event of byAddress.events) {
            assert.equal(event.email, ann);
            assert.match(event.id, /^[0-9a-f]{12}-[0-9a-f]{16}$/);
          }
        }
      });

      test("by caller, method, outcome, and the time range (since inclusive, until exclusive)", async () => {
        const all = (await list({ email: ann, ...window() })).events;
        const [latest, verify, first] = all;
        assert.ok(latest && verify && first);
        assert.notEqual(latest.caller, first.caller, "two service keys, two callers");
        assert.equal(verify.caller, "anonymous");
        assert.deepEqual((await list({ email: ann, caller: first.caller, ...window() })).events.map((e) => e.id), [first.id]);
        assert.deepEqual((await list({ email: ann, method: "VerifyLink", ...window() })).events.map((e) => e.id), [verify.id]);
        assert.deepEqual(
          methods((await list({ outcome: "user_not_found", ...window() })).events),
          ["GenerateLink:user_not_found"],
        );
        assert.deepEqual(
          (await list({ userId, since: timestampFromDate(new Date(atOf(verify))), until: timestampFromDate(new Date(atOf(latest))) })).events.map((e) => e.id),
          [verify.id],
        );
        assert.equal((await list({ userId, since: timestampFromDate(new Date(t0)), until: timestampFromDate(new Date(t0 + 1_000)) })).events.length, 0);
      });

      test("reading the trail is audited, with the user and address it asked about", async () => {
        await list({ userId, email: ann, method: "GenerateLink" });
        const reads = await eventually(async () => {
          const found = (await list({ userId, method: "ListAuditEvents", since: timestampFromDate(new Date(end)) })).events;
          assert.ok(found.some((e) => e.email === ann));
          return found;
        });
        assert.equal(reads[0]?.outcome, "ok");
      });

      test("bad input: an address that is not one, until not after since: INVALID_ARGUMENT with the field", async () => {
        const badEmail = await rejection(list({ email: "not an address" }));
        assert.equal(badEmail.code, Code.InvalidArgument);
        assert.deepEqual(fieldViolationsOf(badEmail), ["email"]);
        const backwards = await rejection(list({ since: timestampFromDate(new Date(end)), until: timestampFromDate(new Date(t0)) }));
        assert.equal(backwards.code, Code.InvalidArgument);
        assert.deepEqual(fieldViolationsOf(backwards), ["until"]);
      });

      test("pages stay put while events are written; every event once", async () => {
        const pat = unique("pat");
        for (let i = 0; i < 7; i++) {
          clock.advance(10);
          await admin().generateLink({ type: LinkType.MAGICLINK, email: pat });
        }
        const query = { email: pat, method: "GenerateLink" } as const;
        const seen: AuditEvent[] = [];
        let pageToken = "";
        const pages: number[] = [];
        do {
          const page = await list({ ...query, pageSize: 3, pageToken });
          seen.push(...page.events);
          pages.push(page.events.length);
          pageToken = page.nextPageToken;
          // Newer events between pages: none of them shifts the next page.
          clock.advance(10);
          await admin().generateLink({ type: LinkType.MAGICLINK, email: pat });
        } while (pageToken !== "");
        assert.deepEqual(pages, [3, 3, 1]);
        assert.equal(new Set(seen.map((e) => e.id)).size, 7);
        const times = seen.map(atOf);
        assert.deepEqual(times, [...times].sort((a, b) => b - a));
        assert.equal((await list({ ...query, pageSize: 100 })).events.length, 10, "the 3 written meanwhile are there for a new query");
      });

      test("page tokens: forged, tampered, another query's or expired → INVALID_ARGUMENT page_token", async () => {
        const first = await list({ email: ann, pageSize: 1 });
        assert.notEqual(first.nextPageToken, "");
        const token = first.nextPageToken;
        const tampered = token.slice(0, -2) + (token.endsWith("AA") ? "BB" : "AA");
        const [body] = token.split(".");
        const forgedBody = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body ?? "", "base64url").toString()), p: { at: 0, id: "x" } })).toString("base64url");
        const cases: [string, ListRequest][] = [
          ["garbage", { email: ann, pageToken: "not-a-token" }],
          ["tampered signature", { email: ann, pageToken: tampered }],
          ["forged position", { email: ann, pageToken: `${forgedBody}.${token.split(".")[1]}` }],
          ["another query's", { email: ann, method: "VerifyLink", pageToken: token }],
        ];
        for (const [label, request] of cases) {
          const error = await rejection(list(request));
          assert.equal(error.code, Code.InvalidArgument, label);
          assert.equal(reasonOf(error), "validation_failed", label);
          assert.deepEqual(fieldViolationsOf(error), ["page_token"], label);
        }
        // The same token, with the page size changed, is fine (only filters are bound).
        assert.equal((await list({ email: ann, pageSize: 2, pageToken: token })).events.length, 2);
        clock.advance(2 * 3_600_000);
        const expired = await rejection(list({ email: ann, pageSize: 1, pageToken: token }));
        assert.equal(expired.code, Code.InvalidArgument);
        assert.deepEqual(fieldViolationsOf(expired), ["page_token"]);
      });

      test("page size: 50 by default, clamped to 500", async () => {
        const caller = `clamp-${randomBytes(4).toString("hex")}`;
        const at = clock.now();
        for (let i = 0; i < 510; i += 30) {
          await Promise.all(
            Array.from({ length: Math.min(30, 510 - i) }, (_, j) =>
              server.store.audit.append(
                { at: new Date(at.getTime() + i + j), method: "GenerateLink", caller, clientAddress: "", hashedTokens: [], outcome: "ok", durationMs: 0 },
                new Date(at.getTime() + 3_600_000),
              ),
            ),
          );
        }
        assert.equal((await list({ caller })).events.length, 50);
        const big = await list({ caller, pageSize: 100_000 });
        assert.equal(big.events.length, 500);
        assert.notEqual(big.nextPageToken, "");
        const rest = await list({ caller, pageSize: 100_000, pageToken: big.nextPageToken });
        assert.equal(rest.events.length, 10);
        assert.equal(rest.nextPageToken, "");
      });
    });

    describe("WatchAuditEvents", () => {
      for (const [label, protocol, listener] of [
        ["gRPC (connect-node)", "grpc", "connect-node"],
        ["gRPC (grpc-js listener)", "grpc", "grpc-js"],
        ["Connect over HTTP/1.1", "connect", "connect-node"],
      ] as const) {
        test(`${label}: new events as they are stored, filtered; only those from now on`, async () => {
          const target = unique("watched");
          await admin().generateLink({ type: LinkType.MAGICLINK, email: target }); // before the watch: not sent
          const baseUrl = listener === "grpc-js" ? grpcUrlOf(server, "grpc-js") : server.url;
          const watch = startWatch(auditClient(baseUrl, protocol, key), { email: target, method: "GenerateLink" });
          // The watch has started once its own start is audited.
          await eventually(async () => assert.ok((await list({ method: "WatchAuditEvents", email: target })).events.length > 0));
          const generated = await admin("connect").generateLink({ type: LinkType.MAGICLINK, email: target });
          await admin().generateLink({ type: LinkType.MAGICLINK, email: unique("other") });
          const [event] = await watch.events(1);
          assert.equal(event?.method, "GenerateLink");
          assert.equal(event?.email, target);
          assert.deepEqual(event?.hashedTokens, [generated.hashedToken]);
          await admin().generateLink({ type: LinkType.RECOVERY, email: target });
          const events = await watch.events(2);
          assert.equal(events.length, 2, "nothing from before the watch, nothing twice");
          assert.equal(events[1]?.linkType, LinkType.RECOVERY);
          watch.cancel();
          assert.equal((await watch.ended)?.code, Code.Canceled);
        });
      }

      test("since: what was stored since is replayed first (oldest first), then new events", async () => {
        const target = unique("replayed");
        const since = new Date();
        for (const type of [LinkType.MAGICLINK, LinkType.RECOVERY]) await admin().generateLink({ type, email: target });
        const watch = startWatch(auditClient(server.url, "grpc", key), { email: target, method: "GenerateLink", since: timestampFromDate(since) });
        const replayed = await watch.events(2);
        assert.deepEqual(replayed.map((e) => e.linkType), [LinkType.MAGICLINK, LinkType.RECOVERY]);
        await admin().generateLink({ type: LinkType.INVITE, email: unique("invitee") });
        await admin().generateLink({ type: LinkType.MAGICLINK, email: target });
        const all = await watch.events(3);
        assert.equal(all.length, 3);
        assert.equal(new Set(all.map((e) => e.id)).size, 3);
        watch.cancel();
        await watch.ended;
      });

      test("cancelled by the client: the call ends on the server and its polling stops", async () => {
        const watch = startWatch(auditClient(server.url, "grpc", key), { email: unique("cancelled") });
        const scrape = async () => {
          const text = await (await fetch(`${server.metricsUrl}/metrics`)).text();
          const number = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? "0");
          return {
            inFlight: number(/^authlink_rpc_in_flight\{method="WatchAuditEvents",protocol="grpc"\} (\d+)/m),
            polls: number(/^authlink_store_operation_duration_seconds_count\{operation="audit\.storedAfter"\} (\d+)/m),
          };
        };
        await eventually(async () => assert.equal((await scrape()).inFlight, 1));
        const pollsBefore = (await scrape()).polls;
        await eventually(async () => assert.ok((await scrape()).polls > pollsBefore + 1, "it polls"));
        watch.cancel();
        assert.equal((await watch.ended)?.code, Code.Canceled);
        await eventually(async () => assert.equal((await scrape()).inFlight, 0));
        const pollsAtEnd = (await scrape()).polls;
        await new Promise((resolve) => setTimeout(resolve, 500)); // five poll intervals
        assert.equal((await scrape()).polls, pollsAtEnd, "no poll after the call ended");
      });

      test("the client's deadline ends it: DEADLINE_EXCEEDED", async () => {
        const started = Date.now();
        const watch = startWatch(auditClient(server.url, "connect", key), { email: unique("deadline") }, { timeoutMs: 1_000 });
        assert.equal((await watch.ended)?.code, Code.DeadlineExceeded);
        assert.ok(Date.now() - started < 5_000);
      });

      test("refusals: no key → UNAUTHENTICATED credentials_missing, a wrong key → credentials_invalid, for both methods", async () => {
        for (const protocol of ["grpc", "connect"] as const) {
          for (const [k, reason] of [[null, "credentials_missing"], ["w".repeat(48), "credentials_invalid"]] as const) {
            const client = auditClient(server.url, protocol, k);
            const listed = await rejection(client.listAuditEvents({}));
            assert.equal(listed.code, Code.Unauthenticated, `${protocol} list`);
            assert.equal(reasonOf(listed), reason);
            const watched = await startWatch(client, {}).ended;
            assert.equal(watched?.code, Code.Unauthenticated, `${protocol} watch`);
            assert.equal(reasonOf(watched!), reason);
          }
        }
      });

      test("no secret in any event: a generate and verify round, listed and watched", async () => {
        const target = unique("secret");
        const watch = startWatch(auditClient(server.url, "connect", key), { email: target });
        await eventually(async () => assert.ok((await list({ method: "WatchAuditEvents", email: target })).events.length > 0));
        const generated = await admin().generateLink({ type: LinkType.MAGICLINK, email: target });
        const token = linkParams(generated.actionLink).get("token") ?? "";
        await adminClient(server.url, "grpc", null).verifyLink({
          type: LinkType.MAGICLINK,
          credential: { case: "emailOtp", value: { email: target, otp: generated.emailOtp } },
        });
        const watched = await watch.events(2);
        watch.cancel();
        const listed = (await list({ email: target })).events;
        const text = [...watched, ...listed].map((e) => toJsonString(AuditEventSchema, e)).join("\n");
        assert.ok(text.includes(generated.hashedToken), "the hash is there");
        for (const secret of [token, generated.emailOtp, key, secondKey, generated.actionLink]) {
          assert.ok(!text.includes(secret), "no token, code, key or action link");
        }
      });
    });

    if (backend === "MongoDB") {
      describe("a second authlink process on the same database", () => {
        let second: AuthlinkProcess;
        let secondUrl: string;
        before(async () => {
          second = startProcess({
            AUTHLINK_ADDR: "127.0.0.1:0",
            AUTHLINK_MONGODB_URI: database.uri,
            AUTHLINK_MONGODB_DATABASE: database.name,
            AUTHLINK_SERVICE_KEYS: secondKey,
            AUTHLINK_OTP_SECRET: randomBytes(32).toString("base64url"),
            AUTHLINK_PUBLIC_URL: "https://auth.example.com",
            AUTHLINK_AUDIT_WATCH_POLL_INTERVAL: "100ms",
          });
          secondUrl = await listeningUrl(second);
          await readyWithin(secondUrl, 20_000);
        });
        after(async () => {
          second?.child.kill("SIGTERM");
          assert.equal(await second?.exit, 0);
        });

        test("a watch on one instance receives what the other stores, and the other way round", async () => {
          const target = unique("crossing");
          const here = startWatch(auditClient(server.url, "grpc", key), { email: target, method: "GenerateLink" });
          const there = startWatch(auditClient(secondUrl, "connect", secondKey), { email: target, method: "GenerateLink" });
          await eventually(async () => assert.equal((await list({ method: "WatchAuditEvents", email: target })).events.length, 2));
          const fromSecond = await adminClient(secondUrl, "grpc", secondKey).generateLink({ type: LinkType.MAGICLINK, email: target });
          const fromFirst = await admin().generateLink({ type: LinkType.RECOVERY, email: target });
          for (const watch of [here, there]) {
            const events = await watch.events(2);
            assert.deepEqual(events.map((e) => e.hashedTokens[0]).sort(), [fromSecond.hashedToken, fromFirst.hashedToken].sort());
            watch.cancel();
          }
        });
      });
    }
  });
}

describe("a quiet watch and the connection timeouts", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({
      env: {
        ...GRPC_JS_LISTENER,
        AUTHLINK_AUDIT_WATCH_POLL_INTERVAL: "100ms",
        AUTHLINK_CONN_HEADERS_TIMEOUT: "300ms",
        AUTHLINK_CONN_REQUEST_TIMEOUT: "500ms",
        AUTHLINK_CONN_IDLE_TIMEOUT: "500ms",
        AUTHLINK_MAX_STREAM_DURATION: "4s",
      },
    });
  });
  after(() => server.close());

  test("silent for longer than every connection timeout, a watch stays open (HTTP/2, HTTP/1.1, grpc-js), then ends at AUTHLINK_MAX_STREAM_DURATION", async () => {
    const target = unique("quiet");
    const watches = [
      startWatch(auditClient(server.url, "grpc", server.serviceKey), { email: target, method: "GenerateLink" }),
      startWatch(auditClient(server.url, "connect", server.serviceKey), { email: target, method: "GenerateLink" }),
      startWatch(auditClient(grpcUrlOf(server, "grpc-js"), "grpc", server.serviceKey), { email: target, method: "GenerateLink" }),
    ];
    const started = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 2_000)); // four idle timeouts, nothing sent
    const generated = await adminClient(server.url, "grpc", server.serviceKey).generateLink({ type: LinkType.MAGICLINK, email: target });
    for (const watch of watches) assert.equal((await watch.events(1))[0]?.hashedTokens[0], generated.hashedToken);
    for (const watch of watches) assert.equal((await watch.ended)?.code, Code.DeadlineExceeded, "the server's cap ends it");
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 3_500 && elapsed < 8_000, `ended after ${elapsed} ms`);
  });
});
