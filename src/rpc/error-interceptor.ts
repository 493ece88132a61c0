import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "../log/logger.js";
import { asAuthlinkError, toConnectError } from "./error-details.js";

/**
 * The outermost interceptor: whatever an inner layer throws leaves as a
 * ConnectError with a reason. Unexpected errors are logged here, with their
 * cause, and answered as a bare INTERNAL.
 */
export function createErrorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (thrown) {
      const error = asAuthlinkError(thrown);
      if (error.kind === "internal" || error.kind === "unavailable") {
        logger.error(
          { method: req.method.name, reason: error.reason, err: error.cause },
          "call failed unexpectedly",
        );
      }
      throw toConnectError(error);
    }
  };
}
