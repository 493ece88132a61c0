import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { ACTION_LINK_PLACEHOLDERS, type ActionLinkFormat } from "../domain/action-link.js";
import { formatDurationMs, parseDurationMs } from "../domain/durations.js";
import type { LinkSettings } from "../domain/link-settings.js";
import { LINK_TYPES, type LinkType } from "../domain/link-type.js";
import type { RateLimitSettings, RateRule } from "../domain/rate-limiter.js";
import { compileRedirectPolicy, type RedirectPolicy } from "../domain/redirect-policy.js";
import { parseTrustedProxies, type TrustedProxies } from "../identity/client-address.js";
import { MAX_OTP_LENGTH, MIN_OTP_LENGTH } from "../crypto/otp.js";
import { DEFAULT_ARGON2_PARAMS, meetsOwaspMinimum, type Argon2Params } from "../crypto/passwords.js";
import { Secret } from "../crypto/secret.js";
import { MIN_SERVICE_KEY_LENGTH } from "../identity/service-keys.js";
import { DEFAULT_CONNECTION_SETTINGS, type ConnectionSettings } from "../server/http-server.js";

// Configuration: read from AUTHLINK_* environment variables once, validated
// as a whole (every problem is reported, each naming its variable), frozen.
// Secrets are wrapped in Secret so that printing the config cannot leak them.

export interface TlsConfig {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Set: ask clients for certificates and verify them against this CA (mTLS). */
  readonly clientCa: Buffer | undefined;
}

export interface MongoConfig {
  readonly uri: Secret;
  readonly database: string | undefined;
  readonly timeoutMs: number;
  readonly socketTimeoutMs: number;
}

/** A key that signs assertions (the first configured one signs; all are published). */
export interface SigningKey {
  /** Key id: the JWK's `kid`, else its RFC 7638 thumbprint. */
  readonly kid: string;
  readonly alg: "EdDSA" | "ES256";
  readonly privateKey: KeyObject;
}

export interface Config {
  readonly listen: { readonly host: string; readonly port: number };
  /** Unset: the embedded in-process store. */
  readonly mongodb: MongoConfig | undefined;
  readonly redirects: RedirectPolicy;
  readonly serviceKeys: readonly Secret[];
  /** No keys and no mTLS identities were configured, so one key was generated (development). */
  readonly serviceKeyGenerated: boolean;
  readonly tls: TlsConfig | undefined;
  readonly serviceIdentities: ReadonlySet<string>;
  readonly otp: { readonly secret: Secret; readonly generated: boolean; readonly length: number };
  readonly links: LinkSettings;
  readonly argon2: Argon2Params;
  readonly logLevel: string;
  readonly shutdownTimeoutMs: number;
  /** Largest request message accepted, in bytes. */
  readonly maxRequestBytes: number;
  /** The longest a call may run, whatever deadline the client sets. */
  readonly maxCallDurationMs: number;
  /** The longest a call with a streamed response (audit watch, bulk generation) may run. */
  readonly maxStreamDurationMs: number;
  readonly rateLimits: RateLimitSettings;
  /** Calls the boundary refuses (no or a bad credential, not the service role), per client address, counted in process. */
  readonly refusalLimit: RateRule;
  /** Proxies whose X-Forwarded-For is believed. */
  readonly trustedProxies: TrustedProxies;
  /** How long audit events are kept. */
  readonly auditRetentionMs: number;
  /** Repeated identical refusals are audited as one event with a count per this window. */
  readonly auditCoalesceWindowMs: number;
  /** WatchAuditEvents: how often the store is polled, and how far back each poll reads again (domain/audit-watch.ts). */
  readonly auditWatch: { readonly pollIntervalMs: number; readonly lookBackMs: number };
  /** Serve gRPC server reflection (the schema, never data). */
  readonly reflection: boolean;
  /** AUTHLINK_PUBLIC_URL was not set: links point at the listen address (see withBoundPort). */
  readonly publicUrlFollowsListen: boolean;
  /** The verify page's title and product name. */
  readonly pageTitle: string;
  /** Assertions (signed proofs of redemption): keys, audience, lifetime. */
  readonly assertions: {
    readonly keys: readonly SigningKey[];
    /** No AUTHLINK_SIGNING_KEYS: one key generated for this process (development). */
    readonly generated: boolean;
    readonly audience: string;
    readonly ttlMs: number;
  };
  /** Exact browser origins allowed to call the public methods (CORS). */
  readonly corsOrigins: readonly string[];
  /** Where GET /metrics is served; undefined: metrics off. */
  readonly metricsListen: { readonly host: string; readonly port: number } | undefined;
  /** A second listener, gRPC only, served by @grpc/grpc-js; undefined: off. */
  readonly grpcListen: { readonly host: string; readonly port: number } | undefined;
  /** Per-connection deadlines, connection caps and HTTP/2 limits on the public port. */
  readonly connections: ConnectionSettings;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
  }
}

