import { getOption, hasOption, type DescMethod } from "@bufbuild/protobuf";
import { Access, access } from "../../gen/authlink/v1/access_pb.js";
import type { AccessRequirement } from "../security/access.js";

/**
 * A method's access as declared in the contract with `option
 * (authlink.v1.access)`. Anything but an explicit ACCESS_PUBLIC requires the
 * service role: deny by default.
 */
export function accessRequirement(method: DescMethod): AccessRequirement {
  return hasOption(method, access) && getOption(method, access) === Access.PUBLIC ? "public" : "service_role";
}
