import { createLogger, type Logger } from "../../src/log/logger.js";

/** A real (pino) logger whose lines are kept in memory, to assert on and to scan for secrets. */
export function createCapturedLogger(level = "debug"): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger(level, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}
