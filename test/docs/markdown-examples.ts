// The code examples of a Markdown file, as README.md marks them, and the
// comparison of a sample output shown in the README with a real one.
//
// Every fenced block names its language. A block of code (sh, ts, js, ...)
// is preceded, on the line directly above its fence, by one of
//
//   <!-- example: NAME -->                 runnable: test/docs/readme-examples.test.ts runs it
//   <!-- example: not-run (REASON) -->     shown only, with the reason it cannot run in a test
//
// and a block that shows what an example prints (json or text) may be marked
//
//   <!-- output: NAME -->                  compared with what example NAME really printed
//
// Anything else — an unmarked code block, a marker that is not directly above
// a fence, a malformed marker, a name used twice — is a problem the test
// reports, so a new example cannot slip into the README without running.

export interface FencedBlock {
  /** The info string's first word, lower-cased ("sh", "ts", "json", ...). */
  readonly lang: string;
  readonly code: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
}

export interface RunnableExample extends FencedBlock {
  readonly name: string;
  readonly kind: "shell" | "typescript";
}

export interface NotRunExample extends FencedBlock {
  readonly reason: string;
}

export interface MarkdownExamples {
  /** Runnable examples, in the order of the file. */
  readonly examples: readonly RunnableExample[];
  readonly notRun: readonly NotRunExample[];
  /** Sample outputs by example name. */
  readonly outputs: ReadonlyMap<string, FencedBlock>;
  /** Everything wrong with the marking, one sentence each. */
  readonly problems: readonly string[];
}

/** Languages that hold code someone could run: each such block must be marked. */
const CODE_LANGS = new Set([
  "sh", "bash", "shell", "zsh", "console", "shell-session",
  "ts", "typescript", "tsx", "mts", "cts", "js", "javascript", "jsx", "mjs", "cjs",
]);
const RUNNABLE_LANGS: Readonly<Record<string, RunnableExample["kind"]>> = { sh: "shell", bash: "shell", ts: "typescript" };
const OUTPUT_LANGS = new Set(["json", "text"]);

const NAME = /^[a-z0-9][a-z0-9-]*$/;
const MARKER = /^<!--\s*(example|output):\s*(.*?)\s*-->$/;
const NOT_RUN = /^not-run\s*\((.*)\)$/;

type Marker =
  | { readonly kind: "example"; readonly name: string }
  | { readonly kind: "not-run"; readonly reason: string }
  | { readonly kind: "output"; readonly name: string };

export function parseMarkdownExamples(markdown: string): MarkdownExamples {
  const lines = markdown.split("\n");
  const problems: string[] = [];
  const examples: RunnableExample[] = [];
  const notRun: NotRunExample[] = [];
  const outputs = new Map<string, FencedBlock>();
  const names = new Set<string>();

  /** The marker on `line` (0-based), if the line is one; malformed markers are problems. */
  const markerAt = (index: number): Marker | undefined => {
    const text = (lines[index] ?? "").trim();
    if (!/^<!--\s*(example|output)\b/.test(text)) return undefined;
    const match = MARKER.exec(text);
    const where = `line ${index + 1}`;
    if (!match) {
      problems.push(`${where}: malformed marker ${JSON.stringify(text)}`);
      return undefined;
    }
    const [, kind, body = ""] = match;
    if (kind === "output") {
      if (!NAME.test(body)) problems.push(`${where}: output marker needs an example name, got ${JSON.stringify(body)}`);
      return { kind: "output", name: body };
    }
    const notRunMatch = NOT_RUN.exec(body);
    if (notRunMatch) {
      const reason = (notRunMatch[1] ?? "").trim();
      if (reason === "") problems.push(`${where}: not-run needs a reason in parentheses`);
      return { kind: "not-run", reason };
    }
    if (!NAME.test(body)) {
      problems.push(`${where}: example marker needs a name (lower-case, digits, dashes) or not-run (reason), got ${JSON.stringify(body)}`);
    }
    return { kind: "example", name: body };
  };

  /** The marker on the line just before the current one, if that line was a marker. */
  let pending: Marker | undefined;
  let index = 0;
  while (index < lines.length) {
    const fence = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[index] ?? "");
    if (!fence) {
      if (pending) problems.push(`line ${index}: marker is not directly followed by a fenced block`);
      pending = markerAt(index);
      index += 1;
      continue;
    }
    const marker = pending;
    pending = undefined;
    const [, , fenceChars = "```", info = ""] = fence;
    const start = index;
    const body: string[] = [];
    index += 1;
    const closing = new RegExp(`^\\s*${fenceChars[0] === "`" ? "`" : "~"}{${fenceChars.length},}\\s*$`);
    while (index < lines.length && !closing.test(lines[index] ?? "")) body.push(lines[index++] ?? "");
    if (index >= lines.length) problems.push(`line ${start + 1}: fenced block is never closed`);
    index += 1; // past the closing fence

    const block: FencedBlock = { lang: info.toLowerCase(), code: `${body.join("\n")}\n`, line: start + 1 };
    const where = `line ${block.line} (${block.lang || "no language"})`;
    if (block.lang === "") {
      problems.push(`${where}: a fenced block must name its language`);
      continue;
    }
    const isCode = CODE_LANGS.has(block.lang);
    if (!marker) {
      if (isCode) problems.push(`${where}: code block without <!-- example: NAME --> or <!-- example: not-run (reason) --> above it`);
      continue;
    }
    switch (marker.kind) {
      case "not-run":
        if (!isCode) problems.push(`${where}: not-run marks code blocks only`);
        notRun.push({ ...block, reason: marker.reason });
        break;
      case "example": {
        const kind = RUNNABLE_LANGS[block.lang];
        if (!kind) {
          problems.push(`${where}: example ${marker.name} must be sh, bash or ts to run`);
          break;
        }
        if (names.has(marker.name)) problems.push(`${where}: example name ${marker.name} is used twice`);
        names.add(marker.name);
        examples.push({ ...block, name: marker.name, kind });
        break;
      }
      case "output":
        if (!OUTPUT_LANGS.has(block.lang)) problems.push(`${where}: output of ${marker.name} must be a json or text block`);
        else if (!names.has(marker.name)) problems.push(`${where}: output of ${marker.name}, which is not an example above it`);
        else if (outputs.has(marker.name)) problems.push(`${where}: a second output of ${marker.name}`);
        else outputs.set(marker.name, block);
        break;
    }
  }
  if (pending) problems.push(`line ${lines.length}: marker is not directly followed by a fenced block`);
  return { examples, notRun, outputs, problems };
}

