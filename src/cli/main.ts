#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { ConnectError } from "@connectrpc/connect";
import { Command, CommanderError, Option } from "commander";
import { registerAuditCommands } from "./audit-commands.js";
import { registerAuthCommands } from "./auth-commands.js";
import { registerBulkCommand } from "./bulk-command.js";
import { DEFAULT_URL, PROTOCOLS } from "./connection.js";
import { createContext, type CliContext, type CliIo } from "./context.js";
import { callFailureOf, describeFailure, EXIT_CALL_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError } from "./failure.js";
import { registerHealthCommand } from "./health-command.js";
import { registerLinksCommands } from "./links-commands.js";
import { OUTPUT_FORMATS } from "./output.js";
import { registerUsersCommands } from "./users-commands.js";

// authlink, the admin CLI: the package's `bin`. Parses the command line,
// runs one command over the generated Connect clients, and turns its outcome
// into an exit code: 0 ok, 1 a call failed, 2 usage.

const version = (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version;

function buildProgram(io: CliIo, signal: AbortSignal): { program: Command; ctx: CliContext } {
  const program = new Command("authlink");
  const ctx = createContext(program, io, signal);
  program
    .description("Administer authlink: issue, inspect and revoke links, manage users, read the audit trail, generate links in bulk.")
    .version(version)
    .addOption(new Option("--url <url>", "the server").env("AUTHLINK_CLI_URL").default(DEFAULT_URL))
    .addOption(new Option("--protocol <name>", "wire protocol").choices(PROTOCOLS).env("AUTHLINK_CLI_PROTOCOL").default("grpc"))
    .addOption(new Option("--http-version <version>", "HTTP version for --protocol connect (default 1.1)").choices(["1.1", "2"]))
    .addOption(
      new Option("--key-file <path>", "file holding the service key (else AUTHLINK_CLI_SERVICE_KEY)").env("AUTHLINK_CLI_KEY_FILE"),
    )
    .option("--cert <pem>", "mTLS: client certificate (PEM; needs an https URL)")
    .option("--key <pem>", "mTLS: the client certificate's private key (PEM) — not the service key")
    .option("--ca <pem>", "CA bundle to trust for the server's certificate (PEM)")
    .option("--timeout <duration>", "deadline per call, e.g. 10s, 2m; 0 = none (default 30s; bulk: 5m per chunk; audit watch: none)")
    .addOption(new Option("-o, --output <format>", "table (default on a terminal), json (default otherwise) or ndjson").choices(OUTPUT_FORMATS).env("AUTHLINK_CLI_OUTPUT"))
    .addHelpText(
      "after",
      [
        "",
        "Environment: AUTHLINK_CLI_URL, AUTHLINK_CLI_PROTOCOL, AUTHLINK_CLI_SERVICE_KEY (the service key),",
        "AUTHLINK_CLI_KEY_FILE, AUTHLINK_CLI_OUTPUT. There is no flag for the key itself: it would land in",
        "your shell history.",
        "Exit codes: 0 ok, 1 a call failed (or a bulk row did), 2 usage (bad flags, unreadable file, bad CSV header).",
      ].join("\n"),
    )
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  registerAuthCommands(program, ctx);
  registerLinksCommands(program, ctx);
  registerUsersCommands(program, ctx);
  registerAuditCommands(program, ctx);
  registerBulkCommand(program, ctx);
  registerHealthCommand(program, ctx);
  for (const command of program.commands) {
    command.exitOverride();
    for (const sub of command.commands) sub.exitOverride();
  }
  return { program, ctx };
}

/** Runs the CLI on `argv` (as process.argv) and answers the exit code. */
export async function runCli(argv: readonly string[], io: CliIo, signal: AbortSignal): Promise<number> {
  const { program, ctx } = buildProgram(io, signal);
  try {
    await program.parseAsync(argv as string[]);
    return ctx.exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_USAGE;
    if (error instanceof UsageError) {
      io.stderr.write(`authlink: ${error.message}\n`);
      return EXIT_USAGE;
    }
    if (signal.aborted) {
      io.stderr.write("authlink: interrupted\n");
      return EXIT_INTERRUPTED;
    }
    if (error instanceof ConnectError || (error instanceof Error && error.name === "ConnectError")) {
      ctx.printer().failure(callFailureOf(error), describeFailure);
      return EXIT_CALL_FAILED;
    }
    io.stderr.write(`authlink: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_CALL_FAILED;
  }
}

async function main(): Promise<void> {
  const controller = new AbortController();
  let interrupts = 0;
  const interrupt = (signal: NodeJS.Signals) => {
    // The first Ctrl-C lets the command stop cleanly (a bulk run finishes
    // writing what it has); a second one leaves at once.
    if (++interrupts > 1) process.exit(EXIT_INTERRUPTED);
    controller.abort(new Error(`interrupted (${signal})`));
  };
  process.on("SIGINT", interrupt);
  process.on("SIGTERM", interrupt);
  const io: CliIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env };
  const code = await runCli(process.argv, io, controller.signal);
  // Leave once stdout has drained, without waiting for idle HTTP/2 sessions to close.
  process.stdout.write("", () => process.exit(code));
}

await main();
