import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { linkParams } from "../support/links.js";
import { connectClient, rejection } from "../support/clients.js";
import { useTestDatabase, type TestDatabase } from "../support/mongo.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// Nothing secret at rest or in the logs: after issuing every kind of link
// (and failing a few calls), no raw token, code, password or service key
// appears anywhere in the database or in what the server logged.

const database: TestDatabase = await useTestDatabase("secrets");
let server: TestServer;

before(async () => {
  server = await startTestServer({ database });
});
after(() => server.close());

test("no raw token, code, password or key is stored or logged", async () => {
  const client = connectClient(server.url, { key: server.serviceKey });
  const secrets: string[] = [server.serviceKey, server.config.otp.secret.reveal()];
  const password = "a very memorable passphrase 42";
  secrets.push(password);

  const issued = [
    await client.generateLink({ type: LinkType.SIGNUP, email: "s1@example.com", password }),
    await client.generateLink({ type: LinkType.MAGICLINK, email: "s2@example.com" }),
    await client.generateLink({ type: LinkType.INVITE, email: "s3@example.com", data: { role: "admin" } }),
  ];
  const magic = issued[1]!;
  await client.verifyLink({
    type: LinkType.MAGICLINK,
    credential: { case: "token", value: linkParams(magic.actionLink).get("token") ?? "" },
  });
  issued.push(await client.generateLink({ type: LinkType.RECOVERY, email: "s2@example.com" }));
  issued.push(await client.generateLink({ type: LinkType.EMAIL_CHANGE, email: "s2@example.com", newEmail: "s2-new@example.com" }));
  await rejection(client.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: "A".repeat(43) } }));
  await rejection(connectClient(server.url, { key: `${server.serviceKey}x` }).generateLink({ type: LinkType.MAGICLINK, email: "s9@example.com" }));

  for (const link of issued) {
    const links = [link, ...(link.currentEmailConfirmation ? [link.currentEmailConfirmation] : [])];
    for (const l of links) {
      secrets.push(linkParams(l.actionLink).get("token") ?? "", l.emailOtp);
    }
  }
  assert.ok(secrets.every((s) => s.length >= 6), "every secret is long enough to search for");

  const dump: string[] = [];
  for (const { name } of await database.client.db(database.name).listCollections().toArray()) {
    const docs = await database.client.db(database.name).collection(name).find().toArray();
    dump.push(JSON.stringify(docs));
  }
  const stored = dump.join("\n");
  const logged = server.logs.join("\n");
  assert.ok(stored.includes("s2-new@example.com"), "the dump really holds the data");
  for (const secret of secrets) {
    // A 6-digit code could occur by chance inside a 64-hex-digit hash, so
    // codes are searched as whole JSON string values.
    const needle = /^\d+$/.test(secret) ? `"${secret}"` : secret;
    assert.ok(!stored.includes(needle), `a secret is stored in MongoDB: ${needle.slice(0, 4)}…`);
    assert.ok(!logged.includes(needle), `a secret is in the log: ${needle.slice(0, 4)}…`);
  }
});
