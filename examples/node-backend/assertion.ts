import { createRemoteJWKSet, jwtVerify, type JWTPayload } from "jose";

// Checks the assertion authlink's verify page hands to /callback (or that a
// VerifyLink by code returns): a JWT signed by authlink, checked against its
// published keys (JWKS) with the issuer and the audience, and accepted once
// (its `jti` is remembered until it expires). Keep the seen `jti`s in storage
// every instance shares when the app runs more than one process.

export interface SignInProof {
  /** authlink's user id. */
  readonly userId: string;
  readonly email: string;
  /** How the person proved the address: ["magiclink"], ["email"] or ["otp"]. */
  readonly amr: readonly string[];
  /** What the link was for: magiclink, invite, signup, … */
  readonly linkType: string;
}

export interface AssertionVerifierOptions {
  /** AUTHLINK_PUBLIC_URL: the issuer; the JWKS is at {issuer}/.well-known/jwks.json. */
  readonly issuer: string;
  /** AUTHLINK_ASSERTION_AUDIENCE (default: the issuer). */
  readonly audience?: string;
  /** The link types whose redemption signs a person in here. */
  readonly signInTypes?: readonly string[];
}

export class AssertionRefused extends Error {
  override readonly name = "AssertionRefused";
}

export type AssertionVerifier = (assertion: string) => Promise<SignInProof>;

const DEFAULT_SIGN_IN_TYPES = ["magiclink", "invite", "signup"];

export function createAssertionVerifier(options: AssertionVerifierOptions): AssertionVerifier {
  const issuer = options.issuer.replace(/\/+$/, "");
  const audience = options.audience ?? issuer;
  const signInTypes = new Set(options.signInTypes ?? DEFAULT_SIGN_IN_TYPES);
  const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
  const seen = new Map<string, number>(); // jti → exp (seconds)

  return async (assertion) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(assertion, jwks, { issuer, audience, algorithms: ["EdDSA", "ES256"] }));
    } catch (error) {
      throw new AssertionRefused(`assertion not accepted: ${(error as Error).message}`, { cause: error });
    }
    const now = Date.now() / 1000;
    for (const [jti, exp] of seen) if (exp < now) seen.delete(jti);
    if (typeof payload.jti !== "string" || seen.has(payload.jti)) throw new AssertionRefused("assertion already used");
    seen.set(payload.jti, payload.exp ?? now);

    const linkType = typeof payload.authlink_type === "string" ? payload.authlink_type : "";
    // A recovery or email-change assertion proves the mailbox, not a sign-in this app asked for.
    if (!signInTypes.has(linkType)) throw new AssertionRefused(`a ${linkType || "unknown"} link does not sign anyone in here`);
    if (typeof payload.sub !== "string" || typeof payload.email !== "string") throw new AssertionRefused("assertion without sub or email");
    const amr = Array.isArray(payload.amr) ? payload.amr.filter((m): m is string => typeof m === "string") : [];
    return { userId: payload.sub, email: payload.email, amr, linkType };
  };
}
