// Durations as people write them in configuration ("90s", "15m", "1h", "7d",
// or a bare number of seconds), and back for messages.

const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Milliseconds for a duration string, or undefined when it is not one. */
export function parseDurationMs(text: string): number | undefined {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) return undefined;
  const amount = Number(match[1]);
  const unit = UNIT_MS[match[2] ?? "s"];
  if (unit === undefined || !Number.isSafeInteger(amount * unit)) return undefined;
  return amount * unit;
}

/** A short human form of a duration, for messages ("1h", "90s"). */
export function formatDurationMs(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1_000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
