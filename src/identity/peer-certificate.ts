import type { TLSSocket } from "node:tls";

// What a TLS client certificate says about its holder. The server asks for a
// certificate but does not reject the handshake itself (rejectUnauthorized is
// off), so that a missing, untrusted or expired certificate becomes a gRPC
// status with a reason instead of a dropped connection; this module reports
// what the TLS layer decided.

export type PeerCertificate =
  | { readonly presented: false }
  | {
      readonly presented: true;
      /** The chain verified against the configured client CA and is in date. */
      readonly verified: boolean;
      /** OpenSSL's reason when not verified (e.g. CERT_HAS_EXPIRED). */
      readonly verifyError: string | undefined;
      /** The SPIFFE/URI SAN if there is exactly one, else the CN; undefined if neither is usable. */
      readonly identity: string | undefined;
      /** Why no identity could be taken, e.g. several URI SANs. */
      readonly identityProblem: string | undefined;
    };

const NOT_PRESENTED: PeerCertificate = { presented: false };

export function readPeerCertificate(socket: TLSSocket | undefined): PeerCertificate {
  if (!socket || typeof socket.getPeerCertificate !== "function") return NOT_PRESENTED;
  const cert = socket.getPeerCertificate(false);
  if (!cert || Object.keys(cert).length === 0) return NOT_PRESENTED;
  const { identity, problem } = certificateIdentity(cert.subjectaltname, cert.subject?.CN);
  return {
    presented: true,
    verified: socket.authorized === true,
    verifyError: socket.authorized ? undefined : String(socket.authorizationError ?? "unverified"),
    identity,
    identityProblem: problem,
  };
}

/**
 * A certificate's identity: its single URI SAN (SPIFFE ID) when it has URI
 * SANs, else its single subject CN. Several URI SANs or several CNs are
 * ambiguous and give no identity.
 */
export function certificateIdentity(
  subjectAltName: string | undefined,
  commonName: string | string[] | undefined,
): { identity: string | undefined; problem: string | undefined } {
  const uris = parseSubjectAltNames(subjectAltName ?? "")
    .filter((entry) => entry.kind === "URI")
    .map((entry) => entry.value);
  if (uris.length > 1) return { identity: undefined, problem: "certificate has more than one URI SAN" };
  if (uris.length === 1) return { identity: uris[0], problem: undefined };
  if (Array.isArray(commonName)) return { identity: undefined, problem: "certificate has more than one CN" };
  if (commonName) return { identity: commonName, problem: undefined };
  return { identity: undefined, problem: "certificate has neither a URI SAN nor a CN" };
}

/**
 * Node renders SANs as `URI:spiffe://a/b, DNS:x`; values with separators in
 * them are JSON-quoted (`URI:"a, b"`), so quoted values are decoded, not split.
 */
export function parseSubjectAltNames(text: string): { kind: string; value: string }[] {
  const entries: { kind: string; value: string }[] = [];
  const pattern = /\s*([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:,|$)/g;
  for (let m = pattern.exec(text); m !== null && m[0] !== ""; m = pattern.exec(text)) {
    const kind = (m[1] ?? "").trim();
    const raw = m[2] ?? "";
    let value = raw;
    if (raw.startsWith('"')) {
      try {
        value = JSON.parse(raw) as string;
      } catch {
        value = raw;
      }
    }
    entries.push({ kind, value });
  }
  return entries;
}

/**
 * A certificate the TLS layer has already verified (grpc-js hands out only
 * those: `call.getAuthContext().sslPeerCertificate` is set for an authorized
 * connection and absent otherwise, so an unverified one reads as none).
 */
export function verifiedPeerCertificate(
  cert: { readonly subjectaltname?: string | undefined; readonly subject?: { readonly CN?: string | string[] } | undefined } | undefined,
): PeerCertificate {
  if (!cert) return NOT_PRESENTED;
  const { identity, problem } = certificateIdentity(cert.subjectaltname, cert.subject?.CN);
  return { presented: true, verified: true, verifyError: undefined, identity, identityProblem: problem };
}
