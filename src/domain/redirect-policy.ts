// Which `redirect_to` targets a link may carry.
//
// The allow-list holds URL patterns with glob semantics:
//
//   https://app.example.com/**          any path on that origin
//   https://*.example.com/auth/*        one subdomain label, one path segment
//   http://localhost:*/**               any port on loopback (http only there)
//
// - scheme: `https`, or `http` when the host is loopback (localhost,
//   127.0.0.1, [::1]); nothing else, so no javascript:, data: or custom schemes.
// - host: exact, except that a label may contain `*`, which matches one or
//   more letters, digits or hyphens inside that one label (never a dot). The
//   last two labels (the registrable domain) may not contain `*`.
// - port: absent means the scheme's default; `*` means any port.
// - path: `*` matches within one segment, `**` matches across segments; a
//   pattern without a path matches `/` only.
// - query and fragment of the target are not matched and are kept.
//
// A target is checked as written, before any leniency of URL parsers: it must
// be absolute (`scheme://`), without backslashes, whitespace, control
// characters or user info, and its host must already be in canonical form (no
// decimal or hex IPs, no percent-encoding, no trailing dot, no Unicode). A
// target that fails any check is rejected with a reason, never replaced.

export const MAX_REDIRECT_LENGTH = 2048;

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);
const DEFAULT_PORTS: Readonly<Record<string, string>> = { "https:": "443", "http:": "80" };

interface CompiledPattern {
  readonly source: string;
  readonly protocol: "https:" | "http:";
  readonly host: RegExp;
  /** Canonical port string ("" = scheme default), or "*" for any. */
  readonly port: string;
  readonly path: RegExp;
}

export type RedirectCheck = { ok: true; url: string } | { ok: false; problem: string };

export interface RedirectPolicy {
  /** The patterns, as configured. */
  readonly patterns: readonly string[];
  /** Check a requested redirect target; on success `url` is its normalized form. */
  check(target: string): RedirectCheck;
}

/** Compile the allow-list; every unusable pattern is reported, none is skipped. */
export function compileRedirectPolicy(patterns: readonly string[]): { policy: RedirectPolicy; problems: string[] } {
  const problems: string[] = [];
  const compiled: CompiledPattern[] = [];
  for (const source of patterns) {
    const result = compilePattern(source);
    if (typeof result === "string") problems.push(`${JSON.stringify(source)}: ${result}`);
    else compiled.push(result);
  }
  return {
    problems,
    policy: {
      patterns: [...patterns],
      check: (target) => checkTarget(target, compiled),
    },
  };
}

function compilePattern(source: string): CompiledPattern | string {
  const match = /^(https?):\/\/(\[[0-9a-fA-F:.]+\]|[^/:[\]]+)(?::(\*|\d{1,5}))?(\/[^?#]*)?$/.exec(source);
  if (!match) return "must look like https://host[:port][/path] (no query or fragment)";
  const [, scheme, rawHost = "", rawPort, rawPath] = match;
  const protocol = scheme === "https" ? "https:" : "http:";
  const host = rawHost.toLowerCase();
  if (LOOPBACK_HOSTS.has(host)) {
    // Loopback: exact host, any scheme.
  } else {
    if (protocol === "http:") return "http is allowed only for loopback hosts (localhost, 127.0.0.1, [::1])";
    const labels = host.split(".");
    if (labels.length < 2) return "host must be a domain name like app.example.com";
    for (const label of labels) {
      if (!/^[a-z0-9*-]+$/.test(label) || label.includes("**")) return `host label ${JSON.stringify(label)} is not valid`;
    }
    if (labels.slice(-2).some((label) => label.includes("*"))) {
      return "the registrable domain (the last two labels) may not contain *";
    }
  }
  let port = rawPort ?? "";
  if (port !== "*" && port !== "") {
    const n = Number(port);
    if (n < 1 || n > 65535) return "port must be 1-65535 or *";
    port = port === DEFAULT_PORTS[protocol] ? "" : String(n);
  }
  return {
    source,
    protocol,
    host: new RegExp(`^${host.split(".").map(hostLabelRegex).join("\\.")}$`),
    port,
    path: pathRegex(rawPath ?? "/"),
  };
}

function hostLabelRegex(label: string): string {
  if (label === "*") return "[a-z0-9-]+";
  return label.split("*").map(escapeRegex).join("[a-z0-9-]*");
}

function pathRegex(path: string): RegExp {
  let out = "";
  for (let i = 0; i < path.length; i++) {
    if (path.startsWith("**", i)) {
      out += ".*";
      i++;
    } else if (path[i] === "*") {
      out += "[^/]*";
    } else {
      out += escapeRegex(path[i] ?? "");
    }
  }
  return new RegExp(`^${out}$`);
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function checkTarget(target: string, patterns: readonly CompiledPattern[]): RedirectCheck {
  if (target.length > MAX_REDIRECT_LENGTH) return { ok: false, problem: `must be at most ${MAX_REDIRECT_LENGTH} characters` };
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f-\uffff\\]/.test(target)) {
    return { ok: false, problem: "must not contain whitespace or control characters or backslashes or non-ASCII characters" };
  }
  const authority = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)/.exec(target);
  if (!authority) return { ok: false, problem: "must be an absolute https URL" };
  const rawAuthority = authority[2] ?? "";
  if (rawAuthority.includes("@")) return { ok: false, problem: "must not contain user info" };
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return { ok: false, problem: "is not a valid URL" };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return { ok: false, problem: "must use https" };
  if (url.username !== "" || url.password !== "") return { ok: false, problem: "must not contain user info" };
  const rawHost = rawAuthority.replace(/:\d*$/, "").toLowerCase();
  if (rawHost !== url.hostname) return { ok: false, problem: "must name its host in canonical form" };
  if (url.protocol === "http:" && !LOOPBACK_HOSTS.has(url.hostname)) {
    return { ok: false, problem: "must use https (http is allowed only for loopback hosts)" };
  }
  const allowed = patterns.some(
    (p) =>
      p.protocol === url.protocol &&
      p.host.test(url.hostname) &&
      (p.port === "*" || p.port === url.port) &&
      p.path.test(url.pathname),
  );
  if (!allowed) return { ok: false, problem: "does not match the redirect allow-list" };
  return { ok: true, url: url.href };
}
