import type { Command } from "commander";
import {
  CreateUserResponseSchema,
  DeleteUserResponseSchema,
  GetUserResponseSchema,
  InviteUserResponseSchema,
  UpdateUserResponseSchema,
  UserAdminService,
} from "../../gen/authlink/v1/user_admin_service_pb.js";
import { DEFAULT_CALL_TIMEOUT_MS } from "./connection.js";
import type { CliContext } from "./context.js";
import { UsageError } from "./failure.js";
import { confirm, readNewPassword } from "./secret-input.js";
import { issuedLinkFields, userFields } from "./table-views.js";
import { durationOf, parseDuration, parseJsonObject } from "./values.js";

// UserAdminService from the command line: `users create|get|update|delete|
// invite`. Passwords are asked for on the terminal or read from stdin
// (--with-password), never given as flags.

interface CreateFlags {
  readonly withPassword?: boolean;
  readonly metadata?: string;
  readonly confirmed?: boolean;
}

interface UpdateFlags extends CreateFlags {
  readonly email?: string;
}

interface InviteFlags {
  readonly redirectTo?: string;
  readonly data?: string;
  readonly expiresIn?: string;
}

export function registerUsersCommands(program: Command, ctx: CliContext): void {
  const users = program.command("users").description("create, read, update, delete and invite users (UserAdminService)");
  const client = () => ctx.connection().client(UserAdminService);
  const options = () => ctx.connection().callOptions(DEFAULT_CALL_TIMEOUT_MS, ctx.signal);
  const metadataOf = (text: string | undefined) =>
    text === undefined ? undefined : parseJsonObject(text, "--metadata", (p) => ctx.readText(p, "--metadata"));
  const passwordOf = async (wanted: boolean | undefined) => (wanted ? await readNewPassword(ctx.io) : "");

  users
    .command("create")
    .description("create a user")
    .argument("<email>", "the user's address")
    .option("--with-password", "set a password: asked for on the terminal, or the first line of stdin")
    .option("--metadata <json>", "user metadata, a JSON object (or @file.json)")
    .option("--confirmed", "create the user with the address already confirmed")
    .action(async (email: string, flags: CreateFlags) => {
      const userMetadata = metadataOf(flags.metadata);
      const password = await passwordOf(flags.withPassword);
      const response = await client().createUser({ email, password, userMetadata, emailConfirm: flags.confirmed === true }, options());
      ctx.printer().object(CreateUserResponseSchema, response, () => userFields(response.user));
    });

  users
    .command("get")
    .description("find a user by id or address")
    .argument("<id-or-email>", "the user's id, or address (anything with an @)")
    .action(async (key: string) => {
      const request = key.includes("@") ? { key: { case: "email" as const, value: key } } : { key: { case: "id" as const, value: key } };
      const response = await client().getUser(request, options());
      ctx.printer().object(GetUserResponseSchema, response, () => userFields(response.user));
    });

  users
    .command("update")
    .description("change a user; a new password or address revokes the user's outstanding links")
    .argument("<id>", "the user's id")
    .option("--metadata <json>", "merged into the metadata (a key set to null is removed); JSON object or @file.json")
    .option("--with-password", "set a new password: asked for on the terminal, or the first line of stdin")
    .option("--email <address>", "move the user to this address now (no confirmation link)")
    .option("--confirmed", "mark the address confirmed")
    .action(async (id: string, flags: UpdateFlags) => {
      const userMetadata = metadataOf(flags.metadata);
      if (userMetadata === undefined && !flags.withPassword && flags.email === undefined && !flags.confirmed) {
        throw new UsageError("nothing to change: give --metadata, --with-password, --email or --confirmed");
      }
      const password = await passwordOf(flags.withPassword);
      const response = await client().updateUser(
        { id, userMetadata, password, email: flags.email ?? "", emailConfirm: flags.confirmed === true },
        options(),
      );
      ctx.printer().object(UpdateUserResponseSchema, response, () => [
        ...userFields(response.user),
        ["revoked_links", String(response.revokedLinks)],
      ]);
    });

  users
    .command("delete")
    .description("delete a user and revoke all the user's links (the audit trail keeps the history)")
    .argument("<id>", "the user's id")
    .option("-y, --yes", "do not ask for confirmation (needed when stdin is not a terminal)")
    .action(async (id: string, flags: { readonly yes?: boolean }) => {
      if (!flags.yes && !(await confirm(`Delete user ${id} and revoke all its links?`, ctx.io))) {
        throw new UsageError(ctx.io.stdin.isTTY ? "not deleted" : "refusing to delete without --yes (stdin is not a terminal)");
      }
      const response = await client().deleteUser({ id }, options());
      ctx.printer().object(DeleteUserResponseSchema, response, () => [
        ["deleted", id],
        ["revoked_links", String(response.revokedLinks)],
      ]);
    });

  users
    .command("invite")
    .description("invite a person: creates the user and issues an invite link (as generate invite)")
    .argument("<email>", "the address to invite")
    .option("--redirect-to <url>", "where the verify page sends the person")
    .option("--data <json>", "metadata for the invited user, a JSON object (or @file.json)")
    .option("--expires-in <duration>", "lifetime of the invite link (e.g. 7d)")
    .action(async (email: string, flags: InviteFlags) => {
      const response = await client().inviteUser(
        {
          email,
          redirectTo: flags.redirectTo ?? "",
          data: flags.data === undefined ? undefined : parseJsonObject(flags.data, "--data", (p) => ctx.readText(p, "--data")),
          expiresIn: flags.expiresIn === undefined ? undefined : durationOf(parseDuration(flags.expiresIn, "--expires-in")),
        },
        options(),
      );
      ctx.printer().object(InviteUserResponseSchema, response, () => issuedLinkFields(response.link));
    });
}
