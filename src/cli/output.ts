import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { UsageError, type CallFailure } from "./failure.js";

// What the CLI prints: a table for people (the default on a terminal), or for
// scripts the protobuf JSON mapping of the answer (camelCase fields, enum
// names, RFC 3339 times — what `buf curl` prints): `json`, one document per
// command, or `ndjson`, one object per line (one per list item or streamed
// event). Results go to stdout; errors, hints and progress to stderr.

export const OUTPUT_FORMATS = ["table", "json", "ndjson"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface Column<T> {
  readonly header: string;
  readonly value: (item: T) => string;
  /** Streamed tables cannot measure what is to come: pad to this width. */
  readonly width?: number;
}

export interface Printer {
  readonly format: OutputFormat;
  /** One answer: JSON, one NDJSON line, or a two-column table of `fields`. */
  object<D extends DescMessage>(schema: D, message: MessageShape<D>, fields: () => readonly (readonly [string, string])[]): void;
  /** An answer that is not a contract message (plain JSON data). */
  plain(value: unknown, fields: () => readonly (readonly [string, string])[]): void;
  /** A list answer (all of it): JSON as the response message, NDJSON one item per line, or a table. */
  list<D extends DescMessage, I extends DescMessage>(
    responseSchema: D,
    response: MessageShape<D>,
    itemSchema: I,
    items: readonly MessageShape<I>[],
    columns: readonly Column<MessageShape<I>>[],
  ): void;
  /** One item of a stream, printed at once (JSON and NDJSON alike: one line each; a table row). */
  streamed<I extends DescMessage>(itemSchema: I, item: MessageShape<I>, columns: readonly Column<MessageShape<I>>[], first: boolean): void;
  /** A line for people on stderr (hints, summaries). */
  note(line: string): void;
  /** A failed call on stderr: JSON for scripts, readable lines for people. */
  failure(failure: CallFailure, describe: (failure: CallFailure) => string): void;
}

export interface Streams {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export function outputFormatOf(flag: string | undefined, stdoutIsTty: boolean): OutputFormat {
  if (flag === undefined) return stdoutIsTty ? "table" : "json";
  if (!(OUTPUT_FORMATS as readonly string[]).includes(flag)) throw new UsageError(`--output must be one of ${OUTPUT_FORMATS.join(", ")}`);
  return flag as OutputFormat;
}

export function createPrinter(format: OutputFormat, streams: Streams): Printer {
  const out = (text: string) => streams.stdout.write(`${text}\n`);
  const json = <D extends DescMessage>(schema: D, message: MessageShape<D>, indent?: number) =>
    JSON.stringify(toJson(schema, message), null, indent);
  return {
    format,
    object(schema, message, fields) {
      if (format === "json") out(json(schema, message, 2));
      else if (format === "ndjson") out(json(schema, message));
      else out(renderKeyValues(fields()));
    },
    plain(value, fields) {
      if (format === "json") out(JSON.stringify(value, null, 2));
      else if (format === "ndjson") out(JSON.stringify(value));
      else out(renderKeyValues(fields()));
    },
    list(responseSchema, response, itemSchema, items, columns) {
      if (format === "json") out(json(responseSchema, response, 2));
      else if (format === "ndjson") for (const item of items) out(json(itemSchema, item));
      else if (items.length === 0) streams.stderr.write("(none)\n");
      else out(renderTable(columns, items));
    },
    streamed(itemSchema, item, columns, first) {
      if (format !== "table") {
        out(json(itemSchema, item));
        return;
      }
      const cells = (values: readonly string[]) =>
        values.map((value, i) => value.padEnd(columns[i]?.width ?? 0)).join("  ").trimEnd();
      if (first) out(cells(columns.map((c) => c.header)));
      out(cells(columns.map((c) => c.value(item))));
    },
    note(line) {
      streams.stderr.write(`${line}\n`);
    },
    failure(failure, describe) {
      if (format === "table") streams.stderr.write(`${describe(failure)}\n`);
      else streams.stderr.write(`${JSON.stringify({ error: failure })}\n`);
    },
  };
}

/** `label  value` lines, labels aligned; empty values are left out. */
export function renderKeyValues(fields: readonly (readonly [string, string])[]): string {
  const shown = fields.filter(([, value]) => value !== "");
  const width = Math.max(0, ...shown.map(([label]) => label.length));
  return shown.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join("\n");
}

/** Columns padded to their widest cell, with a header row. */
export function renderTable<T>(columns: readonly Column<T>[], items: readonly T[]): string {
  const rows = [columns.map((c) => c.header), ...items.map((item) => columns.map((c) => c.value(item)))];
  const widths = columns.map((_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd()).join("\n");
}
