// The five kinds of link authlink issues. The domain uses these names; the RPC
// layer translates to and from the protobuf enum.

export const LINK_TYPES = ["signup", "magiclink", "recovery", "invite", "email_change"] as const;

export type LinkType = (typeof LINK_TYPES)[number];

export function isLinkType(value: string): value is LinkType {
  return (LINK_TYPES as readonly string[]).includes(value);
}
