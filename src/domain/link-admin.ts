import { isWellFormedHashedToken } from "../crypto/link-token.js";
import type { JsonPosition, PageTokenCodec } from "../crypto/page-token.js";
import type { AuditLog } from "./audit-log.js";
import { audited } from "./audit-subject.js";
import type { Call } from "./call.js";
import type { Clock } from "./clock.js";
import { normalizeEmail } from "./email.js";
import { AuthlinkError, invalidRequest, type FieldViolation } from "./errors.js";
import type { LinkRecord, LinkTombstone } from "./link.js";
import { compareNewestFirst } from "./link-order.js";
import { previewOf, maskEmail, type LinkState } from "./link-preview.js";
import type { GeneratedLink, LinkService, ReissueLinkInput } from "./link-service.js";
import type { LinkSettings } from "./link-settings.js";
import type { LinkType } from "./link-type.js";
import type { LinkListPosition, LinkListQuery, OperationOptions, Store } from "./store.js";
import type { EmailChangeAddress } from "./user.js";

// The operators' view of links (LinkAdminService): describe one, list them,
// revoke them, issue one again. Knows nothing of protobuf or MongoDB. Never
// a secret in an answer: a link is named by its hashed token, and only
// ReissueLink hands out new secrets, through LinkService's one issuing path
// (which audits before the handout). The other calls are audited by
// `audited` with what they touched.
//
// A link's state is read as PreviewLink reads it (previewOf): its tombstone
// is its fate, else a link that is not pending is valid or expired. A
// pending link (its GenerateLink has not answered) is nobody's yet: it is
// not listed, and GetLink does not know it.

export interface LinkAdminDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly audit: AuditLog;
  readonly links: LinkService;
  /** Signs ListLinks page tokens (crypto/page-token.ts). */
  readonly pageTokens: PageTokenCodec;
  readonly settings: LinkSettings;
}

/** The states a known link can be in. */
export type KnownLinkState = Exclude<LinkState, "unknown">;

/** A link as an operator sees it: never its token, code, or the code's hash. */
export interface LinkView {
  readonly hashedToken: string;
  readonly type: LinkType;
  readonly state: KnownLinkState;
  readonly userId: string;
  readonly email: string;
  readonly maskedEmail: string;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
  /** When it was used, replaced or revoked; undefined for valid and expired links. */
  readonly stateChangedAt: Date | undefined;
  readonly redirectTo: string | undefined;
  /** "" for links stored before the issuing caller was recorded. */
  readonly issuedBy: string;
  readonly otpAttemptsUsed: number;
  readonly otpAttemptsMax: number;
  readonly emailChangeAddress: EmailChangeAddress | undefined;
}

export interface GetLinkInput {
  readonly hashedToken: string;
}

/**
 * ListLinks as it comes off the wire: "" and undefined mean "no filter";
 * "invalid" is an enum value the contract does not define.
 */
export interface ListLinksInput {
  readonly userId: string;
  readonly email: string;
  readonly type: LinkType | "invalid" | undefined;
  readonly state: KnownLinkState | "invalid" | undefined;
  readonly issuedBy: string;
  /** An Invalid Date for a malformed timestamp. */
  readonly issuedAfter: Date | undefined;
  readonly issuedBefore: Date | undefined;
  /** 0: the default. */
  readonly pageSize: number;
  readonly pageToken: string;
}

export interface LinkPage {
  readonly links: readonly LinkView[];
  /** "" on the last page. */
  readonly nextPageToken: string;
}

export type RevokeLinksInput =
  | { readonly kind: "hashed_tokens"; readonly hashedTokens: readonly string[] }
  | {
      readonly kind: "user";
      readonly userId: string;
      readonly email: string;
      /** Empty: every type. */
      readonly types: readonly (LinkType | "invalid")[];
    }
  | { readonly kind: "none" };

export interface RevokedLinks {
  /** The links this call revoked. */
  readonly hashedTokens: readonly string[];
}

export interface ReissuedLink {
  readonly link: GeneratedLink;
  readonly replacedHashedToken: string;
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;
export const MAX_REVOKE_HASHES = 1_000;
/**
 * How many batches (of a page's size plus one, from each collection) one
 * ListLinks call reads while a state filter leaves its page short; past
 * that it answers the links it has with a page token to go on from there.
 */
const MAX_LIST_ROUNDS = 10;
/** Links whose code attempts are counted at once. */
const ATTEMPT_LOOKUPS_AT_ONCE = 16;
/** Hashed tokens looked up at once by RevokeLinks. */
const REVOKE_LOOKUPS_AT_ONCE = 50;

/** A link's document and tombstone, either of which may be gone. */
interface Stored {
  readonly link?: LinkRecord | undefined;
  readonly tombstone?: LinkTombstone | undefined;
}

type ListFilters = Omit<LinkListQuery, "after" | "limit">;

/** A link described from what the store holds, before its code attempts are counted. */
type Described = Omit<LinkView, "otpAttemptsUsed" | "otpAttemptsMax">;

export class LinkAdmin {
  readonly #deps: LinkAdminDeps;

