import assert from "node:assert/strict";
import { after, test } from "node:test";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { startAuthlink } from "../../src/authlink.js";
import { loadConfig } from "../../src/config/config.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { StoreUnavailableError, type Store } from "../../src/domain/store.js";
import { createCapturedLogger } from "../support/captured-logger.js";
import { Code, connectClient, reasonOf, rejection } from "../support/clients.js";
import { testEnv } from "../support/test-server.js";

// The audit trail through a real server: what each event holds, one log line
// per call, and that a call whose event cannot be stored fails instead of
// handing out an unaudited link.

async function start(store: Store) {
  const env = testEnv();
  const { logger, lines } = createCapturedLogger();
  const running = await startAuthlink({ config: loadConfig(env), logger, store });
  after(() => running.close());
  return { running, lines, key: env.AUTHLINK_SERVICE_KEYS ?? "" };
}

test("events name the caller, the subject and the outcome, and hold hashes only", async () => {
  const store = createMemoryStore();
  const { running, lines, key } = await start(store);
  const admin = connectClient(running.url, { key });
  const generated = await admin.generateLink({ type: LinkType.MAGICLINK, email: "Audit@Example.com" });
  const token = new URL(generated.actionLink).searchParams.get("token") ?? "";
  await connectClient(running.url).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } });
  await rejection(connectClient(running.url).verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: token } }));

  const events = (await store.audit.find({ email: "audit@example.com" }, 10)).reverse();
  assert.deepEqual(
    events.map((e) => [e.method, e.outcome, e.linkType, e.userId, e.hashedTokens]),
    [
      ["GenerateLink", "ok", "magiclink", generated.user?.id, [generated.hashedToken]],
      ["VerifyLink", "ok", "magiclink", generated.user?.id, [generated.hashedToken]],
    ],
  );
  assert.match(events[0]?.caller ?? "", /^key:[0-9a-f]{12}$/);
  assert.equal(events[1]?.caller, "anonymous");
  assert.equal(events[0]?.clientAddress, "127.0.0.1");

  // The failed second redemption knows only the hash of the token presented.
  const callLines = lines.map((l) => JSON.parse(l) as { msg: string; audit?: { outcome: string; hashedTokens: string[] } });
  const audited = callLines.filter((l) => l.msg === "call");
  assert.equal(audited.length, 3, "one log line per call");
  assert.deepEqual(audited[2]?.audit?.outcome, "link_invalid_or_expired");
  assert.deepEqual(audited[2]?.audit?.hashedTokens, [generated.hashedToken]);
  assert.ok(!lines.join("\n").includes(token), "the raw token is never logged");
});

test("when the audit event cannot be stored, the call fails and hands out no link", async () => {
  const inner = createMemoryStore();
  let failAudit = false;
  const store: Store = {
    ...inner,
    audit: {
      ...inner.audit,
      append: async (...args) => {
        if (failAudit) throw new StoreUnavailableError("audit collection unavailable");
        return inner.audit.append(...args);
      },
    },
  };
  const { running, key } = await start(store);
  failAudit = true;
  const error = await rejection(connectClient(running.url, { key }).generateLink({ type: LinkType.MAGICLINK, email: "unaudited@example.com" }));
  assert.equal(error.code, Code.Unavailable);
  assert.equal(reasonOf(error), "store_unavailable");
  assert.doesNotMatch(error.message, /audit collection/);
});
