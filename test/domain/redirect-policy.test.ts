import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileRedirectPolicy } from "../../src/domain/redirect-policy.js";

const policyOf = (patterns: string[]) => {
  const { policy, problems } = compileRedirectPolicy(patterns);
  assert.deepEqual(problems, [], "the patterns compile");
  return policy;
};
const allows = (patterns: string[], target: string) => policyOf(patterns).check(target).ok;

describe("redirect allow-list patterns", () => {
  test("unusable patterns are all reported", () => {
    const { problems } = compileRedirectPolicy([
      "http://app.example.com/**",
      "https://*.com/**",
      "https://app.*.com/",
      "https://**.example.com/",
      "https://app.example.com:0/",
      "https://app.example.com:70000/",
      "https://app.example.com/?q=1",
      "https://app.example.com/#x",
      "app.example.com",
      "ftp://app.example.com/",
      "https://localhost/**",
    ]);
    assert.equal(problems.length, 10, problems.join("\n"));
    assert.ok(!problems.some((p) => p.startsWith(`"https://localhost`)), "https on loopback is fine");
  });

  test("exact host, with the default port normalized", () => {
    const patterns = ["https://app.example.com:443/cb"];
    assert.ok(allows(patterns, "https://app.example.com/cb"));
    assert.ok(allows(patterns, "https://app.example.com:443/cb"));
    assert.ok(!allows(patterns, "https://app.example.com:8443/cb"));
    assert.ok(!allows(patterns, "https://evilapp.example.com/cb"));
    assert.ok(!allows(patterns, "https://app.example.com.evil.net/cb"));
  });

  test("* in a host label: one label, never empty, never a dot", () => {
    const patterns = ["https://*.example.com/**"];
    assert.ok(allows(patterns, "https://a.example.com/x"));
    assert.ok(!allows(patterns, "https://example.com/x"));
    assert.ok(!allows(patterns, "https://a.b.example.com/x"));
    const partial = ["https://preview-*.example.com/**"];
    assert.ok(allows(partial, "https://preview-42.example.com/"));
    assert.ok(allows(partial, "https://preview-.example.com/"));
    assert.ok(!allows(partial, "https://preview-1.x.example.com/"));
    assert.ok(!allows(partial, "https://review-1.example.com/"));
  });

  test("path: * within a segment, ** across; no path means / only; query and fragment kept", () => {
    assert.ok(allows(["https://app.example.com/a/*"], "https://app.example.com/a/b"));
    assert.ok(!allows(["https://app.example.com/a/*"], "https://app.example.com/a/b/c"));
    assert.ok(allows(["https://app.example.com/a/**"], "https://app.example.com/a/b/c"));
    assert.ok(allows(["https://app.example.com"], "https://app.example.com/"));
    assert.ok(allows(["https://app.example.com"], "https://app.example.com"));
    assert.ok(!allows(["https://app.example.com"], "https://app.example.com/x"));
    const result = policyOf(["https://app.example.com/**"]).check("https://APP.example.com/p?q=1#f");
    assert.deepEqual(result, { ok: true, url: "https://app.example.com/p?q=1#f" });
  });

  test("http only on loopback, any port with *", () => {
    const patterns = ["http://localhost:*/**", "http://127.0.0.1:3000/**", "http://[::1]:3000/**"];
    assert.ok(allows(patterns, "http://localhost:5173/cb"));
    assert.ok(allows(patterns, "http://127.0.0.1:3000/"));
    assert.ok(allows(patterns, "http://[::1]:3000/x"));
    assert.ok(!allows(patterns, "http://127.0.0.1:3001/"));
    assert.ok(!allows(["https://app.example.com/**"], "http://app.example.com/"));
  });

  test("targets are checked as written: tricks that lenient parsers accept are refused", () => {
    const patterns = ["https://app.example.com/**", "http://127.0.0.1:3000/**"];
    for (const target of [
      "//app.example.com/",
      "https:app.example.com/",
      "https:/app.example.com/",
      "https://app.example.com\\@evil.net/",
      "https://app.example.com@evil.net/",
      "https://user@app.example.com/",
      "https://app.example.com%2eevil.net/",
      "https://app.example.com./",
      "https://APP.example.com\u3002evil.net/",
      "http://2130706433:3000/",
      "http://0x7f000001:3000/",
      "http://0177.0.0.1:3000/",
      "http://127.1:3000/",
      "javascript:alert(1)",
      "data:text/html,x",
      "https://app.example.com/\t",
      `https://app.example.com/${"a".repeat(2048)}`,
      "",
    ]) {
      assert.equal(policyOf(patterns).check(target).ok, false, JSON.stringify(target));
    }
  });

  test("an empty allow-list allows nothing", () => {
    assert.equal(policyOf([]).check("https://app.example.com/").ok, false);
  });
});
