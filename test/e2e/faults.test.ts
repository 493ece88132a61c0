import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { LinkState, LinkType, type GenerateLinkResponse } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { linkParams } from "../support/links.js";
import { Code, connectClient, reasonOf } from "../support/clients.js";
import { startFaultProxy, type FaultMode, type FaultProxy, type WireCommand } from "../support/fault-proxy.js";
import { useTestDatabase } from "../support/mongo.js";
import { mongoHostPort, viaProxy } from "../support/tcp-proxy.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// An error answer hides no effect (issue 10, docs/retries.md), proven at
// every database operation of every call: for GenerateLink and VerifyLink (by
// token and by code), for n = 1, 2, ... the database goes away at the n-th
// command the call sends — before the command runs ("drop"), or after it ran
// with its reply lost ("lose-reply") — until the call has run without
// reaching an n-th command. Then the database comes back, the client retries
// the same call (same input, same x-request-id) until it gets an answer that
// is not UNAVAILABLE, and the world must be as if the failed call never
// happened or as if it completed once:
//   - no link lost: a redemption that answered an error completes on retry;
//   - none redeemed twice: another call with the token is refused;
//   - no success for nothing: a success has its effect, and a GenerateLink's
//     link works;
//   - nothing usable left behind by a GenerateLink that answered an error
//     (but for the one case docs/retries.md names: its last write ran and
//     the answer was lost; then the retry replaces that link).
// The server answers the first attempt UNAVAILABLE store_unavailable.

const database = await useTestDatabase("faults");
const db = database.client.db(database.name);
let counter = 0;
const email = (label: string) => `${label}-${++counter}-${randomUUID().slice(0, 6)}@example.com`;
const tokenOf = (link: { actionLink: string }) => linkParams(link.actionLink).get("token") ?? "";
type Outcome<T> = { ok: true; value: T } | { ok: false; error: ConnectError };
const settle = <T>(call: Promise<T>): Promise<Outcome<T>> =>
  call.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error: ConnectError.from(error) }),
  );

/** The commands of the call with this request id (an audit event of an earlier call, flushed late, is not). */
const commandsOf = (requestId: string) => (command: WireCommand) =>
  command.collection !== "audit_events" || command.bytes.includes(Buffer.from(requestId));

const byToken = (type: LinkType, token: string) => ({ type, credential: { case: "token" as const, value: token } });
const byCode = (type: LinkType, address: string, otp: string) => ({
  type,
  credential: { case: "emailOtp" as const, value: { email: address, otp } },
});

/** Links of the user and type that could still be redeemed: stored, issued, and without a fate. */
async function usableLinks(userId: string, type: string): Promise<string[]> {
  const links = await db.collection<{ _id: string }>("link_tokens").find({ userId, type, pending: { $exists: false } }).toArray();
  const fates = await db.collection<{ _id: string }>("link_tombstones").find({ _id: { $in: links.map((l) => l._id) } }).toArray();
  const ended = new Set(fates.map((f) => f._id));
  return links.map((l) => l._id).filter((id) => !ended.has(id));
}

const confirmedAt = async (userId: string) =>
  (await db.collection<{ _id: string; emailConfirmedAt?: Date }>("users").findOne({ _id: userId }))?.emailConfirmedAt;

/**
 * The fault tests in one mode, on an authlink of their own behind a proxy of
 * their own (so that the two modes run side by side).
 */
