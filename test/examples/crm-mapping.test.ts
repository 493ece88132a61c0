import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { parse } from "csv-parse/sync";
import { stringify } from "csv-stringify/sync";
import { mergeResults, planBulkInput, readCsv } from "../../examples/crm-roundtrip/crm-mapping.js";

// The CRM round trip's two halves without a server (the whole trip, through
// `authlink bulk`, is in crm-roundtrip.test.ts): the sample export becomes
// one bulk row per distinct address, and bulk's results land on every CRM
// row of that address, quoting and all.

const SAMPLE = new URL("../../../examples/crm-roundtrip/sample-crm-export.csv", import.meta.url);

test("the CRM export becomes authlink bulk's input: one row per distinct address, names as user metadata", async () => {
  const crm = readCsv(await readFile(SAMPLE, "utf8"));
  assert.deepEqual(crm.columns, ["contact_id", "first_name", "last_name", "email", "segment", "country"]);
  const plan = planBulkInput(crm, { metadataColumns: ["first_name", "last_name", "nickname"], redirectTo: "https://app.example.com/welcome" });
  assert.deepEqual(plan.addresses, [
    "ann.archer@example.com",
    "bob.baker@example.com",
    "cleo.carter@example.com",
    "dev.dunn@example",
    "fay.fox@example.com",
  ]);
  const input = parse(plan.input) as string[][];
  assert.deepEqual(input[0], ["email", "redirect_to", "data"]);
  assert.deepEqual(input[1], ["ann.archer@example.com", "https://app.example.com/welcome", '{"first_name":"Ann","last_name":"Archer"}']);
  assert.deepEqual(input[5], ["fay.fox@example.com", "https://app.example.com/welcome", '{"first_name":"Fay, Jr.","last_name":"Fox"}']);
  assert.equal(input.length, 6);
  assert.throws(() => planBulkInput(crm, { emailColumn: "mail" }), /no "mail" column/);
});

test("bulk's results go back onto every CRM row of their address, by row number; rows without a result say so", async () => {
  const crm = readCsv(await readFile(SAMPLE, "utf8"));
  const plan = planBulkInput(crm);
  const header = ["row", "email", "type", "action_link", "email_otp", "hashed_token", "expires_at", "status", "error"];
  const results = stringify([
    header,
    // Out of order, as bulk writes them when they come.
    ["3", "cleo.carter@example.com", "magiclink", "https://auth/verify#token=c", "333333", "c".repeat(64), "2030-01-01T00:00:00.000Z", "OK", ""],
    ["1", "ann.archer@example.com", "magiclink", "https://auth/verify#token=a", "111111", "a".repeat(64), "2030-01-01T00:00:00.000Z", "OK", ""],
    ["4", "dev.dunn@example", "magiclink", "", "", "", "", "INVALID_ARGUMENT", "validation_failed: email: not an address"],
    ["5", "fay.fox@example.com", "magiclink", "https://auth/verify#token=f", "555555", "f".repeat(64), "2030-01-01T00:00:00.000Z", "OK", ""],
    // row 2 (bob) is missing: an interrupted run.
  ]);
  const merged = mergeResults(crm, plan, results);
  const out = readCsv(merged.output);
  assert.deepEqual(out.columns, ["contact_id", "first_name", "last_name", "email", "segment", "country", "action_link", "email_otp", "hashed_token", "expires_at", "error"]);
  const byId = new Map(out.rows.map((row) => [row.contact_id, row]));
  assert.equal(byId.get("C-1001")?.action_link, "https://auth/verify#token=a");
  assert.equal(byId.get("C-1001")?.email_otp, "111111");
  assert.match(byId.get("C-1002")?.error ?? "", /no result from authlink bulk/);
  assert.equal(byId.get("C-1003")?.action_link, "https://auth/verify#token=c", "CLEO.CARTER@EXAMPLE.COM");
  assert.equal(byId.get("C-1006")?.action_link, "https://auth/verify#token=c", "the same address in another row: the same link");
  assert.equal(byId.get("C-1004")?.error, "INVALID_ARGUMENT: validation_failed: email: not an address");
  assert.equal(byId.get("C-1004")?.action_link, "");
  assert.match(byId.get("C-1005")?.error ?? "", /no email address/);
  assert.equal(byId.get("C-1007")?.first_name, "Fay, Jr.", "quoted cells survive");
  assert.equal(byId.get("C-1007")?.email_otp, "555555");
  assert.equal(byId.get("C-1003")?.email, "CLEO.CARTER@EXAMPLE.COM", "the CRM's own columns are untouched");
  assert.equal(out.rows.length, 7);
  assert.deepEqual([merged.linked, merged.failed], [4, 3]);
});
