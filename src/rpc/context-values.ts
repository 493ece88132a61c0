import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { newCallFacts, type CallFacts } from "../domain/call-context.js";
import type { Caller } from "../security/caller.js";
import type { PeerCertificate } from "../security/peer-certificate.js";

// Per-call values seeded from the raw HTTP request (server/http-handler.ts)
// and filled in by interceptors, for handlers to read.

/** What the connection tells about the peer. */
export interface Peer {
  readonly certificate: PeerCertificate;
  /** The client's address: the TCP peer, or what trusted proxies forwarded. */
  readonly clientAddress: string;
}

export const peerKey = createContextKey<Peer>(
  { certificate: { presented: false }, clientAddress: "" },
  { description: "authlink peer" },
);

/** Filled in by the handlers, read by the audit interceptor. */
export const factsKey = createContextKey<CallFacts>(newCallFacts(), { description: "authlink call facts" });

/** Set by the caller interceptor before any handler runs. */
export const callerKey = createContextKey<Caller>({ kind: "anonymous" }, { description: "authlink caller" });

export function callerOf(context: HandlerContext): Caller {
  return context.values.get(callerKey);
}

export function peerOf(context: HandlerContext): Peer {
  return context.values.get(peerKey);
}
