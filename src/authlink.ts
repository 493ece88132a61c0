import { createApp } from "./app.js";
import type { Config } from "./config/config.js";
import { systemClock, type Clock } from "./domain/clock.js";
import type { Logger } from "./log/logger.js";
import { startHttpServer } from "./server/http-server.js";
import { openStore } from "./store/open-store.js";
import type { Store } from "./store/store.js";

// A running authlink: the store opened, the app built, the port bound. main.ts
// starts one for the process; end-to-end tests start their own.

export interface StartOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Use this store instead of opening the configured one (tests). Not closed by close(). */
  readonly store?: Store;
  readonly purgeIntervalMs?: number;
}

export interface RunningAuthlink {
  readonly url: string;
  readonly port: number;
  readonly store: Store;
  /** Graceful: stop accepting, finish in-flight calls, close the store. */
  close(): Promise<void>;
}

export async function startAuthlink(options: StartOptions): Promise<RunningAuthlink> {
  const { config, logger } = options;
  const store = options.store ?? (await openStore(config, logger));
  const ownsStore = options.store === undefined;
  const app = createApp({
    config,
    store,
    logger,
    clock: options.clock ?? systemClock,
    purgeIntervalMs: options.purgeIntervalMs,
  });
  try {
    const server = await startHttpServer(app.handler, { ...config.listen, tls: config.tls });
    return {
      url: server.url,
      port: server.port,
      store,
      async close() {
        await server.close(config.shutdownTimeoutMs);
        app.close();
        if (ownsStore) await store.close();
      },
    };
  } catch (error) {
    app.close();
    if (ownsStore) await store.close();
    throw error;
  }
}
