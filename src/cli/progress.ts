import { SingleBar } from "cli-progress";

// Progress of a bulk run on stderr. On a terminal: a bar redrawn in place
// with rows done/total, the rate over the last few seconds and the time left
// (cli-progress draws it). Elsewhere (a log file, CI): a plain line every
// few seconds. Either way a summary line at the end.

export interface Progress {
  /** One row answered (or written as failed). */
  row(failed: boolean): void;
  /** Stops redrawing and prints the summary line. */
  finish(summary: string): void;
}

export interface ProgressOptions {
  readonly stream: NodeJS.WriteStream;
  /** Rows in the whole input. */
  readonly total: number;
  /** Rows already done (resume), counted as done but not in the rate. */
  readonly alreadyDone: number;
  /** A bar on a terminal, lines elsewhere, nothing at all. */
  readonly mode: "bar" | "lines" | "off";
  /** How often a plain line is printed. */
  readonly intervalMs: number;
  readonly now?: () => number;
}

/** Rate over this window, so a stall shows at once rather than averaged away. */
const RATE_WINDOW_MS = 5_000;

export function createProgress(options: ProgressOptions): Progress {
  const now = options.now ?? Date.now;
  const started = now();
  let done = options.alreadyDone;
  let failed = 0;
  // (time, done) samples for the windowed rate.
  const samples: [number, number][] = [[started, done]];

  const rate = (): number => {
    const t = now();
    while (samples.length > 1 && t - (samples[0]?.[0] ?? t) > RATE_WINDOW_MS) samples.shift();
    const [t0, d0] = samples[0] ?? [started, options.alreadyDone];
    const elapsed = (t - t0) / 1000;
    return elapsed > 0.2 ? (done - d0) / elapsed : 0;
  };
  const eta = (r: number): string => (done >= options.total ? "0s" : r > 0 ? formatSeconds((options.total - done) / r) : "--");
  const percent = () => (options.total === 0 ? 100 : (100 * done) / options.total).toFixed(1);

  let bar: SingleBar | undefined;
  let timer: NodeJS.Timeout | undefined;
  if (options.mode === "bar") {
    bar = new SingleBar({
      stream: options.stream,
      format: "bulk |{bar}| {value}/{total} rows | {percentage}% | {rate} rows/s | ETA {etaText} | {failed} failed",
      barsize: 30,
      hideCursor: true,
      fps: 10,
      etaBuffer: 50,
      barCompleteChar: "\u2588",
      barIncompleteChar: "\u2591",
    });
    bar.start(options.total, done, { rate: "0.0", etaText: "--", failed: 0 });
  } else if (options.mode === "lines") {
    timer = setInterval(() => {
      const r = rate();
      options.stream.write(`bulk: ${done}/${options.total} rows (${percent()}%), ${r.toFixed(1)} rows/s, ETA ${eta(r)}, ${failed} failed\n`);
    }, options.intervalMs);
    timer.unref();
  }

  return {
    row(rowFailed) {
      done++;
      if (rowFailed) failed++;
      const t = now();
      const last = samples[samples.length - 1];
      if (!last || t - last[0] >= 100) samples.push([t, done]);
      else last[1] = done;
      if (bar) {
        const r = rate();
        bar.update(done, { rate: r.toFixed(1), etaText: eta(r), failed });
      }
    },
    finish(summary) {
      if (timer) clearInterval(timer);
      if (bar) {
        bar.update(done, { rate: rate().toFixed(1), etaText: eta(rate()), failed });
        bar.stop();
      }
      if (options.mode !== "off" || summary !== "") options.stream.write(`${summary}\n`);
    },
  };
}

export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