/** Every variable authlink reads, for the unknown-variable check (typos are errors). */
export const CONFIG_VARIABLES = [
  "AUTHLINK_ADDR",
  "AUTHLINK_MONGODB_URI",
  "AUTHLINK_MONGODB_DATABASE",
  "AUTHLINK_DB_TIMEOUT",
  "AUTHLINK_DB_SOCKET_TIMEOUT",
  "AUTHLINK_PUBLIC_URL",
  "AUTHLINK_REDIRECT_ALLOW_LIST",
  "AUTHLINK_SERVICE_KEYS",
  "AUTHLINK_TLS_CERT",
  "AUTHLINK_TLS_KEY",
  "AUTHLINK_TLS_CLIENT_CA",
  "AUTHLINK_SERVICE_IDENTITIES",
  "AUTHLINK_OTP_SECRET",
  "AUTHLINK_OTP_LENGTH",
  "AUTHLINK_OTP_MAX_ATTEMPTS",
  "AUTHLINK_LINK_EXPIRY",
  ...LINK_TYPES.map((type) => `AUTHLINK_LINK_EXPIRY_${type.toUpperCase()}`),
  "AUTHLINK_LINK_EXPIRY_MIN",
  "AUTHLINK_LINK_EXPIRY_MAX",
  "AUTHLINK_SECURE_EMAIL_CHANGE",
  "AUTHLINK_USER_DATA_MAX_BYTES",
  "AUTHLINK_PASSWORD_MIN_LENGTH",
  "AUTHLINK_ARGON2_MEMORY_KIB",
  "AUTHLINK_ARGON2_ITERATIONS",
  "AUTHLINK_ARGON2_PARALLELISM",
  "AUTHLINK_LOG_LEVEL",
  "AUTHLINK_SHUTDOWN_TIMEOUT",
  "AUTHLINK_MAX_REQUEST_BYTES",
  "AUTHLINK_MAX_CALL_DURATION",
  "AUTHLINK_MAX_STREAM_DURATION",
  "AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER",
  "AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL",
  "AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS",
  "AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL_AND_CLIENT",
  "AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL",
  "AUTHLINK_RATE_LIMIT_REFUSALS_PER_ADDRESS",
  "AUTHLINK_TRUSTED_PROXIES",
  "AUTHLINK_AUDIT_RETENTION",
  "AUTHLINK_AUDIT_COALESCE_WINDOW",
  "AUTHLINK_AUDIT_WATCH_POLL_INTERVAL",
  "AUTHLINK_AUDIT_WATCH_LOOKBACK",
  "AUTHLINK_REFLECTION",
  "AUTHLINK_METRICS_ADDR",
  "AUTHLINK_GRPC_ADDR",
  "AUTHLINK_ACTION_LINK_TEMPLATE",
  "AUTHLINK_PAGE_TITLE",
  "AUTHLINK_SIGNING_KEYS",
  "AUTHLINK_ASSERTION_AUDIENCE",
  "AUTHLINK_ASSERTION_TTL",
  "AUTHLINK_CORS_ORIGINS",
  "AUTHLINK_TOMBSTONE_GRACE",
  "AUTHLINK_CONN_HEADERS_TIMEOUT",
  "AUTHLINK_CONN_REQUEST_TIMEOUT",
  "AUTHLINK_CONN_IDLE_TIMEOUT",
  "AUTHLINK_CONN_MAX",
  "AUTHLINK_CONN_MAX_PER_ADDRESS",
  "AUTHLINK_HTTP2_MAX_STREAMS",
  "AUTHLINK_MAX_HEADER_BYTES",
] as const;

/** Variables with this prefix belong to the test suite, not to the server. */
const TEST_PREFIX = "AUTHLINK_TEST_";
/** Variables with this prefix belong to the admin CLI (src/cli/), not to the server. */
const CLI_PREFIX = "AUTHLINK_CLI_";

