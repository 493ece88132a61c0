import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { LinkState, LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { CONFIG_VARIABLES } from "../../src/config/config.js";
import { connectClient, reasonOf, rejection } from "../support/clients.js";
import {
  jsonSampleMismatches,
  parseMarkdownExamples,
  textSampleMismatches,
  type RunnableExample,
} from "./markdown-examples.js";

// README.md's code examples, run for real, so the README and the code cannot
// drift apart.
//
// How the README marks its blocks (parsed by markdown-examples.ts): every sh
// or ts block carries `<!-- example: NAME -->` (run here) or
// `<!-- example: not-run (REASON) -->` directly above its fence; a json or
// text block under `<!-- output: NAME -->` shows what example NAME prints,
// and is compared with what it really printed ("…" stands for what varies).
// An unmarked code block, a marker without a block, an example this file has
// no expectation for, or an expectation with no example all fail the test.
//
// The server: what `npm start` runs after its build (dist/src/main.js), as a
// child process with no AUTHLINK_* variables but the two the README's start
// command sets (AUTHLINK_CORS_ORIGINS=http://localhost:5173, and
// AUTHLINK_METRICS_ADDR, on 127.0.0.1:0) and AUTHLINK_ADDR=127.0.0.1:0 —
// the embedded store, the default public URL (which follows the bound port,
// and is the assertions' issuer and audience), a generated service key and
// signing key. KEY is read from its stderr, exactly as the README tells the
// reader to do. The examples run in README order against this one server, so
// each sees the state the earlier ones left (as a reader following the README
// does). The blocks that install or start the service themselves are not-run.
//
// The README's addresses 127.0.0.1:8080 and 127.0.0.1:9464 (metrics) are
// replaced by the bound ones; nothing else in an example is changed.
//
// Shell examples: `bash -euo pipefail`, cwd = repository root, PATH starting
// with node_modules/.bin (so `npx buf` is the buf of devDependencies and
// `node` is the Node 24 npm brings), KEY in the environment.
//
// TypeScript examples import the generated code as `./gen/…`, the way the
// README tells readers to: the file sits next to a gen/ directory. Each is
// written to <name>.ts in a fresh directory under dist/ (inside the
// repository, so node_modules resolve), next to a copy of gen/, type-checked
// and compiled by the project's tsc with a tsconfig that extends the
// project's strict tsconfig.json (plus lib DOM and no Node types for the
// browser example), then its JavaScript is run by this Node with cwd =
// repository root. (Compiled rather than run with Node's type stripping:
// gen/ imports `./x_pb.js`, which exists only once compiled.) The browser
// example gets a `location` (the link being redeemed, and an assign() that
// prints where it would go), a `history` and a `document` whose one button
// is clicked once the page has registered its handler — first by a script
// (an untrusted click, which must redeem nothing), then by the person (a
// trusted one) — from a preload.
//
// The jose example (a relying backend checking an assertion) reads the
// assertion from ASSERTION, as the README says. The test gives it a real one:
// it issues a magic link on this server, redeems it with VerifyLink, and puts
// the answer's `assertion` in ASSERTION — what a reader does by hand. It then
// runs the example again with that assertion's signature altered, which must
// be refused.
//
// Two tables are checked against the code too: Configuration against
// CONFIG_VARIABLES, Metrics against the authlink_* metrics the server exposes.

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..", "..");
const readme = readFileSync(join(repo, "README.md"), "utf8");
const parsed = parseMarkdownExamples(readme);

const README_ADDRESS = "127.0.0.1:8080";
const README_METRICS_ADDRESS = "127.0.0.1:9464";
/** The page origin the README's start command allows (AUTHLINK_CORS_ORIGINS). */
const README_CORS_ORIGIN = "http://localhost:5173";
const RUN_TIMEOUT_MS = 60_000;

// ---- the server ------------------------------------------------------------

interface Authlink {
  readonly child: ChildProcess;
  readonly url: string;
  /** host:port of the RPC port and of the metrics listener. */
  readonly address: string;
  readonly metricsAddress: string;
  readonly key: string;
  readonly stdout: () => string;
  readonly exit: Promise<number | null>;
}

async function startAuthlinkProcess(): Promise<Authlink> {
  const child = spawn(process.execPath, [join(repo, "dist", "src", "main.js")], {
    env: {
      PATH: process.env.PATH ?? "",
      AUTHLINK_ADDR: "127.0.0.1:0",
      AUTHLINK_METRICS_ADDR: "127.0.0.1:0",
      AUTHLINK_CORS_ORIGINS: README_CORS_ORIGIN,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && child.exitCode === null) {
    const line = out.split("\n").find((l) => l.includes('"authlink listening"'));
    const key = /authorization: Bearer (\S+)/.exec(err)?.[1];
    if (line && key) {
      const { url, metrics } = JSON.parse(line) as { url: string; metrics?: string };
      assert.ok(metrics, "the metrics listener runs");
      return {
        child,
        url,
        address: new URL(url).host,
        metricsAddress: new URL(metrics).host,
        key,
        stdout: () => out,
        exit,
      };
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  child.kill("SIGKILL");
  throw new Error(`authlink did not start:\n${out}\n${err}`);
}

// ---- running things ----------------------------------------------------------

interface Ran {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: repo, env, stdio: ["ignore", "pipe", "pipe"], timeout: RUN_TIMEOUT_MS });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code: signal ? null : code, stdout, stderr: signal ? `${stderr}\n(killed by ${signal})` : stderr }));
  });
}

