import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parse } from "csv-parse/sync";
import { stringify } from "csv-stringify/sync";
import { collect, expectExit, runCli, spawnCli } from "../support/cli-process.js";
import { eventually } from "../support/eventually.js";
import { useTestDatabase } from "../support/mongo.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// `authlink bulk` against a real server: 10,000 rows on the embedded store
// and 200 on FerretDB, a bad address failing its row only, a run SIGKILLed
// half way and resumed (every row written once, every link issued once), and
// bad input files refused with exit 2 before any call.

const database = await useTestDatabase("cli_bulk");
const scratch = mkdtempSync(join(tmpdir(), "authlink-bulk-"));
let fileCounter = 0;
const file = (name: string) => join(scratch, `${++fileCounter}-${name}`);
const run = Date.now().toString(36);

type Row = Record<string, string>;

function writeCsv(path: string, header: string[], rows: string[][]): string {
  writeFileSync(path, stringify([header, ...rows]));
  return path;
}
const readCsv = (path: string): Row[] => parse(readFileSync(path), { columns: true }) as Row[];
const readNdjson = (path: string): Record<string, unknown>[] =>
  readFileSync(path, "utf8").trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);

/** Rate limits out of the way of thousands of rows from one caller. */
const BULK_LIMITS = { AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER: "1000000/1m", AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "1000/1m" };

