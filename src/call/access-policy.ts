import { getOption, hasOption, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Access, access } from "../../gen/authlink/v1/access_pb.js";
import type { MethodAccess } from "./access.js";

// Who may call what, per service. authlink's own services declare each
// method's access in the contract (`option (authlink.v1.access)`); services
// authlink serves but does not define (health, reflection) get an explicit
// table here. A service with no policy, or a method its table does not name,
// is denied to everyone: deny by default.

export interface ServicePolicy {
  access(method: DescMethod): MethodAccess;
  /** Refusals at the boundary are audited (authlink's services; not operator probes). */
  readonly audited: boolean;
}

/**
 * authlink's services: the method option decides, and anything but an
 * explicit ACCESS_PUBLIC requires the service role.
 */
export const contractPolicy: ServicePolicy = {
  access: (method) => {
    // Read once per method: getOption decodes the option on every call.
    let decided = contractAccess.get(method);
    if (decided === undefined) {
      decided = hasOption(method, access) && getOption(method, access) === Access.PUBLIC ? "public" : "service_role";
      contractAccess.set(method, decided);
    }
    return decided;
  },
  audited: true,
};
const contractAccess = new WeakMap<DescMethod, MethodAccess>();

/** A foreign service: each method's access named explicitly; the rest denied. Not audited. */
export function explicitPolicy(table: Readonly<Record<string, MethodAccess>>): ServicePolicy {
  return {
    access: (method) => (Object.hasOwn(table, method.name) ? (table[method.name] as MethodAccess) : "denied"),
    audited: false,
  };
}

export class AccessPolicies {
  readonly #byService = new Map<string, ServicePolicy>();

  /** Register the policy of a service (by its full name, e.g. authlink.v1.AdminAuthService). */
  add(service: DescService, policy: ServicePolicy): this {
    this.#byService.set(service.typeName, policy);
    return this;
  }

  /** The access a method gets: "denied" for any service without a policy. */
  accessOf(method: DescMethod): MethodAccess {
    return this.#byService.get(method.parent.typeName)?.access(method) ?? "denied";
  }

  isAudited(method: DescMethod): boolean {
    return this.#byService.get(method.parent.typeName)?.audited ?? false;
  }
}
