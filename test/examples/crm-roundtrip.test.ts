import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { LinkState, LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { readCsv } from "../../examples/crm-roundtrip/crm-mapping.js";
import { connectClient } from "../support/clients.js";
import { linkParams } from "../support/links.js";
import { useTestDatabase } from "../support/mongo.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// The CRM round trip for real (examples/crm-roundtrip): the sample export's
// "trial" segment → `authlink bulk` (the CLI, over gRPC, with the service key
// from its environment) → the export with a working link and code on each
// row, against a real authlink on both stores; then the same command with
// --resume issues nothing twice.

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const SCRIPT = join(repoRoot, "dist/examples/crm-roundtrip/crm-roundtrip.js");
const SAMPLE = join(repoRoot, "examples/crm-roundtrip/sample-crm-export.csv");
/** The CLI under test: this checkout's, unless AUTHLINK_TEST_CLI names another build. */
const CLI = process.env.AUTHLINK_TEST_CLI ?? join(repoRoot, "dist/src/cli/main.js");
const database = await useTestDatabase("crm_roundtrip");

interface Run {
  readonly code: number;
  readonly stderr: string;
}

function runScript(server: TestServer, args: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SCRIPT, "--cli", CLI, ...args], {
      cwd: repoRoot,
      env: { ...process.env, AUTHLINK_CLI_URL: server.url, AUTHLINK_CLI_SERVICE_KEY: server.serviceKey },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? 1, stderr }));
  });
}

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`CRM export → authlink bulk → CRM import (${backend} store)`, () => {
    let server: TestServer;
    let work: string;
    before(async () => {
      server = await startTestServer({ database: backend === "MongoDB" ? database : undefined });
      work = await mkdtemp(join(tmpdir(), "authlink-crm-"));
    });
    after(async () => {
      await server?.close();
      if (work) await rm(work, { recursive: true, force: true });
    });

    test("every trial contact gets a working link and code, or the reason it has none; a resumed run issues nothing twice", async () => {
      const out = join(work, "crm-import.csv");
      const args = ["--crm", SAMPLE, "--segment", "trial", "--type", "magiclink", "--out", out, "--work-dir", join(work, "bulk")];
      const first = await runScript(server, args);
      assert.equal(first.code, 1, `rows with an error make exit code 1\n${first.stderr}`);
      assert.match(first.stderr, /6 CRM rows, 4 distinct addresses/);

      const imported = readCsv(await readFile(out, "utf8"));
      assert.deepEqual(imported.columns, ["contact_id", "first_name", "last_name", "email", "segment", "country", "action_link", "email_otp", "hashed_token", "expires_at", "error"]);
      const rows = new Map(imported.rows.map((row) => [row.contact_id ?? "", row]));
      assert.deepEqual([...rows.keys()], ["C-1001", "C-1003", "C-1004", "C-1005", "C-1006", "C-1007"], "the trial segment, in the export's order");

      const preview = connectClient(server.url, { protocol: "connect" });
      for (const id of ["C-1001", "C-1003", "C-1007"]) {
        const row = rows.get(id);
        assert.ok(row, id);
        assert.equal(row.error, "", `${id}: ${row.error}`);
        assert.match(row.email_otp ?? "", /^\d{6}$/);
        assert.match(row.hashed_token ?? "", /^[0-9a-f]{64}$/);
        assert.ok(Date.parse(row.expires_at ?? "") > Date.now());
        const token = linkParams(row.action_link ?? "").get("token") ?? "";
        const state = await preview.previewLink({ type: LinkType.MAGICLINK, token });
        assert.equal(state.state, LinkState.VALID, `${id}'s link works`);
      }
      assert.equal(rows.get("C-1006")?.action_link, rows.get("C-1003")?.action_link, "one address, one link, on both rows");
      assert.match(rows.get("C-1004")?.error ?? "", /^INVALID_ARGUMENT: /, "a bad address is that row's error");
      assert.equal(rows.get("C-1004")?.action_link, "");
      assert.match(rows.get("C-1005")?.error ?? "", /no email address/);
      assert.equal(rows.get("C-1007")?.first_name, "Fay, Jr.");

      // The names went along as the new users' metadata.
      const ann = await server.store.users.findByEmail("ann.archer@example.com");
      assert.deepEqual(ann?.userMetadata, { first_name: "Ann", last_name: "Archer" });
      // And the customer segment got nothing.
      assert.equal(await server.store.users.findByEmail("bob.baker@example.com"), undefined);

      // Run again with --resume: no second link for anyone (the first ones still work).
      const second = await runScript(server, [...args, "--resume"]);
      assert.equal(second.code, 1, second.stderr);
      const again = readCsv(await readFile(out, "utf8"));
      assert.deepEqual(
        again.rows.map((row) => row.hashed_token),
        imported.rows.map((row) => row.hashed_token),
      );
      for (const address of ["ann.archer@example.com", "cleo.carter@example.com", "fay.fox@example.com"]) {
        const live = await server.store.links.findLiveByEmail(address, "magiclink", new Date(), 10);
        assert.equal(live.length, 1, `${address}: one live link`);
      }
    });

    test("usage errors exit 2 before any call", async () => {
      const noArgs = await runScript(server, []);
      assert.equal(noArgs.code, 2);
      assert.match(noArgs.stderr, /usage: crm-roundtrip/);
      const noColumn = await runScript(server, ["--crm", join(repoRoot, "package.json"), "--out", join(work, "x.csv")]);
      assert.equal(noColumn.code, 2);
    });
  });
}
