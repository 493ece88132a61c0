import type { Interceptor } from "@connectrpc/connect";
import { authorize } from "../security/access.js";
import { resolveCaller, type CallerPolicy } from "../security/caller.js";
import { accessRequirement } from "./access-policy.js";
import { callerKey, peerKey } from "./context-values.js";

/**
 * Establishes who is calling (client certificate or service key) and enforces
 * the method's declared access before the handler runs. A method that is not
 * public needs the service role: no credential is UNAUTHENTICATED, a
 * credential that is not the service role is PERMISSION_DENIED.
 */
export function createCallerInterceptor(policy: CallerPolicy): Interceptor {
  return (next) => async (req) => {
    const peer = req.contextValues.get(peerKey);
    const caller = resolveCaller(peer.certificate, req.header.get("authorization"), policy);
    req.contextValues.set(callerKey, caller);
    const denied = authorize(caller, accessRequirement(req.method));
    if (denied) throw denied;
    return next(req);
  };
}
