import type { ServiceImpl } from "@connectrpc/connect";
import type { AuditService } from "../../gen/authlink/v1/audit_service_pb.js";
import type { AuditReader } from "../domain/audit-reader.js";
import {
  listAuditEventsInput,
  listAuditEventsResponse,
  watchAuditEventsInput,
  watchAuditEventsResponse,
} from "./audit-messages.js";
import { callOf } from "./context-values.js";

// The AuditService handlers, for connect-node's router and the grpc-js
// listener alike. They only translate; the watch's stream runs until the
// call's signal fires (the caller cancels, or its deadline or the server's
// AUTHLINK_MAX_STREAM_DURATION passes).

export function createAuditService(reader: AuditReader): ServiceImpl<typeof AuditService> {
  return {
    async listAuditEvents(request, context) {
      return listAuditEventsResponse(await reader.list(listAuditEventsInput(request), callOf(context)));
    },
    async *watchAuditEvents(request, context) {
      const events = await reader.watch(watchAuditEventsInput(request), callOf(context));
      for await (const event of events) yield watchAuditEventsResponse(event);
    },
  };
}
