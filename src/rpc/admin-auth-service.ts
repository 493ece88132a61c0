import type { ServiceImpl } from "@connectrpc/connect";
import type { AdminAuthService } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import type { LinkService } from "../domain/link-service.js";
import { callOf } from "./context-values.js";
import {
  generateLinkInput,
  generateLinkResponse,
  previewLinkInput,
  previewLinkResponse,
  verifyLinkInput,
  verifyLinkResponse,
} from "./messages.js";

// The AdminAuthService handlers, for connect-node's router and the grpc-js
// listener alike (app.ts mounts the same object on both). They only translate: the
// wire request to a domain input, the domain result to the wire response.
// Who may call, the deadline and the error mapping are the call boundary's
// (rpc/call-adapter.ts, rpc/grpc-js-adapter.ts).

export function createAdminAuthService(links: LinkService): ServiceImpl<typeof AdminAuthService> {
  return {
    async generateLink(request, context) {
      return generateLinkResponse(await links.generate(generateLinkInput(request), callOf(context)));
    },
    async verifyLink(request, context) {
      return verifyLinkResponse(await links.verify(verifyLinkInput(request), callOf(context)));
    },
    async previewLink(request, context) {
      return previewLinkResponse(await links.preview(previewLinkInput(request), callOf(context)));
    },
  };
}
