import { spawn } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { mergeResults, planBulkInput, readCsv, type CrmExport } from "./crm-mapping.js";

// A CRM / marketing export → `authlink bulk` → a file to import back:
//
//   AUTHLINK_CLI_URL=http://127.0.0.1:8080 AUTHLINK_CLI_SERVICE_KEY=… \
//   node dist/examples/crm-roundtrip/crm-roundtrip.js \
//     --crm examples/crm-roundtrip/sample-crm-export.csv --segment trial \
//     --type magiclink --out crm-import.csv
//
// 1. keeps the rows of --segment (all rows without it), one link per distinct address;
// 2. writes authlink bulk's input CSV (email, redirect_to, data) to --work-dir;
// 3. runs `authlink bulk` (the CLI reads the server and key from its
//    AUTHLINK_CLI_* environment, which this script passes on untouched);
// 4. merges its results (action_link, email_otp, hashed_token, expires_at,
//    error) into the CRM rows and writes --out.
// Interrupted? Run the same command with --resume: the CLI skips the rows it
// already wrote and issues no link twice.
//
// Exit code: 0 every row got a link, 1 some rows have an error, 2 usage.
// The output holds live sign-in links and codes: treat it as a secret and
// delete it once imported.

const USAGE = "usage: crm-roundtrip --crm EXPORT.csv --out IMPORT.csv [--type magiclink] [--segment NAME] [--redirect-to URL] [--work-dir DIR] [--resume] [--cli PATH]";

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      crm: { type: "string" },
      out: { type: "string" },
      type: { type: "string", default: "magiclink" },
      segment: { type: "string" },
      "redirect-to": { type: "string" },
      "work-dir": { type: "string", default: "crm-roundtrip.work" },
      resume: { type: "boolean", default: false },
      cli: { type: "string", default: "dist/src/cli/main.js" },
    },
  });
  if (!values.crm || !values.out) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const exported = readCsv(await readFile(values.crm, "utf8"));
  const crm: CrmExport = values.segment
    ? { columns: exported.columns, rows: exported.rows.filter((row) => row.segment === values.segment) }
    : exported;
  const plan = planBulkInput(crm, { metadataColumns: ["first_name", "last_name"], redirectTo: values["redirect-to"] });
  process.stderr.write(`crm-roundtrip: ${crm.rows.length} CRM rows, ${plan.addresses.length} distinct addresses\n`);

  const workDir = resolve(values["work-dir"]);
  await mkdir(workDir, { recursive: true, mode: 0o700 });
  const bulkInput = join(workDir, "bulk-input.csv");
  const bulkOutput = join(workDir, "bulk-output.csv");
  await writeFile(bulkInput, plan.input, { mode: 0o600 });

  const args = [values.cli, "bulk", bulkInput, "--out", bulkOutput, "--type", values.type, "--progress", "lines"];
  if (values.resume) args.push("--resume");
  const code = await new Promise<number>((done, fail) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "inherit", "inherit"] });
    child.once("error", fail);
    child.once("exit", (exitCode, signal) => done(exitCode ?? (signal ? 1 : 0)));
  });
  // 1 = some rows failed (their errors are in the results); anything else but 0 = no usable results.
  if (code !== 0 && code !== 1) {
    process.stderr.write(`crm-roundtrip: authlink bulk exited with ${code}; nothing merged\n`);
    return 2;
  }

  const merged = mergeResults(crm, plan, await readFile(bulkOutput, "utf8"));
  await writeFile(values.out, merged.output, { mode: 0o600 });
  process.stderr.write(`crm-roundtrip: ${merged.linked} rows linked, ${merged.failed} with an error; wrote ${values.out}\n`);
  return merged.failed === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`crm-roundtrip: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  },
);
