import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { openConnection, type Connection, type ConnectionFlags } from "./connection.js";
import { UsageError } from "./failure.js";
import { createPrinter, outputFormatOf, type Printer } from "./output.js";

// What every command runs with: the process's streams and environment, the
// connection and printer made from the global flags (once, when a command
// first needs them), and a signal that Ctrl-C aborts.

export interface CliIo {
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  readonly env: NodeJS.ProcessEnv;
}

export interface CliContext {
  readonly io: CliIo;
  /** Aborted by Ctrl-C (SIGINT) or SIGTERM. */
  readonly signal: AbortSignal;
  connection(): Connection;
  printer(): Printer;
  /** A file's text, or a UsageError naming the flag. */
  readText(path: string, what: string): string;
  /** Set by a command that finished but must not exit 0 (e.g. a bulk run with failed rows). */
  exitCode: number;
}

export interface GlobalFlags extends ConnectionFlags {
  readonly output?: string;
}

export function createContext(program: Command, io: CliIo, signal: AbortSignal): CliContext {
  let connection: Connection | undefined;
  let printer: Printer | undefined;
  const flags = () => program.opts<GlobalFlags>();
  return {
    io,
    signal,
    exitCode: 0,
    connection() {
      connection ??= openConnection(flags(), io.env, (line) => io.stderr.write(`${line}\n`));
      return connection;
    },
    printer() {
      printer ??= createPrinter(outputFormatOf(flags().output, io.stdout.isTTY === true), io);
      return printer;
    },
    readText(path, what) {
      try {
        return readFileSync(path, "utf8");
      } catch (error) {
        throw new UsageError(`${what}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
      }
    },
  };
}
