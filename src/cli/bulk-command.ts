import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { LinkAdminService } from "../../gen/authlink/v1/link_admin_service_pb.js";
import { readBulkInput, type InputRow } from "./bulk-input.js";
import { openResultFile, resultFormatOf, stdoutSink, type ResultRow, type ResultSink } from "./bulk-output.js";
import { runBulk, type RowOutcome, type SendableRow } from "./bulk-runner.js";
import type { CliContext } from "./context.js";
import { EXIT_CALL_FAILED, EXIT_INTERRUPTED, UsageError, type CallFailure } from "./failure.js";
import { createProgress, formatSeconds } from "./progress.js";
import { typeName } from "./table-views.js";
import { LINK_TYPE_CHOICES, isoOf, parseDuration, parseLinkType } from "./values.js";

// `authlink bulk`: a CSV of addresses in (bulk-input.ts), one link per row
// through BulkGenerateLinks (bulk-runner.ts), results out as they come
// (bulk-output.ts), progress on stderr (progress.ts). Resumable: --resume
// skips the rows the output file holds and sends the rest; a row the server
// had issued before (a crashed run that never wrote it) is never issued
// again — it is written with an error that says how to get a new link.

/** Default deadline of one BulkGenerateLinks call (a chunk of rows), unless --timeout. */
const DEFAULT_CHUNK_TIMEOUT_MS = 300_000;
/** The server's cap on rows per BulkGenerateLinks call. */
const MAX_CHUNK_SIZE = 1_000;

interface BulkFlags {
  readonly out?: string;
  readonly format?: string;
  readonly type?: string;
  readonly resume?: boolean;
  readonly concurrency: string;
  readonly chunkSize: string;
  readonly retries: string;
  readonly maxRetryWait: string;
  readonly keySalt?: string;
  readonly allowExtraColumns?: boolean;
  readonly progress: string;
  readonly progressInterval: string;
}

export function registerBulkCommand(program: Command, ctx: CliContext): void {
  program
    .command("bulk")
    .description("generate a link for every row of a CSV file (BulkGenerateLinks); results as CSV or NDJSON")
    .argument("<input.csv>", "header row, then one row per link: email, type, redirect_to, data, new_email, expires_in, idempotency_key (- reads stdin)")
    .option("--out <file>", "results file, appended as results come (default: stdout)")
    .option("--format <format>", "results format: csv or ndjson (default: by --out's extension, .ndjson/.jsonl, else csv)")
    .option("--type <type>", `type for rows without one (${LINK_TYPE_CHOICES.join(" | ")})`)
    .option("--resume", "continue an interrupted run: skip the rows --out already holds, send the rest")
    .option("--concurrency <n>", "calls in flight", "8")
    .option("--chunk-size <n>", `rows per call (at most ${MAX_CHUNK_SIZE})`, "100")
    .option("--retries <n>", "times a row refused for a while (rate limit, database down) is sent again", "5")
    .option("--max-retry-wait <duration>", "give a row up rather than wait longer than this to retry it", "60s")
    .option("--key-salt <text>", "mixed into derived idempotency keys: the same file with a new salt issues new links")
    .option("--allow-extra-columns", "ignore columns bulk does not know (else they are an error)")
    .option("--progress <mode>", "auto (a bar on a terminal, lines otherwise), bar, lines or off", "auto")
    .option("--progress-interval <duration>", "how often a progress line is printed when not on a terminal", "5s")
    .addHelpText(
      "after",
      [
        "",
        "Rows without an idempotency_key get one derived from their content (SHA-256 of the row as understood,",
        "with --key-salt): the same row sent twice, in this run or a later one while its link lives, is the same",
        "link. Exit code 0 when every row got its link, 1 when any row failed, 2 for a bad file or flags.",
        "",
        "Example:",
        "  authlink bulk invites.csv --type invite --out links.csv",
        "  authlink bulk invites.csv --type invite --out links.csv --resume   # after an interruption",
      ].join("\n"),
    )
    .action(async (input: string, flags: BulkFlags) => {
      const concurrency = positiveInteger(flags.concurrency, "--concurrency", 256);
      const chunkSize = positiveInteger(flags.chunkSize, "--chunk-size", MAX_CHUNK_SIZE);
      const retries = positiveInteger(flags.retries, "--retries", 100, 0);
      const maxRetryWaitMs = parseDuration(flags.maxRetryWait, "--max-retry-wait");
      const progressIntervalMs = parseDuration(flags.progressInterval, "--progress-interval");
      if (!["auto", "bar", "lines", "off"].includes(flags.progress)) throw new UsageError("--progress must be auto, bar, lines or off");
      const toStdout = flags.out === undefined || flags.out === "-";
      if (flags.resume && toStdout) throw new UsageError("--resume needs --out FILE (the results of the interrupted run)");
      const format = resultFormatOf(flags.format, toStdout ? undefined : flags.out);

      const text = input === "-" ? readFileSync(0, "utf8") : ctx.readText(input, "input");
      const rows = readBulkInput(text, input === "-" ? "stdin" : input, {
        defaultType: flags.type === undefined ? undefined : parseLinkType(flags.type),
        allowExtraColumns: flags.allowExtraColumns === true,
        keySalt: flags.keySalt,
      });
      const connection = ctx.connection();
      const opened = toStdout
        ? { sink: stdoutSink(ctx.io.stdout, format), done: new Set<string>(), repaired: false }
        : openResultFile(flags.out as string, format, flags.resume === true);
      const outName = toStdout ? "stdout" : (flags.out as string);
      if (opened.repaired) ctx.printer().note(`bulk: ${outName} ended in a torn line (a write cut short); dropped it, that row is sent again`);

      const todo = rows.filter((row) => !opened.done.has(row.idempotencyKey));
      const skipped = rows.length - todo.length;
      const mode = flags.progress === "auto" ? (ctx.io.stderr.isTTY ? "bar" : "lines") : (flags.progress as "bar" | "lines" | "off");
      const progress = createProgress({ stream: ctx.io.stderr, total: rows.length, alreadyDone: skipped, mode, intervalMs: progressIntervalMs });
      const counts = { issued: 0, replayed: 0, failed: 0 };
      const started = Date.now();
      const record = (sink: ResultSink, row: InputRow, outcome: RowOutcome) => {
        const result = resultRowOf(row, outcome);
        sink.write(result);
        if (outcome.kind === "error") counts.failed++;
        else if (outcome.replayed) counts.replayed++;
        else counts.issued++;
        progress.row(result.status !== "OK");
      };

      let stopped = false;
      try {
        for (const row of todo) {
          if (row.request === undefined) {
            record(opened.sink, row, { kind: "error", error: clientProblem(row.problem ?? "invalid row") });
          }
        }
        await runBulk(
          todo.filter((row): row is SendableRow => row.request !== undefined),
          {
            client: connection.client(LinkAdminService),
            concurrency,
            chunkSize,
            callOptions: () => connection.callOptions(DEFAULT_CHUNK_TIMEOUT_MS),
            retries,
            maxRetryWaitMs,
            stop: ctx.signal,
            onResult: (row, outcome) => record(opened.sink, row, outcome),
          },
        );
        stopped = ctx.signal.aborted;
      } finally {
        opened.sink.close();
        const seconds = (Date.now() - started) / 1000;
        const answered = counts.issued + counts.replayed + counts.failed;
        const parts = [
          `${counts.issued} issued`,
          counts.replayed > 0 ? `${counts.replayed} already issued before (no secrets: see their error)` : "",
          `${counts.failed} failed`,
          skipped > 0 ? `${skipped} skipped (already in ${outName})` : "",
        ].filter((part) => part !== "");
        progress.finish(
          `bulk: ${answered} of ${todo.length} rows in ${formatSeconds(seconds)}` +
            `${seconds > 0 ? ` (${(answered / seconds).toFixed(1)} rows/s)` : ""}: ${parts.join(", ")}; results in ${outName}` +
            (ctx.signal.aborted ? `\nbulk: interrupted; continue with the same command and --resume` : ""),
        );
      }
      if (stopped) ctx.exitCode = EXIT_INTERRUPTED;
      else if (counts.failed + counts.replayed > 0) ctx.exitCode = EXIT_CALL_FAILED;
    });
}

