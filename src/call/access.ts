import { AuthlinkError } from "../domain/errors.js";
import type { Caller } from "../identity/caller.js";

// Whether a caller may call a method, given the method's access (from the
// service's policy, access-policy.ts).

/**
 * public: anyone (the request carries its own credential, or it is an
 * operator probe); service_role: only a proven service; denied: nobody (a
 * method no policy names).
 */
export type MethodAccess = "public" | "service_role" | "denied";

/** An error to answer with, or undefined when the call may proceed. */
export function authorize(caller: Caller, access: MethodAccess): AuthlinkError | undefined {
  if (access === "public") return undefined;
  if (access === "denied") return new AuthlinkError("method_not_exposed");
  switch (caller.kind) {
    case "service":
      return undefined;
    case "anonymous":
      return new AuthlinkError("credentials_missing");
    case "rejected":
      return new AuthlinkError(caller.reason);
  }
}