function faultSuite(mode: FaultMode): void {
  let proxy: FaultProxy;
  let server: TestServer;

  before(async () => {
    const { host, port } = mongoHostPort(database.uri);
    proxy = await startFaultProxy(host, port);
    server = await startTestServer({
      database,
      databaseUri: viaProxy(database.uri, proxy),
      // A cut is seen at once (the connection fails); the time limit only
      // has to be above what a busy FerretDB takes for one command, or the
      // store circuit would take slowness for a stall.
      dbTimeoutMs: 3_000,
      // No background work on the database while commands are counted (the
      // purge loop); queued audit events of earlier calls are not counted.
      purgeIntervalMs: 3_600_000,
      env: {
        AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER: "100000/1m",
        AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "100000/1m",
        AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL: "100000/1h",
        AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL_AND_CLIENT: "100000/1h",
      },
    });
  });
  after(async () => {
    await server?.close();
    await proxy?.close();
  });

  const admin = (requestId: string = randomUUID()) =>
    connectClient(server.url, { protocol: "connect", key: server.serviceKey, headers: { "x-request-id": requestId } });
  const anyone = (requestId: string = randomUUID()) => connectClient(server.url, { protocol: "connect", headers: { "x-request-id": requestId } });

  /**
   * Retry until an answer that is not UNAVAILABLE (the database is back, the
   * driver may still be reconnecting).
   */
  async function retry<T>(call: () => Promise<T>): Promise<Outcome<T>> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const outcome = await settle(call());
      if (outcome.ok || outcome.error.code !== Code.Unavailable) return outcome;
      if (Date.now() > deadline) {
        const journal = proxy.journal.slice(-12).join("\n");
        return { ok: false, error: new ConnectError(`${outcome.error.message}; still unavailable after 20 s; the proxy's last steps:\n${journal}`, outcome.error.code) };
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The call, retried while UNAVAILABLE, is refused with `reason`. */
  async function refusedAs(reason: string, call: () => Promise<unknown>, message?: string): Promise<void> {
    const outcome = await retry(call);
    assert.equal(outcome.ok ? "OK" : reasonOf(outcome.error), reason, message);
  }

  /**
   * Runs `call` with the database going away at its n-th command, for n = 1,
   * 2, ... until a run completes without reaching an n-th command; `check`
   * judges each run (after the database is back). Returns the commands of the
   * complete run (what the call does when nothing fails).
   */
  async function everyFaultPoint<S, T>(
    setup: () => Promise<S>,
    call: (state: S, requestId: string) => Promise<T>,
    check: (state: S, requestId: string, first: Outcome<T>, at: WireCommand | undefined) => Promise<void>,
  ): Promise<{ points: number; commands: string[] }> {
    let redone = 0;
    for (let n = 1; ; n++) {
      // The previous point's fault may have left the store circuit open for a
      // moment: the set-up retries like any client until the database is back.
      const ready = await retry(setup);
      if (!ready.ok) throw ready.error;
      const state = ready.value;
      const requestId = `fault-${mode}-${n}-${randomUUID()}`;
      proxy.arm({ at: n, mode, counts: commandsOf(requestId) });
      const first = await settle(call(state, requestId));
      const at = proxy.trippedAt;
      const commands = proxy.seen.map((c) => `${c.name} ${c.collection ?? ""}`.trim());
      await proxy.restore();
      proxy.watch();
      if (!at && !first.ok && first.error.code === Code.Unavailable && redone < 3) {
        // Not this point's fault: the previous point's cut can still fail an
        // operation on a connection the driver had not yet discarded, which
        // opens the store circuit for a moment. A client retries that (this
        // suite's retries prove what it gets); here the point is run again.
        redone++;
        n--;
        continue;
      }
      if (at && !first.ok) {
        assert.equal(Code[first.error.code], Code[Code.Unavailable], `n=${n} (${commands.at(-1)}): ${first.error.message}`);
        assert.equal(reasonOf(first.error), "store_unavailable");
      }
      try {
        await check(state, requestId, first, at);
      } catch (error) {
        throw new Error(`${mode} at command ${n} (${at ? `${at.name} ${at.collection}` : "none"}), first answer ${first.ok ? "OK" : Code[first.error.code]}: ${(error as Error).message}`, { cause: error });
      }
      if (!at) {
        assert.ok(first.ok, `the call succeeds when nothing fails: ${first.ok ? "" : first.error.message}`);
        return { points: n - 1, commands };
      }
    }
  }

  test("GenerateLink: an error leaves nothing usable; the retry issues one link that works and replaces the earlier one", async (t) => {
    const { points, commands } = await everyFaultPoint(
      async () => {
        const address = email("gen");
        const earlier = await admin().generateLink({ type: LinkType.MAGICLINK, email: address });
        return { address, earlier };
      },
      (state, requestId) => admin(requestId).generateLink({ type: LinkType.MAGICLINK, email: state.address }),
      async ({ address, earlier }, requestId, first) => {
        const userId = earlier.user!.id;
        let issued: GenerateLinkResponse;
        if (first.ok) {
          issued = first.value;
        } else {
          // Before the retry: the failed call left nothing usable, except
          // when the very last write (making its link usable) ran and its
          // reply was lost: then one link is usable that nobody holds,
          // and the retry replaces it.
          const leftovers = (await usableLinks(userId, "magiclink")).filter((h) => h !== earlier.hashedToken);
          assert.ok(leftovers.length <= (mode === "lose-reply" ? 1 : 0), `usable leftovers: ${leftovers.length}`);
          const retried = await retry(() => admin(requestId).generateLink({ type: LinkType.MAGICLINK, email: address }));
          assert.ok(retried.ok, `the retry succeeds: ${retried.ok ? "" : retried.error.message}`);
          issued = retried.value;
        }
        assert.deepEqual(await usableLinks(userId, "magiclink"), [issued.hashedToken], "exactly the issued link is usable");
        // (Retried while UNAVAILABLE: a call that succeeded may have lost
        // the database after its last word, e.g. while tidying up.)
        await refusedAs("link_invalid_or_expired", () => anyone().verifyLink(byToken(LinkType.MAGICLINK, tokenOf(earlier))));
        const verified = await retry(() => anyone().verifyLink(byToken(LinkType.MAGICLINK, tokenOf(issued))));
        assert.ok(verified.ok, "the issued link works");
        assert.equal(verified.value.user?.id, userId);
        await refusedAs("link_invalid_or_expired", () => anyone().verifyLink(byToken(LinkType.MAGICLINK, tokenOf(issued))));
      },
    );
    t.diagnostic(`${points} fault points; the call: ${commands.join(", ")}`);
    assert.ok(points >= 8, "every command of the call was a fault point");
  });

  test("GenerateLink for a new address: the retry creates one user, found by that address from then on", async (t) => {
    const { points, commands } = await everyFaultPoint(
      async () => ({ address: email("new-user") }),
      (state, requestId) => admin(requestId).generateLink({ type: LinkType.MAGICLINK, email: state.address }),
      async ({ address }, requestId, first) => {
        let issued: GenerateLinkResponse;
        if (first.ok) {
          issued = first.value;
        } else {
          const retried = await retry(() => admin(requestId).generateLink({ type: LinkType.MAGICLINK, email: address }));
          assert.ok(retried.ok, `the retry succeeds: ${retried.ok ? "" : retried.error.message}`);
          issued = retried.value;
        }
        const holders = await db.collection<{ _id: string }>("users").find({ email: address }).toArray();
        assert.deepEqual(holders.map((u) => u._id), [issued.user!.id], "one user holds the address: the one the answer names");
        const again = await retry(() => admin().generateLink({ type: LinkType.MAGICLINK, email: address }));
        assert.ok(again.ok);
        assert.equal(again.value.user?.id, issued.user!.id, "the address finds that user");
        const verified = await retry(() => anyone().verifyLink(byToken(LinkType.MAGICLINK, tokenOf(again.value))));
        assert.ok(verified.ok, "and its link works");
      },
    );
    t.diagnostic(`${points} fault points; the call: ${commands.join(", ")}`);
    assert.ok(points >= 9, "every command of the call was a fault point");
  });

  for (const credential of ["token", "code"] as const) {
    test(`VerifyLink by ${credential}: an error is completed by the retry, exactly once, with its effect`, async (t) => {
      const { points, commands } = await everyFaultPoint(
        async () => {
          const address = email(`verify-${credential}`);
          return { address, generated: await admin().generateLink({ type: LinkType.MAGICLINK, email: address }) };
        },
        (state, requestId) =>
          anyone(requestId).verifyLink(
            credential === "token"
              ? byToken(LinkType.MAGICLINK, tokenOf(state.generated))
              : byCode(LinkType.MAGICLINK, state.address, state.generated.emailOtp),
          ),
        async ({ address, generated }, requestId, first) => {
          const userId = generated.user!.id;
          const redeem = (id: string) =>
            anyone(id).verifyLink(
              credential === "token" ? byToken(LinkType.MAGICLINK, tokenOf(generated)) : byCode(LinkType.MAGICLINK, address, generated.emailOtp),
            );
          let successes = first.ok ? 1 : 0;
          if (!first.ok) {
            const retried = await retry(() => redeem(requestId));
            assert.ok(retried.ok, `the retry completes it: ${retried.ok ? "" : `${Code[retried.error.code]} ${retried.error.message}`}`);
            assert.equal(retried.value.user?.id, userId);
            successes += 1;
          }
          assert.equal(successes, 1, "one success for the call");
          assert.ok(await confirmedAt(userId), "the success has its effect (the address is confirmed)");
          for (const other of [byToken(LinkType.MAGICLINK, tokenOf(generated)), byCode(LinkType.MAGICLINK, address, generated.emailOtp)]) {
            await refusedAs("link_invalid_or_expired", () => anyone().verifyLink(other), "redeemed once: any other call is refused");
          }
          const preview = await retry(() => anyone().previewLink({ type: LinkType.MAGICLINK, token: tokenOf(generated) }));
          assert.ok(preview.ok);
          assert.equal(preview.value.state, LinkState.USED);
        },
      );
      t.diagnostic(`${points} fault points; the call: ${commands.join(", ")}`);
      assert.ok(points >= 6, "every command of the call was a fault point");
    });
  }
}

// The two modes side by side; within a mode, one call at a time (the proxy
// counts every command it sees).
describe("the database goes away at every command of a call", { concurrency: 2 }, () => {
  for (const mode of ["drop", "lose-reply"] as const) describe(mode, { concurrency: 1 }, () => faultSuite(mode));
});
