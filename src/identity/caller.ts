import type { PeerCertificate } from "./peer-certificate.js";
import type { ServiceKeyMatcher } from "./service-keys.js";

// Who is calling, established once per call from the transport's facts (the
// TLS client certificate and the authorization header), before any method
// runs. Deciding whether that caller may call a method is access-policy.ts.

export type Caller =
  | { readonly kind: "service"; readonly identity: string; readonly via: "mtls" | "service_key" }
  | { readonly kind: "anonymous" }
  | {
      readonly kind: "rejected";
      /** credentials_invalid: a credential that does not verify; not_service_role: valid but not allowed. */
      readonly reason: "credentials_invalid" | "not_service_role";
      /** The identity the credential claimed, when it claimed one (for audit). */
      readonly identity: string | undefined;
      /** Why, for logs and audit; not sent to the client. */
      readonly detail: string;
    };

export interface CallerPolicy {
  readonly keys: ServiceKeyMatcher;
  /** Allowed certificate identities (SPIFFE URI or CN), compared exactly. */
  readonly serviceIdentities: ReadonlySet<string>;
}

export function resolveCaller(
  certificate: PeerCertificate,
  authorization: string | null,
  policy: CallerPolicy,
): Caller {
  if (certificate.presented) {
    if (!certificate.verified) {
      return {
        kind: "rejected",
        reason: "credentials_invalid",
        identity: certificate.identity,
        detail: `client certificate not trusted: ${certificate.verifyError ?? "unverified"}`,
      };
    }
    if (certificate.identity === undefined) {
      return {
        kind: "rejected",
        reason: "not_service_role",
        identity: undefined,
        detail: certificate.identityProblem ?? "no identity",
      };
    }
    if (policy.serviceIdentities.has(certificate.identity)) {
      return { kind: "service", identity: certificate.identity, via: "mtls" };
    }
    // A trusted certificate that is not allow-listed falls through to the
    // bearer key only if one was sent; otherwise it is a valid non-service
    // credential.
    if (authorization === null) {
      return {
        kind: "rejected",
        reason: "not_service_role",
        identity: certificate.identity,
        detail: "certificate identity is not in AUTHLINK_SERVICE_IDENTITIES",
      };
    }
  }
  if (authorization === null) return { kind: "anonymous" };
  // The scheme name is case-insensitive (RFC 7235); the key is not.
  const bearer = /^bearer ([\x21-\x7e]+)$/i.exec(authorization);
  if (!bearer?.[1]) {
    return { kind: "rejected", reason: "credentials_invalid", identity: undefined, detail: "authorization is not a Bearer key" };
  }
  const identity = policy.keys.match(bearer[1]);
  if (identity === undefined) {
    return { kind: "rejected", reason: "credentials_invalid", identity: undefined, detail: "unknown service key" };
  }
  return { kind: "service", identity, via: "service_key" };
}

/** A short, secret-free name of the caller for audit and logs. */
export function callerIdentity(caller: Caller): string {
  switch (caller.kind) {
    case "service":
      return caller.identity;
    case "anonymous":
      return "anonymous";
    case "rejected":
      return caller.identity ?? "unknown";
  }
}
