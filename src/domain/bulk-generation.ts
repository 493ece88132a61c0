import { createHash, randomUUID } from "node:crypto";
import type { AuditLog } from "./audit-log.js";
import { auditEventOf, newSubject, type Subject } from "./audit-subject.js";
import type { Call } from "./call.js";
import type { Clock } from "./clock.js";
import { AuthlinkError, invalidRequest, toAuthlinkError, type FieldViolation } from "./errors.js";
import { mapBounded } from "./bounded-concurrency.js";
import type { GenerateLinkInput } from "./link-requests.js";
import type { GeneratedLink, LinkService } from "./link-service.js";
import { isLinkType, type LinkType } from "./link-type.js";
import type { OperationOptions, Store } from "./store.js";
import type { User } from "./user.js";

// Bulk generation: many GenerateLinks in one call (BulkGenerateLinks: a list
// of at most MAX_BULK_ROWS; StreamGenerateLinks: a stream of any length).
//
// Each row is one LinkService.generate under a Call of its own (the stream's
// caller, address and signal, request id `${requestId}.${index}`, and the
// unary time limit), so a row gets exactly what a GenerateLink gets:
// validation, the per-caller and per-address rate limits, the audit event
// before the secrets leave. A row's failure is that row's result; rows run
// BULK_CONCURRENCY at a time and are answered as each is done.
//
// One failure ends the run instead: the database being unavailable (or its
// circuit open), since every further row would fail the same way. The rows
// in flight finish and are answered, then the call ends with UNAVAILABLE.
// Every row answered is final; a row never answered was never started, so
// resending the rows without an answer (or simply all rows: see below) is safe.
//
// Idempotency. A row's key is scoped to the caller (its service identity)
// and hashed to a fixed size: scope = sha256(identity + "\0" + key). Two
// claims keys carry the decision, both resting on the store's unique insert:
//
//   bulk:{scope}       the row issuing for the key holds it (a random holder
//                      id), until ISSUE_LOCK_MS past the row's time limit;
//   bulk-link:{scope}  the link issued for the key (its hash, type, user,
//                      expiry), recorded by that row once the link is issued,
//                      kept until the link expires.
//
// A row first looks for the recorded link (found: `replayed`, that link
// without secrets). Otherwise it holds the key; a row that cannot (another
// row is issuing for it right now, in this call or any other, on any
// instance) looks for the link once more and else answers ABORTED
// `idempotency_key_in_use` (retryable: send the row again shortly). The
// holder looks for the link again (a row that just finished may have
// recorded it), issues, records the link, and releases the key. A row that
// fails releases the key too, so a failed row (bad input, rate limit, fault)
// is tried afresh when it is sent again with the same key, e.g. after the
// input was fixed. A holder that dies half way leaves the key held until its
// hold expires; a link issued but not recorded (the record failed, or the
// process died in between) is answered as the row's error and the next send
// issues a new one, which replaces it (a new link of a type replaces the
// user's older ones), so nobody ever holds two live links for one key.

/** Rows of one BulkGenerateLinks request at most. */
export const MAX_BULK_ROWS = 1_000;
/** Rows in flight per call. */
export const BULK_CONCURRENCY = 8;
/** Idempotency keys: 1 to this many printable ASCII characters. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 200;
/** How long past a row's time limit the key stays held should its holder vanish. */
export const ISSUE_LOCK_MS = 60_000;
/** The retry delay suggested to a row whose key is in use. */
export const KEY_IN_USE_RETRY_MS = 1_000;
/** The audit outcome of a replayed row (a success that issued nothing). */
export const REPLAYED_OUTCOME = "replayed";

export interface BulkRowInput {
  readonly idempotencyKey: string;
  readonly request: GenerateLinkInput;
}

/** The link a key was used for before: what authlink knows of it, never a secret. */
export interface ReplayedLink {
  readonly type: LinkType;
  readonly hashedToken: string;
  /** EMAIL_CHANGE in secure mode: the hash of the current-address link. */
  readonly currentAddressHashedToken: string | undefined;
  readonly userId: string;
  /** The user now; undefined when the user no longer exists. */
  readonly user: User | undefined;
  readonly redirectTo: string | undefined;
  readonly expiresAt: Date;
}

export type BulkRowOutcome =
  | { readonly kind: "issued"; readonly link: GeneratedLink }
  | { readonly kind: "replayed"; readonly link: ReplayedLink }
  | { readonly kind: "failed"; readonly error: AuthlinkError };

export interface BulkRowResult {
  /** The row's position in its request or stream, from 0. */
  readonly index: number;
  readonly idempotencyKey: string;
  readonly outcome: BulkRowOutcome;
}

