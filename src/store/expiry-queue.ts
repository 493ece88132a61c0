// Keys in the order they fall due, for the embedded store's expiry sweep: a
// binary min-heap on the due time, so adding a key and taking the earliest
// one cost O(log n) and a sweep costs O(what is due), however many keys wait.
//
// Nothing is removed early. A key whose entry went before its time (a link
// redeemed or replaced) keeps its place here, and its owner skips it when it
// falls due: each entry lives at most until its due time. The owner also
// checks the entry's own due time then, so a key added again with a later
// time is not taken early.

export class ExpiryQueue {
  /** Due times (ms since the epoch) and keys, in heap order: parallel arrays (numbers stay unboxed). */
  #dueTimes: number[] = [];
  #keys: string[] = [];
  /** The most entries held since the arrays were last reallocated. */
  #highWater = 0;

  get size(): number {
    return this.#keys.length;
  }

  add(dueAt: number, key: string): void {
    const times = this.#dueTimes;
    const keys = this.#keys;
    let i = keys.length;
    times.push(dueAt);
    keys.push(key);
    // Sift up: move parents down until the new entry's place is found.
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const parentTime = times[parent] as number;
      if (parentTime <= dueAt) break;
      times[i] = parentTime;
      keys[i] = keys[parent] as string;
      i = parent;
    }
    times[i] = dueAt;
    keys[i] = key;
    this.#highWater = Math.max(this.#highWater, keys.length);
  }

  /** Removes and returns the earliest key if it is due at `now` (its time <= now); undefined when none is. */
  takeDue(now: number): string | undefined {
    const times = this.#dueTimes;
    const keys = this.#keys;
    if (keys.length === 0 || (times[0] as number) > now) return undefined;
    const taken = keys[0] as string;
    const lastTime = times.pop() as number;
    const lastKey = keys.pop() as string;
    const n = keys.length;
    if (n > 0) {
      // Sift down the last entry from the root.
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= n) break;
        const right = left + 1;
        const child = right < n && (times[right] as number) < (times[left] as number) ? right : left;
        const childTime = times[child] as number;
        if (childTime >= lastTime) break;
        times[i] = childTime;
        keys[i] = keys[child] as string;
        i = child;
      }
      times[i] = lastTime;
      keys[i] = lastKey;
    }
    this.#shrinkIfMostlyEmpty();
    return taken;
  }

  /** Give back the arrays' spare room once they hold less than a quarter of their peak. */
  #shrinkIfMostlyEmpty(): void {
    const n = this.#keys.length;
    if (n === 0) {
      this.#dueTimes = [];
      this.#keys = [];
      this.#highWater = 0;
    } else if (this.#highWater > 1024 && n * 4 < this.#highWater) {
      this.#dueTimes = this.#dueTimes.slice();
      this.#keys = this.#keys.slice();
      this.#highWater = n;
    }
  }
}