function resultRowOf(row: InputRow, outcome: RowOutcome): ResultRow {
  const base = {
    row: row.row,
    email: row.email,
    type: row.type,
    action_link: "",
    email_otp: "",
    hashed_token: "",
    expires_at: "",
    status: "OK",
    error: "",
    replayed: false,
    idempotency_key: row.idempotencyKey,
    current_email_action_link: "",
    current_email_otp: "",
    current_email_hashed_token: "",
  };
  if (outcome.kind === "error") {
    const e = outcome.error;
    // The server's message often says the violations already; name each field once.
    const violations = e.fieldViolations
      .filter((v) => !e.message.includes(v.description))
      .map((v) => `${v.field}: ${v.description}`)
      .join("; ");
    return { ...base, status: e.status, error: [e.reason, e.message, violations].filter(Boolean).join(": ") };
  }
  const link = outcome.link;
  const issued = {
    ...base,
    type: link.verificationType ? typeName(link.verificationType) : row.type,
    hashed_token: link.hashedToken,
    expires_at: isoOf(link.expiresAt),
  };
  if (outcome.replayed) {
    return {
      ...issued,
      status: "ALREADY_EXISTS",
      replayed: true,
      error: `already issued: secrets were shown once; run \`authlink links reissue ${link.hashedToken}\` for a new link`,
    };
  }
  return {
    ...issued,
    action_link: link.actionLink,
    email_otp: link.emailOtp,
    current_email_action_link: link.currentEmailConfirmation?.actionLink ?? "",
    current_email_otp: link.currentEmailConfirmation?.emailOtp ?? "",
    current_email_hashed_token: link.currentEmailConfirmation?.hashedToken ?? "",
  };
}

function clientProblem(problem: string): CallFailure {
  return { status: "INVALID_ARGUMENT", reason: "invalid_row", message: `${problem} (checked by the CLI; not sent)`, fieldViolations: [], retryDelayMs: undefined };
}

function positiveInteger(text: string, flag: string, max: number, min = 1): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) throw new UsageError(`${flag} must be a whole number from ${min} to ${max}`);
  return value;
}
