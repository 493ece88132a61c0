import type { ServiceImpl } from "@connectrpc/connect";
import type { LinkAdminService } from "../../gen/authlink/v1/link_admin_service_pb.js";
import type { LinkAdmin } from "../domain/link-admin.js";
import { callOf } from "./context-values.js";
import {
  getLinkInput,
  getLinkResponse,
  listLinksInput,
  listLinksResponse,
  reissueLinkInput,
  reissueLinkResponse,
  revokeLinksInput,
  revokeLinksResponse,
} from "./link-admin-messages.js";

// LinkAdminService's unary handlers (GetLink, ListLinks, RevokeLinks,
// ReissueLink), for connect-node's router and the grpc-js listener alike.
// They only translate; the bulk methods are in bulk-generation-handlers.ts,
// and app.ts serves both sets as one service.

export type LinkAdminHandlers = Pick<ServiceImpl<typeof LinkAdminService>, "getLink" | "listLinks" | "revokeLinks" | "reissueLink">;

export function createLinkAdminService(admin: LinkAdmin): LinkAdminHandlers {
  return {
    async getLink(request, context) {
      return getLinkResponse(await admin.get(getLinkInput(request), callOf(context)));
    },
    async listLinks(request, context) {
      return listLinksResponse(await admin.list(listLinksInput(request), callOf(context)));
    },
    async revokeLinks(request, context) {
      return revokeLinksResponse(await admin.revoke(revokeLinksInput(request), callOf(context)));
    },
    async reissueLink(request, context) {
      return reissueLinkResponse(await admin.reissue(reissueLinkInput(request), callOf(context)));
    },
  };
}
