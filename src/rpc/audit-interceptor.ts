import type { Interceptor } from "@connectrpc/connect";
import type { AuditEvent } from "../domain/audit-event.js";
import { newCallFacts } from "../domain/call-context.js";
import type { Clock } from "../domain/clock.js";
import { AuthlinkError } from "../domain/errors.js";
import type { Logger } from "../log/logger.js";
import { callerIdentity } from "../security/caller.js";
import type { AuditStore } from "../store/store.js";
import { callerKey, factsKey, peerKey } from "./context-values.js";
import { asAuthlinkError } from "./error-details.js";

/**
 * Every call leaves one audit event — success, each failure reason, and calls
 * refused before the handler (no credential, not the service role, rate
 * limited) — stored with the configured retention and written as one log
 * line. When the event cannot be stored the call fails: no link is ever
 * handed out unaudited.
 */
export function createAuditInterceptor(options: {
  readonly audit: AuditStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly retentionMs: number;
}): Interceptor {
  const { audit, clock, logger, retentionMs } = options;
  return (next) => async (req) => {
    const started = performance.now();
    const facts = newCallFacts();
    req.contextValues.set(factsKey, facts);
    const record = async (outcome: string) => {
      const at = clock.now();
      const event: AuditEvent = {
        at,
        method: req.method.name,
        caller: callerIdentity(req.contextValues.get(callerKey)),
        clientAddress: req.contextValues.get(peerKey).clientAddress,
        linkType: facts.linkType,
        userId: facts.userId,
        email: facts.email,
        hashedTokens: facts.hashedTokens,
        outcome,
        durationMs: Math.round(performance.now() - started),
      };
      logger.info({ audit: event }, "call");
      try {
        await audit.append(event, new Date(at.getTime() + retentionMs));
      } catch (error) {
        logger.error({ err: error, method: event.method }, "audit event could not be stored; failing the call");
        throw new AuthlinkError("store_unavailable", { cause: error });
      }
    };

    let response;
    try {
      response = await next(req);
    } catch (error) {
      await record(asAuthlinkError(error).reason);
      throw error;
    }
    await record("ok");
    return response;
  };
}
