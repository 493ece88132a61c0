import { startAuthlink } from "./authlink.js";
import { ConfigError, loadConfig, type Config } from "./config/config.js";
import { createLogger, type Logger } from "./log/logger.js";

// The process: configuration from the environment, start, and a graceful stop
// on SIGTERM/SIGINT. Exit codes: 0 clean stop, 1 failure, 2 bad configuration.

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`authlink: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  warnAboutDevelopmentDefaults(config, logger);

  const running = await startAuthlink({ config, logger });
  logger.info(
    {
      url: running.url,
      store: running.store.kind,
      tls: config.tls ? (config.tls.clientCa ? "mtls" : "tls") : "off",
      publicUrl: config.links.publicUrl.href,
      metrics: running.metricsUrl,
      grpcJs: running.grpcAddress,
    },
    "authlink listening",
  );

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down: finishing in-flight calls");
    running.close().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

function warnAboutDevelopmentDefaults(config: Config, logger: Logger): void {
  if (config.serviceKeyGenerated) {
    // Development only (no keys and no mTLS configured): the generated key is
    // shown once on stderr, outside the JSON log, so it can be copied.
    const key = config.serviceKeys[0]?.reveal() ?? "";
    process.stderr.write(
      `\nauthlink: no AUTHLINK_SERVICE_KEYS or AUTHLINK_SERVICE_IDENTITIES configured.\n` +
        `A service key was generated for this process only:\n\n    authorization: Bearer ${key}\n\n`,
    );
    logger.warn("using a generated service key (development only); set AUTHLINK_SERVICE_KEYS or mTLS identities");
  }
  if (config.assertions.generated) {
    logger.warn(
      "AUTHLINK_SIGNING_KEYS is not set: assertions are signed with a key generated for this process, so they " +
        "cannot be verified after a restart or against another instance (development only)",
    );
  }
  if (config.otp.generated) {
    logger.warn(
      "AUTHLINK_OTP_SECRET is not set: one-time codes use a random per-process key, so codes stop working " +
        "after a restart and on other instances (development only)",
    );
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`authlink: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