  constructor(deps: LinkAdminDeps) {
    this.#deps = deps;
  }

  async get(input: GetLinkInput, call: Call): Promise<LinkView> {
    return audited(this.#deps, call, async (subject) => {
      if (!isWellFormedHashedToken(input.hashedToken)) throw invalidRequest([hashedTokenViolation("hashed_token")]);
      subject.hashedTokens.push(input.hashedToken);
      const { store, clock } = this.#deps;
      const op: OperationOptions = { signal: call.signal };
      const now = clock.now();
      const [link, tombstone] = await Promise.all([
        store.links.find(input.hashedToken, now, op),
        store.tombstones.find(input.hashedToken, now, op),
      ]);
      const described = describe({ link, tombstone }, now);
      if (!described) throw new AuthlinkError("link_not_found");
      Object.assign(subject, { linkType: described.type, userId: described.userId, email: described.email });
      const [view] = await this.#withAttempts([described], now, op);
      return view as LinkView;
    });
  }

  /**
   * Newest issue first. Links and tombstones are separate collections, each
   * listed in that order; they are merged (a hash in both is its tombstone,
   * listed once) down to the last place both lists are known complete, and
   * read again from there while the page is short. The page token holds the
   * place of the last link served, so links issued meanwhile never shift a
   * page. Not audited with the hashes it lists (a page may hold 500); the
   * event names the filters' user, address and type.
   */
  async list(input: ListLinksInput, call: Call): Promise<LinkPage> {
    return audited(this.#deps, call, async (subject) => {
      const { filters, state, pageSize } = validateListLinks(input);
      Object.assign(subject, { linkType: filters.type, userId: filters.userId, email: filters.email });
      const { pageTokens, clock } = this.#deps;
      const now = clock.now();
      const query = { list: "ListLinks", ...filters, state };
      let after: LinkListPosition | undefined;
      if (input.pageToken !== "") {
        after = positionFrom(pageTokens.decode(input.pageToken, query, now));
        if (!after) {
          throw invalidRequest([{ field: "page_token", description: "is not a page token of this query, or has expired" }]);
        }
      }
      const op: OperationOptions = { signal: call.signal };
      const page = await this.#page(filters, state, pageSize, after, now, op);
      return {
        links: await this.#withAttempts(page.links, now, op),
        nextPageToken: page.next ? pageTokens.encode(query, [page.next.issuedAt.getTime(), page.next.tokenHash], now) : "",
      };
    });
  }

  async #page(
    filters: ListFilters,
    state: KnownLinkState | undefined,
    pageSize: number,
    after: LinkListPosition | undefined,
    now: Date,
    op: OperationOptions,
  ): Promise<{ links: Described[]; next: LinkListPosition | undefined }> {
    const { store } = this.#deps;
    const limit = pageSize + 1;
    // A link that still has its document and no tombstone is valid or expired.
    const needLinks = state === undefined || state === "valid" || state === "expired";
    const found: Described[] = [];
    let position = after;
    for (let round = 0; round < MAX_LIST_ROUNDS; round++) {
      const query: LinkListQuery = { ...filters, after: position, limit };
      // Links first: a link ended meanwhile has its tombstone recorded before
      // its document goes, so the second read finds what the first missed.
      const links = needLinks ? await store.links.list(query, now, op) : [];
      const tombstones = await store.tombstones.list(query, now, op);
      // A list cut at the limit is complete only down to its last entry:
      // the merge is exact down to the first such place.
      let complete: LinkListPosition | undefined;
      for (const list of [links, tombstones]) {
        const last = list.length === limit ? list.at(-1) : undefined;
        if (last && (!complete || compareNewestFirst(last, complete) < 0)) complete = last;
      }
      const within = (entry: LinkListPosition) => !complete || compareNewestFirst(entry, complete) <= 0;
      const merged = new Map<string, Stored & { place: LinkListPosition }>();
      for (const link of links) if (within(link)) merged.set(link.tokenHash, { link, place: link });
      for (const tombstone of tombstones) {
        if (within(tombstone)) merged.set(tombstone.tokenHash, { ...merged.get(tombstone.tokenHash), tombstone, place: tombstone });
      }
      const ordered = [...merged.values()].sort((a, b) => compareNewestFirst(a.place, b.place));
      for (const [i, entry] of ordered.entries()) {
        const described = describe(entry, now);
        if (!described || (state !== undefined && described.state !== state)) continue;
        found.push(described);
        if (found.length === pageSize) {
          const more = i < ordered.length - 1 || complete !== undefined;
          return { links: found, next: more ? entry.place : undefined };
        }
      }
      if (!complete) return { links: found, next: undefined };
      position = complete;
    }
    // A short page: the state filter matched little of what was read.
    return { links: found, next: position };
  }

  async revoke(input: RevokeLinksInput, call: Call): Promise<RevokedLinks> {
    return audited(this.#deps, call, async (subject) => {
      const { store, clock, links } = this.#deps;
      const op: OperationOptions = { signal: call.signal };
      switch (input.kind) {
        case "none":
          throw invalidRequest([{ field: "target", description: "exactly one of hashed_tokens or user is required" }]);
        case "hashed_tokens": {
          const hashes = validateHashedTokens(input.hashedTokens);
          subject.hashedTokens.push(...hashes);
          // A few at a time (each is a lookup), so that 1,000 of them do not
          // crowd out other calls' operations.
          const now = clock.now();
          const revoked: string[] = [];
          for (let i = 0; i < hashes.length; i += REVOKE_LOOKUPS_AT_ONCE) {
            const ended = await links.revokeLinks(hashes.slice(i, i + REVOKE_LOOKUPS_AT_ONCE), now, op);
            revoked.push(...ended.map((tombstone) => tombstone.tokenHash));
          }
          return { hashedTokens: revoked };
        }
        case "user": {
          const target = validateUserLinks(input);
          Object.assign(subject, { email: target.email, linkType: target.types.length === 1 ? target.types[0] : undefined });
          let userId = target.userId;
          if (target.email !== undefined) {
            // An address nobody holds has no links to revoke.
            userId = (await store.users.findByEmail(target.email, op))?.id;
            if (userId === undefined) return { hashedTokens: [] };
          }
          subject.userId = userId;
          const revoked = await links.revokeUserLinks(userId as string, target.types, clock.now(), op);
          subject.hashedTokens.push(...revoked.map((tombstone) => tombstone.tokenHash));
          return { hashedTokens: revoked.map((tombstone) => tombstone.tokenHash) };
        }
      }
    });
  }

  /** Audited by LinkService.reissue (before the new secrets leave), as GenerateLink is. */
  async reissue(input: ReissueLinkInput, call: Call): Promise<ReissuedLink> {
    const link = await this.#deps.links.reissue(input, call);
    return { link, replacedHashedToken: input.hashedToken };
  }

  /**
   * How many code attempts each link has used: the attempt claims
   * `otp:{hash}:{n}` recorded. LinkService claims them in order from 1, so a
   * link without attempt 1 (most links) costs one lookup. They are kept
   * until the link's expiry and read as of just before it, so an expired or
   * ended link still shows them until the store forgets them. A few links
   * at a time, so that a page of 500 does not crowd out other calls'
   * operations.
   */
  async #withAttempts(views: readonly Described[], now: Date, op: OperationOptions): Promise<LinkView[]> {
    const { store, settings } = this.#deps;
    const max = settings.otpMaxAttempts;
    const attemptsUsed = async (view: Described): Promise<number> => {
      const asOf = new Date(Math.min(now.getTime(), view.expiresAt.getTime() - 1));
      const key = (n: number) => `otp:${view.hashedToken}:${n}`;
      if (max === 0 || (await store.claims.claimed([key(1)], asOf, op)).size === 0) return 0;
      const rest = Array.from({ length: max - 1 }, (_, i) => key(i + 2));
      return 1 + (await store.claims.claimed(rest, asOf, op)).size;
    };
    const counted: LinkView[] = [];
    for (let i = 0; i < views.length; i += ATTEMPT_LOOKUPS_AT_ONCE) {
      const batch = views.slice(i, i + ATTEMPT_LOOKUPS_AT_ONCE);
      const used = await Promise.all(batch.map(attemptsUsed));
      batch.forEach((view, j) => counted.push({ ...view, otpAttemptsUsed: used[j] as number, otpAttemptsMax: max }));
    }
    return counted;
  }
}

