import assert from "node:assert/strict";
import { test } from "node:test";
import { plainCopy } from "../../src/store/plain-copy.js";

test("a plain copy equals the original and shares nothing with it", () => {
  const original = {
    id: "u1",
    at: new Date("2030-01-01T00:00:00.000Z"),
    missing: undefined,
    tags: ["a", { b: 1 }],
    meta: { nested: { deeper: [1, 2, { x: null }] } },
  };
  const copied = plainCopy(original);
  assert.deepEqual(copied, structuredClone(original));
  assert.ok(Object.hasOwn(copied, "missing"), "a key holding undefined stays, as with structuredClone");
  assert.notEqual(copied.at, original.at);
  copied.at.setTime(0);
  (copied.tags[1] as { b: number }).b = 2;
  copied.meta.nested.deeper.push(3);
  assert.equal(original.at.toISOString(), "2030-01-01T00:00:00.000Z");
  assert.deepEqual(original.tags, ["a", { b: 1 }]);
  assert.equal(original.meta.nested.deeper.length, 3);
});

test("a key named __proto__ stays a key and does not become the copy's prototype", () => {
  const metadata = JSON.parse('{"__proto__": {"isAdmin": true}, "name": "x"}') as Record<string, unknown>;
  const copied = plainCopy(metadata);
  assert.equal(Object.getPrototypeOf(copied), Object.prototype);
  assert.equal((copied as { isAdmin?: unknown }).isAdmin, undefined);
  assert.deepEqual(Object.keys(copied), ["__proto__", "name"]);
  assert.deepEqual(Object.getOwnPropertyDescriptor(copied, "__proto__")?.value, { isAdmin: true });
});

test("data nested deeper than the walk goes, and data that is not plain, are copied by structuredClone", () => {
  let deep: Record<string, unknown> = { leaf: new Date(0) };
  for (let i = 0; i < 200; i++) deep = { d: deep };
  const copied = plainCopy(deep);
  assert.deepEqual(copied, deep);
  const bytes = { data: new Uint8Array([1, 2, 3]), map: new Map([["k", "v"]]) };
  const copiedBytes = plainCopy(bytes);
  assert.deepEqual(copiedBytes, bytes);
  assert.notEqual(copiedBytes.data, bytes.data);
});
