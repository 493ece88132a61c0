import type { LinkType } from "./link-type.js";

// The URL a person receives. By default authlink's own verify page, with the
// secret in the fragment:
//
//   {public URL}/verify#token=…&type=magiclink[&redirect_to=…]
//
// A fragment never leaves the browser, so the token stays out of access logs,
// proxies and Referer headers, and a scanner that only fetches the URL never
// sees it. Operators who host their own page set a template with the
// placeholders {token}, {type} and {redirect_to} (each URL-encoded). The
// origin always comes from configuration, never from the request.

export type ActionLinkFormat =
  | { readonly kind: "verify_page"; readonly publicUrl: URL }
  | { readonly kind: "template"; readonly template: string };

export const ACTION_LINK_PLACEHOLDERS = ["{token}", "{type}", "{redirect_to}"] as const;

export function buildActionLink(
  format: ActionLinkFormat,
  token: string,
  type: LinkType,
  redirectTo: string | undefined,
): string {
  if (format.kind === "template") {
    return format.template
      .replaceAll("{token}", encodeURIComponent(token))
      .replaceAll("{type}", encodeURIComponent(type))
      .replaceAll("{redirect_to}", encodeURIComponent(redirectTo ?? ""));
  }
  const url = new URL("verify", format.publicUrl.href.endsWith("/") ? format.publicUrl : `${format.publicUrl.href}/`);
  const fragment = new URLSearchParams({ token, type });
  if (redirectTo !== undefined) fragment.set("redirect_to", redirectTo);
  url.hash = fragment.toString();
  return url.href;
}
