import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createCapturedLogger } from "../support/captured-logger.js";

describe("the log's time field", () => {
  test("each line says when it was written (ISO 8601, milliseconds), also when many lines share a millisecond", () => {
    const { logger, lines } = createCapturedLogger("info");
    const written: { before: number; after: number }[] = [];
    const distinct = new Set<number>();
    while (distinct.size < 5) {
      const before = Date.now();
      for (let i = 0; i < 3; i++) logger.info({ i }, "line");
      const after = Date.now();
      for (let i = 0; i < 3; i++) written.push({ before, after });
      distinct.add(before);
    }
    assert.equal(lines.length, written.length);
    lines.forEach((line, i) => {
      const { time } = JSON.parse(line) as { time: string };
      const at = Date.parse(time);
      assert.equal(new Date(at).toISOString(), time);
      assert.ok(at >= written[i]!.before && at <= written[i]!.after, `line ${i}: ${time} outside its write`);
    });
  });
});
