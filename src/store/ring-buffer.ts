// A bounded, oldest-first buffer: the embedded store's audit trail.

/**
 * A ring buffer of at most `capacity` items: pushing onto a full one drops the
 * oldest. Iterates oldest first.
 */
export interface Ring<T> extends Iterable<T> {
  readonly size: number;
  push(item: T): void;
  /** Drops items from the oldest end while `test` holds; returns how many. */
  dropOldestWhile(test: (item: T) => boolean): number;
}

export function createRing<T>(capacity: number): Ring<T> {
  if (!(Number.isInteger(capacity) && capacity >= 1)) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  const slots: (T | undefined)[] = [];
  let head = 0;
  let size = 0;
  return {
    get size() {
      return size;
    },
    push(item) {
      if (size < capacity) {
        slots[(head + size) % capacity] = item;
        size += 1;
      } else {
        slots[head] = item;
        head = (head + 1) % capacity;
      }
    },
    dropOldestWhile(test) {
      let dropped = 0;
      while (size > 0 && test(slots[head] as T)) {
        slots[head] = undefined;
        head = (head + 1) % capacity;
        size -= 1;
        dropped += 1;
      }
      return dropped;
    },
    *[Symbol.iterator]() {
      for (let i = 0; i < size; i++) yield slots[(head + i) % capacity] as T;
    },
  };
}
