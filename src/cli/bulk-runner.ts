import { Code, ConnectError, type CallOptions, type Client } from "@connectrpc/connect";
import type { GenerateLinkResponse } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { LinkAdminService } from "../../gen/authlink/v1/link_admin_service_pb.js";
import type { BulkRequest, InputRow } from "./bulk-input.js";
import { callFailureOf, statusName, type CallFailure } from "./failure.js";

// Sends the rows of a bulk run: BulkGenerateLinks calls of up to `chunkSize`
// rows (server streaming, so it works on gRPC, gRPC-Web and Connect over
// HTTP/1.1 alike), at most `concurrency` in flight, each row's result handed
// on as soon as it streams back. A row refused for a while (over_rate_limit,
// store_unavailable) is sent again after the delay the server asks for, up
// to `retries` times; so is every unanswered row of a call that failed on
// the way (the connection dropped, its deadline passed). Sending a row again
// is safe: its idempotency key makes the server answer the link it already
// issued (`replayed`) rather than issue a second.
//
// A call the server refuses as a whole (no or a wrong service key, no such
// method) stops the run: every further call would be refused the same way.

export type RowOutcome =
  | { readonly kind: "link"; readonly link: GenerateLinkResponse; readonly replayed: boolean }
  | { readonly kind: "error"; readonly error: CallFailure };

export interface SendableRow extends InputRow {
  readonly request: BulkRequest;
}

export interface BulkRunnerOptions {
  readonly client: Client<typeof LinkAdminService>;
  readonly concurrency: number;
  readonly chunkSize: number;
  /** Options for each call (its deadline). */
  readonly callOptions: () => CallOptions;
  readonly retries: number;
  /** A row asked to wait longer than this is written with its error instead. */
  readonly maxRetryWaitMs: number;
  /** Aborted: send no further call; the calls in flight finish. */
  readonly stop: AbortSignal;
  readonly onResult: (row: SendableRow, outcome: RowOutcome) => void;
}

interface Pending {
  readonly row: SendableRow;
  attempts: number;
  dueAt: number;
}

/** Codes after which the same call may succeed later. */
const TRANSIENT = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted]);
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 10_000;

export async function runBulk(rows: readonly SendableRow[], options: BulkRunnerOptions): Promise<void> {
  const queue: Pending[] = rows.map((row) => ({ row, attempts: 0, dueAt: 0 }));
  let next = 0;
  const waiting: Pending[] = [];
  let inFlight = 0;
  let fatal: unknown;

  const take = (): Pending[] => {
    const now = Date.now();
    const batch: Pending[] = [];
    for (let i = 0; i < waiting.length && batch.length < options.chunkSize; ) {
      const pending = waiting[i] as Pending;
      if (pending.dueAt <= now) {
        batch.push(pending);
        waiting.splice(i, 1);
      } else i++;
    }
    while (batch.length < options.chunkSize && next < queue.length) batch.push(queue[next++] as Pending);
    return batch;
  };

  /** Retry `pending` after `delayMs`, or give up with `error`. */
  const retryOrFail = (pending: Pending, error: CallFailure, delayMs: number) => {
    pending.attempts++;
    if (pending.attempts > options.retries || delayMs > options.maxRetryWaitMs || options.stop.aborted) {
      options.onResult(pending.row, { kind: "error", error });
      return;
    }
    pending.dueAt = Date.now() + delayMs;
    waiting.push(pending);
  };
  const backoff = (pending: Pending) => Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** pending.attempts);

  const send = async (batch: Pending[]) => {
    const answered = new Set<number>();
    try {
      const stream = options.client.bulkGenerateLinks(
        { rows: batch.map((p) => ({ idempotencyKey: p.row.idempotencyKey, request: p.row.request })) },
        options.callOptions(),
      );
      for await (const { result } of stream) {
        const pending = result ? batch[result.index] : undefined;
        if (!result || !pending || answered.has(result.index)) continue;
        answered.add(result.index);
        if (result.result.case === "link") {
          options.onResult(pending.row, { kind: "link", link: result.result.value, replayed: result.replayed });
        } else if (result.result.case === "error") {
          const e = result.result.value;
          const failure: CallFailure = {
            status: statusName(e.code),
            reason: e.reason || undefined,
            message: e.message,
            fieldViolations: e.fieldViolations.map((v) => ({ field: v.field, description: v.description })),
            retryDelayMs: e.retryDelay ? Number(e.retryDelay.seconds) * 1000 + Math.round(e.retryDelay.nanos / 1e6) : undefined,
          };
          if (TRANSIENT.has(e.code)) retryOrFail(pending, failure, failure.retryDelayMs ?? backoff(pending));
          else options.onResult(pending.row, { kind: "error", error: failure });
        }
      }
      const unanswered = batch.filter((_, i) => !answered.has(i));
      const failure: CallFailure = { status: "UNKNOWN", reason: undefined, message: "the server answered no result for the row", fieldViolations: [], retryDelayMs: undefined };
      for (const pending of unanswered) retryOrFail(pending, failure, backoff(pending));
    } catch (error) {
      const code = ConnectError.from(error).code;
      const failure = callFailureOf(error);
      const unanswered = batch.filter((_, i) => !answered.has(i));
      if (!TRANSIENT.has(code)) {
        fatal ??= error;
        return;
      }
      for (const pending of unanswered) retryOrFail(pending, failure, failure.retryDelayMs ?? backoff(pending));
    }
  };

  const worker = async () => {
    for (;;) {
      if (fatal !== undefined || options.stop.aborted) return;
      const batch = take();
      if (batch.length > 0) {
        inFlight++;
        try {
          await send(batch);
        } finally {
          inFlight--;
        }
        continue;
      }
      if (next >= queue.length && waiting.length === 0 && inFlight === 0) return;
      const soonest = Math.min(...waiting.map((p) => p.dueAt), Date.now() + 50);
      await sleep(Math.max(5, soonest - Date.now()), options.stop);
    }
  };

  await Promise.all(Array.from({ length: options.concurrency }, worker));
  if (fatal !== undefined) throw fatal;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
