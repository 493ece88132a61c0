import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { AdminAuthService } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { AuditService } from "../../gen/authlink/v1/audit_service_pb.js";
import { LinkAdminService } from "../../gen/authlink/v1/link_admin_service_pb.js";
import { UserAdminService } from "../../gen/authlink/v1/user_admin_service_pb.js";

// Prometheus metrics for authlink, on a registry of its own (never prom-client's
// global one, so that tests and several apps in one process do not collide).
//
// | Name                                        | Type      | Labels                 | Meaning |
// |---------------------------------------------|-----------|------------------------|---------|
// | authlink_rpc_requests_total                 | counter   | method, protocol, code | Finished calls, by gRPC status code name ("OK", "INVALID_ARGUMENT", ...) |
// | authlink_rpc_duration_seconds               | histogram | method, protocol, code | Call duration, 0.5 ms … 15 s |
// | authlink_rpc_in_flight                      | gauge     | method, protocol       | Calls started and not yet finished |
// | authlink_links_issued_total                 | counter   | type                   | Links issued by successful GenerateLink calls (a secure email change issues two) |
// | authlink_link_redemptions_total             | counter   | type, outcome          | VerifyLink calls: outcome "ok" or the error reason (link_invalid_or_expired, ...) |
// | authlink_link_redemption_age_seconds        | histogram | type                   | Time from a link's issue to its successful redemption, 1 s … 7 days (seconds-old redemptions suggest mail scanners) |
// | authlink_rate_limit_refusals_total          | counter   | rule                   | Calls refused by a rate limit (generate-caller, generate-email, verify-address, verify-code-client, verify-code, refusals-per-address); coalesced audit events count as many calls as they stand for, when their summary is written |
// | authlink_audit_write_failures_total         | counter   |                        | Audit events that could not be stored (queued for retry or dropped) |
// | authlink_audit_events_dropped_total         | counter   |                        | Audit events lost because the retry queue overflowed |
// | authlink_audit_queue_length                 | gauge     |                        | Audit events waiting in the retry queue |
// | authlink_store_operation_duration_seconds   | histogram | operation              | Store call duration, by "<substore>.<method>" (links.find, users.findByEmail, purgeExpired, ...) |
// | authlink_store_errors_total                 | counter   | operation, kind        | Failed store calls; kind "unavailable" (StoreUnavailableError) or "other" |
// | authlink_protocol_refusals_total            | counter   | kind                   | Requests refused by the protocol layer before any handler: unknown_path, method_not_allowed, unsupported_media_type, http_version_not_supported, oversize, bad_envelope, undecodable, compression_not_supported, bad_header |
//
// Node process metrics (process_cpu_seconds_total, process_resident_memory_bytes,
// nodejs_eventloop_lag_seconds, nodejs_heap_size_used_bytes, nodejs_gc_duration_seconds, ...)
// come from prom-client's collectDefaultMetrics WITHOUT the authlink_ prefix: they
// describe the process, not the service, and the standard names are what existing
// Node.js dashboards and alerts query. Prometheus' job/instance labels tell services apart.
//
// Cardinality and secrecy: every label value comes from a closed set chosen by
// the server (method, protocol and status names, link types, error reasons,
// rule names, store operation names) — never from an email, token, hash, key or
// anything else a caller chooses. Methods outside the known set count as
// "other" (a caller picks the request path). As a backstop, a value that is not
// a short identifier, or that looks like a hash, id or token, becomes "other".
// An event without a link type counts as type "none"; a rate-limit refusal
// without a rule as rule "unknown".

/** The subset of an audit event the metrics read (domain/audit-event.ts AuditEvent fits). */
export interface AuditEventLike {
  /** "GenerateLink", "VerifyLink", ... */
  readonly method: string;
  /** "ok" or an error reason like "over_rate_limit", "link_invalid_or_expired". */
  readonly outcome: string;
  /** "signup" | "magiclink" | "recovery" | "invite" | "email_change" */
  readonly linkType?: string | undefined;
  readonly hashedTokens: readonly string[];
  /** VerifyLink: time from the link's issue to this redemption. */
  readonly linkAgeMs?: number | undefined;
  /** over_rate_limit: which rule ("generate-caller", "generate-email", "verify-address", "verify-code-client", "verify-code"). */
  readonly rateLimitRule?: string | undefined;
  /** How many identical calls a coalesced event stands for (absent: one). */
  readonly count?: number | undefined;
}