/** `data` beyond this is never accepted, whatever AUTHLINK_USER_DATA_MAX_BYTES says. */
const MAX_USER_DATA_BYTES_LIMIT = 1_048_576;
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

export interface LoadConfigOptions {
  readonly readFile?: (path: string) => Buffer;
}

export function loadConfig(env: NodeJS.ProcessEnv, options: LoadConfigOptions = {}): Config {
  const readFile = options.readFile ?? ((path: string) => readFileSync(path));
  const problems: string[] = [];
  const problem = (name: string, text: string) => problems.push(`${name}: ${text}`);
  const raw = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === "" ? undefined : value;
  };
  const list = (name: string): string[] =>
    (raw(name) ?? "")
      .split(",")
      .map((item) => item.trim())
      .filter((item) => item !== "");
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const text = raw(name);
    if (text === undefined) return fallback;
    const value = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(value >= min && value <= max)) {
      problem(name, `must be a whole number from ${min} to ${max}`);
      return fallback;
    }
    return value;
  };
  const duration = (name: string, fallback: number, min: number, max: number): number => {
    const text = raw(name);
    if (text === undefined) return fallback;
    const value = parseDurationMs(text);
    if (value === undefined || value < min || value > max) {
      problem(name, `must be a duration from ${formatDurationMs(min)} to ${formatDurationMs(max)} (e.g. 90s, 15m, 1h, 7d)`);
      return fallback;
    }
    return value;
  };
  const boolean = (name: string, fallback: boolean): boolean => {
    const text = raw(name)?.toLowerCase();
    if (text === undefined) return fallback;
    if (["true", "1", "yes", "on"].includes(text)) return true;
    if (["false", "0", "no", "off"].includes(text)) return false;
    problem(name, "must be true or false");
    return fallback;
  };
  const file = (name: string): Buffer | undefined => {
    const path = raw(name);
    if (path === undefined) return undefined;
    try {
      return readFile(path);
    } catch (error) {
      problem(name, `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
      return undefined;
    }
  };

  const known = new Set<string>(CONFIG_VARIABLES);
  for (const name of Object.keys(env)) {
    if (name.startsWith("AUTHLINK_") && !name.startsWith(TEST_PREFIX) && !name.startsWith(CLI_PREFIX) && !known.has(name)) {
      problem(name, "is not a known variable (see README.md, Configuration)");
    }
  }

  // Listening and public address.
  const listen = parseListenAddress(raw("AUTHLINK_ADDR") ?? "127.0.0.1:8080");
  if (!listen) problem("AUTHLINK_ADDR", "must be host:port, e.g. 127.0.0.1:8080 or [::]:8080");
  // Without a public URL, links point at the listen address (loopback when
  // it listens on every interface), so a changed port needs no second setting.
  const publicUrl = parsePublicUrl(raw("AUTHLINK_PUBLIC_URL") ?? defaultPublicUrl(listen));
  if (typeof publicUrl === "string") {
    problem(
      "AUTHLINK_PUBLIC_URL",
      raw("AUTHLINK_PUBLIC_URL") === undefined
        ? "must be set (an https URL) when AUTHLINK_ADDR is not a loopback or wildcard address"
        : publicUrl,
    );
  }

  // Storage.
  const mongoUri = raw("AUTHLINK_MONGODB_URI");
  if (mongoUri !== undefined && !/^mongodb(\+srv)?:\/\//.test(mongoUri)) {
    problem("AUTHLINK_MONGODB_URI", "must start with mongodb:// or mongodb+srv://");
  }
  const mongodb: MongoConfig | undefined =
    mongoUri === undefined
      ? undefined
      : {
          uri: new Secret(mongoUri),
          database: raw("AUTHLINK_MONGODB_DATABASE"),
          timeoutMs: duration("AUTHLINK_DB_TIMEOUT", 5_000, 100, 120_000),
          socketTimeoutMs: duration("AUTHLINK_DB_SOCKET_TIMEOUT", 30_000, 1_000, 600_000),
        };

  // Redirects.
  const { policy: redirects, problems: redirectProblems } = compileRedirectPolicy(list("AUTHLINK_REDIRECT_ALLOW_LIST"));
  for (const text of redirectProblems) problem("AUTHLINK_REDIRECT_ALLOW_LIST", text);

  // TLS and the service role.
  const cert = file("AUTHLINK_TLS_CERT");
  const key = file("AUTHLINK_TLS_KEY");
  const clientCa = file("AUTHLINK_TLS_CLIENT_CA");
  if ((raw("AUTHLINK_TLS_CERT") === undefined) !== (raw("AUTHLINK_TLS_KEY") === undefined)) {
    problem("AUTHLINK_TLS_CERT", "AUTHLINK_TLS_CERT and AUTHLINK_TLS_KEY must be set together");
  }
  const tlsOn = raw("AUTHLINK_TLS_CERT") !== undefined && raw("AUTHLINK_TLS_KEY") !== undefined;
  if (raw("AUTHLINK_TLS_CLIENT_CA") !== undefined && !tlsOn) {
    problem("AUTHLINK_TLS_CLIENT_CA", "needs AUTHLINK_TLS_CERT and AUTHLINK_TLS_KEY (mTLS runs over TLS)");
  }
  const serviceIdentities = new Set(list("AUTHLINK_SERVICE_IDENTITIES"));
  if (serviceIdentities.size > 0 && raw("AUTHLINK_TLS_CLIENT_CA") === undefined) {
    problem("AUTHLINK_SERVICE_IDENTITIES", "needs AUTHLINK_TLS_CLIENT_CA (identities come from verified client certificates)");
  }
  if (raw("AUTHLINK_TLS_CLIENT_CA") !== undefined && serviceIdentities.size === 0) {
    problem("AUTHLINK_TLS_CLIENT_CA", "is set but AUTHLINK_SERVICE_IDENTITIES is empty, so no certificate could hold the service role");
  }
  const configuredKeys = list("AUTHLINK_SERVICE_KEYS");
  for (const [index, k] of configuredKeys.entries()) {
    if (k.length < MIN_SERVICE_KEY_LENGTH || !/^[\x21-\x7e]+$/.test(k)) {
      problem("AUTHLINK_SERVICE_KEYS", `key #${index + 1} must be at least ${MIN_SERVICE_KEY_LENGTH} printable characters without spaces`);
    }
  }
  const serviceKeyGenerated = configuredKeys.length === 0 && serviceIdentities.size === 0;
  const serviceKeys = (serviceKeyGenerated ? [randomBytes(32).toString("base64url")] : configuredKeys).map(
    (k) => new Secret(k),
  );

  // One-time codes.
  const otpSecretText = raw("AUTHLINK_OTP_SECRET");
  if (otpSecretText !== undefined && otpSecretText.length < 32) problem("AUTHLINK_OTP_SECRET", "must be at least 32 characters");
  const otp = {
    secret: new Secret(otpSecretText ?? randomBytes(32).toString("base64url")),
    generated: otpSecretText === undefined,
    length: integer("AUTHLINK_OTP_LENGTH", 6, MIN_OTP_LENGTH, MAX_OTP_LENGTH),
  };

  // Links.
  const minMs = duration("AUTHLINK_LINK_EXPIRY_MIN", 60_000, 1_000, 30 * 86_400_000);
  const maxMs = duration("AUTHLINK_LINK_EXPIRY_MAX", 7 * 86_400_000, 1_000, 30 * 86_400_000);
  if (minMs > maxMs) problem("AUTHLINK_LINK_EXPIRY_MIN", "must not exceed AUTHLINK_LINK_EXPIRY_MAX");
  const baseDefault = duration("AUTHLINK_LINK_EXPIRY", 3_600_000, minMs, maxMs);
  const defaultMs = Object.fromEntries(
    LINK_TYPES.map((type) => [type, duration(`AUTHLINK_LINK_EXPIRY_${type.toUpperCase()}`, baseDefault, minMs, maxMs)]),
  ) as Record<LinkType, number>;
  const maxRequestBytes = integer("AUTHLINK_MAX_REQUEST_BYTES", 65_536, 1_024, 16 * 1_048_576);
  const publicBase = typeof publicUrl === "string" ? new URL("http://127.0.0.1:8080") : publicUrl;
  const template = raw("AUTHLINK_ACTION_LINK_TEMPLATE");
  const templateProblem = template === undefined ? undefined : actionLinkTemplateProblem(template);
  if (templateProblem) problem("AUTHLINK_ACTION_LINK_TEMPLATE", templateProblem);
  const actionLink: ActionLinkFormat =
    template === undefined ? { kind: "verify_page", publicUrl: publicBase } : { kind: "template", template };
  const links: LinkSettings = {
    publicUrl: publicBase,
    actionLink,
    expiry: { defaultMs, minMs, maxMs },
    otpMaxAttempts: integer("AUTHLINK_OTP_MAX_ATTEMPTS", 5, 1, 20),
    secureEmailChange: boolean("AUTHLINK_SECURE_EMAIL_CHANGE", true),
    password: { minLength: integer("AUTHLINK_PASSWORD_MIN_LENGTH", 8, 6, 128) },
    maxUserDataBytes: integer("AUTHLINK_USER_DATA_MAX_BYTES", 8_192, 0, MAX_USER_DATA_BYTES_LIMIT),
    tombstoneGraceMs: duration("AUTHLINK_TOMBSTONE_GRACE", 86_400_000, 0, 30 * 86_400_000),
  };
  if (links.maxUserDataBytes >= maxRequestBytes) {
    problem("AUTHLINK_USER_DATA_MAX_BYTES", "must be smaller than AUTHLINK_MAX_REQUEST_BYTES");
  }

  const argon2: Argon2Params = {
    memoryKiB: integer("AUTHLINK_ARGON2_MEMORY_KIB", DEFAULT_ARGON2_PARAMS.memoryKiB, 1_024, 4_194_304),
    iterations: integer("AUTHLINK_ARGON2_ITERATIONS", DEFAULT_ARGON2_PARAMS.iterations, 1, 100),
    parallelism: integer("AUTHLINK_ARGON2_PARALLELISM", DEFAULT_ARGON2_PARAMS.parallelism, 1, 16),
  };
  if (!meetsOwaspMinimum(argon2)) {
    problem(
      "AUTHLINK_ARGON2_MEMORY_KIB",
      "with AUTHLINK_ARGON2_ITERATIONS is below OWASP's argon2id minimum (e.g. 19456 KiB with 2 iterations, or 47104 KiB with 1)",
    );
  }

  const logLevel = raw("AUTHLINK_LOG_LEVEL") ?? "info";
  if (!LOG_LEVELS.includes(logLevel)) problem("AUTHLINK_LOG_LEVEL", `must be one of ${LOG_LEVELS.join(", ")}`);
  const shutdownTimeoutMs = duration("AUTHLINK_SHUTDOWN_TIMEOUT", 10_000, 0, 600_000);
  const maxCallDurationMs = duration("AUTHLINK_MAX_CALL_DURATION", 15_000, 100, 300_000);
  const maxStreamDurationMs = duration("AUTHLINK_MAX_STREAM_DURATION", 3_600_000, 1_000, 86_400_000);

  const rate = (name: string, fallback: RateRule): RateRule => {
    const text = raw(name);
    if (text === undefined) return fallback;
    if (text === "off" || text === "0") return { limit: 0, windowMs: fallback.windowMs };
    const match = /^(\d+)\/(.+)$/.exec(text);
    const limit = match ? Number(match[1]) : NaN;
    const windowMs = match ? parseDurationMs(match[2] ?? "") : undefined;
    if (!(limit >= 1 && limit <= 1_000_000) || windowMs === undefined || windowMs < 1_000 || windowMs > 86_400_000) {
      problem(name, "must be COUNT/WINDOW (e.g. 20/1h, 120/1m; window 1s-1d) or off");
      return fallback;
    }
    return { limit, windowMs };
  };
  const rateLimits: RateLimitSettings = {
    generatePerCaller: rate("AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER", DEFAULT_RATE_LIMITS.generatePerCaller),
    generatePerEmail: rate("AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL", DEFAULT_RATE_LIMITS.generatePerEmail),
    verifyPerAddress: rate("AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS", DEFAULT_RATE_LIMITS.verifyPerAddress),
    verifyCodePerEmailAndClient: rate(
      "AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL_AND_CLIENT",
      DEFAULT_RATE_LIMITS.verifyCodePerEmailAndClient,
    ),
    verifyCodePerEmail: rate("AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL", DEFAULT_RATE_LIMITS.verifyCodePerEmail),
  };
  const refusalLimit = rate("AUTHLINK_RATE_LIMIT_REFUSALS_PER_ADDRESS", DEFAULT_REFUSAL_LIMIT);
  const trusted = parseTrustedProxies(list("AUTHLINK_TRUSTED_PROXIES"));
  for (const bad of trusted.problems) problem("AUTHLINK_TRUSTED_PROXIES", `${JSON.stringify(bad)} is not an IP address or CIDR range`);
  const auditRetentionMs = duration("AUTHLINK_AUDIT_RETENTION", 90 * 86_400_000, 3_600_000, 3_650 * 86_400_000);
  const auditCoalesceWindowMs = duration("AUTHLINK_AUDIT_COALESCE_WINDOW", 60_000, 1_000, 3_600_000);
  const auditWatch = {
    pollIntervalMs: duration("AUTHLINK_AUDIT_WATCH_POLL_INTERVAL", 1_000, 50, 60_000),
    lookBackMs: duration("AUTHLINK_AUDIT_WATCH_LOOKBACK", 10_000, 1_000, 600_000),
  };
  const reflection = boolean("AUTHLINK_REFLECTION", true);

  // The verify page and the assertions it hands on.
  const pageTitle = raw("AUTHLINK_PAGE_TITLE") ?? "authlink";
  if (pageTitle.length > 80 || /[\x00-\x1f\x7f]/.test(pageTitle)) problem("AUTHLINK_PAGE_TITLE", "must be at most 80 printable characters");
  const keyFiles = list("AUTHLINK_SIGNING_KEYS");
  const signingKeys: SigningKey[] = [];
  for (const path of keyFiles) {
    let content: Buffer;
    try {
      content = readFile(path);
    } catch (error) {
      problem("AUTHLINK_SIGNING_KEYS", `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
      continue;
    }
    const key = parseSigningKey(content);
    if (typeof key === "string") problem("AUTHLINK_SIGNING_KEYS", `${path}: ${key}`);
    else signingKeys.push(key);
  }
  if (new Set(signingKeys.map((k) => k.kid)).size !== signingKeys.length) {
    problem("AUTHLINK_SIGNING_KEYS", "two keys have the same key id");
  }
  const signingKeysGenerated = keyFiles.length === 0;
  if (signingKeysGenerated) signingKeys.push(generatedSigningKey());
  const audience = raw("AUTHLINK_ASSERTION_AUDIENCE") ?? publicBase.href.replace(/\/$/, "");
  const assertionTtlMs = duration("AUTHLINK_ASSERTION_TTL", 300_000, 10_000, 3_600_000);
  const corsOrigins = list("AUTHLINK_CORS_ORIGINS");
  for (const origin of corsOrigins) {
    const bad = corsOriginProblem(origin);
    if (bad) problem("AUTHLINK_CORS_ORIGINS", `${JSON.stringify(origin)} ${bad}`);
  }

  const metricsAddr = raw("AUTHLINK_METRICS_ADDR");
  const metricsListen = metricsAddr === undefined ? undefined : parseListenAddress(metricsAddr);
  if (metricsAddr !== undefined && !metricsListen) {
    problem("AUTHLINK_METRICS_ADDR", "must be host:port, e.g. 127.0.0.1:9464");
  } else if (metricsListen && listen && metricsListen.port !== 0 && metricsListen.port === listen.port) {
    problem("AUTHLINK_METRICS_ADDR", "must differ from AUTHLINK_ADDR (metrics stay off the public port)");
  }

  const grpcAddr = raw("AUTHLINK_GRPC_ADDR");
  const grpcListen = grpcAddr === undefined ? undefined : parseListenAddress(grpcAddr);
  if (grpcAddr !== undefined && !grpcListen) {
    problem("AUTHLINK_GRPC_ADDR", "must be host:port, e.g. 127.0.0.1:9090");
  } else if (grpcListen && grpcListen.port !== 0) {
    if (listen && grpcListen.port === listen.port) problem("AUTHLINK_GRPC_ADDR", "must differ from AUTHLINK_ADDR (it is a second listener)");
    if (metricsListen && grpcListen.port === metricsListen.port) problem("AUTHLINK_GRPC_ADDR", "must differ from AUTHLINK_METRICS_ADDR");
  }

  // Connections on the public port (see src/server/connection-guard.ts).
  const connectionDefaults = DEFAULT_CONNECTION_SETTINGS;
  const connections: ConnectionSettings = {
    headersTimeoutMs: duration("AUTHLINK_CONN_HEADERS_TIMEOUT", connectionDefaults.headersTimeoutMs, 100, 600_000),
    requestTimeoutMs: duration("AUTHLINK_CONN_REQUEST_TIMEOUT", connectionDefaults.requestTimeoutMs, 100, 3_600_000),
    idleTimeoutMs: duration("AUTHLINK_CONN_IDLE_TIMEOUT", connectionDefaults.idleTimeoutMs, 100, 86_400_000),
    maxConnections: integer("AUTHLINK_CONN_MAX", connectionDefaults.maxConnections, 0, 1_000_000),
    maxConnectionsPerAddress: integer("AUTHLINK_CONN_MAX_PER_ADDRESS", connectionDefaults.maxConnectionsPerAddress, 0, 1_000_000),
    http2MaxConcurrentStreams: integer("AUTHLINK_HTTP2_MAX_STREAMS", connectionDefaults.http2MaxConcurrentStreams, 1, 1_000),
    maxHeaderBytes: integer("AUTHLINK_MAX_HEADER_BYTES", connectionDefaults.maxHeaderBytes, 1_024, 1_048_576),
  };
  if (connections.requestTimeoutMs < connections.headersTimeoutMs) {
    problem("AUTHLINK_CONN_REQUEST_TIMEOUT", "must not be shorter than AUTHLINK_CONN_HEADERS_TIMEOUT (a request includes its headers)");
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({
    listen: listen as { host: string; port: number },
    mongodb,
    redirects,
    serviceKeys,
    serviceKeyGenerated,
    tls: tlsOn && cert && key ? { cert, key, clientCa } : undefined,
    serviceIdentities,
    otp,
    links,
    argon2,
    logLevel,
    shutdownTimeoutMs,
    maxRequestBytes,
    maxCallDurationMs,
    maxStreamDurationMs,
    rateLimits,
    refusalLimit,
    trustedProxies: trusted.proxies,
    auditRetentionMs,
    auditCoalesceWindowMs,
    auditWatch,
    reflection,
    pageTitle,
    assertions: { keys: signingKeys, generated: signingKeysGenerated, audience, ttlMs: assertionTtlMs },
    corsOrigins,
    metricsListen,
    grpcListen,
    connections,
    publicUrlFollowsListen: raw("AUTHLINK_PUBLIC_URL") === undefined,
  });
}

/**
 * The configuration once the server is bound: with no AUTHLINK_PUBLIC_URL and
 * port 0 (any free port), links must name the port actually bound.
 */
export function withBoundPort(config: Config, port: number): Config {
  if (!config.publicUrlFollowsListen || config.listen.port !== 0) return config;
  const publicUrl = new URL(config.links.publicUrl.href);
  publicUrl.port = String(port);
  const actionLink: ActionLinkFormat =
    config.links.actionLink.kind === "verify_page" ? { kind: "verify_page", publicUrl } : config.links.actionLink;
  // The default audience is the public URL: it names the bound port too.
  const followsPublicUrl = config.assertions.audience === config.links.publicUrl.href.replace(/\/$/, "");
  const assertions = followsPublicUrl ? { ...config.assertions, audience: publicUrl.href.replace(/\/$/, "") } : config.assertions;
  return Object.freeze({ ...config, links: { ...config.links, publicUrl, actionLink }, assertions });
}

/** Why an action link template is unusable, or undefined. */
export function actionLinkTemplateProblem(template: string): string | undefined {
  if (!template.includes("{token}")) return "must contain {token}";
  const unknown = template.match(/\{[^}]*\}/g)?.find((p) => !(ACTION_LINK_PLACEHOLDERS as readonly string[]).includes(p));
  if (unknown) return `has an unknown placeholder ${unknown} (use {token}, {type}, {redirect_to})`;
  const sample = parsePublicUrl(template.replaceAll("{token}", "t").replaceAll("{type}", "magiclink").replaceAll("{redirect_to}", ""), {
    allowQueryAndFragment: true,
  });
  return typeof sample === "string" ? sample : undefined;
}

/** Why a CORS origin is unusable, or undefined: exact scheme://host[:port], https unless loopback. */
export function corsOriginProblem(origin: string): string | undefined {
  if (origin === "null" || origin.includes("*")) return "must be an exact origin (no wildcard, not null)";
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return "is not an origin like https://app.example.com";
  }
  if (url.origin !== origin) return "must be scheme://host[:port] only (no path, no trailing slash)";
  if (url.protocol !== "https:" && !(url.protocol === "http:" && LOOPBACK_HOSTS.has(url.hostname))) {
    return "must use https (http only for loopback hosts)";
  }
  return undefined;
}

/** A private Ed25519 or P-256 key from PEM or a JWK (JSON), or why not. */
export function parseSigningKey(content: Buffer): SigningKey | string {
  const text = content.toString("utf8").trim();
  let privateKey: KeyObject;
  let kid: string | undefined;
  try {
    if (text.startsWith("{")) {
      const jwk = JSON.parse(text) as { d?: unknown; kid?: unknown };
      if (jwk.d === undefined) return "is a public key; signing needs the private key";
      kid = typeof jwk.kid === "string" && jwk.kid !== "" ? jwk.kid : undefined;
      privateKey = createPrivateKey({ key: jwk as import("node:crypto").JsonWebKey, format: "jwk" });
    } else {
      // A file may hold a certificate next to its private key: look for the key first.
      privateKey = createPrivateKey(text);
    }
  } catch {
    if (/-----BEGIN (RSA )?PUBLIC KEY-----|-----BEGIN CERTIFICATE-----/.test(text)) {
      return "is a public key or certificate; signing needs the private key";
    }
    return "is not a PEM or JWK private key";
  }
  const type = privateKey.asymmetricKeyType;
  const curve = privateKey.asymmetricKeyDetails?.namedCurve;
  const alg = type === "ed25519" ? "EdDSA" : type === "ec" && curve === "prime256v1" ? "ES256" : undefined;
  if (!alg) return `is a ${type ?? "unknown"}${curve ? ` (${curve})` : ""} key; use Ed25519 or EC P-256`;
  // An EC JWK whose x/y do not belong to its d is accepted by the import; its
  // published key would then verify nothing it signs.
  const probe = Buffer.from("authlink signing key check");
  const hash = alg === "ES256" ? "sha256" : null;
  if (!verify(hash, probe, createPublicKey(privateKey), sign(hash, probe, privateKey))) {
    return "has a public part (x, y) that does not match its private part (d)";
  }
  return { kid: kid ?? jwkThumbprint(privateKey), alg, privateKey };
}

function generatedSigningKey(): SigningKey {
  const { privateKey } = generateKeyPairSync("ed25519");
  return { kid: jwkThumbprint(privateKey), alg: "EdDSA", privateKey };
}

/** RFC 7638 thumbprint of the public part: a stable key id. */
function jwkThumbprint(key: KeyObject): string {
  const jwk = key.export({ format: "jwk" }) as Record<string, string>;
  const members = jwk.kty === "OKP" ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return createHash("sha256").update(JSON.stringify(members)).digest("base64url");
}

/**
 * Defaults that stay out of the way of normal admin work (re-issuing to one
 * address a few times a minute, bulk runs of thousands of addresses) while
 * bounding a runaway caller and guessing from one place.
 */
export const DEFAULT_RATE_LIMITS: RateLimitSettings = {
  generatePerCaller: { limit: 30_000, windowMs: 60_000 },
  generatePerEmail: { limit: 20, windowMs: 3_600_000 },
  verifyPerAddress: { limit: 120, windowMs: 60_000 },
  verifyCodePerEmailAndClient: { limit: 10, windowMs: 3_600_000 },
  verifyCodePerEmail: { limit: 100, windowMs: 3_600_000 },
};

/**
 * Refusals (no or a bad credential) per client address: enough for a
 * misconfigured service to see its UNAUTHENTICATED answers a while, then one
 * per second; a flood from one address costs a token-bucket check per call.
 */
export const DEFAULT_REFUSAL_LIMIT: RateRule = { limit: 60, windowMs: 60_000 };

/** `host:port` with an IPv6 host in brackets; port 0 picks a free port. */
export function parseListenAddress(text: string): { host: string; port: number } | undefined {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port > 65535) return undefined;
  return { host: (match[1] ?? "").replace(/^\[(.*)\]$/, "$1"), port };
}

function defaultPublicUrl(listen: { host: string; port: number } | undefined): string {
  if (!listen) return "http://127.0.0.1:8080";
  const host = ["0.0.0.0", "::", ""].includes(listen.host) ? "127.0.0.1" : listen.host.includes(":") ? `[${listen.host}]` : listen.host;
  return `http://${host}:${listen.port}`;
}

/** The base URL of action links: absolute, https unless loopback, nothing but scheme, host, port and path. */
export function parsePublicUrl(text: string, options: { allowQueryAndFragment?: boolean } = {}): URL | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "must be an absolute URL such as https://auth.example.com";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return "must use https";
  if (url.protocol === "http:" && !LOOPBACK_HOSTS.has(url.hostname)) {
    return "must use https (http only for loopback hosts): action links carry credentials";
  }
  if (url.username || url.password) return "must not contain user info";
  if (!options.allowQueryAndFragment && (url.search || url.hash)) return "must not contain a query or a fragment";
  return url;
}
