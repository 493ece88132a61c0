// Email address policy.
//
// authlink accepts ASCII addresses only and stores them lower-cased. That is a
// deliberate security choice: Unicode look-alikes (the Kelvin sign, dotless i,
// fullwidth letters) change under case folding or NFKC and could otherwise
// resolve to another person's account, or pass for it. Internationalized
// domains are accepted in their ASCII (xn--) form, which is what mail servers
// use anyway. Quoted local parts and IP-literal domains are not accepted.

export const MAX_EMAIL_LENGTH = 254;
const MAX_LOCAL_LENGTH = 64;
const MAX_DOMAIN_LENGTH = 253;

const LOCAL_ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$/;
const DOMAIN_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export type EmailCheck = { ok: true; email: string } | { ok: false; problem: string };

/** Validate an address and return its stored (normalized) form. */
export function normalizeEmail(raw: string): EmailCheck {
  if (raw.length === 0) return { ok: false, problem: "is required" };
  if (raw.length > MAX_EMAIL_LENGTH) return { ok: false, problem: `must be at most ${MAX_EMAIL_LENGTH} characters` };
  // eslint-disable-next-line no-control-regex
  if (/[^\x21-\x7e]/.test(raw)) {
    return {
      ok: false,
      problem: "must be ASCII without spaces (write internationalized domains in their xn-- form)",
    };
  }
  const at = raw.lastIndexOf("@");
  if (at <= 0 || raw.indexOf("@") !== at) return { ok: false, problem: "must be one local part and one domain joined by a single at sign" };
  const local = raw.slice(0, at);
  const domain = raw.slice(at + 1);
  if (local.length > MAX_LOCAL_LENGTH) return { ok: false, problem: "has a local part longer than 64 characters" };
  if (!local.split(".").every((atom) => LOCAL_ATOM.test(atom))) {
    return { ok: false, problem: "has an invalid local part" };
  }
  const labels = domain.split(".");
  if (
    domain.length > MAX_DOMAIN_LENGTH ||
    labels.length < 2 ||
    !labels.every((label) => DOMAIN_LABEL.test(label)) ||
    /^\d+$/.test(labels[labels.length - 1] ?? "")
  ) {
    return { ok: false, problem: "has an invalid domain" };
  }
  return { ok: true, email: raw.toLowerCase() };
}
