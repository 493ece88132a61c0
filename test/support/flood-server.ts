import { startAuthlink } from "../../src/authlink.js";
import { loadConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/log/logger.js";

// authlink in a child process of its own, configured from its environment
// like main.ts, for measuring what a flood does to a server: asked over IPC,
// it collects garbage and reports its resident memory, heap, log lines and
// (embedded store) audit events. Run with --expose-gc. Log lines are counted,
// not kept, so that the log costs the process no memory.

export type FloodServerRequest = { readonly kind: "measure" } | { readonly kind: "stop" };

export type FloodServerMessage =
  | { readonly kind: "listening"; readonly url: string }
  | {
      readonly kind: "measured";
      readonly rss: number;
      readonly heapUsed: number;
      /** Heap reserved by V8 (used or not). */
      readonly heapTotal: number;
      /** Memory of C++ objects bound to JavaScript ones, buffers included. */
      readonly external: number;
      readonly logLines: number;
      /** Embedded store only. */
      readonly auditEvents: number | undefined;
    }
  | { readonly kind: "stopped" };

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc || !process.send) throw new Error("run as a child process with --expose-gc and an IPC channel");
const send = (message: FloodServerMessage) => process.send?.(message);

let logLines = 0;
const logger = createLogger("info", { write: () => void logLines++ });
const running = await startAuthlink({ config: loadConfig(process.env), logger });
send({ kind: "listening", url: running.url });

process.on("message", (request: FloodServerRequest) => {
  void (async () => {
    if (request.kind === "measure") {
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const { rss, heapUsed, heapTotal, external } = process.memoryUsage();
      const auditEvents = running.store.kind === "memory" ? (await running.store.audit.find({}, Number.MAX_SAFE_INTEGER)).length : undefined;
      send({ kind: "measured", rss, heapUsed, heapTotal, external, logLines, auditEvents });
    } else {
      await running.close();
      send({ kind: "stopped" });
      process.disconnect();
    }
  })();
});
