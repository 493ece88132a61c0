// What the verify page reads from its address: the link's parameters, from
// the fragment (`#token=…&type=…&redirect_to=…`, as authlink writes links) or
// from the query (`?token=…`, links issued before the fragment). Anything
// malformed, oversized or repeated makes the whole link invalid: the page then
// shows one generic view and calls nothing.

export const PAGE_LINK_TYPES = ["signup", "magiclink", "recovery", "invite", "email_change"] as const;
export type PageLinkType = (typeof PAGE_LINK_TYPES)[number];

export type LinkParams =
  | { readonly kind: "link"; readonly token: string; readonly type: PageLinkType }
  /** Not a usable link; `type` is kept when it alone was readable (it preselects the code form). */
  | { readonly kind: "invalid"; readonly type: PageLinkType | undefined };

/** Longer than any link authlink writes (a 43-character token, a type, a 2048-character redirect). */
const MAX_PARAMS_LENGTH = 4096;
const MAX_REDIRECT_LENGTH = 2048;
/** base64url; authlink's tokens are 43 characters (32 bytes). */
const TOKEN = /^[A-Za-z0-9_-]{16,128}$/;

export function isPageLinkType(value: string | null | undefined): value is PageLinkType {
  return (PAGE_LINK_TYPES as readonly (string | null | undefined)[]).includes(value);
}

export function readLinkParams(hash: string, search: string): LinkParams {
  const fragment = hash.startsWith("#") ? hash.slice(1) : hash;
  const query = search.startsWith("?") ? search.slice(1) : search;
  const raw = fragment !== "" ? fragment : query;
  if (raw.length > MAX_PARAMS_LENGTH) return { kind: "invalid", type: undefined };
  let params: URLSearchParams;
  try {
    params = new URLSearchParams(raw);
  } catch {
    return { kind: "invalid", type: undefined };
  }
  const single = (name: string): string | undefined | null => {
    const values = params.getAll(name);
    return values.length === 0 ? undefined : values.length === 1 ? values[0] : null; // null: repeated
  };
  const type = single("type");
  const token = single("token");
  const redirectTo = single("redirect_to");
  const knownType = isPageLinkType(type) ? type : undefined;
  if (typeof token !== "string" || !TOKEN.test(token) || !knownType) return { kind: "invalid", type: knownType };
  // The page never navigates to this (it goes where the server says the link
  // leads), but a redirect_to that authlink could not have written means the
  // link was tampered with.
  if (redirectTo === null || (redirectTo !== undefined && !isHttpUrl(redirectTo, MAX_REDIRECT_LENGTH))) {
    return { kind: "invalid", type: knownType };
  }
  return { kind: "link", token, type: knownType };
}

/**
 * Characters that a redirect target authlink wrote never holds raw (URL
 * serialization percent-encodes them, and the allow-list refuses the rest):
 * angle brackets, double quotes, whitespace, controls, backslashes.
 */
const UNWRITTEN = /[<>"\\\s\x00-\x1f\x7f]/;

/** An absolute http(s) URL of at most `maxLength` characters. */
export function isHttpUrl(text: string, maxLength: number): boolean {
  if (text.length > maxLength || !/^https?:\/\//i.test(text) || UNWRITTEN.test(text)) return false;
  try {
    const url = new URL(text);
    return url.protocol === "https:" || url.protocol === "http:";
  } catch {
    return false;
  }
}
