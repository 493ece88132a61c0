// Readiness: may this instance take traffic now? It may when the store answers
// a ping and the process is not shutting down.
//
// Probes come often and from many places (load balancers, kubelet, every open
// health Watch), so they must not become load on the database:
// - an answer stands for `cacheMs`, whoever asked;
// - checks that arrive while a ping is in flight wait for that ping;
// - a ping that has not answered after `timeoutMs` counts as down and is
//   aborted, and no new ping starts until it has actually given up, so a
//   hanging database never sees more than one ping from us.

export interface ReadinessOptions {
  /** Asks the store whether it answers; rejects when it does not, and should give up when `signal` aborts. */
  readonly ping: (signal: AbortSignal) => Promise<void>;
  /** A ping that has not answered after this long counts as down (default 1000). */
  readonly timeoutMs?: number;
  /** How long one ping's answer stands for every check (default 1500). */
  readonly cacheMs?: number;
  /** Milliseconds on a monotonic-enough clock (default Date.now); tests move it by hand. */
  readonly now?: () => number;
}

/** Called with the new answer whenever readiness changes. */
export type ReadinessListener = (ready: boolean) => void;

export interface Readiness {
  /** True when the store answered a ping (at most `cacheMs` ago) and the process is not shutting down. Never rejects. */
  check(): Promise<boolean>;
  readonly shuttingDown: boolean;
  /**
   * From now on check() answers false without asking the store: during a
   * graceful shutdown readiness turns false first, so traffic drains away
   * while in-flight calls finish. There is no way back.
   */
  markShuttingDown(): void;
  /** Subscribes to changes of the answer; call the returned function to unsubscribe. */
  onChange(listener: ReadinessListener): () => void;
}

export function createReadiness(options: ReadinessOptions): Readiness {
  const timeoutMs = nonNegative("timeoutMs", options.timeoutMs ?? 1000);
  const cacheMs = nonNegative("cacheMs", options.cacheMs ?? 1500);
  const now = options.now ?? Date.now;
  const listeners = new Set<ReadinessListener>();

  let storeUp = false;
  let answeredAt: number | undefined;
  let shuttingDown = false;
  /** The check everyone waits for while a ping is deciding. */
  let deciding: Promise<boolean> | undefined;
  /** The ping itself, which may outlive its timeout when it ignores the signal. */
  let pingOutstanding = false;

  const ready = () => storeUp && !shuttingDown;

  function notify(): void {
    const answer = ready();
    for (const listener of [...listeners]) {
      try {
        listener(answer);
      } catch {
        // A failing listener is its owner's problem; it must not turn a
        // readiness answer into an error for everyone else.
      }
    }
  }

  function record(up: boolean): void {
    const before = ready();
    storeUp = up;
    answeredAt = now();
    if (ready() !== before) notify();
  }

  function ping(): Promise<boolean> {
    if (pingOutstanding) return Promise.resolve(false);
    pingOutstanding = true;
    const controller = new AbortController();
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        controller.abort(new Error(`store ping timed out after ${timeoutMs} ms`));
        resolve(false);
      }, timeoutMs);
      // A ping that throws instead of rejecting is still just "down".
      new Promise<void>((pinged) => pinged(options.ping(controller.signal))).then(
        () => true,
        () => false,
      ).then((up) => {
        pingOutstanding = false;
        clearTimeout(timer);
        resolve(up);
      });
    });
  }

  return {
    async check() {
      if (shuttingDown) return false;
      if (answeredAt !== undefined && now() - answeredAt < cacheMs) return storeUp;
      deciding ??= ping()
        .then((up) => {
          record(up);
          return up;
        })
        .finally(() => {
          deciding = undefined;
        });
      const up = await deciding;
      return up && !shuttingDown;
    },
    get shuttingDown() {
      return shuttingDown;
    },
    markShuttingDown() {
      if (shuttingDown) return;
      const before = ready();
      shuttingDown = true;
      if (before) notify();
    },
    onChange(listener) {
      // A wrapper, so that subscribing the same function twice gives two
      // independent subscriptions.
      const subscription: ReadinessListener = (answer) => listener(answer);
      listeners.add(subscription);
      return () => {
        listeners.delete(subscription);
      };
    },
  };
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`readiness ${name} must be a non-negative number, got ${value}`);
  return value;
}