/** The link as its tombstone and document say at `now`; undefined when it is unknown or pending. */
function describe(stored: Stored, now: Date): Described | undefined {
  const known = stored.tombstone ?? (stored.link?.pending ? undefined : stored.link);
  if (!known) return undefined;
  const preview = previewOf(known.type, now, stored.link, stored.tombstone);
  if (preview.state === "unknown") return undefined;
  return {
    hashedToken: known.tokenHash,
    type: known.type,
    state: preview.state,
    userId: known.userId,
    email: known.email,
    maskedEmail: maskEmail(known.email),
    issuedAt: known.issuedAt,
    expiresAt: known.expiresAt,
    stateChangedAt: preview.stateChangedAt,
    redirectTo: known.redirectTo,
    issuedBy: known.issuedBy ?? "",
    emailChangeAddress: known.emailChange?.address,
  };
}

function hashedTokenViolation(field: string): FieldViolation {
  return { field, description: "must be the 64 lower-case hex characters of a hashed token" };
}

function validateListLinks(input: ListLinksInput): { filters: ListFilters; state: KnownLinkState | undefined; pageSize: number } {
  const violations: FieldViolation[] = [];
  const bad = (field: string, description: string) => violations.push({ field, description });
  let email: string | undefined;
  if (input.email !== "") {
    const checked = normalizeEmail(input.email);
    if (checked.ok) email = checked.email;
    else bad("email", checked.problem);
  }
  if (input.type === "invalid") bad("type", "must be SIGNUP or MAGICLINK or RECOVERY or INVITE or EMAIL_CHANGE when set");
  if (input.state === "invalid") bad("state", "must be VALID or EXPIRED or USED or REPLACED or REVOKED when set");
  const badTime = (date: Date | undefined) => date !== undefined && Number.isNaN(date.getTime());
  if (badTime(input.issuedAfter)) bad("issued_after", "is not a valid timestamp");
  if (badTime(input.issuedBefore)) bad("issued_before", "is not a valid timestamp");
  if (
    violations.length === 0 &&
    input.issuedAfter !== undefined &&
    input.issuedBefore !== undefined &&
    input.issuedBefore.getTime() <= input.issuedAfter.getTime()
  ) {
    bad("issued_before", "must be later than issued_after");
  }
  if (violations.length > 0) throw invalidRequest(violations);
  return {
    filters: {
      userId: input.userId === "" ? undefined : input.userId,
      email,
      type: input.type as LinkType | undefined,
      issuedBy: input.issuedBy === "" ? undefined : input.issuedBy,
      issuedFrom: input.issuedAfter,
      issuedBefore: input.issuedBefore,
    },
    state: input.state as KnownLinkState | undefined,
    pageSize: input.pageSize <= 0 ? DEFAULT_PAGE_SIZE : Math.min(input.pageSize, MAX_PAGE_SIZE),
  };
}

