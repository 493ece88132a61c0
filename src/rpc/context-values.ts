import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Call } from "../domain/call.js";
import type { PeerCertificate } from "../identity/peer-certificate.js";

// Per-call values for connect-node: the peer, seeded from the raw HTTP
// request (server/http-handler.ts), and the Call, set by the call adapter
// (call-adapter.ts; on the grpc-js listener grpc-js-adapter.ts) before any handler
// runs. Neither default is ever written to, so no state
// is shared between calls.

/** What the connection tells about the peer. */
export interface Peer {
  readonly certificate: PeerCertificate;
  /** The client's address: the TCP peer, or what trusted proxies forwarded. */
  readonly clientAddress: string;
}

export const peerKey = createContextKey<Peer>(
  Object.freeze({ certificate: Object.freeze({ presented: false as const }), clientAddress: "" }),
  { description: "authlink peer" },
);

export const callKey = createContextKey<Call | undefined>(undefined, { description: "authlink call" });

/** The call a handler serves; only services mounted with the call adapter have one. */
export function callOf(context: HandlerContext): Call {
  const call = context.values.get(callKey);
  if (!call) throw new Error("no Call in this context: the service is mounted without the call adapter");
  return call;
}