export interface BulkGenerationDeps {
  readonly links: LinkService;
  readonly store: Store;
  readonly clock: Clock;
  readonly audit: AuditLog;
  /** Each row's time limit (the unary call cap). */
  readonly rowTimeoutMs: number;
  /** Rows in flight per call (default BULK_CONCURRENCY). */
  readonly concurrency?: number;
}

/** What the claims keep of an issued link (short keys: one per row). */
interface LinkRef {
  /** hashed token */
  readonly h: string;
  /** current-address hashed token (secure email change) */
  readonly c?: string;
  readonly t: LinkType;
  /** user id */
  readonly u: string;
  /** redirect */
  readonly r?: string;
  /** expiry, epoch ms */
  readonly e: number;
}

export class BulkGeneration {
  readonly #deps: BulkGenerationDeps;
  /** Errors LinkService.generate threw (and so has audited already). */
  readonly #auditedErrors = new WeakSet<object>();

  constructor(deps: BulkGenerationDeps) {
    this.#deps = deps;
  }

  /** BulkGenerateLinks: INVALID_ARGUMENT for more than MAX_BULK_ROWS rows, before any row runs. */
  async *generateAll(rows: readonly BulkRowInput[], call: Call): AsyncGenerator<BulkRowResult, void, undefined> {
    if (rows.length > MAX_BULK_ROWS) {
      const error = invalidRequest([{ field: "rows", description: `must hold at most ${MAX_BULK_ROWS} rows` }]);
      await this.#deps.audit.recordOutcome(auditEventOf(call, newSubject(), this.#deps.clock.now(), error));
      throw error;
    }
    yield* this.generateStream(fromArray(rows), call);
  }

  /** StreamGenerateLinks: rows as they come, any number. */
  async *generateStream(rows: AsyncIterable<BulkRowInput>, call: Call): AsyncGenerator<BulkRowResult, void, undefined> {
    let unavailable: AuthlinkError | undefined;
    const results = mapBounded(rows, this.#deps.concurrency ?? BULK_CONCURRENCY, (row, index) => this.#row(row, index, call), {
      signal: call.signal,
      stopAfter: (result) => {
        if (result.outcome.kind === "failed" && result.outcome.error.kind === "unavailable") unavailable ??= result.outcome.error;
        return unavailable !== undefined;
      },
    });
    yield* results;
    if (unavailable) throw unavailable;
  }

  /** One row, never rejecting: its failure is its result. */
  async #row(row: BulkRowInput, index: number, streamCall: Call): Promise<BulkRowResult> {
    const { audit, clock } = this.#deps;
    const limited = rowCall(streamCall, index, this.#deps.rowTimeoutMs);
    const { call } = limited;
    const subject = newSubject();
    const result = (outcome: BulkRowOutcome): BulkRowResult => ({ index, idempotencyKey: row.idempotencyKey, outcome });
    try {
      const outcome = await this.#decide(row, call, subject);
      if (outcome.kind === "replayed") {
        await audit.recordOutcome({ ...auditEventOf(call, subject, clock.now()), outcome: REPLAYED_OUTCOME });
      }
      return result(outcome);
    } catch (error) {
      if (!(typeof error === "object" && error !== null && this.#auditedErrors.has(error))) {
        await audit.recordOutcome(auditEventOf(call, subject, clock.now(), error));
      }
      return result({ kind: "failed", error: toAuthlinkError(error, call.signal) });
    } finally {
      limited.release();
    }
  }

  async #decide(row: BulkRowInput, call: Call, subject: Subject): Promise<BulkRowOutcome> {
    const { store, clock, links, rowTimeoutMs } = this.#deps;
    const violation = idempotencyKeyViolation(row.idempotencyKey);
    if (violation) throw invalidRequest([violation]);
    const scope = createHash("sha256").update(`${call.serviceIdentity ?? ""}\0${row.idempotencyKey}`).digest("hex");
    const lockKey = `bulk:${scope}`;
    const recordKey = `bulk-link:${scope}`;
    const op: OperationOptions = { signal: call.signal };

    const replay = async (ref: LinkRef): Promise<BulkRowOutcome> => {
      const user = await store.users.findById(ref.u, op);
      Object.assign(subject, { linkType: ref.t, userId: ref.u, email: user?.email });
      subject.hashedTokens.push(ref.h, ...(ref.c ? [ref.c] : []));
      return { kind: "replayed", link: { ...replayedOf(ref), user } };
    };

    const earlier = await this.#recorded(recordKey, clock.now(), op);
    if (earlier) return replay(earlier);

    const holder = randomUUID();
    const now = clock.now();
    const held = await this.#hold(lockKey, holder, new Date(now.getTime() + rowTimeoutMs + ISSUE_LOCK_MS), now, op);
    if (held !== holder) {
      const settled = await this.#recorded(recordKey, clock.now(), op);
      if (settled) return replay(settled);
      throw new AuthlinkError("idempotency_key_in_use", { retryAfterMs: KEY_IN_USE_RETRY_MS });
    }
    // Released in every case: a later row with the key finds the link
    // recorded, or (after a failure) is free to try again.
    const release = () => store.claims.release(lockKey, holder).catch(() => false);
    try {
      // A row that held the key before may have finished in between.
      const settled = await this.#recorded(recordKey, clock.now(), op);
      if (settled) return await replay(settled);
      let generated: GeneratedLink;
      try {
        generated = await links.generate(row.request, call);
      } catch (error) {
        if (typeof error === "object" && error !== null) this.#auditedErrors.add(error);
        throw error;
      }
      subject.hashedTokens.push(generated.link.hashedToken);
      // Without this record a resend would issue again; so if it cannot be
      // written the row fails (nobody has this link's secrets, and the
      // resend's link replaces it).
      await this.#hold(recordKey, JSON.stringify(refOf(generated)), generated.expiresAt, clock.now(), op);
      return { kind: "issued", link: generated };
    } finally {
      await release();
    }
  }

  /** The link recorded for a key, while it lives. */
  async #recorded(recordKey: string, now: Date, op: OperationOptions): Promise<LinkRef | undefined> {
    const recorded = await this.#deps.store.claims.holderOf(recordKey, now, op);
    return recorded === undefined ? undefined : parseRef(recorded);
  }

  /**
   * ClaimStore.hold, where a record that has expired but is not purged yet
   * (the purge runs periodically) no longer holds the key: it is released
   * and the key held afresh. Returns the live holder.
   */
  async #hold(key: string, holder: string, expiresAt: Date, now: Date, op: OperationOptions): Promise<string> {
    const { claims } = this.#deps.store;
    for (let attempt = 0; attempt < 3; attempt++) {
      const held = await claims.hold(key, holder, expiresAt, op);
      if (held === holder) return held;
      const live = await claims.holderOf(key, now, op);
      if (live !== undefined) return live;
      await claims.release(key, held, op);
    }
    throw new Error(`claim ${key} kept changing hands`);
  }
}

