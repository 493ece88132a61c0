import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { createPageTokenCodec, pageTokenKey } from "../../src/crypto/page-token.js";
import { Secret } from "../../src/crypto/secret.js";

const now = new Date("2026-12-07T12:00:00Z");
const query = { userId: "u1", type: "invite", issuedAfter: new Date("2026-12-01T00:00:00Z"), pageSize: 50 };

test("a page token resumes the query it was issued for", () => {
  const codec = createPageTokenCodec(randomBytes(32));
  const token = codec.encode(query, { at: 1765000000000, id: "abc" }, now);
  assert.deepEqual(codec.decode(token, { ...query }, now), { at: 1765000000000, id: "abc" });
  // Key order and undefined fields do not change the query.
  assert.deepEqual(codec.decode(token, { pageSize: 50, issuedAfter: query.issuedAfter, type: "invite", userId: "u1", email: undefined }, now), {
    at: 1765000000000,
    id: "abc",
  });
});

test("forged, foreign, expired and malformed tokens decode to undefined", () => {
  const codec = createPageTokenCodec(randomBytes(32), { ttlMs: 60_000 });
  const token = codec.encode(query, { id: "abc" }, now);
  const [body, mac] = token.split(".") as [string, string];
  const forgedBody = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, "base64url").toString()), p: { id: "zzz" } })).toString("base64url");
  assert.equal(codec.decode(`${forgedBody}.${mac}`, query, now), undefined, "changed position");
  assert.equal(codec.decode(token, { ...query, type: "recovery" }, now), undefined, "another query");
  assert.equal(codec.decode(token, query, new Date(now.getTime() + 60_000)), undefined, "expired at its lifetime");
  assert.notEqual(codec.decode(token, query, new Date(now.getTime() + 59_999)), undefined, "valid just before");
  assert.equal(createPageTokenCodec(randomBytes(32)).decode(token, query, now), undefined, "another key");
  for (const junk of ["", ".", "abc", `${body}.`, `.${mac}`, "x".repeat(5000)]) assert.equal(codec.decode(junk, query, now), undefined, junk);
});

test("instances sharing the OTP secret share page tokens", () => {
  const secret = new Secret("s".repeat(40));
  const a = createPageTokenCodec(pageTokenKey(secret));
  const b = createPageTokenCodec(pageTokenKey(new Secret("s".repeat(40))));
  assert.deepEqual(b.decode(a.encode(query, [1, "x"], now), query, now), [1, "x"]);
  assert.equal(createPageTokenCodec(pageTokenKey(new Secret("t".repeat(40)))).decode(a.encode(query, 1, now), query, now), undefined);
});
