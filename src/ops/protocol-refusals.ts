import type { Logger } from "../log/logger.js";
import type { ProtocolRefusalKind } from "../rpc/protocol-errors.js";

// Requests the protocol layer refused before any handler ran (unknown path,
// wrong method or content type, oversize, broken framing, undecodable):
// each counted in authlink_protocol_refusals_total{kind}, and logged at a
// bounded pace — the first of a kind at once, then at most one line per kind
// per interval, with how many there were since the last line. These calls
// reach no use case and are not audited (README.md, Operations, Audit).

export interface ProtocolRefusals {
  refused(kind: ProtocolRefusalKind): void;
  /** Logs what is counted and not yet logged, and stops the timer. */
  close(): void;
}

export interface ProtocolRefusalsOptions {
  readonly logger: Logger;
  /** The metric (Metrics.protocolRefusal); without it only the log. */
  readonly count?: ((kind: ProtocolRefusalKind) => void) | undefined;
  /** At most one log line per kind per this long (default 10 s). */
  readonly logIntervalMs?: number;
}

export function createProtocolRefusals(options: ProtocolRefusalsOptions): ProtocolRefusals {
  const { logger, count } = options;
  const intervalMs = options.logIntervalMs ?? 10_000;
  /** Per kind: refusals not yet logged, and when the last line was written. */
  const pending = new Map<ProtocolRefusalKind, { unlogged: number; loggedAt: number }>();

  const log = (kind: ProtocolRefusalKind, refusals: number, now: number) => {
    logger.warn({ kind, count: refusals, intervalMs }, "requests refused by the protocol layer");
    pending.set(kind, { unlogged: 0, loggedAt: now });
  };
  const logDue = () => {
    const now = performance.now();
    for (const [kind, state] of pending) {
      if (state.unlogged > 0 && now - state.loggedAt >= intervalMs) log(kind, state.unlogged, now);
    }
  };
  const timer = setInterval(logDue, intervalMs);
  timer.unref();

  return {
    refused(kind) {
      count?.(kind);
      const now = performance.now();
      const state = pending.get(kind);
      if (!state || now - state.loggedAt >= intervalMs) log(kind, (state?.unlogged ?? 0) + 1, now);
      else state.unlogged += 1;
    },
    close() {
      clearInterval(timer);
      for (const [kind, state] of pending) if (state.unlogged > 0) log(kind, state.unlogged, performance.now());
    },
  };
}
