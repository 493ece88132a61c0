import type { Config } from "../config/config.js";
import type { Logger } from "../log/logger.js";
import { createMemoryStore } from "./memory-store.js";
import { openMongoStore } from "./mongo-store.js";
import type { Store } from "../domain/store.js";

/** The configured store: MongoDB when a URI is set, else the embedded one. */
export async function openStore(config: Config, logger: Logger): Promise<Store> {
  if (!config.mongodb) {
    logger.warn(
      "AUTHLINK_MONGODB_URI is not set: using the embedded in-process store. NOTHING SURVIVES A RESTART " +
        "and instances do not share links; set AUTHLINK_MONGODB_URI for any real deployment.",
    );
    return createMemoryStore();
  }
  return openMongoStore({
    uri: config.mongodb.uri.reveal(),
    database: config.mongodb.database,
    timeoutMs: config.mongodb.timeoutMs,
    socketTimeoutMs: config.mongodb.socketTimeoutMs,
    logger,
  });
}
