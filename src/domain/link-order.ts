import type { LinkListPosition, LinkListQuery } from "./store.js";

// The order in which links are listed (ListLinks): newest issue first, ties
// broken by token hash, both descending. Token hashes are unique, so no two
// entries share a place; a link and its tombstone share the link's place.
// Pages are cut by the place of the last entry served, so links issued
// meanwhile (newer, or at the same instant with any hash) never shift a page.

/** Negative when `a` comes before `b` (is newer), positive when after, 0 for the same place. */
export function compareNewestFirst(a: LinkListPosition, b: LinkListPosition): number {
  const byTime = b.issuedAt.getTime() - a.issuedAt.getTime();
  if (byTime !== 0) return byTime;
  return a.tokenHash < b.tokenHash ? 1 : a.tokenHash > b.tokenHash ? -1 : 0;
}

/** Whether `entry` passes every filter of `query` and comes after `query.after` (the limit aside). */
export function matchesListQuery(
  entry: LinkListPosition & { readonly userId: string; readonly email: string; readonly type: string; readonly issuedBy?: string | undefined },
  query: LinkListQuery,
): boolean {
  return (
    (query.userId === undefined || entry.userId === query.userId) &&
    (query.email === undefined || entry.email === query.email) &&
    (query.type === undefined || entry.type === query.type) &&
    (query.issuedBy === undefined || (entry.issuedBy ?? "") === query.issuedBy) &&
    (query.issuedFrom === undefined || entry.issuedAt.getTime() >= query.issuedFrom.getTime()) &&
    (query.issuedBefore === undefined || entry.issuedAt.getTime() < query.issuedBefore.getTime()) &&
    (query.after === undefined || compareNewestFirst(entry, query.after) > 0)
  );
}
