import { randomUUID } from "node:crypto";

// The request id ties a call's log lines, its audit event and its answer (the
// x-request-id response header) together. A caller's own id is kept when it
// is well formed, so a support ticket can quote the id the caller logged;
// anything else (too long, odd characters that could forge log fields) is
// replaced, never echoed.

export const REQUEST_ID_HEADER = "x-request-id";

const WELL_FORMED = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export function requestIdFrom(header: string | null | undefined): string {
  return header !== null && header !== undefined && WELL_FORMED.test(header) ? header : randomUUID();
}
