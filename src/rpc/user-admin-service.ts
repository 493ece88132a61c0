import type { ServiceImpl } from "@connectrpc/connect";
import type { UserAdminService } from "../../gen/authlink/v1/user_admin_service_pb.js";
import type { UserAdmin } from "../domain/user-admin.js";
import { callOf } from "./context-values.js";
import {
  createUserInput,
  createUserResponse,
  deleteUserInput,
  deleteUserResponse,
  getUserInput,
  getUserResponse,
  inviteUserInput,
  inviteUserResponse,
  updateUserInput,
  updateUserResponse,
} from "./user-admin-messages.js";

// The UserAdminService handlers, for connect-node's router and the grpc-js
// listener alike. They only translate; access (service role, from the
// contract), deadlines and error mapping are the call boundary's.

export function createUserAdminService(users: UserAdmin): ServiceImpl<typeof UserAdminService> {
  return {
    async createUser(request, context) {
      return createUserResponse(await users.create(createUserInput(request), callOf(context)));
    },
    async getUser(request, context) {
      return getUserResponse(await users.get(getUserInput(request), callOf(context)));
    },
    async updateUser(request, context) {
      return updateUserResponse(await users.update(updateUserInput(request), callOf(context)));
    },
    async deleteUser(request, context) {
      return deleteUserResponse(await users.delete(deleteUserInput(request), callOf(context)));
    },
    async inviteUser(request, context) {
      return inviteUserResponse(await users.invite(inviteUserInput(request), callOf(context)));
    },
  };
}
