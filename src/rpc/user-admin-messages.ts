import { create } from "@bufbuild/protobuf";
import {
  CreateUserResponseSchema,
  DeleteUserResponseSchema,
  GetUserResponseSchema,
  InviteUserResponseSchema,
  UpdateUserResponseSchema,
  type CreateUserRequest,
  type CreateUserResponse,
  type DeleteUserRequest,
  type DeleteUserResponse,
  type GetUserRequest,
  type GetUserResponse,
  type InviteUserRequest,
  type InviteUserResponse,
  type UpdateUserRequest,
  type UpdateUserResponse,
} from "../../gen/authlink/v1/user_admin_service_pb.js";
import type { DeletedUser, UpdatedUser } from "../domain/user-admin.js";
import type {
  CreateUserInput,
  DeleteUserInput,
  GetUserInput,
  InviteUserInput,
  UpdateUserInput,
} from "../domain/user-admin-requests.js";
import type { GeneratedLink } from "../domain/link-service.js";
import type { JsonObject, User } from "../domain/user.js";
import { durationToMs, generateLinkResponse, userToProto } from "./messages.js";

// Translation between the UserAdminService messages and the domain. A proto3
// string left empty (and email_confirm false) means "not given".

export function createUserInput(request: CreateUserRequest): CreateUserInput {
  return {
    email: request.email,
    password: request.password,
    userMetadata: request.userMetadata as JsonObject | undefined,
    emailConfirm: request.emailConfirm,
  };
}

export function createUserResponse(user: User): CreateUserResponse {
  return create(CreateUserResponseSchema, { user: userToProto(user) });
}

export function getUserInput(request: GetUserRequest): GetUserInput {
  const { key } = request;
  return key.case === "id" ? { kind: "id", id: key.value } : key.case === "email" ? { kind: "email", email: key.value } : { kind: "none" };
}

export function getUserResponse(user: User): GetUserResponse {
  return create(GetUserResponseSchema, { user: userToProto(user) });
}

export function updateUserInput(request: UpdateUserRequest): UpdateUserInput {
  return {
    id: request.id,
    userMetadata: request.userMetadata as JsonObject | undefined,
    password: request.password,
    email: request.email,
    emailConfirm: request.emailConfirm,
  };
}

export function updateUserResponse(result: UpdatedUser): UpdateUserResponse {
  return create(UpdateUserResponseSchema, { user: userToProto(result.user), revokedLinks: result.revokedLinks });
}

export function deleteUserInput(request: DeleteUserRequest): DeleteUserInput {
  return { id: request.id };
}

export function deleteUserResponse(result: DeletedUser): DeleteUserResponse {
  return create(DeleteUserResponseSchema, { revokedLinks: result.revokedLinks });
}

export function inviteUserInput(request: InviteUserRequest): InviteUserInput {
  return {
    email: request.email,
    redirectTo: request.redirectTo,
    data: request.data as JsonObject | undefined,
    expiresInMs: request.expiresIn ? durationToMs(request.expiresIn) : undefined,
  };
}

/** GenerateLink's response for the invite, as it is. */
export function inviteUserResponse(result: GeneratedLink): InviteUserResponse {
  return create(InviteUserResponseSchema, { link: generateLinkResponse(result) });
}
