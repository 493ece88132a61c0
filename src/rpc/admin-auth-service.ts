import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { AdminAuthService } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import type { CallContext, LinkService } from "../domain/link-service.js";
import { generateLinkInput, generateLinkResponse, verifyLinkInput, verifyLinkResponse } from "./messages.js";

// The AdminAuthService handlers. They only translate: the wire request to a
// domain input, the domain result to the wire response. Who may call is
// settled by the caller interceptor; errors are mapped by the error
// interceptor.

export function createAdminAuthService(links: LinkService): ServiceImpl<typeof AdminAuthService> {
  return {
    async generateLink(request, context) {
      return generateLinkResponse(await links.generate(generateLinkInput(request), callContext(context)));
    },
    async verifyLink(request, context) {
      return verifyLinkResponse(await links.verify(verifyLinkInput(request), callContext(context)));
    },
  };
}

function callContext(context: HandlerContext): CallContext {
  return { signal: context.signal };
}
