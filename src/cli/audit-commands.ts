import type { Command } from "commander";
import { create } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  AuditEventSchema,
  AuditService,
  ListAuditEventsResponseSchema,
  type AuditEvent,
} from "../../gen/authlink/v1/audit_service_pb.js";
import { DEFAULT_CALL_TIMEOUT_MS } from "./connection.js";
import type { CliContext } from "./context.js";
import { pageSizeOf, readPages } from "./pages.js";
import { AUDIT_COLUMNS } from "./table-views.js";
import { parseTime } from "./values.js";

// AuditService from the command line: `audit list` (pages, newest first) and
// `audit watch` (events as they are stored, oldest first, until Ctrl-C).

interface FilterFlags {
  readonly userId?: string;
  readonly email?: string;
  readonly caller?: string;
  readonly method?: string;
  readonly outcome?: string;
  readonly since?: string;
}

interface ListFlags extends FilterFlags {
  readonly until?: string;
  readonly pageSize?: string;
  readonly pageToken?: string;
  readonly all?: boolean;
}

function withFilters(command: Command): Command {
  return command
    .option("--user-id <id>", "only events about this user")
    .option("--email <address>", "only events about this address")
    .option("--caller <caller>", "only events of this caller")
    .option("--method <name>", "only events of this method (e.g. GenerateLink)")
    .option("--outcome <outcome>", 'only events with this outcome ("ok" or a reason)')
    .option("--since <time>", "ISO 8601 time, or a duration ago (e.g. 1h)");
}

function filtersOf(flags: FilterFlags) {
  return {
    userId: flags.userId ?? "",
    email: flags.email ?? "",
    caller: flags.caller ?? "",
    method: flags.method ?? "",
    outcome: flags.outcome ?? "",
    since: flags.since === undefined ? undefined : parseTime(flags.since, "--since"),
  };
}

/** How long `audit watch` waits before asking again after the server ended the stream. */
const WATCH_RECONNECT_MS = 1_000;

export function registerAuditCommands(program: Command, ctx: CliContext): void {
  const audit = program.command("audit").description("read the audit trail (AuditService)");
  const client = () => ctx.connection().client(AuditService);

  withFilters(audit.command("list").description("list events, newest first"))
    .option("--until <time>", "ISO 8601 time, or a duration ago")
    .option("--page-size <n>", "events per page (server default 50, at most 500)")
    .option("--page-token <token>", "continue from a previous page's next_page_token")
    .option("--all", "follow every page")
    .action(async (flags: ListFlags) => {
      const query = {
        ...filtersOf(flags),
        until: flags.until === undefined ? undefined : parseTime(flags.until, "--until"),
        pageSize: pageSizeOf(flags.pageSize),
      };
      const options = ctx.connection().callOptions(DEFAULT_CALL_TIMEOUT_MS, ctx.signal);
      const { items, nextPageToken } = await readPages(flags.pageToken ?? "", flags.all === true, async (pageToken) => {
        const page = await client().listAuditEvents({ ...query, pageToken }, options);
        return { items: page.events, nextPageToken: page.nextPageToken };
      });
      const response = create(ListAuditEventsResponseSchema, { events: [...items], nextPageToken });
      ctx.printer().list(ListAuditEventsResponseSchema, response, AuditEventSchema, items, AUDIT_COLUMNS);
      if (nextPageToken && ctx.printer().format !== "json") ctx.printer().note(`more: --page-token ${nextPageToken} (or --all)`);
    });

  withFilters(
    audit
      .command("watch")
      .description("print events as they are stored, until Ctrl-C (one JSON object per line unless -o table)"),
  ).action(async (flags: FilterFlags) => {
    const printer = ctx.printer();
    const filters = filtersOf(flags);
    let since: Timestamp | undefined = filters.since;
    // Events at the latest time seen, so that a reconnection from that time
    // prints none of them twice.
    let seenAtLatest = new Set<string>();
    let first = true;
    for (;;) {
      try {
        const stream = client().watchAuditEvents({ ...filters, since }, ctx.connection().callOptions(0, ctx.signal));
        for await (const { event } of stream) {
          if (!event || seenAtLatest.has(event.id)) continue;
          ({ since, seenAtLatest } = advance(since, seenAtLatest, event));
          printer.streamed(AuditEventSchema, event, AUDIT_COLUMNS, first);
          first = false;
        }
      } catch (error) {
        if (ctx.signal.aborted) return;
        const code = ConnectError.from(error).code;
        // A --timeout given is how long to watch.
        if (code === Code.DeadlineExceeded && ctx.connection().timeoutMs) return;
        // The server ends long streams (its stream cap) and restarts; anything else is the caller's to see.
        if (code !== Code.DeadlineExceeded && code !== Code.Unavailable) throw error;
      }
      if (ctx.signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, WATCH_RECONNECT_MS));
      if (ctx.signal.aborted) return;
    }
  });
}

function advance(since: Timestamp | undefined, seen: Set<string>, event: AuditEvent) {
  if (!event.at) return { since, seenAtLatest: seen };
  const at = timestampDate(event.at).getTime();
  const latest = since ? timestampDate(since).getTime() : -Infinity;
  if (at > latest) return { since: event.at, seenAtLatest: new Set([event.id]) };
  seen.add(event.id);
  return { since, seenAtLatest: seen };
}
