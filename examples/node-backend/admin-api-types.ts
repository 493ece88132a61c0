// The admin JSON API's shapes, shared by the backend (admin-api.ts) and the
// React page (examples/admin-link-generator). Types only: no Node, no DOM.

/** The link types the admin page can generate. */
export type GeneratedType = "magiclink" | "invite";

/** POST /admin/api/me → */
export interface WhoAmI {
  readonly email: string;
  readonly admin: boolean;
}

/** POST /admin/api/generate { type, email } → */
export interface GeneratedLink {
  readonly type: string;
  readonly email: string;
  readonly actionLink: string;
  readonly emailOtp: string;
  readonly hashedToken: string;
  /** ISO 8601. */
  readonly expiresAt: string;
}

/** One link as POST /admin/api/links { email } lists it (never a secret). */
export interface ListedLink {
  readonly hashedToken: string;
  readonly type: string;
  /** valid, expired, used, replaced or revoked. */
  readonly state: string;
  readonly email: string;
  readonly issuedAt: string;
  readonly expiresAt: string;
  /** When it was used, replaced or revoked ("" otherwise). */
  readonly stateChangedAt: string;
  readonly issuedBy: string;
}

export interface LinkList {
  readonly links: readonly ListedLink[];
  /** More links exist than the page shows. */
  readonly more: boolean;
}

/** POST /admin/api/revoke { hashedTokens } or { email } → */
export interface Revoked {
  readonly revokedCount: number;
  /** The links this call revoked. */
  readonly hashedTokens: readonly string[];
}

/** Any failed call → { error } */
export interface ApiError {
  /** e.g. invalid_argument, already_exists, resource_exhausted, unimplemented, unauthenticated. */
  readonly code: string;
  readonly reason?: string;
  readonly message: string;
  readonly fields?: readonly string[];
  readonly retryAfterSeconds?: number;
}
