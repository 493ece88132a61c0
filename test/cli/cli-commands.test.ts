import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { cliEnv, expectExit, runCli } from "../support/cli-process.js";
import { useTestDatabase } from "../support/mongo.js";
import { freePort } from "../support/ports.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// The admin CLI end to end, as a child process against a real server on both
// stores: health, generate / verify / preview over gRPC and Connect (HTTP/1.1
// and HTTP/2), a signup whose password comes from stdin, the exit codes
// (0 ok, 1 a call failed, 2 usage), and what a failure prints: the status
// name, the reason and each offending field, for people and for scripts.

const database = await useTestDatabase("cli_commands");
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const scratch = mkdtempSync(join(tmpdir(), "authlink-cli-"));

let counter = 0;
const address = (label: string) => `${label}-${++counter}-${Date.now().toString(36)}@example.com`;

for (const backend of ["MongoDB", "embedded"] as const) {
  describe(`${backend} store`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({ database: backend === "MongoDB" ? database : undefined });
    });
    after(() => server.close());

    /** The connection environment of an operator's shell. */
    const env = (extra: Record<string, string> = {}) => ({
      AUTHLINK_CLI_URL: server.url,
      AUTHLINK_CLI_SERVICE_KEY: server.serviceKey,
      ...extra,
    });
    const json = <T>(text: string): T => JSON.parse(text) as T;

    test("health: the server and each service SERVING, /readyz ready; exit 0", async () => {
      const table = await expectExit(0, ["health", "-o", "table"], { env: env() });
      assert.match(table.stdout, /^grpc \(server\)\s+SERVING$/m);
      assert.match(table.stdout, /^grpc authlink\.v1\.LinkAdminService\s+SERVING$/m);
      assert.match(table.stdout, /^http \/readyz\s+200 ready$/m);
      const result = await expectExit(0, ["health", "--protocol", "connect"], { env: { AUTHLINK_CLI_URL: server.url } });
      const { checks } = json<{ checks: { check: string; status: string; ok: boolean }[] }>(result.stdout);
      assert.equal(checks.length, 6);
      assert.ok(checks.every((c) => c.ok), result.stdout);
      const unknown = await expectExit(1, ["health", "--service", "no.such.Service", "--no-readiness", "-o", "table"], { env: env() });
      assert.match(unknown.stdout, /no\.such\.Service\s+NOT_FOUND/);
    });

    for (const [label, flags] of [
      ["gRPC", ["--protocol", "grpc"]],
      ["Connect over HTTP/1.1", ["--protocol", "connect"]],
      ["Connect over HTTP/2", ["--protocol", "connect", "--http-version", "2"]],
    ] as const) {
      test(`${label}: generate, preview by the action link, verify by it, then preview says used and verify fails`, async () => {
        const email = address("ann");
        const generated = json<{ actionLink: string; emailOtp: string; hashedToken: string; verificationType: string }>(
          (await expectExit(0, [...flags, "generate", "magiclink", email, "--redirect-to", "https://app.example.com/welcome"], { env: env() })).stdout,
        );
        assert.equal(generated.verificationType, "LINK_TYPE_MAGICLINK");
        assert.match(generated.hashedToken, /^[0-9a-f]{64}$/);
        assert.match(generated.emailOtp, /^\d{6}$/);

        // Preview and verify are public: no key needed.
        const anonymous = { AUTHLINK_CLI_URL: server.url };
        const preview = await expectExit(0, [...flags, "preview", generated.actionLink, "-o", "table"], { env: anonymous });
        assert.match(preview.stdout, /^state\s+valid$/m);
        assert.match(preview.stdout, /^redirect_host\s+app\.example\.com$/m);

        const verified = json<{ user: { email: string; emailConfirmedAt?: string }; redirectTo: string; assertion: string }>(
          (await expectExit(0, [...flags, "verify", generated.actionLink], { env: anonymous })).stdout,
        );
        assert.equal(verified.user.email, email);
        assert.ok(verified.user.emailConfirmedAt);
        assert.equal(verified.redirectTo, "https://app.example.com/welcome");
        assert.equal(verified.assertion.split(".").length, 3);

        const used = await expectExit(0, [...flags, "preview", generated.actionLink, "-o", "ndjson"], { env: anonymous });
        assert.equal(json<{ state: string }>(used.stdout).state, "LINK_STATE_USED");
        const again = await expectExit(1, [...flags, "verify", generated.actionLink, "-o", "table"], { env: anonymous });
        assert.equal(again.stdout, "");
        assert.match(again.stderr, /^error: PERMISSION_DENIED link_invalid_or_expired: /m);
      });
    }

    test("generate signup reads the password from stdin (never a flag); verify by --email and --otp", async () => {
      const email = address("sig");
      const generated = json<{ emailOtp: string; verificationType: string }>(
        (await expectExit(0, ["generate", "signup", email], { env: env(), input: "correct horse battery staple\n" })).stdout,
      );
      assert.equal(generated.verificationType, "LINK_TYPE_SIGNUP");
      const verified = await expectExit(0, ["verify", "--type", "signup", "--email", email, "--otp", generated.emailOtp, "-o", "table"], {
        env: { AUTHLINK_CLI_URL: server.url },
      });
      assert.match(verified.stdout, new RegExp(`^user\\.email\\s+${email.replace(/\./g, "\\.")}$`, "m"));
      assert.match(verified.stdout, /^user\.email_confirmed_at\s+\d{4}-/m);
      const weak = await expectExit(1, ["generate", "signup", address("weak"), "-o", "table"], { env: env(), input: "aaaaaaaaaaaa\n" });
      assert.match(weak.stderr, /^error: INVALID_ARGUMENT weak_password: /m);
    });

    test("a failed call exits 1 and prints the status, the reason and each offending field (table) or one JSON object (scripts)", async () => {
      const people = await expectExit(1, ["generate", "magiclink", "not-an-address", "-o", "table"], { env: env() });
      assert.match(people.stderr, /^error: INVALID_ARGUMENT validation_failed: /m);
      assert.match(people.stderr, /^ {2}email: /m);
      const redirect = await expectExit(1, ["generate", "magiclink", address("r"), "--redirect-to", "https://evil.example.net/", "-o", "table"], {
        env: env(),
      });
      assert.match(redirect.stderr, /^error: INVALID_ARGUMENT redirect_not_allowed: /m);
      assert.match(redirect.stderr, /^ {2}redirect_to: /m);

      const scripts = await expectExit(1, ["generate", "recovery", address("nobody")], { env: env() });
      assert.deepEqual(json<{ error: { status: string; reason: string } }>(scripts.stderr.trim()).error.status, "NOT_FOUND");
      assert.equal(json<{ error: { reason: string } }>(scripts.stderr.trim()).error.reason, "user_not_found");
    });

    test("the service role: no key is UNAUTHENTICATED credentials_missing (with a hint), a wrong key UNAUTHENTICATED; a key file works", async () => {
      const none = await expectExit(1, ["generate", "magiclink", address("nokey"), "-o", "table"], { env: { AUTHLINK_CLI_URL: server.url } });
      assert.match(none.stderr, /^error: UNAUTHENTICATED credentials_missing: /m);
      assert.match(none.stderr, /AUTHLINK_CLI_SERVICE_KEY or pass --key-file/);
      const wrong = await expectExit(1, ["generate", "magiclink", address("wrongkey"), "-o", "table"], {
        env: env({ AUTHLINK_CLI_SERVICE_KEY: "not-the-key-0123456789abcdef0123456789" }),
      });
      assert.match(wrong.stderr, /^error: UNAUTHENTICATED credentials_invalid: /m);
      assert.ok(!wrong.stderr.includes("not-the-key"), "the key is never printed");

      const keyFile = join(scratch, `key-${backend}`);
      writeFileSync(keyFile, `${server.serviceKey}\n`);
      chmodSync(keyFile, 0o600);
      const withFile = await expectExit(0, ["--key-file", keyFile, "generate", "magiclink", address("file")], { env: { AUTHLINK_CLI_URL: server.url } });
      assert.match(json<{ hashedToken: string }>(withFile.stdout).hashedToken, /^[0-9a-f]{64}$/);
      assert.equal(withFile.stderr, "");
    });

    test("usage mistakes exit 2 before any call; an unreachable server exits 1 UNAVAILABLE", async () => {
      const cases: [string[], RegExp][] = [
        [["generate", "magiclink"], /missing required argument 'email'/],
        [["generate", "sometimes", "a@example.com"], /unknown link type "sometimes"/],
        [["generate", "magiclink", "a@example.com", "--expires-in", "soon"], /--expires-in: "soon" is not a duration/],
        [["generate", "magiclink", "a@example.com", "--data", "[1]"], /--data: must be a JSON object/],
        [["--protocol", "carrier-pigeon", "health"], /--protocol/],
        [["--http-version", "1.1", "health"], /--http-version 1.1 needs --protocol connect/],
        [["--cert", join(scratch, "missing.pem"), "health"], /--cert: cannot read/],
        [["--key-file", join(scratch, "missing-key"), "health"], /--key-file: cannot read/],
        [["verify", "sometoken", "--email", "a@example.com", "--otp", "123456", "--type", "magiclink"], /exactly one credential/],
        [["preview", "sometoken"], /--type is required/],
        [["links", "get", "not-a-hash"], /not a hashed token/],
        [["users", "delete", "some-id"], /refusing to delete without --yes/],
        [["--bogus"], /unknown option '--bogus'/],
      ];
      for (const [args, message] of cases) {
        const result = await expectExit(2, args, { env: env() });
        assert.match(result.stderr, message, args.join(" "));
      }
      const pemAsKey = join(scratch, "client.key");
      writeFileSync(pemAsKey, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", { mode: 0o600 });
      const wrongFlag = await expectExit(2, ["--key-file", pemAsKey, "health"], { env: env() });
      assert.match(wrongFlag.stderr, /a PEM private key goes to --key/);

      const port = await freePort();
      const down = await expectExit(1, ["--url", `http://127.0.0.1:${port}`, "generate", "magiclink", address("down"), "-o", "table"], { env: env() });
      assert.match(down.stderr, /^error: UNAVAILABLE/m);
    });
  });
}

test("`npx authlink` runs the built bin from a checkout (on Node 24 from node_modules/.bin)", async () => {
  const version = (JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string }).version;
  const child = spawn("npx", ["--no", "--", "authlink", "--version"], {
    cwd: repoRoot,
    env: cliEnv({ PATH: `${join(repoRoot, "node_modules", ".bin")}:${process.env.PATH ?? ""}` }),
  });
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  assert.equal(code, 0);
  assert.equal(stdout.trim(), version);
  const help = await runCli(["bulk", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--resume/);
});