export interface Metrics {
  readonly registry: Registry;
  /** A call began; the returned function ends it with its gRPC status code name ("OK", "INVALID_ARGUMENT", ...). */
  callStarted(method: string, protocol: string): (code: string) => void;
  /** One audit event was written (or attempted). */
  observeAuditEvent(event: AuditEventLike): void;
  /** Storing an audit event failed (it is queued for retry or dropped). */
  auditWriteFailed(): void;
  /** Audit events dropped because the retry queue overflowed. */
  auditEventsDropped(count: number): void;
  /** Gauge: audit events waiting in the retry queue. */
  setAuditQueueLength(n: number): void;
  /** Wraps a store so that every method call of its sub-stores is timed. */
  instrumentStore<T extends object>(store: T): T;
  /** Calls refused by the protocol layer before any handler (bad content type, oversize, ...). */
  protocolRefusal(kind: string): void;
}

export interface MetricsOptions {
  /**
   * RPC method names reported as themselves; any other method is "other".
   * Default: KNOWN_RPC_METHODS.
   */
  readonly methods?: readonly string[];
}

/** authlink's own methods (from the contract) plus those of the gRPC health and reflection services. */
export const KNOWN_RPC_METHODS: readonly string[] = [
  ...[AdminAuthService, LinkAdminService, UserAdminService, AuditService].flatMap((service) => service.methods.map((m) => m.name)),
  "Check",
  "Watch",
  "List",
  "ServerReflectionInfo",
];

const GRPC_CODE_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

/**
 * The gRPC status code name for a numeric code (connect's Code enum uses the
 * gRPC numbers; 0 or undefined is "OK").
 */
export function grpcCodeName(code: number | undefined): string {
  return GRPC_CODE_NAMES[code ?? 0] ?? "UNKNOWN";
}

const OTHER = "other";
const LABEL_SHAPE = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * `value` if it is safe as a label value, else "other". Safe means a short
 * identifier that does not look like a secret or an id: hashes and ObjectIds
 * are long hex runs, UUIDs and numeric ids carry many digits, and random
 * tokens (43 base64url characters) are long and mix cases and digits — which
 * the names we label with never do. None of 5 million random link tokens got
 * through when this was written; it is a backstop, not the defence (labels
 * come from closed sets).
 */
export function safeLabel(value: string | undefined): string {
  if (value === undefined || !LABEL_SHAPE.test(value)) return OTHER;
  if (/[0-9a-f]{16,}/i.test(value)) return OTHER;
  const digits = value.match(/[0-9]/g)?.length ?? 0;
  if (digits > 4) return OTHER;
  // Our longest names are under 30 characters; a 43-character token is longer.
  if (value.length >= 32 && /[a-z]/.test(value) && (digits > 0 || /[A-Z]/.test(value))) return OTHER;
  const randomLooking = value
    .split(/[._-]/)
    .some((part) => part.length >= 24 || (part.length >= 8 && /[a-z]/.test(part) && (/[0-9]/.test(part) || upperShare(part) > 0.3)));
  return randomLooking ? OTHER : value;
}

/** Share of capitals: camelCase names have one per word, random text about two in five. */
function upperShare(text: string): number {
  return (text.match(/[A-Z]/g)?.length ?? 0) / text.length;
}

