import { settleBy } from "../domain/abort.js";
import { StoreUnavailableError, type OperationOptions } from "../domain/store.js";
import type { Logger } from "../log/logger.js";

// The circuit between authlink and its database, so that no call waits on a
// database that is not there, and none waits behind another call's timeout.
//
//   starting  until the store's first connection and set-up succeed
//             (start()): every operation fails at once
//   up        operations run, each bounded by a time limit
//   down      every operation fails at once with StoreUnavailableError,
//             while a ping every probeIntervalMs looks for the database;
//             the first ping that answers closes the circuit (up)
//   closed    the store was closed: every operation fails at once
//
// What opens it (down): an operation that fails as unavailable (refused or
// reset connections, no server), or a ping that fails or goes unanswered
// for probeTimeoutMs: the circuit's own pings and the readiness probe's,
// which are the same single-flight ping. A database that stalls (its
// connections open, nothing answered) raises no error, so an operation left
// unanswered for half the probe timeout makes the circuit ping (and again
// every half probe timeout while it waits): a stall is detected within 1.5
// probe timeouts of an operation's start (2 when a timer tick is late). A slow
// operation on a database that answers pings opens nothing; past
// operationTimeoutMs it fails alone.
//
// When a ping confirms the database is gone, every operation in flight is
// aborted with StoreUnavailableError: calls waiting on it answer now, not at
// their deadlines (an aborted write may still have applied, the same
// uncertainty as a connection lost mid-write).
//
// The caller's signal (the call's deadline) aborts reads, which change
// nothing. Writes run on even when the caller leaves, bounded by the time
// limit and the circuit: a write torn off at the caller's deadline could land
// after the caller's clean-up of it.

export type CircuitState = "starting" | "up" | "down" | "closed";

export interface StoreCircuitOptions {
  /** One round trip to the database; rejects when it does not answer, and should give up when `signal` aborts. */
  readonly ping: (signal: AbortSignal) => Promise<void>;
  /** The longest one operation may take before it fails as unavailable. */
  readonly operationTimeoutMs: number;
  /** A ping unanswered this long counts as down (default: 1 s, at most operationTimeoutMs). */
  readonly probeTimeoutMs?: number;
  /** While down: the pause between pings (default 500 ms). */
  readonly probeIntervalMs?: number;
  readonly logger: Logger;
  /** What the database is, for log lines: host:port, never credentials. */
  readonly target: string;
  /** Applied to every error message logged (removes credentials a message might echo). */
  readonly redact?: (text: string) => string;
}

export interface RunOptions {
  /** Reads stop when the caller's signal fires; writes only when the circuit or their time limit says so. */
  readonly kind: "read" | "write";
  /** Overrides operationTimeoutMs; null: no time limit (background maintenance). */
  readonly timeoutMs?: number | null;
}

export interface StoreCircuit {
  readonly state: CircuitState;
  /**
   * Runs one store operation: fails at once unless the circuit is up, hands
   * `operation` the signal to give the driver, and settles no later than
   * that signal fires.
   */
  run<T>(options: OperationOptions | undefined, run: RunOptions, operation: (signal: AbortSignal) => Promise<T>): Promise<T>;
  /** Asks the database (one ping shared by all who ask at once); throws StoreUnavailableError when it does not answer. */
  ping(signal?: AbortSignal): Promise<void>;
  /** The store is connected and set up: from starting to up. */
  start(): void;
  /** Fails everything from now on and aborts what is in flight. */
  close(): void;
}

