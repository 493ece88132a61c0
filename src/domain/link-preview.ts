import { isWellFormedLinkToken } from "../crypto/link-token.js";
import { invalidRequest, type FieldViolation } from "./errors.js";
import type { LinkEnding, LinkRecord, LinkTombstone } from "./link.js";
import type { LinkType } from "./link-type.js";

// PreviewLink: a look at a link that consumes nothing. Its holder has proven
// possession of a 256-bit token, so telling them exactly where the link
// stands (expired, used, replaced, revoked) tells nobody anything they did
// not already hold. VerifyLink keeps its one indistinguishable error.

export interface PreviewLinkInput {
  /** undefined: unspecified or not a known type. */
  readonly type: LinkType | undefined;
  readonly token: string;
}

export interface PreviewLinkRequest {
  readonly type: LinkType;
  readonly token: string;
}

/** Where a link stands. */
export type LinkState = "valid" | "expired" | LinkEnding | "unknown";

export type LinkPreview =
  | { readonly state: "unknown" }
  | {
      readonly state: Exclude<LinkState, "unknown">;
      readonly type: LinkType;
      /** The address the link was sent to, masked (maskEmail). */
      readonly maskedEmail: string;
      readonly expiresAt: Date;
      /** Host (and port, if any) of the redirect target; undefined without one. */
      readonly redirectHost: string | undefined;
      /** When the link was used, replaced or revoked; undefined for valid and expired links. */
      readonly stateChangedAt: Date | undefined;
    };

const UNKNOWN: LinkPreview = { state: "unknown" };

/** Same style as link-requests.ts: every bad field listed, nothing read before. */
export function validatePreviewLink(input: PreviewLinkInput): PreviewLinkRequest {
  const violations: FieldViolation[] = [];
  if (input.type === undefined) {
    violations.push({ field: "type", description: "is required (SIGNUP or MAGICLINK or RECOVERY or INVITE or EMAIL_CHANGE)" });
  }
  if (!isWellFormedLinkToken(input.token)) {
    violations.push({ field: "token", description: "must be the 43-character token from the link" });
  }
  if (violations.length > 0 || input.type === undefined) throw invalidRequest(violations);
  return { type: input.type, token: input.token };
}

/**
 * The state of the link a holder asked about as `type`, from what the store
 * holds for its hash at `now`: its tombstone, which is its fate (a link
 * document may outlive it for a moment), else the link itself, unless it is
 * still pending (its GenerateLink has not answered: nobody holds it yet),
 * else nothing. A link of another type is UNKNOWN: the holder asked about a
 * different link. A link that expired before it was replaced or revoked
 * reads as expired: its first fate is the one it met.
 */
export function previewOf(
  type: LinkType,
  now: Date,
  link: LinkRecord | undefined,
  tombstone: LinkTombstone | undefined,
): LinkPreview {
  const known = tombstone ?? (link?.pending ? undefined : link);
  if (!known || known.type !== type) return UNKNOWN;
  const expired = (at: Date) => at.getTime() >= known.expiresAt.getTime();
  const state: Exclude<LinkState, "unknown"> = tombstone
    ? expired(tombstone.at) ? "expired" : tombstone.ending
    : expired(now) ? "expired" : "valid";
  return {
    state,
    type: known.type,
    maskedEmail: maskEmail(known.email),
    expiresAt: known.expiresAt,
    redirectHost: known.redirectTo === undefined ? undefined : redirectHost(known.redirectTo),
    stateChangedAt: state === "used" || state === "replaced" || state === "revoked" ? tombstone!.at : undefined,
  };
}

/**
 * The address with its local part hidden but recognisable:
 * `ann@example.com` → `a***@example.com`. The domain stays whole (the person
 * needs to recognise which mailbox). Always exactly three stars, so the
 * length is never shown; a local part of fewer than three characters shows
 * no character at all (`ab@example.com` → `***@example.com`), since its
 * first character would be half of it or all of it. Characters are code
 * points, so a non-ASCII first character is never split.
 */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf("@");
  if (at < 0) return "***";
  const local = [...email.slice(0, at)];
  const shown = local.length >= 3 ? local[0] : "";
  return `${shown}***${email.slice(at)}`;
}

function redirectHost(redirectTo: string): string | undefined {
  try {
    return new URL(redirectTo).host || undefined;
  } catch {
    return undefined;
  }
}