/** The environment examples run in: no AUTHLINK_* (nor node:test's) variables, node_modules/.bin first, KEY. */
function exampleEnv(key: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("AUTHLINK_") && name !== "NODE_TEST_CONTEXT") env[name] = value;
  }
  env.PATH = `${join(repo, "node_modules", ".bin")}:${process.env.PATH ?? ""}`;
  return { ...env, KEY: key, ...extra };
}

// ---- TypeScript examples -----------------------------------------------------

interface Compiled {
  readonly ok: boolean;
  readonly diagnostics: string;
  /** The compiled example. */
  readonly js: string;
}

const BROWSER_EXAMPLES = new Set(["connect-web-verify"]);

/** Type-checks and compiles one example next to a copy of gen/ in `workDir`. */
async function compileExample(workDir: string, name: string, source: string): Promise<Compiled> {
  const browser = BROWSER_EXAMPLES.has(name);
  await writeFile(join(workDir, `${name}.ts`), source);
  const tsconfig = join(workDir, `tsconfig.${name}.json`);
  await writeFile(
    tsconfig,
    JSON.stringify(
      {
        extends: relative(workDir, join(repo, "tsconfig.json")),
        compilerOptions: {
          rootDir: ".",
          outDir: `out/${name}`,
          incremental: false,
          sourceMap: false,
          noEmitOnError: true,
          ...(browser ? { lib: ["ES2023", "DOM"], types: [] } : {}),
        },
        include: [],
        files: [`${name}.ts`],
      },
      null,
      2,
    ),
  );
  const tsc = join(repo, "node_modules", "typescript", "bin", "tsc");
  const result = await run(process.execPath, [tsc, "-p", tsconfig, "--pretty", "false"], process.env);
  return { ok: result.code === 0, diagnostics: result.stdout + result.stderr, js: join(workDir, "out", name, `${name}.js`) };
}

// ---- what each example must do -----------------------------------------------

interface Expectation {
  /** Default: exit code 0. */
  readonly fails?: boolean;
  readonly stdout?: readonly RegExp[];
  readonly stderr?: readonly RegExp[];
  readonly stderrNot?: readonly RegExp[];
  /** Which stream the README's output block shows (default stdout). */
  readonly outputOn?: "stdout" | "stderr";
  /** Extra environment for the run (prepared against the server). */
  readonly prepare?: () => Promise<Record<string, string>>;
  /** Checks after the run; `again` runs the example once more with extra environment. */
  readonly check?: (ran: Ran, again: (env: Record<string, string>) => Promise<Ran>) => Promise<void> | void;
}

