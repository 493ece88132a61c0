import type {
  ApiError,
  GeneratedLink,
  GeneratedType,
  LinkList,
  Revoked,
  WhoAmI,
} from "../../node-backend/admin-api-types";

// The page's only server: the example backend's JSON API under /admin/api/.
// It holds the service key and calls authlink; this page never sees a key
// and never calls authlink itself.

export class ApiFailure extends Error {
  constructor(readonly error: ApiError) {
    super(error.message);
  }
}

async function call<T>(route: string, body: object = {}): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`${import.meta.env.BASE_URL}api/${route}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch {
    throw new ApiFailure({ code: "unavailable", message: "The server did not answer. Check your connection and try again." });
  }
  const answer = (await response.json().catch(() => ({}))) as { error?: ApiError };
  if (!response.ok) throw new ApiFailure(answer.error ?? { code: "unknown", message: `HTTP ${response.status}` });
  return answer as T;
}

export const api = {
  me: () => call<WhoAmI>("me"),
  generate: (type: GeneratedType, email: string) => call<GeneratedLink>("generate", { type, email }),
  links: (email: string) => call<LinkList>("links", { email }),
  revokeLinks: (hashedTokens: readonly string[]) => call<Revoked>("revoke", { hashedTokens }),
  revokeAll: (email: string) => call<Revoked>("revoke", { email }),
};

/** What a person should read for a failed call. */
export function explain(error: unknown): string {
  if (!(error instanceof ApiFailure)) return "Something went wrong. Try again.";
  const { code, reason, message, retryAfterSeconds } = error.error;
  if (reason === "email_exists") return "This address already has a confirmed account: send a magic link instead of an invitation.";
  if (code === "invalid_argument") return `Check the address: ${message}`;
  if (code === "resource_exhausted") return `Too many links for now. Try again in ${retryAfterSeconds ?? 60} seconds.`;
  if (code === "unimplemented") return "This authlink server cannot list or revoke links yet (UNIMPLEMENTED): update it.";
  if (code === "permission_denied") return "Sign in as an administrator first.";
  return message || "Something went wrong. Try again.";
}
