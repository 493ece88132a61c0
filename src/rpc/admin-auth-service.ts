import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { AdminAuthService } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import type { CallContext } from "../domain/call-context.js";
import type { LinkService } from "../domain/link-service.js";
import { callerOf, factsKey, peerOf } from "./context-values.js";
import { generateLinkInput, generateLinkResponse, verifyLinkInput, verifyLinkResponse } from "./messages.js";

// The AdminAuthService handlers. They only translate: the wire request to a
// domain input, the domain result to the wire response. Who may call is
// settled by the caller interceptor; errors are mapped by the error
// interceptor.

export interface AdminAuthServiceOptions {
  /** The longest a call may run, whatever deadline the client asked for. */
  readonly maxCallDurationMs: number;
}

export function createAdminAuthService(
  links: LinkService,
  options: AdminAuthServiceOptions,
): ServiceImpl<typeof AdminAuthService> {
  const callContext = (context: HandlerContext): CallContext => {
    const caller = callerOf(context);
    return {
      signal: AbortSignal.any([context.signal, AbortSignal.timeout(options.maxCallDurationMs)]),
      serviceIdentity: caller.kind === "service" ? caller.identity : undefined,
      clientAddress: peerOf(context).clientAddress,
      facts: context.values.get(factsKey),
    };
  };
  return {
    async generateLink(request, context) {
      return generateLinkResponse(await links.generate(generateLinkInput(request), callContext(context)));
    },
    async verifyLink(request, context) {
      return verifyLinkResponse(await links.verify(verifyLinkInput(request), callContext(context)));
    },
  };
}
