import type { PageTokenCodec } from "../crypto/page-token.js";
import type { StoredAuditEvent } from "./audit-event.js";
import type { AuditLog } from "./audit-log.js";
import { audited, type Subject } from "./audit-subject.js";
import { startAuditWatch, type AuditWatchOptions } from "./audit-watch.js";
import type { Call } from "./call.js";
import type { Clock } from "./clock.js";
import { normalizeEmail } from "./email.js";
import { invalidRequest, type FieldViolation } from "./errors.js";
import type { AuditFilter, AuditPosition, AuditQuery, AuditStore } from "./store.js";

// Reading the audit trail (AuditService): a page of events, newest first, or
// a watch that follows them as they are stored. Reading is itself audited:
// a list once per page, a watch once when it starts (its outcome is whether
// it started), each with the user and address it filtered on as its subject.

/** Filters as the caller sent them: an empty string is no filter. */
export interface AuditFilterInput {
  readonly userId: string;
  readonly email: string;
  readonly caller: string;
  readonly method: string;
  readonly outcome: string;
}

export interface ListAuditEventsInput extends AuditFilterInput {
  readonly since: Date | undefined;
  readonly until: Date | undefined;
  /** 0: the default. */
  readonly pageSize: number;
  /** "": the first page. */
  readonly pageToken: string;
}

export interface WatchAuditEventsInput extends AuditFilterInput {
  readonly since: Date | undefined;
}

export interface AuditEventPage {
  /** Newest first. */
  readonly events: readonly StoredAuditEvent[];
  /** "" on the last page. */
  readonly nextPageToken: string;
}

export const DEFAULT_AUDIT_PAGE_SIZE = 50;
export const MAX_AUDIT_PAGE_SIZE = 500;
/** Longest filter value accepted (identities and reasons are far shorter). */
const MAX_FILTER_LENGTH = 1_024;

export interface AuditReaderDeps {
  readonly store: AuditStore;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly pageTokens: PageTokenCodec;
  readonly watch: Omit<AuditWatchOptions, "store">;
}

export interface AuditReader {
  list(input: ListAuditEventsInput, call: Call): Promise<AuditEventPage>;
  /** Resolves (or rejects, e.g. INVALID_ARGUMENT) once the watch has started. */
  watch(input: WatchAuditEventsInput, call: Call): Promise<AsyncIterable<StoredAuditEvent>>;
}

export function createAuditReader(deps: AuditReaderDeps): AuditReader {
  const { store, clock, pageTokens } = deps;
  return {
    list: (input, call) =>
      audited(deps, call, async (subject) => {
        const query = validQuery(input, subject);
        const after = input.pageToken === "" ? undefined : positionOf(pageTokens.decode(input.pageToken, query, clock.now()));
        if (input.pageToken !== "" && !after) {
          throw invalidRequest([{ field: "page_token", description: "is not a page token of this query (or it has expired)" }]);
        }
        const pageSize = Math.min(input.pageSize === 0 ? DEFAULT_AUDIT_PAGE_SIZE : input.pageSize, MAX_AUDIT_PAGE_SIZE);
        // One more than the page tells whether another page follows.
        const found = await store.list(query, after, pageSize + 1, { signal: call.signal });
        const events = found.slice(0, pageSize);
        const last = events.at(-1);
        const nextPageToken =
          found.length > pageSize && last ? pageTokens.encode(query, { at: last.at.getTime(), id: last.id }, clock.now()) : "";
        return { events, nextPageToken };
      }),
    watch: (input, call) =>
      audited(deps, call, async (subject) => {
        const violations: FieldViolation[] = [];
        checkTime("since", input.since, violations);
        const filter = validFilter(input, subject, violations);
        return startAuditWatch({ ...deps.watch, store }, { filter, since: input.since, signal: call.signal });
      }),
  };
}

/** The query of a list call (what its page tokens are bound to); throws INVALID_ARGUMENT. */
function validQuery(input: ListAuditEventsInput, subject: Subject): AuditQuery {
  const violations: FieldViolation[] = [];
  checkTime("since", input.since, violations);
  checkTime("until", input.until, violations);
  if (input.since && input.until && input.until.getTime() <= input.since.getTime()) {
    violations.push({ field: "until", description: "must be after since" });
  }
  const filter = validFilter(input, subject, violations);
  return { ...filter, since: input.since, until: input.until };
}

/** The filter with empty fields left out and the address normalized; throws INVALID_ARGUMENT with every violation. */
function validFilter(input: AuditFilterInput, subject: Subject, violations: FieldViolation[]): AuditFilter {
  const fields = { user_id: input.userId, email: input.email, caller: input.caller, method: input.method, outcome: input.outcome };
  for (const [field, value] of Object.entries(fields)) {
    if (value.length > MAX_FILTER_LENGTH) violations.push({ field, description: `must be at most ${MAX_FILTER_LENGTH} characters` });
  }
  let email: string | undefined;
  if (input.email !== "" && input.email.length <= MAX_FILTER_LENGTH) {
    const checked = normalizeEmail(input.email);
    if (checked.ok) email = checked.email;
    else violations.push({ field: "email", description: checked.problem });
  }
  if (violations.length > 0) throw invalidRequest(violations);
  const set = (value: string) => (value === "" ? undefined : value);
  const filter: AuditFilter = {
    userId: set(input.userId),
    email,
    caller: set(input.caller),
    method: set(input.method),
    outcome: set(input.outcome),
  };
  if (filter.userId !== undefined) subject.userId = filter.userId;
  if (filter.email !== undefined) subject.email = filter.email;
  return filter;
}

function checkTime(field: string, time: Date | undefined, violations: FieldViolation[]): void {
  if (time && Number.isNaN(time.getTime())) violations.push({ field, description: "must be a valid timestamp" });
}

/** The position a page token carries, if it is well formed. */
function positionOf(position: unknown): AuditPosition | undefined {
  if (typeof position !== "object" || position === null) return undefined;
  const { at, id } = position as { at?: unknown; id?: unknown };
  if (typeof at !== "number" || !Number.isFinite(at) || typeof id !== "string" || id === "") return undefined;
  return { at: new Date(at), id };
}
