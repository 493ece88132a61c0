import type { ServiceImpl } from "@connectrpc/connect";
import type { LinkAdminService, StreamGenerateLinksRequest } from "../../gen/authlink/v1/link_admin_service_pb.js";
import type { BulkGeneration, BulkRowInput } from "../domain/bulk-generation.js";
import { bulkLinkResult, bulkRowInput } from "./bulk-messages.js";
import { callOf } from "./context-values.js";

// LinkAdminService's two bulk methods, for connect-node's router and the
// grpc-js listener alike. They only translate: rows off the wire into the
// domain (domain/bulk-generation.ts), each row's result back as it is done.
// The stream's caller, deadline (AUTHLINK_MAX_STREAM_DURATION) and error
// mapping are the call boundary's.

export type BulkGenerationHandlers = Pick<ServiceImpl<typeof LinkAdminService>, "bulkGenerateLinks" | "streamGenerateLinks">;

export function createBulkGenerationHandlers(bulk: BulkGeneration): BulkGenerationHandlers {
  return {
    async *bulkGenerateLinks(request, context) {
      for await (const result of bulk.generateAll(request.rows.map(bulkRowInput), callOf(context))) {
        yield { result: bulkLinkResult(result) };
      }
    },
    async *streamGenerateLinks(requests, context) {
      for await (const result of bulk.generateStream(rowsOf(requests), callOf(context))) {
        yield { result: bulkLinkResult(result) };
      }
    },
  };
}

/** Decoded lazily, one row per read: the domain reads only as fast as it answers. */
async function* rowsOf(requests: AsyncIterable<StreamGenerateLinksRequest>): AsyncGenerator<BulkRowInput, void, undefined> {
  for await (const request of requests) yield bulkRowInput(request.row);
}
