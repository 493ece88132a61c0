import { createHash } from "node:crypto";
import type { JsonValue, MessageInitShape } from "@bufbuild/protobuf";
import { parse } from "csv-parse/sync";
import { LinkType, type GenerateLinkRequestSchema } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { parseDurationMs } from "../domain/durations.js";
import { UsageError } from "./failure.js";
import { durationOf, linkTypeOf, LINK_TYPE_CHOICES } from "./values.js";

// The input of `authlink bulk`: a CSV file with a header row. Columns:
//   email            required
//   type             the link type, unless --type gives it for every row
//   redirect_to      optional
//   data             optional, a JSON object (user metadata)
//   new_email        email_change only
//   expires_in       optional, e.g. 7d or 3600 (seconds)
//   idempotency_key  optional; derived from the row when absent or empty
// A file without email, or without type and no --type, or with a column
// not listed (a typo must not silently drop a setting; --allow-extra-columns
// lets a CRM export through) is a usage error before any call. A bad row
// (an unknown type, data that is not a JSON object, ...) becomes that row's
// error in the output; an address is checked by the server, per row.

export const INPUT_COLUMNS = ["email", "type", "redirect_to", "data", "new_email", "expires_in", "idempotency_key"] as const;
type InputColumn = (typeof INPUT_COLUMNS)[number];

export type BulkRequest = MessageInitShape<typeof GenerateLinkRequestSchema>;

export interface InputRow {
  /** The row's position among the data rows (1 = the first row after the header). */
  readonly row: number;
  /** The address as written (trimmed). */
  readonly email: string;
  /** The link type's short name, as understood (or as written when it is not one). */
  readonly type: string;
  readonly idempotencyKey: string;
  /** What to send; undefined when the row is bad (see `problem`). */
  readonly request: BulkRequest | undefined;
  /** Why the row cannot be sent (checked here; nothing is sent for it). */
  readonly problem: string | undefined;
}

export interface BulkInputOptions {
  /** The type of rows without a type column or with an empty type cell. */
  readonly defaultType?: LinkType | undefined;
  readonly allowExtraColumns?: boolean;
  /** Mixed into derived idempotency keys: the same file with another salt issues new links. */
  readonly keySalt?: string;
}

export function readBulkInput(text: string, source: string, options: BulkInputOptions = {}): InputRow[] {
  let records: string[][];
  try {
    records = parse(text, { bom: true, skip_empty_lines: true, relax_column_count: true });
  } catch (error) {
    throw new UsageError(`${source}: not valid CSV (${error instanceof Error ? error.message : String(error)})`);
  }
  const header = (records[0] ?? []).map((name) => name.trim().toLowerCase());
  const columns = columnIndexes(header, source, options);
  const seen = new Map<string, number>();
  return records.slice(1).map((cells, i) => {
    const row = i + 1;
    const parsed = rowOf(cells, header.length, columns, row, options);
    const first = seen.get(parsed.idempotencyKey);
    if (first !== undefined && parsed.problem === undefined) {
      return { ...parsed, request: undefined, problem: `duplicate of row ${first} (same idempotency key): sent once` };
    }
    if (first === undefined) seen.set(parsed.idempotencyKey, row);
    return parsed;
  });
}

function columnIndexes(header: readonly string[], source: string, options: BulkInputOptions): Map<InputColumn, number> {
  if (header.length === 0) throw new UsageError(`${source}: empty file (expected a header row: ${INPUT_COLUMNS.join(",")})`);
  const columns = new Map<InputColumn, number>();
  const unknown: string[] = [];
  header.forEach((name, index) => {
    if (!(INPUT_COLUMNS as readonly string[]).includes(name)) unknown.push(name === "" ? `(empty, column ${index + 1})` : name);
    else if (columns.has(name as InputColumn)) throw new UsageError(`${source}: column "${name}" appears twice`);
    else columns.set(name as InputColumn, index);
  });
  if (!columns.has("email")) throw new UsageError(`${source}: missing required column "email" (header: ${header.join(",")})`);
  if (!columns.has("type") && options.defaultType === undefined) {
    throw new UsageError(`${source}: no "type" column and no --type for every row`);
  }
  if (unknown.length > 0 && !options.allowExtraColumns) {
    throw new UsageError(
      `${source}: unknown column${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")} (known: ${INPUT_COLUMNS.join(", ")}; --allow-extra-columns ignores others)`,
    );
  }
  return columns;
}

