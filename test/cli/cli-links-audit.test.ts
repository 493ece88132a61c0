import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { collect, expectExit, spawnCli } from "../support/cli-process.js";
import { eventually } from "../support/eventually.js";
import { useTestDatabase } from "../support/mongo.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// `authlink links list|get|revoke|reissue` and `authlink audit list|watch`
// against a real server on both stores. The watch streams until it is
// interrupted (SIGINT, as Ctrl-C sends), printing events as they happen, and
// exits 0.

const database = await useTestDatabase("cli_links_audit");
let counter = 0;
const address = (label: string) => `${label}-${++counter}-${Date.now().toString(36)}@example.com`;

interface LinkJson {
  hashedToken: string;
  state: string;
  email: string;
  type: string;
}

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({ database: backend === "MongoDB" ? database : undefined });
    });
    after(() => server.close());
    const env = () => ({ AUTHLINK_CLI_URL: server.url, AUTHLINK_CLI_SERVICE_KEY: server.serviceKey });
    const generate = async (email: string, type = "invite") =>
      JSON.parse((await expectExit(0, ["generate", type, email], { env: env() })).stdout) as { hashedToken: string; actionLink: string };

    test("links list (filters, NDJSON, pages), get, reissue (the old link replaced), revoke by hash and by user", async () => {
      const email = address("ann");
      const first = await generate(email);
      const listed = (await expectExit(0, ["links", "list", "--email", email, "-o", "ndjson"], { env: env() })).stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as LinkJson);
      assert.deepEqual(listed.map((l) => [l.hashedToken, l.state, l.type]), [[first.hashedToken, "LINK_STATE_VALID", "LINK_TYPE_INVITE"]]);

      const got = await expectExit(0, ["links", "get", first.hashedToken, "-o", "table"], { env: env() });
      assert.match(got.stdout, /^state\s+valid$/m);
      assert.match(got.stdout, new RegExp(`^email\\s+${email.replace(/\./g, "\\.")}$`, "m"));
      assert.ok(!got.stdout.includes(first.actionLink), "no secret in a link's description");

      const reissued = JSON.parse((await expectExit(0, ["links", "reissue", first.hashedToken], { env: env() })).stdout) as {
        link: { hashedToken: string; actionLink: string };
        replacedHashedToken: string;
      };
      assert.equal(reissued.replacedHashedToken, first.hashedToken);
      assert.notEqual(reissued.link.hashedToken, first.hashedToken);
      const old = JSON.parse((await expectExit(0, ["links", "get", first.hashedToken], { env: env() })).stdout) as { link: LinkJson };
      assert.equal(old.link.state, "LINK_STATE_REPLACED");

      const revoked = await expectExit(0, ["links", "revoke", reissued.link.hashedToken, "-o", "table"], { env: env() });
      assert.match(revoked.stdout, /^revoked\s+1$/m);
      const idempotent = await expectExit(0, ["links", "revoke", reissued.link.hashedToken, "-o", "table"], { env: env() });
      assert.match(idempotent.stdout, /^revoked\s+0$/m);
      const preview = await expectExit(0, ["preview", reissued.link.actionLink, "-o", "table"], { env: env() });
      assert.match(preview.stdout, /^state\s+revoked$/m);

      const other = address("bob");
      await generate(other, "magiclink");
      await generate(other, "recovery");
      const byUser = JSON.parse((await expectExit(0, ["links", "revoke", "--email", other, "--type", "magiclink"], { env: env() })).stdout) as {
        revokedCount: number;
      };
      assert.equal(byUser.revokedCount, 1);

      // Pages: one link per page, followed with --all.
      const paged = JSON.parse((await expectExit(0, ["links", "list", "--email", other, "--page-size", "1", "--all"], { env: env() })).stdout) as {
        links: LinkJson[];
        nextPageToken?: string;
      };
      assert.equal(paged.links.length, 2);
      assert.equal(paged.nextPageToken ?? "", "");
      const onePage = await expectExit(0, ["links", "list", "--email", other, "--page-size", "1", "-o", "table"], { env: env() });
      assert.match(onePage.stderr, /^more: --page-token \S+ \(or --all\)$/m);

      const unknown = await expectExit(1, ["links", "get", "0".repeat(64), "-o", "table"], { env: env() });
      assert.match(unknown.stderr, /^error: NOT_FOUND link_not_found: /m);
      const forged = await expectExit(1, ["links", "list", "--page-token", "forged", "-o", "table"], { env: env() });
      assert.match(forged.stderr, /^error: INVALID_ARGUMENT /m);
    });

    test("audit list shows the CLI's own calls; audit watch streams new events as NDJSON until Ctrl-C and exits 0", async () => {
      const email = address("aud");
      await generate(email, "magiclink");
      const listed = JSON.parse((await expectExit(0, ["audit", "list", "--email", email], { env: env() })).stdout) as {
        events: { method: string; outcome: string; caller: string }[];
      };
      assert.ok(listed.events.some((e) => e.method === "GenerateLink" && e.outcome === "ok"), JSON.stringify(listed));

      const watched = address("watch");
      const watch = spawnCli(["audit", "watch", "--email", watched, "-o", "ndjson"], { env: env() });
      let stdout = "";
      watch.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
      const done = collect(watch, 60_000);
      // Until the watch is established, generate; each issue is one event.
      await eventually(async () => {
        await generate(watched, "magiclink");
        assert.ok(stdout.includes('"GenerateLink"'), "no event streamed yet");
      });
      watch.kill("SIGINT");
      const result = await done;
      assert.equal(result.code, 0, result.stderr);
      const events = result.stdout.trim().split("\n").map((line) => JSON.parse(line) as { method: string; email: string });
      assert.ok(events.length >= 1);
      assert.ok(events.every((e) => e.email === watched));
    });
  });
}