// ---- sample outputs ------------------------------------------------------

/**
 * "…" in a sample stands for text that differs from run to run (tokens, ids,
 * times, counts). A sample string or line matches when it matches with each
 * "…" standing for any text.
 */
function samplePattern(sample: string): RegExp {
  const parts = sample.split("…").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join(".*")}$`, "s");
}

/**
 * Where a JSON sample disagrees with the real output: every key the sample
 * shows must be there with a matching value (a README may leave keys out);
 * arrays must have the same length; strings match with "…" as a wildcard.
 */
export function jsonSampleMismatches(sample: unknown, actual: unknown, path = "$"): string[] {
  if (typeof sample === "string") {
    return typeof actual === "string" && samplePattern(sample).test(actual)
      ? []
      : [`${path}: README shows ${JSON.stringify(sample)}, the example printed ${JSON.stringify(actual)}`];
  }
  if (Array.isArray(sample)) {
    if (!Array.isArray(actual) || actual.length !== sample.length) {
      return [`${path}: README shows ${sample.length} elements, the example printed ${JSON.stringify(actual)}`];
    }
    return sample.flatMap((element, i) => jsonSampleMismatches(element, actual[i], `${path}[${i}]`));
  }
  if (sample !== null && typeof sample === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) {
      return [`${path}: README shows an object, the example printed ${JSON.stringify(actual)}`];
    }
    return Object.entries(sample).flatMap(([key, value]) =>
      Object.hasOwn(actual, key)
        ? jsonSampleMismatches(value, (actual as Record<string, unknown>)[key], `${path}.${key}`)
        : [`${path}.${key}: README shows it, the example did not print it`],
    );
  }
  return Object.is(sample, actual) ? [] : [`${path}: README shows ${JSON.stringify(sample)}, the example printed ${JSON.stringify(actual)}`];
}

/**
 * Where a text sample disagrees with the real output: both are compared as
 * sets of non-empty lines (trailing spaces and CRs ignored); each line the
 * example printed must match a sample line and each sample line some printed
 * line, "…" being a wildcard.
 */
export function textSampleMismatches(sample: string, actual: string): string[] {
  const linesOf = (text: string) =>
    text
      .split("\n")
      .map((line) => line.replace(/\s+$/, ""))
      .filter((line) => line !== "");
  const shown = linesOf(sample).map((line) => ({ line, pattern: samplePattern(line) }));
  const printed = linesOf(actual);
  const problems: string[] = [];
  for (const { line, pattern } of shown) {
    if (!printed.some((p) => pattern.test(p))) problems.push(`README shows ${JSON.stringify(line)}, the example printed no such line`);
  }
  for (const line of printed) {
    if (!shown.some(({ pattern }) => pattern.test(line))) problems.push(`the example printed ${JSON.stringify(line)}, which the README does not show`);
  }
  return problems;
}
