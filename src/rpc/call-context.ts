import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Caller } from "../security/caller.js";
import type { PeerCertificate } from "../security/peer-certificate.js";

// Per-call values seeded from the raw HTTP request (server/http-handler.ts)
// and filled in by interceptors, for handlers to read.

/** What the connection tells about the peer. */
export interface Peer {
  readonly certificate: PeerCertificate;
  readonly remoteAddress: string;
}

export const peerKey = createContextKey<Peer>(
  { certificate: { presented: false }, remoteAddress: "" },
  { description: "authlink peer" },
);

/** Set by the caller interceptor before any handler runs. */
export const callerKey = createContextKey<Caller>({ kind: "anonymous" }, { description: "authlink caller" });

export function callerOf(context: HandlerContext): Caller {
  return context.values.get(callerKey);
}
