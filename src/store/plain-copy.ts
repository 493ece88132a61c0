// A deep copy of plain data (objects, arrays, Dates, primitives): what the
// embedded store hands in and out, so that no caller shares its records.
// structuredClone does the same through a serializer and cost 4–6% of
// authlink's CPU under load (a profile, issue 9); this walks the value
// directly. Anything else (a class instance, a Map, bytes) and anything nested
// deeper than MAX_DEPTH (user metadata may nest as deep as a request allows)
// is left to structuredClone, so the walk never recurses far.

const MAX_DEPTH = 16;

export function plainCopy<T>(value: T): T {
  return copyAt(value, 0) as T;
}

function copyAt(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== "object") return value;
  if (depth >= MAX_DEPTH) return structuredClone(value);
  if (value instanceof Date) return new Date(value.getTime());
  if (Array.isArray(value)) return value.map((item: unknown) => copyAt(item, depth + 1));
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return structuredClone(value);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const item = copyAt((value as Record<string, unknown>)[key], depth + 1);
    // A key named "__proto__" (metadata comes from callers) must stay a key.
    if (key === "__proto__") Object.defineProperty(out, key, { value: item, enumerable: true, writable: true, configurable: true });
    else out[key] = item;
  }
  return out;
}
