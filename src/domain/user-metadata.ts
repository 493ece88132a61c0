import type { JsonObject } from "./user.js";

// The limits on user metadata, wherever it comes from: GenerateLink's `data`
// (link-requests.ts) and the metadata of CreateUser and UpdateUser
// (user-admin-requests.ts) are held to the same size and depth.

/**
 * How deep metadata may nest: MongoDB refuses documents nested past 100
 * levels, and copying or serializing a value thousands of levels deep
 * overflows the stack, while a size-limited request can nest that deep.
 * Metadata needs a few.
 */
export const MAX_METADATA_DEPTH = 32;

/**
 * Why `metadata` is not acceptable (a field violation's description), or
 * undefined when it is: nested deeper than MAX_METADATA_DEPTH, or larger than
 * `maxBytes` as JSON. Depth is checked first (the size check serializes it).
 */
export function metadataProblem(metadata: JsonObject, maxBytes: number): string | undefined {
  if (nestingDepth(metadata) > MAX_METADATA_DEPTH) return `must nest at most ${MAX_METADATA_DEPTH} levels deep`;
  if (Buffer.byteLength(JSON.stringify(metadata)) > maxBytes) return `must be at most ${maxBytes} bytes as JSON`;
  return undefined;
}

/** Levels of objects and arrays in a JSON value (a scalar is 0), walked without recursion. */
function nestingDepth(value: unknown): number {
  let deepest = 0;
  const pending: [unknown, number][] = [[value, 0]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [item, depth] = next;
    if (item === null || typeof item !== "object") continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_METADATA_DEPTH) return deepest;
    for (const child of Object.values(item)) pending.push([child, depth + 1]);
  }
  return deepest;
}

/**
 * An administrator's metadata patch applied to `existing`: keys in `patch`
 * replace the same keys (shallowly), a key given as null is removed, other
 * keys stay.
 */
export function patchMetadata(existing: JsonObject, patch: JsonObject): JsonObject {
  const result: JsonObject = { ...existing };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = value;
  }
  return result;
}
