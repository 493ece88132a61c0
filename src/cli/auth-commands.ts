import type { Command } from "commander";
import { Option } from "commander";
import {
  AdminAuthService,
  GenerateLinkResponseSchema,
  LinkType,
  PreviewLinkResponseSchema,
  VerifyLinkResponseSchema,
  type GenerateLinkRequestSchema,
} from "../../gen/authlink/v1/admin_auth_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { DEFAULT_CALL_TIMEOUT_MS } from "./connection.js";
import type { CliContext } from "./context.js";
import { UsageError } from "./failure.js";
import { readNewPassword } from "./secret-input.js";
import { issuedLinkFields, stateName, typeName, userFields } from "./table-views.js";
import {
  LINK_TYPE_CHOICES,
  durationOf,
  isoOf,
  linkCredentialOf,
  parseDuration,
  parseJsonObject,
  parseLinkType,
} from "./values.js";

// AdminAuthService from the command line: generate a link (service role),
// and verify or preview one (public: the token or code is the credential).

interface GenerateFlags {
  readonly redirectTo?: string;
  readonly data?: string;
  readonly newEmail?: string;
  readonly expiresIn?: string;
}

interface CredentialFlags {
  readonly type?: string;
  readonly email?: string;
  readonly otp?: string;
}

export function registerAuthCommands(program: Command, ctx: CliContext): void {
  program
    .command("generate")
    .description("issue a link (GenerateLink); SIGNUP asks for the password on the terminal, or reads it from stdin")
    .argument("<type>", LINK_TYPE_CHOICES.join(" | "))
    .argument("<email>", "the user's address")
    .option("--redirect-to <url>", "where the verify page sends the person (must be on the server's allow-list)")
    .option("--data <json>", "user metadata, a JSON object (or @file.json)")
    .option("--new-email <address>", "email_change: the address to move the user to")
    .option("--expires-in <duration>", "lifetime of the link (e.g. 30m, 2h, 7d); default: the server's for the type")
    .addHelpText("after", "\nExample:\n  authlink generate magiclink ann@example.com --redirect-to https://app.example.com/welcome")
    .action(async (typeText: string, email: string, flags: GenerateFlags) => {
      const type = parseLinkType(typeText);
      const data = flags.data === undefined ? undefined : parseJsonObject(flags.data, "--data", (p) => ctx.readText(p, "--data"));
      const expiresIn = flags.expiresIn === undefined ? undefined : durationOf(parseDuration(flags.expiresIn, "--expires-in"));
      const request: MessageInitShape<typeof GenerateLinkRequestSchema> = {
        type,
        email,
        redirectTo: flags.redirectTo ?? "",
        newEmail: flags.newEmail ?? "",
        data,
        expiresIn,
        password: type === LinkType.SIGNUP ? await readNewPassword(ctx.io) : "",
      };
      const connection = ctx.connection();
      const response = await connection.client(AdminAuthService).generateLink(request, connection.callOptions(DEFAULT_CALL_TIMEOUT_MS, ctx.signal));
      ctx.printer().object(GenerateLinkResponseSchema, response, () => issuedLinkFields(response));
    });

  const typeOption = () => new Option("-t, --type <type>", `the link's type (${LINK_TYPE_CHOICES.join(" | ")}); read from an action link when given one`);

  program
    .command("verify")
    .description("redeem a link (VerifyLink) by its token or action link, or by --email and --otp; consumes it")
    .argument("[link-or-token]", "the action link, or its token")
    .addOption(typeOption())
    .option("--email <address>", "with --otp: the address the code was sent to")
    .option("--otp <code>", "with --email: the one-time code")
    .action(async (linkOrToken: string | undefined, flags: CredentialFlags) => {
      const request = verifyRequestOf(linkOrToken, flags);
      const connection = ctx.connection();
      const response = await connection.client(AdminAuthService).verifyLink(request, connection.callOptions(DEFAULT_CALL_TIMEOUT_MS, ctx.signal));
      ctx.printer().object(VerifyLinkResponseSchema, response, () => [
        ["type", typeName(response.verificationType)],
        ["redirect_to", response.redirectTo],
        ["email_change_pending", response.emailChangePending ? "yes" : ""],
        ["assertion", response.assertion],
        ["assertion_expires_at", isoOf(response.assertionExpiresAt)],
        ...userFields(response.user, "user."),
      ]);
    });

  program
    .command("preview")
    .description("tell a link's state without consuming it (PreviewLink)")
    .argument("<link-or-token>", "the action link, or its token")
    .addOption(typeOption())
    .action(async (linkOrToken: string, flags: CredentialFlags) => {
      const credential = linkCredentialOf(linkOrToken);
      const type = flags.type !== undefined ? parseLinkType(flags.type) : credential.type;
      if (type === undefined) throw new UsageError("--type is required (the token alone does not say it)");
      const connection = ctx.connection();
      const response = await connection
        .client(AdminAuthService)
        .previewLink({ type, token: credential.token }, connection.callOptions(DEFAULT_CALL_TIMEOUT_MS, ctx.signal));
      ctx.printer().object(PreviewLinkResponseSchema, response, () => [
        ["state", stateName(response.state)],
        ["type", response.type ? typeName(response.type) : ""],
        ["masked_email", response.maskedEmail],
        ["expires_at", isoOf(response.expiresAt)],
        ["state_changed_at", isoOf(response.stateChangedAt)],
        ["redirect_host", response.redirectHost],
      ]);
    });
}

function verifyRequestOf(linkOrToken: string | undefined, flags: CredentialFlags) {
  const byCode = flags.email !== undefined || flags.otp !== undefined;
  if (byCode === (linkOrToken !== undefined)) {
    throw new UsageError("give either a link or token, or --email and --otp (exactly one credential)");
  }
  if (byCode) {
    if (flags.email === undefined || flags.otp === undefined) throw new UsageError("--email and --otp go together");
    if (flags.type === undefined) throw new UsageError("--type is required with --email and --otp");
    return {
      type: parseLinkType(flags.type),
      credential: { case: "emailOtp" as const, value: { email: flags.email, otp: flags.otp } },
    };
  }
  const credential = linkCredentialOf(linkOrToken ?? "");
  const type = flags.type !== undefined ? parseLinkType(flags.type) : credential.type;
  if (type === undefined) throw new UsageError("--type is required (the token alone does not say it)");
  return { type, credential: { case: "token" as const, value: credential.token } };
}
