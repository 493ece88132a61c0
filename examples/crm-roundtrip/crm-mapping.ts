import { parse } from "csv-parse/sync";
import { stringify } from "csv-stringify/sync";

// The two pure halves of the CRM round trip, on top of csv-parse and
// csv-stringify: a CRM export → `authlink bulk`'s input, and `authlink
// bulk`'s results → the CRM export with the link columns added, ready to
// import (a mail merge then uses {{action_link}} and {{email_otp}}).
//
// One link per address: addresses that differ only in case or spaces are the
// same person (a second link would replace the first), so each is sent once
// and every CRM row with it gets the same link. A row without an address
// gets an error without a call.

export type CsvRecord = Record<string, string>;

/** What is added to each CRM row. */
export const LINK_COLUMNS = ["action_link", "email_otp", "hashed_token", "expires_at", "error"] as const;

export interface CrmExport {
  readonly columns: readonly string[];
  readonly rows: readonly CsvRecord[];
}

export function readCsv(text: string): CrmExport {
  const records = parse(text, { bom: true, skip_empty_lines: true, trim: true }) as string[][];
  const [header = [], ...data] = records;
  const columns = header.map((name) => name.trim());
  return { columns, rows: data.map((cells) => Object.fromEntries(columns.map((column, i) => [column, cells[i] ?? ""]))) };
}

export interface BulkPlan {
  /** `authlink bulk`'s input CSV: one row per distinct address. */
  readonly input: string;
  /** The normalized address of each input row, in order (input row N = addresses[N - 1]). */
  readonly addresses: readonly string[];
}

export interface PlanOptions {
  /** The CRM column that holds the address (default "email"). */
  readonly emailColumn?: string;
  /** Sent as each new user's metadata (authlink's `data`), when the CRM has them. */
  readonly metadataColumns?: readonly string[];
  readonly redirectTo?: string;
}

export function normalizeAddress(address: string): string {
  return address.trim().toLowerCase();
}

export function planBulkInput(crm: CrmExport, options: PlanOptions = {}): BulkPlan {
  const emailColumn = options.emailColumn ?? "email";
  if (!crm.columns.includes(emailColumn)) throw new Error(`the CRM export has no "${emailColumn}" column (columns: ${crm.columns.join(", ")})`);
  const metadataColumns = (options.metadataColumns ?? []).filter((column) => crm.columns.includes(column));
  const addresses: string[] = [];
  const seen = new Set<string>();
  const rows: string[][] = [];
  for (const record of crm.rows) {
    const address = normalizeAddress(record[emailColumn] ?? "");
    if (address === "" || seen.has(address)) continue;
    seen.add(address);
    addresses.push(address);
    const data = Object.fromEntries(metadataColumns.map((column) => [column, record[column] ?? ""]).filter(([, value]) => value !== ""));
    rows.push([address, options.redirectTo ?? "", Object.keys(data).length > 0 ? JSON.stringify(data) : ""]);
  }
  return { input: stringify([["email", "redirect_to", "data"], ...rows]), addresses };
}

export interface MergeSummary {
  /** The CRM export with LINK_COLUMNS added. */
  readonly output: string;
  readonly linked: number;
  readonly failed: number;
}

/** `authlink bulk`'s CSV results merged back into the CRM rows (results are matched by their `row`). */
export function mergeResults(crm: CrmExport, plan: BulkPlan, resultsCsv: string, options: Pick<PlanOptions, "emailColumn"> = {}): MergeSummary {
  const emailColumn = options.emailColumn ?? "email";
  const results = readCsv(resultsCsv).rows;
  const byAddress = new Map<string, CsvRecord>();
  for (const result of results) {
    const address = plan.addresses[Number(result.row) - 1];
    if (address !== undefined) byAddress.set(address, result);
  }
  const columns = [...crm.columns.filter((c) => !(LINK_COLUMNS as readonly string[]).includes(c)), ...LINK_COLUMNS];
  let linked = 0;
  let failed = 0;
  const rows = crm.rows.map((record) => {
    const address = normalizeAddress(record[emailColumn] ?? "");
    const result = byAddress.get(address);
    const link: CsvRecord = { action_link: "", email_otp: "", hashed_token: "", expires_at: "", error: "" };
    if (address === "") link.error = "no email address in the CRM row (not sent)";
    else if (!result) link.error = "no result from authlink bulk (run it again with --resume)";
    else if ((result.status ?? "") !== "OK") link.error = `${result.status}: ${result.error ?? ""}`;
    else {
      link.action_link = result.action_link ?? "";
      link.email_otp = result.email_otp ?? "";
      link.hashed_token = result.hashed_token ?? "";
      link.expires_at = result.expires_at ?? "";
    }
    if (link.error === "") linked++;
    else failed++;
    const merged: CsvRecord = { ...record, ...link };
    return columns.map((column) => merged[column] ?? "");
  });
  return { output: stringify([columns, ...rows]), linked, failed };
}
