import { AuthlinkError } from "../domain/errors.js";
import type { Caller } from "./caller.js";

// Whether a caller may call a method, given the method's declared access (read
// from the contract by rpc/access-policy.ts). Anything not declared public
// requires the service role.

export type AccessRequirement = "service_role" | "public";

/** An error to answer with, or undefined when the call may proceed. */
export function authorize(caller: Caller, requirement: AccessRequirement): AuthlinkError | undefined {
  if (requirement === "public") return undefined;
  switch (caller.kind) {
    case "service":
      return undefined;
    case "anonymous":
      return new AuthlinkError("credentials_missing");
    case "rejected":
      return new AuthlinkError(caller.reason);
  }
}