/** Links issued for an address by bulk rows: the audit trail's "ok" issue events. */
async function issuesFor(server: TestServer, email: string): Promise<string[]> {
  const events = await server.store.audit.find({ email: email.toLowerCase() }, 100);
  return events.filter((e) => e.outcome === "ok" && e.method.endsWith("GenerateLinks")).flatMap((e) => e.hashedTokens);
}

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({ database: backend === "MongoDB" ? database : undefined, env: BULK_LIMITS });
    });
    after(() => server.close());
    const env = () => ({ AUTHLINK_CLI_URL: server.url, AUTHLINK_CLI_SERVICE_KEY: server.serviceKey });

    test("bad input files exit 2 before any call: no email column, no type, an unknown column, broken CSV, a missing file, an existing output", async () => {
      const email = `nocall-${backend}-${run}@example.com`;
      const cases: [string, string[], RegExp][] = [
        ["no-email.csv", ["address_line,type", `${email},invite`], /missing required column "email"/],
        ["no-type.csv", ["email", email], /no "type" column and no --type/],
        ["typo.csv", ["email,type,redirect", `${email},invite,https://app.example.com/`], /unknown column redirect/],
        ["broken.csv", ["email,type", `"${email},invite`], /not valid CSV/],
        ["empty.csv", [""], /empty file/],
      ];
      for (const [name, lines, message] of cases) {
        const input = file(name);
        writeFileSync(input, `${lines.join("\n")}\n`);
        const out = file("out.csv");
        const result = await expectExit(2, ["bulk", input, "--out", out], { env: env() });
        assert.match(result.stderr, message, name);
        assert.ok(!existsSync(out), `${name}: no output file`);
      }
      await expectExit(2, ["bulk", join(scratch, "no-such.csv")], { env: env() });
      const existing = file("existing.csv");
      writeFileSync(existing, "row,email\n1,a@example.com\n");
      const input = writeCsv(file("ok.csv"), ["email", "type"], [[email, "invite"]]);
      const refused = await expectExit(2, ["bulk", input, "--out", existing], { env: env() });
      assert.match(refused.stderr, /exists: continue it with --resume/);
      assert.equal(readFileSync(existing, "utf8"), "row,email\n1,a@example.com\n", "an existing output is never overwritten");
      await expectExit(2, ["bulk", input, "--out", existing, "--resume"], { env: env() });
      assert.deepEqual(await server.store.audit.find({ email: email.toLowerCase() }, 10), [], "nothing was sent");
    });

    const size = backend === "embedded" ? 10_000 : 200;
    test(`${size} rows: every row written once with its link; a bad address and a bad cell fail their rows only; NDJSON and CSV`, async () => {
      const emails = Array.from({ length: size }, (_, i) => `bulk-${i}-${backend}-${run}@example.com`);
      const rows = emails.map((email, i) => [
        i === 7 ? "not-an-address" : email,
        i % 2 === 0 ? "magiclink" : "invite",
        i % 3 === 0 ? "https://app.example.com/welcome" : "",
        i % 5 === 0 ? JSON.stringify({ n: i }) : i === 11 ? "{not json" : "",
      ]);
      const input = writeCsv(file("in.csv"), ["email", "type", "redirect_to", "data"], rows);
      const format = backend === "embedded" ? "csv" : "ndjson";
      const out = file(`out.${format}`);
      const result = await expectExit(1, ["bulk", input, "--out", out, "--progress-interval", "200ms"], { env: env(), timeoutMs: 600_000 });
      const written = format === "csv" ? readCsv(out) : readNdjson(out).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, String(v)])));
      assert.equal(written.length, size);
      assert.deepEqual(new Set(written.map((r) => r.row)).size, size, "each row once");
      const byRow = new Map(written.map((r) => [Number(r.row), r]));
      const bad = byRow.get(8)!;
      assert.equal(bad.status, "INVALID_ARGUMENT");
      assert.match(bad.error ?? "", /^validation_failed: .*\bemail\b/);
      const badData = byRow.get(12)!;
      assert.equal(badData.status, "INVALID_ARGUMENT");
      assert.match(badData.error ?? "", /data: not a JSON object \(checked by the CLI; not sent\)/);
      const ok = written.filter((r) => r.status === "OK");
      assert.equal(ok.length, size - 2);
      for (const r of ok) {
        assert.match(r.action_link ?? "", /^https:\/\/auth\.example\.com\/verify#token=/);
        assert.match(r.email_otp ?? "", /^\d{6}$/);
        assert.match(r.hashed_token ?? "", /^[0-9a-f]{64}$/);
        assert.equal(r.error, "");
        assert.equal(r.replayed, "false");
      }
      assert.equal(byRow.get(1)!.type, "magiclink");
      assert.equal(byRow.get(2)!.type, "invite");
      assert.match(result.stderr, /^bulk: \d+\/\d+ rows \(\d+\.\d%\), \d+\.\d rows\/s, ETA \S+, \d+ failed$/m, "plain progress lines when not a terminal");
      assert.match(result.stderr, new RegExp(`^bulk: ${size} of ${size} rows in .*: ${size - 2} issued, 2 failed; results in `, "m"));
      // Each link once: a sample of addresses, each with one issue whose hash is the one written.
      for (const r of ok.filter((_, i) => i % Math.ceil(ok.length / 50) === 0)) {
        assert.deepEqual(await issuesFor(server, r.email!), [r.hashed_token]);
      }
    });

    test("a second run of the same file issues nothing: every row answers replayed, with how to get a new link", async () => {
      const emails = Array.from({ length: 20 }, (_, i) => `again-${i}-${backend}-${run}@example.com`);
      const input = writeCsv(file("again.csv"), ["email"], emails.map((e) => [e]));
      await expectExit(0, ["bulk", input, "--type", "invite", "--out", file("first.csv")], { env: env() });
      const second = file("second.csv");
      const result = await expectExit(1, ["bulk", input, "--type", "invite", "--out", second], { env: env() });
      assert.match(result.stderr, /0 issued, 20 already issued before/);
      for (const r of readCsv(second)) {
        assert.equal(r.replayed, "true");
        assert.equal(r.action_link, "");
        assert.equal(r.email_otp, "");
        assert.equal(r.error, `already issued: secrets were shown once; run \`authlink links reissue ${r.hashed_token}\` for a new link`);
        assert.equal((await issuesFor(server, r.email!)).length, 1);
      }
      // Another salt is another run: new links.
      await expectExit(0, ["bulk", input, "--type", "invite", "--key-salt", "campaign-2", "--out", file("third.csv")], { env: env() });
    });

    if (backend === "embedded") {
      test("SIGKILLed half way, then --resume: every row written exactly once, every row's link issued exactly once", async () => {
        const size = 3_000;
        const emails = Array.from({ length: size }, (_, i) => `resume-${i}-${run}@example.com`);
        const input = writeCsv(file("resume.csv"), ["email", "type"], emails.map((e) => [e, "magiclink"]));
        const out = file("resume-out.csv");
        const args = ["bulk", input, "--out", out, "--concurrency", "4", "--chunk-size", "25", "--progress", "off"];
        const child = spawnCli(args, { env: env() });
        const killed = collect(child);
        await eventually(async () => {
          if (child.exitCode !== null) return; // finished or failed already: the assertions below say which
          assert.ok(existsSync(out) && statSync(out).size > 0);
          assert.ok(readFileSync(out, "utf8").split("\n").length > size / 3, "not a third yet");
        }, 120_000);
        child.kill("SIGKILL");
        const first = await killed;
        assert.equal(first.signal, "SIGKILL", `the first run ended on its own: ${first.stderr}`);
        const before = readCsv(out).length;
        assert.ok(before < size, `killed before the end (${before} rows written)`);

        const resumed = await runCli([...args, "--resume"], { env: env(), timeoutMs: 300_000 });
        assert.match(resumed.stderr, new RegExp(`${before} skipped \\(already in `));
        const written = readCsv(out);
        assert.equal(written.length, size, "every row written");
        assert.equal(new Set(written.map((r) => r.idempotency_key)).size, size, "each row once");
        const replayed = written.filter((r) => r.replayed === "true");
        assert.ok(written.every((r) => r.status === "OK" || r.replayed === "true"), "no other failures");
        for (const r of replayed) assert.match(r.error ?? "", /^already issued: .*authlink links reissue [0-9a-f]{64}/);
        // Rows issued by the killed run but never written (in flight at the kill) come back replayed: exit 1, so
        // the operator looks; when the kill lost nothing, exit 0.
        assert.equal(resumed.code, replayed.length > 0 ? 1 : 0, resumed.stderr);
        for (const r of written) {
          assert.deepEqual(await issuesFor(server, r.email!), [r.hashed_token], `${r.email}: issued exactly once`);
        }
      });
    }
  });
}
