/**
 * The parameters of an action link: in its fragment (`/verify#token=…`), as
 * authlink writes them. A template may put them in the query instead.
 */
export function linkParams(actionLink: string): URLSearchParams {
  const url = new URL(actionLink);
  return url.hash.length > 1 ? new URLSearchParams(url.hash.slice(1)) : url.searchParams;
}
