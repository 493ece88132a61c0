import type { LinkType } from "./link-type.js";

/**
 * `{public URL}/verify?token=…&type=…[&redirect_to=…]`. The origin always
 * comes from configuration, never from the request (Host, :authority and
 * X-Forwarded-Host cannot steer links to another site).
 */
export function buildActionLink(publicUrl: URL, token: string, type: LinkType, redirectTo: string | undefined): string {
  const url = new URL("verify", publicUrl.href.endsWith("/") ? publicUrl : `${publicUrl.href}/`);
  url.searchParams.set("token", token);
  url.searchParams.set("type", type);
  if (redirectTo !== undefined) url.searchParams.set("redirect_to", redirectTo);
  return url.href;
}
