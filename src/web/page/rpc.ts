import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AdminAuthService, LinkType } from "../../../gen/authlink/v1/admin_auth_service_pb.js";
import { RetryInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import type { PageLinkType } from "./link-params.js";

// authlink's public methods as the page calls them: the Connect protocol with
// JSON over fetch (POST; neither method may be called by GET), on the origin
// that served the page. RPC paths are fixed by the contract
// (/authlink.v1.AdminAuthService/…), so they live at the origin's root even
// when the page itself is under a base path.

export type AuthlinkClient = Client<typeof AdminAuthService>;

export function createAuthlinkClient(origin: string): AuthlinkClient {
  return createClient(AdminAuthService, createConnectTransport({ baseUrl: origin, defaultTimeoutMs: 15_000 }));
}

const TO_PROTO: Readonly<Record<PageLinkType, LinkType>> = {
  signup: LinkType.SIGNUP,
  magiclink: LinkType.MAGICLINK,
  recovery: LinkType.RECOVERY,
  invite: LinkType.INVITE,
  email_change: LinkType.EMAIL_CHANGE,
};

export function linkTypeToProto(type: PageLinkType): LinkType {
  return TO_PROTO[type];
}

export function linkTypeFromProto(type: LinkType): PageLinkType | undefined {
  return (Object.keys(TO_PROTO) as PageLinkType[]).find((name) => TO_PROTO[name] === type);
}

/** What went wrong with a call, as far as the person needs to know. */
export type CallFailure =
  /** The link or code was refused (invalid, expired, used, wrong type). */
  | { readonly kind: "refused" }
  /** Too many attempts from here: wait this long. */
  | { readonly kind: "rate_limited"; readonly retryAfterSeconds: number }
  /** The request itself was malformed (bad address, bad code). */
  | { readonly kind: "invalid" }
  /** Anything else: the service or the network; trying again may help. */
  | { readonly kind: "unavailable" };

const DEFAULT_RETRY_SECONDS = 60;

export function classifyFailure(error: unknown): CallFailure {
  const connectError = ConnectError.from(error);
  switch (connectError.code) {
    case Code.PermissionDenied:
      return { kind: "refused" };
    case Code.ResourceExhausted: {
      const delay = connectError.findDetails(RetryInfoSchema)[0]?.retryDelay;
      const seconds = delay ? Number(delay.seconds) + (delay.nanos > 0 ? 1 : 0) : DEFAULT_RETRY_SECONDS;
      return { kind: "rate_limited", retryAfterSeconds: Math.max(1, seconds) };
    }
    case Code.InvalidArgument:
      return { kind: "invalid" };
    default:
      return { kind: "unavailable" };
  }
}
