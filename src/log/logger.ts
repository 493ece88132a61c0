import { pino, type Logger } from "pino";

// One JSON line per event on stdout. Nothing secret is ever passed to the
// logger; as a second line of defence the paths that could hold one are
// redacted.

export type { Logger };

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "authlink" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ["password", "token", "otp", "email_otp", "authorization", "*.password", "*.token", "*.otp", "*.authorization"],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
