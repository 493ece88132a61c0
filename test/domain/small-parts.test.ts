import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { buildActionLink } from "../../src/domain/action-link.js";
import { formatDurationMs, parseDurationMs } from "../../src/domain/durations.js";
import { passwordWeakness } from "../../src/domain/password-policy.js";

describe("action links", () => {
  const page = (base: string) => ({ kind: "verify_page" as const, publicUrl: new URL(base) });
  const token = "T".repeat(43);

  test("the verify page on the configured base, with the secret in the fragment", () => {
    assert.equal(buildActionLink(page("https://a.example.com"), token, "magiclink", undefined), `https://a.example.com/verify#token=${token}&type=magiclink`);
    assert.equal(buildActionLink(page("https://a.example.com/auth"), token, "signup", undefined), `https://a.example.com/auth/verify#token=${token}&type=signup`);
    assert.equal(buildActionLink(page("https://a.example.com/auth/"), token, "invite", undefined), `https://a.example.com/auth/verify#token=${token}&type=invite`);
    const withRedirect = new URL(buildActionLink(page("https://a.example.com"), token, "recovery", "https://app.example.com/x?a=1&b=2#f"));
    assert.equal(withRedirect.search, "");
    assert.equal(new URLSearchParams(withRedirect.hash.slice(1)).get("redirect_to"), "https://app.example.com/x?a=1&b=2#f");
  });

  test("an operator's template: each placeholder URL-encoded", () => {
    const format = { kind: "template" as const, template: "https://app.example.com/auth/confirm?t={token}&kind={type}&next={redirect_to}" };
    const link = new URL(buildActionLink(format, token, "email_change", "https://app.example.com/x?a=1&b=2"));
    assert.equal(link.origin + link.pathname, "https://app.example.com/auth/confirm");
    assert.deepEqual([...link.searchParams], [["t", token], ["kind", "email_change"], ["next", "https://app.example.com/x?a=1&b=2"]]);
  });
});

describe("durations", () => {
  test("parse and format", () => {
    assert.deepEqual(["90", "90s", "15m", "1h", "7d", "250ms"].map(parseDurationMs), [90_000, 90_000, 900_000, 3_600_000, 604_800_000, 250]);
    for (const bad of ["", "1.5h", "-1s", "1w", "h", "1 h"]) assert.equal(parseDurationMs(bad), undefined, bad);
    assert.deepEqual([60_000, 3_600_000, 90_000, 1500, 86_400_000].map(formatDurationMs), ["1m", "1h", "90s", "1500ms", "1d"]);
  });
});

describe("password strength", () => {
  const policy = { minLength: 8 };
  test("length in characters, common passwords, repeats, the address", () => {
    assert.equal(passwordWeakness("correct horse", "ann@example.com", policy), undefined);
    assert.match(passwordWeakness("short", "ann@example.com", policy) ?? "", /at least 8/);
    assert.equal(passwordWeakness("ééééééé", "ann@example.com", policy) !== undefined, true, "7 characters");
    assert.match(passwordWeakness("PassWord123", "ann@example.com", policy) ?? "", /common/);
    assert.match(passwordWeakness("zzzzzzzzzz", "ann@example.com", policy) ?? "", /single character/);
    assert.match(passwordWeakness("ANN@EXAMPLE.COM", "ann@example.com", policy) ?? "", /email/);
    assert.match(passwordWeakness("annalena", "annalena@example.com", policy) ?? "", /email/);
  });
});
