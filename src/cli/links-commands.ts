import type { Command } from "commander";
import { create } from "@bufbuild/protobuf";
import {
  GetLinkResponseSchema,
  LinkAdminService,
  LinkSchema,
  ListLinksResponseSchema,
  ReissueLinkResponseSchema,
  RevokeLinksResponseSchema,
  type ListLinksRequestSchema,
} from "../../gen/authlink/v1/link_admin_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RevokeLinksRequestSchema } from "../../gen/authlink/v1/link_admin_service_pb.js";
import { DEFAULT_CALL_TIMEOUT_MS } from "./connection.js";
import type { CliContext } from "./context.js";
import { UsageError } from "./failure.js";
import { pageSizeOf, readPages } from "./pages.js";
import { issuedLinkFields, LINK_COLUMNS, linkFields } from "./table-views.js";
import {
  LINK_STATE_CHOICES,
  LINK_TYPE_CHOICES,
  durationOf,
  parseDuration,
  parseHashedToken,
  parseLinkState,
  parseLinkType,
  parseTime,
} from "./values.js";

// LinkAdminService from the command line: `links list|get|revoke|reissue`.
// Links are named by their hashed token (GenerateLink's `hashed_token`);
// nothing here ever shows a secret, except the new one a reissue hands out.

interface ListFlags {
  readonly userId?: string;
  readonly email?: string;
  readonly type?: string;
  readonly state?: string;
  readonly issuedBy?: string;
  readonly issuedAfter?: string;
  readonly issuedBefore?: string;
  readonly pageSize?: string;
  readonly pageToken?: string;
  readonly all?: boolean;
}

interface RevokeFlags {
  readonly userId?: string;
  readonly email?: string;
  readonly type?: string[];
}

export function registerLinksCommands(program: Command, ctx: CliContext): void {
  const links = program.command("links").description("see, revoke and re-issue issued links (LinkAdminService)");
  const client = () => ctx.connection().client(LinkAdminService);
  const options = () => ctx.connection().callOptions(DEFAULT_CALL_TIMEOUT_MS, ctx.signal);

  links
    .command("list")
    .description("list links, newest issue first")
    .option("--user-id <id>", "only this user's links")
    .option("--email <address>", "only links sent to this address")
    .option("--type <type>", LINK_TYPE_CHOICES.join(" | "))
    .option("--state <state>", LINK_STATE_CHOICES.join(" | "))
    .option("--issued-by <caller>", "only links issued by this caller")
    .option("--issued-after <time>", "ISO 8601 time, or a duration ago (e.g. 24h)")
    .option("--issued-before <time>", "ISO 8601 time, or a duration ago")
    .option("--page-size <n>", "links per page (server default 50, at most 500)")
    .option("--page-token <token>", "continue from a previous page's next_page_token")
    .option("--all", "follow every page")
    .action(async (flags: ListFlags) => {
      const query: MessageInitShape<typeof ListLinksRequestSchema> = {
        userId: flags.userId ?? "",
        email: flags.email ?? "",
        type: flags.type === undefined ? undefined : parseLinkType(flags.type),
        state: flags.state === undefined ? undefined : parseLinkState(flags.state),
        issuedBy: flags.issuedBy ?? "",
        issuedAfter: flags.issuedAfter === undefined ? undefined : parseTime(flags.issuedAfter, "--issued-after"),
        issuedBefore: flags.issuedBefore === undefined ? undefined : parseTime(flags.issuedBefore, "--issued-before"),
        pageSize: pageSizeOf(flags.pageSize),
      };
      const { items, nextPageToken } = await readPages(flags.pageToken ?? "", flags.all === true, async (pageToken) => {
        const page = await client().listLinks({ ...query, pageToken }, options());
        return { items: page.links, nextPageToken: page.nextPageToken };
      });
      const response = create(ListLinksResponseSchema, { links: [...items], nextPageToken });
      ctx.printer().list(ListLinksResponseSchema, response, LinkSchema, items, LINK_COLUMNS);
      if (nextPageToken && ctx.printer().format !== "json") ctx.printer().note(`more: --page-token ${nextPageToken} (or --all)`);
    });

  links
    .command("get")
    .description("describe one link")
    .argument("<hashed-token>", "the link's hashed_token")
    .action(async (hash: string) => {
      const response = await client().getLink({ hashedToken: parseHashedToken(hash) }, options());
      ctx.printer().object(GetLinkResponseSchema, response, () => linkFields(response.link));
    });

  links
    .command("revoke")
    .description("revoke links by hashed token, or a user's outstanding links (--user-id or --email, optionally --type)")
    .argument("[hashed-tokens...]", "hashed tokens of the links to revoke")
    .option("--user-id <id>", "revoke this user's outstanding links")
    .option("--email <address>", "revoke the outstanding links of the user with this address")
    .option("--type <type...>", `with --user-id/--email: only these types (${LINK_TYPE_CHOICES.join(" | ")})`)
    .action(async (hashes: string[], flags: RevokeFlags) => {
      const response = await client().revokeLinks(revokeRequestOf(hashes, flags), options());
      ctx.printer().object(RevokeLinksResponseSchema, response, () => [
        ["revoked", String(response.revokedCount)],
        ...response.hashedTokens.map((hash) => ["hashed_token", hash] as const),
      ]);
    });

  links
    .command("reissue")
    .description("issue a new link for the same user, type and redirect (resend an invite); the old one is replaced")
    .argument("<hashed-token>", "the earlier link's hashed_token")
    .option("--expires-in <duration>", "lifetime of the new link; default: the earlier link's")
    .action(async (hash: string, flags: { readonly expiresIn?: string }) => {
      const response = await client().reissueLink(
        {
          hashedToken: parseHashedToken(hash),
          expiresIn: flags.expiresIn === undefined ? undefined : durationOf(parseDuration(flags.expiresIn, "--expires-in")),
        },
        options(),
      );
      ctx.printer().object(ReissueLinkResponseSchema, response, () => [
        ...issuedLinkFields(response.link),
        ["replaced_hashed_token", response.replacedHashedToken],
      ]);
    });
}

function revokeRequestOf(hashes: readonly string[], flags: RevokeFlags): MessageInitShape<typeof RevokeLinksRequestSchema> {
  const byUser = flags.userId !== undefined || flags.email !== undefined;
  if (byUser === hashes.length > 0) throw new UsageError("give hashed tokens, or --user-id or --email (not both)");
  if (!byUser) {
    if (flags.type) throw new UsageError("--type goes with --user-id or --email");
    return { target: { case: "hashedTokens", value: { hashedTokens: hashes.map(parseHashedToken) } } };
  }
  if (flags.userId !== undefined && flags.email !== undefined) throw new UsageError("--user-id or --email, not both");
  return {
    target: {
      case: "user",
      value: { userId: flags.userId ?? "", email: flags.email ?? "", types: (flags.type ?? []).map(parseLinkType) },
    },
  };
}