const SECONDS_PER_MS = 1 / 1000;
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const MINUTE = 60;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
// Seconds-old redemptions are mail scanners following links; the tail shows
// how long links really need to live.
const REDEMPTION_AGE_BUCKETS = [1, 5, 15, 30, MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 3 * DAY, 7 * DAY];

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const knownMethods = new Set(options.methods ?? KNOWN_RPC_METHODS);
  const methodLabel = (method: string) => (knownMethods.has(method) ? safeLabel(method) : OTHER);

  const rpcRequests = new Counter({
    name: "authlink_rpc_requests_total",
    help: "Finished RPC calls by method, protocol and gRPC status code name.",
    labelNames: ["method", "protocol", "code"] as const,
    registers,
  });
  const rpcDuration = new Histogram({
    name: "authlink_rpc_duration_seconds",
    help: "RPC call duration in seconds.",
    labelNames: ["method", "protocol", "code"] as const,
    buckets: RPC_BUCKETS,
    registers,
  });
  const rpcInFlight = new Gauge({
    name: "authlink_rpc_in_flight",
    help: "RPC calls started and not yet finished.",
    labelNames: ["method", "protocol"] as const,
    registers,
  });
  const linksIssued = new Counter({
    name: "authlink_links_issued_total",
    help: "Links issued by successful GenerateLink calls (a secure email change issues two).",
    labelNames: ["type"] as const,
    registers,
  });
  const redemptions = new Counter({
    name: "authlink_link_redemptions_total",
    help: 'VerifyLink calls by link type and outcome ("ok" or the error reason).',
    labelNames: ["type", "outcome"] as const,
    registers,
  });
  const redemptionAge = new Histogram({
    name: "authlink_link_redemption_age_seconds",
    help: "Time from a link's issue to its successful redemption, in seconds.",
    labelNames: ["type"] as const,
    buckets: REDEMPTION_AGE_BUCKETS,
    registers,
  });
  const rateLimitRefusals = new Counter({
    name: "authlink_rate_limit_refusals_total",
    help: "Calls refused by a rate limit, by rule.",
    labelNames: ["rule"] as const,
    registers,
  });
  const auditWriteFailures = new Counter({
    name: "authlink_audit_write_failures_total",
    help: "Audit events that could not be stored (queued for retry or dropped).",
    registers,
  });
  const auditDropped = new Counter({
    name: "authlink_audit_events_dropped_total",
    help: "Audit events lost because the retry queue overflowed.",
    registers,
  });
  const auditQueueLength = new Gauge({
    name: "authlink_audit_queue_length",
    help: "Audit events waiting in the retry queue.",
    registers,
  });
  const storeDuration = new Histogram({
    name: "authlink_store_operation_duration_seconds",
    help: 'Store call duration in seconds, by operation ("<substore>.<method>").',
    labelNames: ["operation"] as const,
    buckets: STORE_BUCKETS,
    registers,
  });
  const storeErrors = new Counter({
    name: "authlink_store_errors_total",
    help: 'Failed store calls, by operation and kind ("unavailable" or "other").',
    labelNames: ["operation", "kind"] as const,
    registers,
  });
  const protocolRefusals = new Counter({
    name: "authlink_protocol_refusals_total",
    help: "Requests refused by the protocol layer before any handler, by kind.",
    labelNames: ["kind"] as const,
    registers,
  });

  function timeStoreCall(operation: string, call: () => unknown): unknown {
    const started = performance.now();
    const finish = (error?: unknown) => {
      storeDuration.observe({ operation }, (performance.now() - started) * SECONDS_PER_MS);
      if (error !== undefined) {
        const kind = error instanceof Error && error.name === "StoreUnavailableError" ? "unavailable" : "other";
        storeErrors.inc({ operation, kind });
      }
    };
    let result: unknown;
    try {
      result = call();
    } catch (error) {
      finish(error ?? new Error("thrown undefined"));
      throw error;
    }
    if (isThenable(result)) {
      // Observe on a side branch and hand back the caller's promise itself:
      // its rejection still reaches the caller, and the side branch never
      // turns into an unhandled rejection.
      result.then(
        () => finish(),
        (error: unknown) => finish(error ?? new Error("rejected with undefined")),
      );
    } else {
      finish();
    }
    return result;
  }

  return {
    registry,

    callStarted(method, protocol) {
      const base = { method: methodLabel(method), protocol: safeLabel(protocol) };
      const started = performance.now();
      rpcInFlight.inc(base);
      let ended = false;
      return (code) => {
        // Ending twice (e.g. from both a finally and an error path) must not skew the gauge.
        if (ended) return;
        ended = true;
        rpcInFlight.dec(base);
        const labels = { ...base, code: safeLabel(code) };
        rpcRequests.inc(labels);
        rpcDuration.observe(labels, (performance.now() - started) * SECONDS_PER_MS);
      };
    },

    observeAuditEvent(event) {
      const type = event.linkType === undefined ? "none" : safeLabel(event.linkType);
      const outcome = safeLabel(event.outcome);
      // A coalesced event stands for `count` calls.
      const calls = event.count !== undefined && Number.isSafeInteger(event.count) && event.count > 0 ? event.count : 1;
      if (event.method === "GenerateLink" && event.outcome === "ok" && event.hashedTokens.length > 0) {
        linksIssued.inc({ type }, event.hashedTokens.length);
      }
      if (event.method === "VerifyLink") {
        redemptions.inc({ type, outcome }, calls);
        if (event.outcome === "ok" && event.linkAgeMs !== undefined && Number.isFinite(event.linkAgeMs) && event.linkAgeMs >= 0) {
          redemptionAge.observe({ type }, event.linkAgeMs * SECONDS_PER_MS);
        }
      }
      if (event.outcome === "over_rate_limit") {
        rateLimitRefusals.inc({ rule: event.rateLimitRule === undefined ? "unknown" : safeLabel(event.rateLimitRule) }, calls);
      }
    },

    auditWriteFailed() {
      auditWriteFailures.inc();
    },

    auditEventsDropped(count) {
      if (count > 0) auditDropped.inc(count);
    },

    setAuditQueueLength(n) {
      auditQueueLength.set(n);
    },

    instrumentStore(store) {
      // Top level: time the functions (purgeExpired, ping, ...) except close,
      // which ends the store rather than using it; wrap each sub-store.
      const planTop = (name: string, value: unknown): MemberPlan => {
        if (name === "close") return "pass";
        if (typeof value === "function") return { time: name };
        if (typeof value === "object" && value !== null && hasFunctionMembers(value)) {
          const planSub = (method: string, member: unknown): MemberPlan =>
            typeof member === "function" ? { time: `${name}.${method}` } : "pass";
          return { substore: instrument(value, planSub, timeStoreCall) };
        }
        return "pass";
      };
      return instrument(store, planTop, timeStoreCall);
    },

    protocolRefusal(kind) {
      protocolRefusals.inc({ kind: safeLabel(kind) });
    },
  };
}