function expectations(server: Authlink): Record<string, Expectation> {
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const link = (type: string) => new RegExp(`^${escape(server.url)}/verify#token=[A-Za-z0-9_-]{43}&type=${type}`, "m");
  /** The token in an action link's fragment. */
  const tokenOf = (actionLink: string) => new URLSearchParams(new URL(actionLink).hash.slice(1)).get("token") ?? "";
  /** Assertions must verify against the server's JWKS, with the server's URL as issuer and audience. */
  const jwks = createRemoteJWKSet(new URL(`${server.url}/.well-known/jwks.json`));
  const verifyAssertion = (assertion: string) => jwtVerify(assertion, jwks, { issuer: server.url, audience: server.url });
  /** The link the browser example redeems, and the assertion the jose example checks. */
  const webLink = { token: "" };
  const redeemed = { assertion: "" };
  /** The invite the links-reissue example resends, which links-revoke revokes. */
  const resent = { token: "" };
  return {
    "buf-curl-list-methods": {
      stdout: [
        /^authlink\.v1\.AdminAuthService\/GenerateLink$/m,
        /^authlink\.v1\.AdminAuthService\/PreviewLink$/m,
        /^authlink\.v1\.AdminAuthService\/VerifyLink$/m,
      ],
    },
    "buf-curl-generate": {
      // The default public URL follows the listen address; the token is in the fragment.
      stdout: [new RegExp(`"actionLink": "${escape(server.url)}/verify#token=[A-Za-z0-9_-]{43}&type=magiclink"`), /"user": \{/, /"email": "ann@example.com"/],
    },
    "buf-curl-verify": {
      stdout: [/"emailConfirmedAt": "/, /"email": "ann@example.com"/, /"assertion": "eyJ[\w-]+\.[\w-]+\.[\w-]+"/, /"assertionExpiresAt": "/],
      async check(ran) {
        // The assertion it printed is a real one for ann.
        const { assertion } = JSON.parse(ran.stdout) as { assertion: string };
        const { payload } = await verifyAssertion(assertion);
        assert.equal(payload.email, "ann@example.com");
        assert.deepEqual(payload.amr, ["magiclink"]);
      },
    },
    "buf-curl-preview": {
      stdout: [/"state": "LINK_STATE_REPLACED"/, /"maskedEmail": "a\*\*\*@example\.com"/, /"stateChangedAt": "/],
    },
    "buf-curl-verify-error": {
      fails: true,
      outputOn: "stderr",
      stderr: [/"code": "permission_denied"/, /"reason": "link_invalid_or_expired"/],
    },
    "buf-curl-create-user": {
      stdout: [/"email": "max@example.com"/, /"hasPassword": true/, /"plan": "pro"/],
      stderrNot: [/argon2/],
      async check(ran) {
        assert.doesNotMatch(ran.stdout, /argon2|correct horse/, "no password or hash in the answer");
      },
    },
    "buf-curl-update-user": {
      stdout: [/"email": "max.new@example.com"/, /"revokedLinks": 1/, /"plan": "team"/],
      async check(ran) {
        assert.doesNotMatch(ran.stdout, /"beta"/, "a key given as null is removed");
      },
    },
    "buf-curl-invite-user": {
      stdout: [new RegExp(`"actionLink": "${escape(server.url)}/verify#token=[A-Za-z0-9_-]{43}&type=invite"`), /"verificationType": "LINK_TYPE_INVITE"/, /"invitedAt": "/],
    },
    "buf-curl-delete-user": { stdout: [/"revokedLinks": 1/] },
    "buf-curl-list-audit": {
      // ann's events so far, newest first: two per page, and a token for the next.
      stdout: [/"method": "(GenerateLink|VerifyLink|PreviewLink)"/, /"email": "ann@example.com"/, /"id": "[0-9a-f]{12}-[0-9a-f]{16}"/, /"nextPageToken": "[\w-]+\.[\w-]+"/],
    },
    "curl-signup": { stdout: [new RegExp(`"actionLink":"${escape(server.url)}/verify#token=[A-Za-z0-9_-]{43}&type=signup"`), /"email":"cat@example.com"/] },
    "grpc-js-generate": {
      stdout: [new RegExp(`${link("invite").source} \\d{6}$`, "m")],
      stderrNot: [/not found in any of the include paths/],
    },
    "connect-node-generate": { stdout: [new RegExp(`${link("recovery").source}$`, "m")] },
    "connect-node-protocols": {
      stdout: [/^connect PermissionDenied link_invalid_or_expired$/m, /^grpcWeb PermissionDenied link_invalid_or_expired$/m],
    },
    "verify-page-headers": {
      stdout: [/^content-security-policy: default-src 'none'; script-src 'self'; /im, /^referrer-policy: no-referrer\r?$/im, /^cache-control: no-store\r?$/im],
    },
    "cors-preflight": {
      stdout: [
        new RegExp(`^PreviewLink 204 ${escape(README_CORS_ORIGIN)}$`, "m"),
        new RegExp(`^VerifyLink 204 ${escape(README_CORS_ORIGIN)}$`, "m"),
        /^GenerateLink 405 ?$/m,
      ],
    },
    "connect-web-verify": {
      async prepare() {
        const client = connectClient(server.url, { key: server.key });
        const generated = await client.generateLink({ type: LinkType.MAGICLINK, email: "dee@example.com" });
        webLink.token = tokenOf(generated.actionLink);
        assert.match(webLink.token, /^[A-Za-z0-9_-]{43}$/);
        return { README_EXAMPLE_LOCATION: generated.actionLink };
      },
      stdout: [
        // The token is taken out of the address (and so out of the history).
        /^history\.replaceState\(\/verify\)$/m,
        new RegExp(`^location\\.assign\\(${escape(server.url)}/#authlink_assertion=eyJ[\\w-]+\\.[\\w-]+\\.[\\w-]+\\)$`, "m"),
      ],
      async check(ran) {
        // What the page hands on is an assertion the relying app can verify.
        const assertion = /#authlink_assertion=([\w.-]+)\)/.exec(ran.stdout)?.[1] ?? "";
        const { payload } = await verifyAssertion(assertion);
        assert.equal(payload.email, "dee@example.com");
        // The page redeemed the link: it is used now.
        const again = await rejection(
          connectClient(server.url).verifyLink({
            type: LinkType.MAGICLINK,
            credential: { case: "token", value: webLink.token },
          }),
        );
        assert.equal(reasonOf(again), "link_invalid_or_expired");
        const preview = await connectClient(server.url).previewLink({ type: LinkType.MAGICLINK, token: webLink.token });
        assert.equal(preview.state, LinkState.USED);
      },
    },
    "links-list": {
      stdout: [/"type": "LINK_TYPE_INVITE"/, /"state": "LINK_STATE_VALID"/, /"email": "eve@example.com"/, /"issuedBy": "key:[0-9a-f]{12}"/],
      stderrNot: [/./],
    },
    "links-reissue": {
      stdout: [new RegExp(`"actionLink": "${escape(server.url)}/verify#token=[A-Za-z0-9_-]{43}&type=invite"`), /"replacedHashedToken": "[0-9a-f]{64}"/],
      async check(ran) {
        // The resent invite works (and the revocation below ends it).
        const { link } = JSON.parse(ran.stdout) as { link: { actionLink: string } };
        resent.token = tokenOf(link.actionLink);
        const preview = await connectClient(server.url).previewLink({ type: LinkType.INVITE, token: resent.token });
        assert.equal(preview.state, LinkState.VALID);
      },
    },
    "links-revoke": {
      stdout: [/"state": "LINK_STATE_REVOKED"/, /"email": "eve@example.com"/],
      async check() {
        // What the verify page now tells the holder of the resent invite.
        const preview = await connectClient(server.url).previewLink({ type: LinkType.INVITE, token: resent.token });
        assert.equal(preview.state, LinkState.REVOKED);
      },
    },
    "jose-verify-assertion": {
      async prepare() {
        // A real redemption on this server: what a reader does with the buf curl example.
        const generated = await connectClient(server.url, { key: server.key }).generateLink({
          type: LinkType.MAGICLINK,
          email: "ann@example.com",
        });
        const verified = await connectClient(server.url).verifyLink({
          type: LinkType.MAGICLINK,
          credential: { case: "token", value: tokenOf(generated.actionLink) },
        });
        assert.match(verified.assertion, /^eyJ/);
        redeemed.assertion = verified.assertion;
        return { ASSERTION: verified.assertion };
      },
      stdout: [/^accepted [0-9a-f-]{36} ann@example\.com magiclink$/m, /^refused: assertion already used$/m],
      async check(_ran, again) {
        // The example checks the signature: the same assertion with another signature is refused.
        const [header, payload, signature = ""] = redeemed.assertion.split(".");
        const flipped = `${signature[0] === "A" ? "B" : "A"}${signature.slice(1)}`;
        const forged = await again({ ASSERTION: `${header}.${payload}.${flipped}` });
        assert.notEqual(forged.code, 0, `a forged assertion was accepted:\n${forged.stdout}`);
        assert.match(forged.stderr, /JWSSignatureVerificationFailed|signature verification failed/);
        assert.doesNotMatch(forged.stdout, /^accepted/m);
      },
    },
    jwks: {
      async check(ran) {
        const set = JSON.parse(ran.stdout) as { keys: { kid?: string; d?: string }[] };
        assert.equal(set.keys.length, 1);
        assert.equal(set.keys[0]?.d, undefined, "no private member");
        // The key that signed the assertions above.
        const { protectedHeader } = await verifyAssertion(redeemed.assertion);
        assert.equal(protectedHeader.kid, set.keys[0]?.kid);
      },
    },
    "health-grpc": { stdout: [/"status": "SERVING"/] },
    "health-http": { stdout: [/^ok$/m, /^ready$/m] },
    "metrics-scrape": { stdout: [/^authlink_links_issued_total\{type="magiclink"\} \d+$/m] },
    "request-id": {
      stdout: [/^x-request-id: ticket-4711\r?$/im],
      check() {
        // The id the caller sent is the requestId of the call's log line and of its audit event.
        const lines = server
          .stdout()
          .split("\n")
          .filter((line) => line.includes('"ticket-4711"'))
          .map((line) => JSON.parse(line) as { requestId?: string; msg?: string; audit?: { requestId?: string; method?: string } });
        assert.ok(
          lines.some((l) => l.msg === "call" && l.requestId === "ticket-4711" && l.audit?.requestId === "ticket-4711" && l.audit.method === "VerifyLink"),
          `a call log line with the audit event of request ticket-4711; got ${JSON.stringify(lines)}`,
        );
      },
    },
  };
}

// ---- the tests -----------------------------------------------------------------

test("README.md: every sh/ts block is marked runnable or not-run, and the markers are well formed", () => {
  assert.deepEqual(parsed.problems, []);
  assert.ok(parsed.examples.length > 0, "the README has runnable examples");
  for (const block of parsed.notRun) assert.ok(block.reason.length > 0);
});

test("README.md: the Configuration table lists every variable authlink reads, and only those", () => {
  const section = sectionOf("## Configuration");
  const listed = new Set<string>();
  for (const row of section.split("\n").filter((line) => line.startsWith("| `AUTHLINK_"))) {
    const firstCell = row.split("|")[1] ?? "";
    for (const name of firstCell.match(/AUTHLINK_[A-Z0-9_]+/g) ?? []) listed.add(name);
  }
  assert.deepEqual([...listed].sort(), [...CONFIG_VARIABLES].sort());
});

describe("README.md examples, run in order against a real authlink", () => {
  let server: Authlink;
  let workDir: string;
  let expected: Record<string, Expectation>;
  const compiled = new Map<string, Promise<Compiled>>();

  before(async () => {
    server = await startAuthlinkProcess();
    expected = expectations(server);
    workDir = await mkdtemp(join(repo, "dist", "readme-examples-"));
    await cp(join(repo, "gen"), join(workDir, "gen"), { recursive: true });
    await writeFile(
      join(workDir, "browser-location.mjs"),
      [
        "// The browser around the connect-web example: the location (the link being",
        "// redeemed), the history, and a document with one button.",
        "const url = new URL(process.env.README_EXAMPLE_LOCATION);",
        "globalThis.location = Object.assign(url, { assign: (target) => console.log(`location.assign(${target})`) });",
        "globalThis.history = {",
        "  replaceState(_state, _title, path) {",
        "    url.href = new URL(path, url).href;",
        "    console.log(`history.replaceState(${path})`);",
        "  },",
        "};",
        "// Once the page has registered its click handler, the button is clicked: first",
        "// by a script (untrusted: it must redeem nothing), then by the person.",
        "const button = {",
        "  disabled: false,",
        "  addEventListener(type, listener) {",
        "    if (type !== 'click') return;",
        "    setTimeout(async () => {",
        "      if (button.disabled) return;",
        "      await listener({ isTrusted: false });",
        "      await listener({ isTrusted: true });",
        "    }, 0);",
        "  },",
        "};",
        "globalThis.document = { querySelector: (selector) => (selector === 'button' ? button : null) };",
        "",
      ].join("\n"),
    );
    // Every TypeScript example compiles in parallel while the shell examples run.
    for (const example of parsed.examples) {
      if (example.kind === "typescript") compiled.set(example.name, compileExample(workDir, example.name, localize(example)));
    }
  });

  after(async () => {
    if (server) {
      server.child.kill("SIGTERM");
      assert.equal(await server.exit, 0, "authlink stops cleanly");
    }
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** The example's code with the README's addresses replaced by the server's. */
  function localize(example: RunnableExample): string {
    const code = example.code.replaceAll(README_ADDRESS, server.address).replaceAll(README_METRICS_ADDRESS, server.metricsAddress);
    // Any other 8080 or 9464 would reach whatever else listens there.
    assert.doesNotMatch(code, /:(8080|9464)\b/, `${example.name}: uses an address other than ${README_ADDRESS} or ${README_METRICS_ADDRESS}`);
    return code;
  }

  test("every runnable example has an expectation here, and every expectation an example", () => {
    const inReadme = parsed.examples.map((e) => e.name).sort();
    assert.deepEqual(inReadme, Object.keys(expected).sort());
  });

  for (const example of parsed.examples) {
    test(`${example.name} (README.md line ${example.line}, ${example.kind})`, { timeout: 2 * RUN_TIMEOUT_MS }, async () => {
      const expectation = expected[example.name];
      assert.ok(expectation, `test/docs/readme-examples.test.ts has no expectation for example ${example.name}`);
      const env = exampleEnv(server.key, (await expectation.prepare?.()) ?? {});

      let runIt: (runEnv: NodeJS.ProcessEnv) => Promise<Ran>;
      if (example.kind === "shell") {
        const script = join(workDir, `${example.name}.sh`);
        await writeFile(script, localize(example));
        runIt = (runEnv) => run("bash", ["-euo", "pipefail", script], runEnv);
      } else {
        const result = await compiled.get(example.name);
        assert.ok(result, "compiled");
        assert.ok(result.ok, `${example.name} does not type-check under the strict tsconfig:\n${result.diagnostics}`);
        const preload = BROWSER_EXAMPLES.has(example.name)
          ? ["--import", pathToFileURL(join(workDir, "browser-location.mjs")).href]
          : [];
        runIt = (runEnv) => run(process.execPath, [...preload, result.js], runEnv);
      }
      const ran = await runIt(env);
      if (example.kind === "typescript") assert.equal(ran.stderr, "", `${example.name} wrote to stderr:\n${ran.stderr}`);

      const shown = `exit code ${ran.code}\n--- stdout\n${ran.stdout}--- stderr\n${ran.stderr}`;
      if (expectation.fails) assert.notEqual(ran.code, 0, `${example.name} should fail:\n${shown}`);
      else assert.equal(ran.code, 0, `${example.name} failed:\n${shown}`);
      for (const pattern of expectation.stdout ?? []) assert.match(ran.stdout, pattern, shown);
      for (const pattern of expectation.stderr ?? []) assert.match(ran.stderr, pattern, shown);
      for (const pattern of expectation.stderrNot ?? []) assert.doesNotMatch(ran.stderr, pattern, shown);

      const sample = parsed.outputs.get(example.name);
      if (sample) {
        const printed = expectation.outputOn === "stderr" ? ran.stderr : ran.stdout;
        const sampleText = sample.code.replaceAll(README_ADDRESS, server.address).replaceAll(README_METRICS_ADDRESS, server.metricsAddress);
        const mismatches =
          sample.lang === "json"
            ? jsonSampleMismatches(JSON.parse(sampleText), JSON.parse(printed))
            : textSampleMismatches(sampleText, printed);
        assert.deepEqual(mismatches, [], `the README's output of ${example.name} (line ${sample.line}) differs:\n${shown}`);
      }
      await expectation.check?.(ran, (extra) => runIt({ ...env, ...extra }));
    });
  }

  test("the Metrics table lists every authlink_* metric the server exposes, and only those", async () => {
    const response = await fetch(`http://${server.metricsAddress}/metrics`);
    assert.equal(response.status, 200);
    const exposed = new Set([...(await response.text()).matchAll(/^# TYPE (authlink_\w+) /gm)].map((m) => m[1]));
    const section = sectionOf("### Metrics");
    const listed = new Set([...section.matchAll(/^\| `(authlink_\w+)` \|/gm)].map((m) => m[1]));
    assert.deepEqual([...listed].sort(), [...exposed].sort());
  });
});

/** The text of a README section, from its heading to the next heading of the same or a higher level. */
function sectionOf(heading: string): string {
  const start = readme.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README.md has a "${heading}" section`);
  const level = heading.indexOf(" ");
  const rest = readme.slice(start + heading.length + 2);
  const end = rest.search(new RegExp(`^#{1,${level}} `, "m"));
  return end < 0 ? rest : rest.slice(0, end);
}