export function createStoreCircuit(options: StoreCircuitOptions): StoreCircuit {
  const { logger, target, operationTimeoutMs } = options;
  const probeTimeoutMs = Math.min(options.probeTimeoutMs ?? 1_000, operationTimeoutMs);
  const suspectAfterMs = Math.max(1, Math.floor(probeTimeoutMs / 2));
  const probeIntervalMs = options.probeIntervalMs ?? 500;
  const redact = options.redact ?? ((text: string) => text);

  let state: CircuitState = "starting";
  let downSince = 0;
  /** Aborts of the operations in flight. */
  const inFlight = new Set<(reason: StoreUnavailableError) => void>();
  let probing: Promise<boolean> | undefined;
  /** When the last ping answered (performance.now()); a recent answer stands for a while. */
  let lastAnswerAt = -Infinity;
  let probeLoopRunning = false;
  let probeLoopTimer: NodeJS.Timeout | undefined;
  let wakeProbeLoop: (() => void) | undefined;

  const refusal = (): StoreUnavailableError =>
    new StoreUnavailableError(
      state === "starting"
        ? "the database has not been reached yet"
        : state === "closed"
          ? "the store is closed"
          : "the database is unavailable",
    );

  function abortInFlight(reason: StoreUnavailableError): void {
    for (const abort of [...inFlight]) abort(reason);
  }

  function open(cause: unknown): void {
    if (state !== "up") return;
    state = "down";
    downSince = performance.now();
    logger.warn(
      { database: target, cause: redact(describeCause(cause)) },
      "database unavailable: calls answer UNAVAILABLE at once until it answers a ping again",
    );
    void probeLoop();
  }

  function closeCircuit(): void {
    if (state !== "down") return;
    state = "up";
    logger.info({ database: target, downForMs: Math.round(performance.now() - downSince) }, "database available again");
  }

  /** One ping at a time, bounded by probeTimeoutMs; its answer moves the circuit. Never rejects. */
  function probe(): Promise<boolean> {
    probing ??= (async () => {
      const controller = new AbortController();
      const timer = setTimeout(
        () => controller.abort(new StoreUnavailableError(`the database did not answer a ping within ${probeTimeoutMs} ms`)),
        probeTimeoutMs,
      );
      let failure: unknown;
      try {
        await settleBy(options.ping(controller.signal), controller.signal);
      } catch (error) {
        failure = error;
      } finally {
        clearTimeout(timer);
        probing = undefined;
      }
      if (state === "starting" || state === "closed") return failure === undefined;
      if (failure === undefined) {
        lastAnswerAt = performance.now();
        closeCircuit();
        return true;
      }
      open(failure);
      // Confirmed: whatever waits on the database now waits in vain.
      abortInFlight(new StoreUnavailableError("the database stopped answering", { cause: failure }));
      return false;
    })();
    return probing;
  }

  /**
   * An operation is slow: is the database still there? Asked again every
   * suspectAfterMs while it stays slow (a database may stall after a ping it
   * answered), but not while a ping is out or one answered moments ago: many
   * slow operations cost one ping per period, not one each.
   */
  function suspect(): void {
    if (state !== "up" || probing) return;
    if (performance.now() - lastAnswerAt < suspectAfterMs / 2) return;
    void probe();
  }

  async function probeLoop(): Promise<void> {
    if (probeLoopRunning) return;
    probeLoopRunning = true;
    try {
      while (state === "down") {
        await probe();
        if (state !== "down") break;
        await new Promise<void>((resolve) => {
          wakeProbeLoop = resolve;
          probeLoopTimer = setTimeout(resolve, probeIntervalMs);
          probeLoopTimer.unref();
        });
      }
    } finally {
      probeLoopRunning = false;
      wakeProbeLoop = undefined;
    }
  }

  return {
    get state() {
      return state;
    },

    async run(callerOptions, run, operation) {
      const caller = callerOptions?.signal;
      caller?.throwIfAborted();
      if (state !== "up") throw refusal();

      const own = new AbortController();
      const abort = (reason: StoreUnavailableError) => own.abort(reason);
      inFlight.add(abort);
      const limitMs = run.timeoutMs === undefined ? operationTimeoutMs : run.timeoutMs;
      const limit =
        limitMs === null
          ? undefined
          : setTimeout(() => {
              own.abort(new StoreUnavailableError(`the database did not answer within ${limitMs} ms`));
              suspect();
            }, limitMs);
      const suspicion = setInterval(suspect, suspectAfterMs);
      const signal = run.kind === "read" && caller ? AbortSignal.any([caller, own.signal]) : own.signal;
      try {
        return await settleBy(operation(signal), signal);
      } catch (error) {
        // Who stopped it decides what it was, whatever the driver made of it.
        if (own.signal.aborted) throw own.signal.reason;
        if (run.kind === "read" && caller?.aborted) throw caller.reason;
        if (error instanceof StoreUnavailableError) open(error);
        throw error;
      } finally {
        clearTimeout(limit);
        clearInterval(suspicion);
        inFlight.delete(abort);
      }
    },

    async ping(signal) {
      signal?.throwIfAborted();
      if (state === "starting" || state === "closed") throw refusal();
      const answered = signal ? await settleBy(probe(), signal) : await probe();
      if (!answered) throw new StoreUnavailableError("the database did not answer a ping");
    },

    start() {
      if (state !== "starting") return;
      state = "up";
      lastAnswerAt = performance.now();
    },

    close() {
      if (state === "closed") return;
      state = "closed";
      clearTimeout(probeLoopTimer);
      wakeProbeLoop?.();
      abortInFlight(new StoreUnavailableError("the store is closed"));
    },
  };
}

/** A failure as one line: the error's name and message, following its causes. */
export function describeCause(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 3; depth++) {
    parts.push(`${current.name}: ${current.message}`);
    current = current.cause;
  }
  return parts.join(" <- ") || String(error);
}
