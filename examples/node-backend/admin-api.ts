import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { LinkState, LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import type { Link } from "../../gen/authlink/v1/link_admin_service_pb.js";
import type { GeneratedLink, GeneratedType, LinkList, ListedLink, Revoked } from "./admin-api-types.js";
import type { AuthlinkClients } from "./authlink-clients.js";
import { describeAuthlinkError } from "./authlink-errors.js";

// The admin link generator's JSON API: what the React page calls. It runs
// for a signed-in administrator only, and calls authlink with the backend's
// service key, so the browser never holds a key and never talks to authlink.

/** The link types the admin page offers (each redirects to this app's /callback). */
const GENERATED_TYPES: Readonly<Record<GeneratedType, LinkType>> = {
  magiclink: LinkType.MAGICLINK,
  invite: LinkType.INVITE,
};

const TYPE_NAMES: Readonly<Partial<Record<LinkType, string>>> = {
  [LinkType.SIGNUP]: "signup",
  [LinkType.MAGICLINK]: "magiclink",
  [LinkType.RECOVERY]: "recovery",
  [LinkType.INVITE]: "invite",
  [LinkType.EMAIL_CHANGE]: "email_change",
};

const STATE_NAMES: Readonly<Partial<Record<LinkState, string>>> = {
  [LinkState.VALID]: "valid",
  [LinkState.EXPIRED]: "expired",
  [LinkState.USED]: "used",
  [LinkState.REPLACED]: "replaced",
  [LinkState.REVOKED]: "revoked",
};

export interface AdminAnswer {
  readonly status: number;
  readonly body: unknown;
}

export interface AdminApiOptions {
  readonly authlink: AuthlinkClients;
  /** Where generated links send the person after the verify page: the app's /callback. */
  readonly callbackUrl: string;
}

export type AdminApi = (route: string, fields: Record<string, unknown>) => Promise<AdminAnswer>;

export function createAdminApi(options: AdminApiOptions): AdminApi {
  const { auth, links } = options.authlink;
  const routes: Record<string, (fields: Record<string, unknown>) => Promise<AdminAnswer>> = {
    async generate(fields) {
      const name = String(fields.type);
      const type = Object.hasOwn(GENERATED_TYPES, name) ? GENERATED_TYPES[name as GeneratedType] : undefined;
      if (type === undefined) return badRequest(`type must be one of ${Object.keys(GENERATED_TYPES).join(", ")}`);
      const link = await auth.generateLink({ type, email: String(fields.email ?? ""), redirectTo: options.callbackUrl });
      return ok<GeneratedLink>({
        type: TYPE_NAMES[link.verificationType] ?? "",
        email: link.user?.email ?? "",
        actionLink: link.actionLink,
        emailOtp: link.emailOtp,
        hashedToken: link.hashedToken,
        expiresAt: iso(link.expiresAt),
      });
    },
    async links(fields) {
      const answer = await links.listLinks({ email: String(fields.email ?? ""), pageSize: 50 });
      return ok<LinkList>({ links: answer.links.map(describeLink), more: answer.nextPageToken !== "" });
    },
    async revoke(fields) {
      const hashedTokens = Array.isArray(fields.hashedTokens) ? fields.hashedTokens.map(String) : undefined;
      const answer = hashedTokens
        ? await links.revokeLinks({ target: { case: "hashedTokens", value: { hashedTokens } } })
        : await links.revokeLinks({ target: { case: "user", value: { email: String(fields.email ?? "") } } });
      return ok<Revoked>({ revokedCount: answer.revokedCount, hashedTokens: answer.hashedTokens });
    },
  };
  return async (route, fields) => {
    const run = Object.hasOwn(routes, route) ? routes[route] : undefined;
    if (!run) return { status: 404, body: { error: { code: "not_found", message: "no such admin call" } } };
    try {
      return await run(fields);
    } catch (error) {
      const failure = describeAuthlinkError(error);
      const { httpStatus, ...rest } = failure;
      return { status: httpStatus, body: { error: rest } };
    }
  };
}

function describeLink(link: Link): ListedLink {
  return {
    hashedToken: link.hashedToken,
    type: TYPE_NAMES[link.type] ?? "",
    state: STATE_NAMES[link.state] ?? "",
    email: link.email,
    issuedAt: iso(link.issuedAt),
    expiresAt: iso(link.expiresAt),
    stateChangedAt: iso(link.stateChangedAt),
    issuedBy: link.issuedBy,
  };
}

function iso(timestamp: Timestamp | undefined): string {
  return timestamp ? timestampDate(timestamp).toISOString() : "";
}

function ok<T>(body: T): AdminAnswer {
  return { status: 200, body };
}

function badRequest(message: string): AdminAnswer {
  return { status: 400, body: { error: { code: "invalid_argument", reason: "validation_failed", message, fields: [] } } };
}
