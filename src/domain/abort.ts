// Waiting that ends when a signal fires: what lets a call answer at its
// deadline even when the work it waits for cannot be stopped.

/**
 * `promise`, or the signal's reason as soon as it fires, whichever is first.
 * A promise left behind settles unobserved (its rejection is handled here).
 */
export function settleBy<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => undefined);
      reject(signal.reason as Error);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error as Error);
      },
    );
  });
}