/** Why an idempotency key is not acceptable, if it is not. */
export function idempotencyKeyViolation(key: string): FieldViolation | undefined {
  const printable = /^[\x20-\x7e]+$/.test(key);
  if (key.length === 0) return { field: "idempotency_key", description: "is required" };
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH || !printable) {
    return { field: "idempotency_key", description: `must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters` };
  }
  return undefined;
}

/** The row's own Call: the stream's, with its own request id and the unary time limit. */
function rowCall(stream: Call, index: number, timeoutMs: number): { call: Call; release(): void } {
  const controller = new AbortController();
  const onAbort = () => controller.abort(stream.signal.reason);
  const timer = setTimeout(() => controller.abort(new DOMException("the row ran past its time limit", "TimeoutError")), timeoutMs);
  if (stream.signal.aborted) onAbort();
  else stream.signal.addEventListener("abort", onAbort, { once: true });
  return {
    call: { ...stream, requestId: `${stream.requestId}.${index}`, signal: controller.signal, startedAt: performance.now() },
    release() {
      clearTimeout(timer);
      stream.signal.removeEventListener("abort", onAbort);
    },
  };
}

function refOf(generated: GeneratedLink): LinkRef {
  return {
    h: generated.link.hashedToken,
    ...(generated.currentAddressLink ? { c: generated.currentAddressLink.hashedToken } : {}),
    t: generated.type,
    u: generated.user.id,
    ...(generated.redirectTo ? { r: generated.redirectTo } : {}),
    e: generated.expiresAt.getTime(),
  };
}

function replayedOf(ref: LinkRef): Omit<ReplayedLink, "user"> {
  return {
    type: ref.t,
    hashedToken: ref.h,
    currentAddressHashedToken: ref.c,
    userId: ref.u,
    redirectTo: ref.r,
    expiresAt: new Date(ref.e),
  };
}

function parseRef(recorded: string): LinkRef {
  const ref = JSON.parse(recorded) as LinkRef;
  if (typeof ref.h !== "string" || typeof ref.u !== "string" || typeof ref.e !== "number" || !isLinkType(ref.t)) {
    throw new Error("malformed bulk link record");
  }
  return ref;
}

async function* fromArray<T>(items: readonly T[]): AsyncGenerator<T, void, undefined> {
  yield* items;
}