/** The position in a decoded page token: [issued at (ms), token hash]. */
function positionFrom(position: JsonPosition | undefined): LinkListPosition | undefined {
  if (!Array.isArray(position) || position.length !== 2) return undefined;
  const [at, tokenHash] = position;
  if (typeof at !== "number" || !Number.isFinite(at) || typeof tokenHash !== "string") return undefined;
  return { issuedAt: new Date(at), tokenHash };
}

function validateHashedTokens(hashedTokens: readonly string[]): string[] {
  const field = "hashed_tokens.hashed_tokens";
  if (hashedTokens.length === 0 || hashedTokens.length > MAX_REVOKE_HASHES) {
    throw invalidRequest([{ field, description: `must list 1 to ${MAX_REVOKE_HASHES} hashed tokens` }]);
  }
  const violations = hashedTokens.flatMap((hash, i) => (isWellFormedHashedToken(hash) ? [] : [hashedTokenViolation(`${field}[${i}]`)]));
  if (violations.length > 0) throw invalidRequest(violations);
  return [...new Set(hashedTokens)];
}

function validateUserLinks(input: Extract<RevokeLinksInput, { kind: "user" }>): {
  userId: string | undefined;
  email: string | undefined;
  types: LinkType[];
} {
  const violations: FieldViolation[] = [];
  let email: string | undefined;
  if ((input.userId === "") === (input.email === "")) {
    violations.push({ field: "user", description: "exactly one of user_id or email is required" });
  } else if (input.email !== "") {
    const checked = normalizeEmail(input.email);
    if (checked.ok) email = checked.email;
    else violations.push({ field: "user.email", description: checked.problem });
  }
  if (input.types.includes("invalid")) {
    violations.push({ field: "user.types", description: "must each be SIGNUP or MAGICLINK or RECOVERY or INVITE or EMAIL_CHANGE" });
  }
  if (violations.length > 0) throw invalidRequest(violations);
  return {
    userId: input.userId === "" ? undefined : input.userId,
    email,
    types: [...new Set(input.types as LinkType[])],
  };
}
