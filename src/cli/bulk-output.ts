import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import { parse } from "csv-parse/sync";
import { stringify } from "csv-stringify/sync";
import { UsageError } from "./failure.js";

// The output of `authlink bulk`: one line per input row, CSV (with a header)
// or NDJSON, appended as each result arrives with one write(2) per line, so
// a crash or kill of the CLI loses nothing already written (and the file is
// fdatasync'ed every second and at the end, against the machine crashing).
// `--resume` reads it back: the idempotency keys it holds are the rows done.

export const RESULT_COLUMNS = [
  "row",
  "email",
  "type",
  "action_link",
  "email_otp",
  "hashed_token",
  "expires_at",
  "status",
  "error",
  "replayed",
  "idempotency_key",
  "current_email_action_link",
  "current_email_otp",
  "current_email_hashed_token",
] as const;

export type ResultRow = { readonly [K in (typeof RESULT_COLUMNS)[number]]: K extends "row" ? number : K extends "replayed" ? boolean : string };

export const RESULT_FORMATS = ["csv", "ndjson"] as const;
export type ResultFormat = (typeof RESULT_FORMATS)[number];

/** The format by flag, else by the file's extension (.ndjson, .jsonl: NDJSON), else CSV. */
export function resultFormatOf(flag: string | undefined, path: string | undefined): ResultFormat {
  if (flag !== undefined) {
    if (!(RESULT_FORMATS as readonly string[]).includes(flag)) throw new UsageError(`--format must be one of ${RESULT_FORMATS.join(", ")}`);
    return flag as ResultFormat;
  }
  return path !== undefined && /\.(ndjson|jsonl)$/i.test(path) ? "ndjson" : "csv";
}

export interface ResultSink {
  write(row: ResultRow): void;
  close(): void;
}

/** One line of output; newlines inside values become spaces, so every row is exactly one line. */
export function formatResult(row: ResultRow, format: ResultFormat): string {
  const flat = (value: string) => value.replace(/[\r\n]+/g, " ");
  if (format === "ndjson") {
    const clean = Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v === "string" ? flat(v) : v]));
    return `${JSON.stringify(clean)}\n`;
  }
  return stringify([RESULT_COLUMNS.map((column) => { const v = row[column]; return typeof v === "string" ? flat(v) : String(v); })]);
}

function headerOf(format: ResultFormat): string {
  return format === "csv" ? stringify([[...RESULT_COLUMNS]]) : "";
}

/** Results to stdout (no resume possible). */
export function stdoutSink(stdout: NodeJS.WritableStream, format: ResultFormat): ResultSink {
  const header = headerOf(format);
  if (header) stdout.write(header);
  return { write: (row) => void stdout.write(formatResult(row, format)), close: () => undefined };
}

export interface OpenedResults {
  readonly sink: ResultSink;
  /** Idempotency keys of the rows the file already holds (resume). */
  readonly done: ReadonlySet<string>;
  /** Whether a torn last line (a write cut short) was dropped. */
  readonly repaired: boolean;
}

/**
 * Opens the output file: a new one (refusing to overwrite one that holds
 * results: they may be the only copy of secrets), or with `resume` an
 * existing one, whose rows are then skipped.
 */
export function openResultFile(path: string, format: ResultFormat, resume: boolean): OpenedResults {
  let fd: number;
  let done = new Set<string>();
  let repaired = false;
  try {
    fd = openSync(path, resume ? "a+" : "wx");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") {
      throw new UsageError(`${path} exists: continue it with --resume, or choose another --out (it may hold the only copy of issued links)`);
    }
    throw new UsageError(`--out: cannot open ${path} (${code ?? String(error)})`);
  }
  if (resume) {
    const text = readFileSync(path, "utf8");
    const complete = text.lastIndexOf("\n") + 1;
    if (complete < Buffer.byteLength(text)) {
      ftruncateSync(fd, Buffer.byteLength(text.slice(0, complete)));
      repaired = true;
    }
    done = writtenKeys(text.slice(0, complete), format, path);
  }
  if (fstatSync(fd).size === 0) writeSync(fd, headerOf(format));
  let dirty = false;
  const sync = setInterval(() => {
    if (dirty) fdatasyncSync(fd);
    dirty = false;
  }, 1_000);
  sync.unref();
  return {
    done,
    repaired,
    sink: {
      write(row) {
        writeSync(fd, formatResult(row, format));
        dirty = true;
      },
      close() {
        clearInterval(sync);
        fdatasyncSync(fd);
        closeSync(fd);
      },
    },
  };
}

function writtenKeys(text: string, format: ResultFormat, path: string): Set<string> {
  const keys = new Set<string>();
  if (text === "") return keys;
  const notOurs = () => new UsageError(`${path} is not an authlink bulk ${format.toUpperCase()} output (use another --out, or --format)`);
  if (format === "ndjson") {
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        throw notOurs();
      }
      const key = (record as { idempotency_key?: unknown }).idempotency_key;
      if (typeof key !== "string") throw notOurs();
      keys.add(key);
    }
    return keys;
  }
  let records: string[][];
  try {
    records = parse(text, { skip_empty_lines: true });
  } catch {
    throw notOurs();
  }
  if ((records[0] ?? []).join(",") !== RESULT_COLUMNS.join(",")) throw notOurs();
  const keyIndex = RESULT_COLUMNS.indexOf("idempotency_key");
  for (const record of records.slice(1)) keys.add(record[keyIndex] ?? "");
  return keys;
}