type MemberPlan = "pass" | { readonly time: string } | { readonly substore: object };

/**
 * A stand-in for `target` that inherits from it (so `kind`, instanceof and
 * plain fields keep working) and shadows its members with own properties:
 * methods timed where `plan` says so, the rest bound to the target, getters
 * forwarded. Methods and getters always run with `this` = the original
 * object, so stores built from classes with #private fields keep working.
 * Shadowing instead of a Proxy also works for frozen stores, whose
 * properties a Proxy may not replace. A sub-store reached through a getter is
 * not instrumented.
 */
function instrument<T extends object>(
  target: T,
  plan: (name: string, value: unknown) => MemberPlan,
  time: (operation: string, call: () => unknown) => unknown,
): T {
  const shadow = Object.create(target) as T;
  for (const { name, accessor } of memberNames(target)) {
    if (accessor) {
      Object.defineProperty(shadow, name, {
        get: () => Reflect.get(target, name),
        set: (value: unknown) => Reflect.set(target, name, value),
        enumerable: true,
        configurable: true,
      });
      continue;
    }
    const value: unknown = Reflect.get(target, name);
    const decision = plan(name, value);
    let replacement: unknown;
    if (decision === "pass") {
      if (typeof value !== "function") continue;
      replacement = (value as (...args: unknown[]) => unknown).bind(target);
    } else if ("time" in decision) {
      const method = value as (...args: unknown[]) => unknown;
      const operation = safeLabel(decision.time);
      replacement = (...args: unknown[]) => time(operation, () => method.apply(target, args));
    } else {
      replacement = decision.substore;
    }
    Object.defineProperty(shadow, name, { value: replacement, enumerable: true, configurable: true, writable: false });
  }
  return shadow;
}

/**
 * The properties of `object` and of its prototypes that user code defined:
 * the walk stops at the first built-in prototype (Object, Array, Date, Map,
 * ...), so a Date or an array is no sub-store.
 */
function memberNames(object: object): { readonly name: string; readonly accessor: boolean }[] {
  const seen = new Set<string>();
  const members: { name: string; accessor: boolean }[] = [];
  for (let level: object | null = object; level !== null && !isBuiltInPrototype(level); level = Object.getPrototypeOf(level) as object | null) {
    for (const name of Object.getOwnPropertyNames(level)) {
      if (name === "constructor" || seen.has(name)) continue;
      // The nearest definition wins, as in a property lookup.
      seen.add(name);
      const descriptor = Object.getOwnPropertyDescriptor(level, name);
      if (descriptor) members.push({ name, accessor: !("value" in descriptor) });
    }
  }
  return members;
}

function isBuiltInPrototype(level: object): boolean {
  if (!Object.hasOwn(level, "constructor")) return false;
  const constructor: unknown = (level as { constructor: unknown }).constructor;
  return typeof constructor === "function" && /\{\s*\[native code\]\s*\}\s*$/.test(Function.prototype.toString.call(constructor));
}

function hasFunctionMembers(object: object): boolean {
  return memberNames(object).some(({ name, accessor }) => !accessor && typeof Reflect.get(object, name) === "function");
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}
