// Work on a stream of inputs with at most `limit` items in flight, handing
// out each output as soon as it is done (in completion order). It reads an
// input only when a slot is free and the consumer has taken every output so
// far: a slow consumer holds back the reading, so nothing piles up on either
// side (for a request stream, HTTP/2 flow control then holds back the
// client).

export interface BoundedOptions<O> {
  /** Stops everything: the generator throws the signal's reason. */
  readonly signal: AbortSignal;
  /**
   * Asked of each output as it is handed out: true stops reading inputs. The
   * items in flight still finish and are handed out; the inputs not read are
   * never worked on.
   */
  readonly stopAfter?: (output: O) => boolean;
}

type Event<I, O> =
  | { readonly kind: "read"; readonly result: IteratorResult<I> }
  | { readonly kind: "read_failed"; readonly error: unknown }
  | { readonly kind: "done"; readonly id: number; readonly output: O }
  | { readonly kind: "aborted" };

/**
 * `work(input, index)` for every input, `limit` at a time. `work` must not
 * reject (turn failures into outputs). An input stream that fails stops the
 * reading; the items in flight are handed out, then its error is thrown.
 */
export async function* mapBounded<I, O>(
  inputs: AsyncIterable<I>,
  limit: number,
  work: (input: I, index: number) => Promise<O>,
  options: BoundedOptions<O>,
): AsyncGenerator<O, void, undefined> {
  const { signal, stopAfter } = options;
  const iterator = inputs[Symbol.asyncIterator]();
  const running = new Map<number, Promise<Event<I, O>>>();
  let reading: Promise<Event<I, O>> | undefined;
  let index = 0;
  let stopped = false;
  let readError: { error: unknown } | undefined;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<Event<I, O>>((resolve) => {
    onAbort = () => resolve({ kind: "aborted" });
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    for (;;) {
      if (!stopped && reading === undefined && running.size < limit) {
        reading = iterator.next().then(
          (result): Event<I, O> => ({ kind: "read", result }),
          (error: unknown): Event<I, O> => ({ kind: "read_failed", error }),
        );
      }
      const waiting = [...running.values()];
      if (!stopped && reading) waiting.push(reading);
      if (waiting.length === 0) break;
      const event = await Promise.race([aborted, ...waiting]);
      switch (event.kind) {
        case "aborted":
          throw signal.reason;
        case "read_failed":
          reading = undefined;
          stopped = true;
          readError = { error: event.error };
          break;
        case "read":
          reading = undefined;
          if (event.result.done) {
            stopped = true;
            break;
          }
          {
            const id = index++;
            running.set(
              id,
              work(event.result.value, id).then((output): Event<I, O> => ({ kind: "done", id, output })),
            );
          }
          break;
        case "done":
          running.delete(event.id);
          if (stopAfter?.(event.output)) stopped = true;
          yield event.output;
          break;
      }
    }
    if (readError) throw readError.error;
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
    // Rows still unread are not wanted: let the input stream go (without
    // waiting for it, a pending read may never end).
    if (!readError) void Promise.resolve(iterator.return?.()).catch(() => undefined);
  }
}
