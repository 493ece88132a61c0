import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { installFerretDB, startFerretDB, type RunningFerretDB } from "./support/ferretdb.js";

// The whole suite: every *.test.js under dist/test, run by node's test runner
// (its summary lines — tests, pass, fail — are what CI reads).
//
// MongoDB: AUTHLINK_TEST_MONGODB_URI when set (any real MongoDB); otherwise a
// FerretDB started here (built with go on first use). If neither works the
// run fails: the MongoDB suite is never skipped.
//
// Arguments, if any, name the test files to run instead of all of them.

const testDir = dirname(fileURLToPath(import.meta.url));

/** Compiled tests whose TypeScript source still exists (dist/ may hold files of tests since moved or deleted). */
async function findTests(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  const sourceDir = join(dir, "..", "..", "test");
  return entries
    .filter((e) => e.isFile() && e.name.endsWith(".test.js"))
    .map((e) => join(e.parentPath, e.name))
    .filter((file) => existsSync(join(sourceDir, relative(dir, file)).replace(/\.js$/, ".ts")))
    .sort();
}

async function main(): Promise<number> {
  const files = process.argv.length > 2 ? process.argv.slice(2) : await findTests(testDir);
  let ferret: RunningFerretDB | undefined;
  let uri = process.env.AUTHLINK_TEST_MONGODB_URI;
  if (uri) {
    process.stderr.write("MongoDB suite: using AUTHLINK_TEST_MONGODB_URI\n");
  } else {
    const binary = await installFerretDB((line) => process.stderr.write(`${line}\n`));
    ferret = await startFerretDB(binary);
    uri = ferret.uri;
    process.stderr.write(`MongoDB suite: FerretDB started at ${uri}\n`);
  }
  try {
    process.stderr.write(`running ${files.length} test files: ${files.map((f) => relative(testDir, f)).join(" ")}\n`);
    return await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ["--test", "--test-reporter=spec", ...files], {
        stdio: "inherit",
        env: { ...process.env, AUTHLINK_TEST_MONGODB_URI: uri },
      });
      child.once("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
    });
  } finally {
    await ferret?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`test run failed before any test: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
