import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { expectExit } from "../support/cli-process.js";
import { useTestDatabase } from "../support/mongo.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// `authlink users create|get|update|delete|invite` against a real server on
// both stores: passwords from stdin, metadata merged, an address change that
// revokes the user's links, an invite, a delete, and the errors
// (email_exists, user_not_found) with exit code 1.

const database = await useTestDatabase("cli_users");
let counter = 0;
const address = (label: string) => `${label}-${++counter}-${Date.now().toString(36)}@example.com`;

interface UserJson {
  id: string;
  email: string;
  emailConfirmedAt?: string;
  invitedAt?: string;
  hasPassword?: boolean;
  userMetadata?: Record<string, unknown>;
}

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({ database: backend === "MongoDB" ? database : undefined });
    });
    after(() => server.close());
    const env = () => ({ AUTHLINK_CLI_URL: server.url, AUTHLINK_CLI_SERVICE_KEY: server.serviceKey });

    test("create (password from stdin, metadata, confirmed), get by address and id, update, delete", async () => {
      const email = address("ann");
      const created = (
        JSON.parse(
          (
            await expectExit(0, ["users", "create", email, "--with-password", "--metadata", '{"plan":"pro","team":"a"}', "--confirmed"], {
              env: env(),
              input: "correct horse battery staple\n",
            })
          ).stdout,
        ) as { user: UserJson }
      ).user;
      assert.equal(created.email, email);
      assert.equal(created.hasPassword, true);
      assert.ok(created.emailConfirmedAt);
      assert.deepEqual(created.userMetadata, { plan: "pro", team: "a" });

      const again = await expectExit(1, ["users", "create", email, "-o", "table"], { env: env() });
      assert.match(again.stderr, /^error: ALREADY_EXISTS email_exists: /m);

      const byEmail = await expectExit(0, ["users", "get", email, "-o", "table"], { env: env() });
      assert.match(byEmail.stdout, new RegExp(`^id\\s+${created.id}$`, "m"));
      assert.match(byEmail.stdout, /^has_password\s+yes$/m);
      const byId = JSON.parse((await expectExit(0, ["users", "get", created.id, "-o", "ndjson"], { env: env() })).stdout) as { user: UserJson };
      assert.equal(byId.user.email, email);

      // A link outstanding, then an administrator's address change revokes it.
      await expectExit(0, ["generate", "magiclink", email], { env: env() });
      const moved = address("moved");
      const updated = JSON.parse(
        (await expectExit(0, ["users", "update", created.id, "--email", moved, "--metadata", '{"team":null,"seats":3}'], { env: env() })).stdout,
      ) as { user: UserJson; revokedLinks?: number };
      assert.equal(updated.user.email, moved);
      assert.deepEqual(updated.user.userMetadata, { plan: "pro", seats: 3 });
      assert.equal(updated.revokedLinks, 1);
      const nothing = await expectExit(2, ["users", "update", created.id], { env: env() });
      assert.match(nothing.stderr, /nothing to change/);

      const deleted = await expectExit(0, ["users", "delete", created.id, "--yes", "-o", "table"], { env: env() });
      assert.match(deleted.stdout, /^revoked_links\s+0$/m);
      const gone = await expectExit(1, ["users", "get", created.id, "-o", "table"], { env: env() });
      assert.match(gone.stderr, /^error: NOT_FOUND user_not_found: /m);
    });

    test("invite returns the invite link (GenerateLink INVITE's shape); a confirmed user is email_exists", async () => {
      const email = address("inv");
      const invited = JSON.parse(
        (await expectExit(0, ["users", "invite", email, "--data", '{"role":"editor"}', "--expires-in", "7d"], { env: env() })).stdout,
      ) as { link: { actionLink: string; verificationType: string; user: UserJson } };
      assert.equal(invited.link.verificationType, "LINK_TYPE_INVITE");
      assert.match(invited.link.actionLink, /type=invite/);
      assert.ok(invited.link.user.invitedAt);
      await expectExit(0, ["verify", invited.link.actionLink], { env: { AUTHLINK_CLI_URL: server.url } });
      const confirmed = await expectExit(1, ["users", "invite", email, "-o", "table"], { env: env() });
      assert.match(confirmed.stderr, /^error: ALREADY_EXISTS email_exists: /m);
    });
  });
}
