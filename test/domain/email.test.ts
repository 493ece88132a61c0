import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { normalizeEmail } from "../../src/domain/email.js";

const accepted = (raw: string) => {
  const result = normalizeEmail(raw);
  assert.ok(result.ok, `${JSON.stringify(raw)} should be accepted: ${result.ok ? "" : result.problem}`);
  return result.email;
};
const refused = (raw: string) => assert.equal(normalizeEmail(raw).ok, false, `${JSON.stringify(raw)} should be refused`);

describe("normalizeEmail", () => {
  test("lower-cases ASCII, and that is the only folding", () => {
    assert.equal(accepted("Ann.Lee+tag@Example.COM"), "ann.lee+tag@example.com");
    assert.equal(accepted("o'brien@example.co.uk"), "o'brien@example.co.uk");
    assert.equal(accepted("x@xn--bcher-kva.example"), "x@xn--bcher-kva.example");
  });

  test("Unicode look-alikes are refused, never folded to an ASCII address", () => {
    for (const raw of [
      "\u212Aate@example.com", // KELVIN SIGN, which lower-cases to "k"
      "ka\u0131e@example.com", // dotless i
      "\uFF41nn@example.com", // fullwidth a
      "ann@ex\u0430mple.com", // Cyrillic a
      "ann@example.c\u043Em", // Cyrillic o
      "ann@example.com\u200B", // zero-width space
      "Ä@example.com",
      "ann@bücher.example",
    ]) {
      refused(raw);
    }
  });

  test("shape: one @, dot-atom local part, a domain of at least two valid labels", () => {
    for (const raw of ["", "plain", "@example.com", "ann@", "a@b@example.com", "ann@localhost", "ann@example", ".ann@example.com", "ann.@example.com", "a..b@example.com", "ann@-example.com", "ann@example-.com", "ann@example..com", "ann@example.123", "ann@[127.0.0.1]", '"a b"@example.com', "a b@example.com", "ann@exa_mple.com"]) {
      refused(raw);
    }
  });

  test("length limits: 64 for the local part, 63 per label, 254 in all", () => {
    accepted(`${"a".repeat(64)}@example.com`);
    refused(`${"a".repeat(65)}@example.com`);
    accepted(`a@${"b".repeat(63)}.com`);
    refused(`a@${"b".repeat(64)}.com`);
    const long = `${"a".repeat(64)}@${["b".repeat(63), "c".repeat(63), "d".repeat(57)].join(".")}.com`;
    assert.equal(long.length, 254);
    accepted(long);
    refused(`a${long}`);
  });

  test("whitespace and control characters anywhere are refused, not trimmed", () => {
    for (const raw of [" ann@example.com", "ann@example.com ", "ann@example.com\n", "an\tn@example.com", "ann@exa\u0000mple.com"]) {
      refused(raw);
    }
  });
});
