import { tombstoneOf, type LinkEnding, type LinkRecord, type LinkTombstone } from "./link.js";
import type { LinkType } from "./link-type.js";
import type { OperationOptions, Store } from "./store.js";

// Links ended before their time: replaced by a newer issue of their type,
// revoked by a recovery, an email change, or an administrator. The
// tombstones are recorded first (the first fate recorded for a link wins),
// then the link documents of the links whose fate this call decided are
// deleted.

export class LinkEndings {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /**
   * End these links as `ending`: record their tombstones (the first fate
   * recorded for a link wins, so a link a redemption claimed first, or that
   * another call ended first, is not this call's), then delete the link
   * documents of those this call ended. Returns them. The deletes are
   * tidying up: the tombstone already makes the link unusable.
   */
  async end(links: readonly LinkRecord[], ending: LinkEnding, at: Date, op: OperationOptions = {}): Promise<LinkTombstone[]> {
    if (links.length === 0) return [];
    const store = this.#store;
    const ended = await store.tombstones.record(links.map((link) => tombstoneOf(link, ending, at)), op);
    await Promise.all(ended.map((tombstone) => store.links.delete(tombstone.tokenHash).catch(() => false)));
    return ended;
  }

  /**
   * Revoke the user's outstanding links (of `types`, or all types when none
   * are given): what an administrator's revocation, password or address
   * change, or deletion of the user does. Returns the links this call
   * revoked; links already used, replaced, revoked, or expired are not
   * counted (a retry revokes nothing twice). Audited by the caller's use case.
   */
  async revokeUserLinks(userId: string, types: readonly LinkType[] | undefined, at: Date, op: OperationOptions = {}): Promise<LinkTombstone[]> {
    const stored = await this.#store.links.findByUser(userId, types?.length === 1 ? types[0] : undefined, op);
    const outstanding = stored.filter(
      (link) => (types === undefined || types.length === 0 || types.includes(link.type)) && at.getTime() < link.expiresAt.getTime(),
    );
    return this.end(outstanding, "revoked", at, op);
  }

  /**
   * Revoke these links (by hash); those not stored, or whose fate is already
   * decided, or that have expired, are skipped. Returns the links this call revoked.
   */
  async revokeLinks(tokenHashes: readonly string[], at: Date, op: OperationOptions = {}): Promise<LinkTombstone[]> {
    const { links } = this.#store;
    const found = await Promise.all([...new Set(tokenHashes)].map((hash) => links.find(hash, at, op)));
    const outstanding = found.filter((link): link is LinkRecord => link !== undefined && at.getTime() < link.expiresAt.getTime());
    return this.end(outstanding, "revoked", at, op);
  }
}
