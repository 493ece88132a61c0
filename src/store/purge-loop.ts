import type { Clock } from "../domain/clock.js";
import type { Logger } from "../log/logger.js";
import type { Store } from "../domain/store.js";

// Deletes expired documents on a timer, for stores whose server does not do it
// (no TTL indexes) and for the embedded store: each tick asks store.needsPurge,
// which a MongoDB store knows only once it has reached its server.
// Correctness never depends on it: every read filters on expiry itself; this
// only reclaims space.

export function startPurgeLoop(store: Store, clock: Clock, intervalMs: number, logger: Logger): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running || !store.needsPurge) return;
    running = true;
    store
      .purgeExpired(clock.now())
      .then((count) => {
        if (count > 0) logger.debug({ count }, "purged expired documents");
      })
      .catch((error: unknown) => logger.warn({ err: error }, "purging expired documents failed; will retry"))
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