function rowOf(
  cells: readonly string[],
  width: number,
  columns: ReadonlyMap<InputColumn, number>,
  row: number,
  options: BulkInputOptions,
): InputRow {
  const cell = (name: InputColumn) => {
    const index = columns.get(name);
    return index === undefined ? "" : (cells[index] ?? "").trim();
  };
  const email = cell("email");
  const typeText = cell("type");
  const type = typeText === "" ? options.defaultType : linkTypeOf(typeText);
  const typeName = type === undefined ? typeText : LinkType[type].toLowerCase();
  const dataText = cell("data");
  const data = dataText === "" ? undefined : jsonObjectOf(dataText);
  const expiresText = cell("expires_in");
  const expiresMs = expiresText === "" ? undefined : parseDurationMs(expiresText);
  const givenKey = cell("idempotency_key");

  const problems: string[] = [];
  if (cells.length !== width) problems.push(`has ${cells.length} cells, the header ${width}`);
  if (email === "") problems.push("email: empty");
  if (type === undefined) problems.push(typeText === "" ? "type: empty (and no --type)" : `type: unknown "${typeText}" (use ${LINK_TYPE_CHOICES.join(", ")})`);
  if (type === LinkType.SIGNUP) problems.push("type: signup needs a password, which bulk does not take (use `authlink generate signup`)");
  if (data === null) problems.push("data: not a JSON object");
  if (expiresMs === undefined && expiresText !== "") problems.push(`expires_in: "${expiresText}" is not a duration (e.g. 7d, 12h, 3600)`);
  if (givenKey !== "" && !/^[\x21-\x7e]{1,200}$/.test(givenKey)) problems.push("idempotency_key: must be 1 to 200 printable ASCII characters");

  const normalized = {
    type: typeName,
    email: email.toLowerCase(),
    redirect_to: cell("redirect_to"),
    data: data ? canonicalJson(data) : dataText,
    new_email: cell("new_email").toLowerCase(),
    expires_in: expiresMs ?? expiresText,
  };
  const idempotencyKey = givenKey !== "" ? givenKey : deriveIdempotencyKey(normalized, options.keySalt ?? "");
  const problem = problems.length > 0 ? problems.join("; ") : undefined;
  return {
    row,
    email,
    type: typeName,
    idempotencyKey,
    problem,
    request:
      problem !== undefined || type === undefined
        ? undefined
        : {
            type,
            email,
            redirectTo: normalized.redirect_to,
            data: data ?? undefined,
            newEmail: cell("new_email"),
            expiresIn: expiresMs === undefined ? undefined : durationOf(expiresMs),
          },
  };
}

/**
 * The key of a row without one: SHA-256 over the row as understood — type,
 * lower-cased addresses, redirect, data with its keys sorted, lifetime in ms
 * — and the salt. So the same row is the same key however it is spaced,
 * cased or ordered in the file, and sending it again (a resume, a second run
 * while the link lives) answers the link already issued instead of a new one.
 */
export function deriveIdempotencyKey(normalized: Readonly<Record<string, string | number>>, salt: string): string {
  const digest = createHash("sha256").update(JSON.stringify({ v: 1, salt, ...normalized })).digest("hex");
  return `row-${digest}`;
}

function jsonObjectOf(text: string): Record<string, JsonValue> | null {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, JsonValue>) : null;
  } catch {
    return null;
  }
}

/** JSON with object keys sorted, so that key order does not change a row's key. */
function canonicalJson(value: JsonValue): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key] as JsonValue)}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value);
}
