import assert from "node:assert/strict";
import { inspect } from "node:util";
import { describe, test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config/config.js";

const KEY = "k".repeat(40);

function problemsOf(env: Record<string, string>, readFile?: (path: string) => Buffer): string[] {
  try {
    loadConfig(env, { readFile });
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return [...error.problems];
  }
  assert.fail("the configuration was accepted");
}

describe("loadConfig", () => {
  test("defaults", () => {
    const config = loadConfig({});
    assert.deepEqual(config.listen, { host: "127.0.0.1", port: 8080 });
    assert.equal(config.links.publicUrl.href, "http://127.0.0.1:8080/");
    assert.equal(config.mongodb, undefined);
    assert.deepEqual(Object.values(config.links.expiry.defaultMs), [3_600_000, 3_600_000, 3_600_000, 3_600_000, 3_600_000]);
    assert.equal(config.links.expiry.minMs, 60_000);
    assert.equal(config.links.expiry.maxMs, 7 * 86_400_000);
    assert.equal(config.otp.length, 6);
    assert.equal(config.links.otpMaxAttempts, 5);
    assert.equal(config.links.secureEmailChange, true);
    assert.equal(config.links.maxUserDataBytes, 8192);
    assert.deepEqual(config.refusalLimit, { limit: 60, windowMs: 60_000 });
    assert.equal(config.auditCoalesceWindowMs, 60_000);
    assert.deepEqual(config.argon2, { memoryKiB: 19456, iterations: 2, parallelism: 1 });
    assert.equal(config.serviceKeyGenerated, true);
    assert.equal(config.serviceKeys.length, 1);
    assert.equal(config.otp.generated, true);
    assert.equal(config.tls, undefined);
    assert.equal(config.redirects.check("https://app.example.com/").ok, false, "no redirect allowed by default");
    assert.equal(config.rateLimits.generatePerEmail.limit, 20);
  });

  test("a full configuration", () => {
    const config = loadConfig({
      AUTHLINK_ADDR: "[::]:9000",
      AUTHLINK_PUBLIC_URL: "https://auth.example.com/base",
      AUTHLINK_MONGODB_URI: "mongodb://u:p@db.example.com:27017/prod?replicaSet=rs0",
      AUTHLINK_SERVICE_KEYS: `${KEY}, ${"j".repeat(32)}`,
      AUTHLINK_REDIRECT_ALLOW_LIST: "https://app.example.com/**",
      AUTHLINK_OTP_SECRET: "s".repeat(32),
      AUTHLINK_OTP_LENGTH: "8",
      AUTHLINK_LINK_EXPIRY: "30m",
      AUTHLINK_LINK_EXPIRY_INVITE: "3d",
      AUTHLINK_SECURE_EMAIL_CHANGE: "false",
      AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "5/10m",
      AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "off",
      AUTHLINK_RATE_LIMIT_REFUSALS_PER_ADDRESS: "10/1s",
      AUTHLINK_AUDIT_COALESCE_WINDOW: "5m",
      AUTHLINK_TRUSTED_PROXIES: "10.0.0.0/8",
      AUTHLINK_TEST_MONGODB_URI: "ignored: reserved for the test suite",
      AUTHLINK_CLI_URL: "ignored: the admin CLI's",
    });
    assert.deepEqual(config.listen, { host: "::", port: 9000 });
    assert.equal(config.mongodb?.database, undefined);
    assert.equal(config.serviceKeys.length, 2);
    assert.equal(config.serviceKeyGenerated, false);
    assert.equal(config.otp.length, 8);
    assert.equal(config.links.expiry.defaultMs.signup, 1_800_000);
    assert.equal(config.links.expiry.defaultMs.invite, 3 * 86_400_000);
    assert.equal(config.links.secureEmailChange, false);
    assert.deepEqual(config.rateLimits.generatePerEmail, { limit: 5, windowMs: 600_000 });
    assert.equal(config.rateLimits.verifyPerAddress.limit, 0);
    assert.deepEqual(config.refusalLimit, { limit: 10, windowMs: 1_000 });
    assert.equal(config.auditCoalesceWindowMs, 300_000);
    assert.ok(config.trustedProxies.has("10.1.2.3"));
  });

  test("every problem is reported at once, each naming its variable", () => {
    const problems = problemsOf({
      AUTHLINK_ADDR: "localhost",
      AUTHLINK_PUBLIC_URL: "http://auth.example.com",
      AUTHLINK_MONGODB_URI: "postgres://x",
      AUTHLINK_OTP_LENGTH: "5",
      AUTHLINK_OTP_MAX_ATTEMPTS: "0",
      AUTHLINK_LINK_EXPIRY: "forever",
      AUTHLINK_SECURE_EMAIL_CHANGE: "maybe",
      AUTHLINK_LOG_LEVEL: "loud",
      AUTHLINK_SERVICE_KEYS: "short",
      AUTHLINK_OTP_SECRET: "short",
      AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER: "lots",
      AUTHLINK_RATE_LIMIT_REFUSALS_PER_ADDRESS: "many/1m",
      AUTHLINK_AUDIT_COALESCE_WINDOW: "100ms",
      AUTHLINK_TRUSTED_PROXIES: "not-an-ip",
      AUTHLINK_REDIRECT_ALLOWLIST: "a typo",
    });
    for (const name of [
      "AUTHLINK_ADDR",
      "AUTHLINK_PUBLIC_URL",
      "AUTHLINK_MONGODB_URI",
      "AUTHLINK_OTP_LENGTH",
      "AUTHLINK_OTP_MAX_ATTEMPTS",
      "AUTHLINK_LINK_EXPIRY",
      "AUTHLINK_SECURE_EMAIL_CHANGE",
      "AUTHLINK_LOG_LEVEL",
      "AUTHLINK_SERVICE_KEYS",
      "AUTHLINK_OTP_SECRET",
      "AUTHLINK_RATE_LIMIT_GENERATE_PER_CALLER",
      "AUTHLINK_RATE_LIMIT_REFUSALS_PER_ADDRESS",
      "AUTHLINK_AUDIT_COALESCE_WINDOW",
      "AUTHLINK_TRUSTED_PROXIES",
      "AUTHLINK_REDIRECT_ALLOWLIST",
    ]) {
      assert.ok(problems.some((p) => p.startsWith(`${name}:`)), `${name} in:\n${problems.join("\n")}`);
    }
  });

  test("audit watch: poll interval 1s and look-back 10s by default; each set and bounded", () => {
    assert.deepEqual(loadConfig({}).auditWatch, { pollIntervalMs: 1_000, lookBackMs: 10_000 });
    assert.deepEqual(
      loadConfig({ AUTHLINK_AUDIT_WATCH_POLL_INTERVAL: "250ms", AUTHLINK_AUDIT_WATCH_LOOKBACK: "30s" }).auditWatch,
      { pollIntervalMs: 250, lookBackMs: 30_000 },
    );
    const problems = problemsOf({ AUTHLINK_AUDIT_WATCH_POLL_INTERVAL: "10ms", AUTHLINK_AUDIT_WATCH_LOOKBACK: "1h" });
    assert.ok(problems.some((p) => p.startsWith("AUTHLINK_AUDIT_WATCH_POLL_INTERVAL:")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("AUTHLINK_AUDIT_WATCH_LOOKBACK:")), problems.join("\n"));
  });

  test("public URL: https, or http on loopback; no query, fragment or user info", () => {
    assert.equal(loadConfig({ AUTHLINK_PUBLIC_URL: "http://localhost:3000" }).links.publicUrl.host, "localhost:3000");
    for (const url of ["http://auth.example.com", "https://auth.example.com/?x=1", "https://u:p@auth.example.com", "ftp://x", "auth.example.com"]) {
      assert.ok(problemsOf({ AUTHLINK_PUBLIC_URL: url }).some((p) => p.startsWith("AUTHLINK_PUBLIC_URL:")), url);
    }
  });

  test("TLS: cert and key together; client CA needs TLS and identities; identities need a client CA", () => {
    const files = (path: string) => Buffer.from(`PEM of ${path}`);
    assert.ok(problemsOf({ AUTHLINK_TLS_CERT: "/c" }, files).some((p) => p.startsWith("AUTHLINK_TLS_CERT:")));
    assert.ok(problemsOf({ AUTHLINK_TLS_CLIENT_CA: "/ca", AUTHLINK_SERVICE_IDENTITIES: "x" }, files).some((p) => p.includes("needs AUTHLINK_TLS_CERT")));
    assert.ok(problemsOf({ AUTHLINK_SERVICE_IDENTITIES: "spiffe://a/b" }, files).some((p) => p.startsWith("AUTHLINK_SERVICE_IDENTITIES:")));
    assert.ok(problemsOf({ AUTHLINK_TLS_CERT: "/c", AUTHLINK_TLS_KEY: "/k", AUTHLINK_TLS_CLIENT_CA: "/ca" }, files).some((p) => p.includes("AUTHLINK_SERVICE_IDENTITIES is empty")));
    const unreadable = () => {
      throw Object.assign(new Error("nope"), { code: "ENOENT" });
    };
    assert.ok(problemsOf({ AUTHLINK_TLS_CERT: "/missing", AUTHLINK_TLS_KEY: "/k" }, unreadable).some((p) => p.startsWith("AUTHLINK_TLS_CERT: cannot read /missing: ENOENT")));
    const config = loadConfig(
      { AUTHLINK_TLS_CERT: "/c", AUTHLINK_TLS_KEY: "/k", AUTHLINK_TLS_CLIENT_CA: "/ca", AUTHLINK_SERVICE_IDENTITIES: "spiffe://a/b, svc" },
      { readFile: files },
    );
    assert.equal(config.tls?.clientCa?.toString(), "PEM of /ca");
    assert.deepEqual([...config.serviceIdentities], ["spiffe://a/b", "svc"]);
    assert.equal(config.serviceKeyGenerated, false, "mTLS identities configured: no development key");
  });

  test("argon2 must meet an OWASP setting", () => {
    assert.ok(problemsOf({ AUTHLINK_ARGON2_ITERATIONS: "1" }).some((p) => p.startsWith("AUTHLINK_ARGON2_MEMORY_KIB:")));
    loadConfig({ AUTHLINK_ARGON2_MEMORY_KIB: "47104", AUTHLINK_ARGON2_ITERATIONS: "1" });
    loadConfig({ AUTHLINK_ARGON2_MEMORY_KIB: "12288", AUTHLINK_ARGON2_ITERATIONS: "3" });
    assert.ok(problemsOf({ AUTHLINK_ARGON2_MEMORY_KIB: "12288", AUTHLINK_ARGON2_ITERATIONS: "2" }).length > 0);
  });

  test("expiry bounds hold together", () => {
    assert.ok(problemsOf({ AUTHLINK_LINK_EXPIRY_MIN: "2h", AUTHLINK_LINK_EXPIRY_MAX: "1h" }).some((p) => p.startsWith("AUTHLINK_LINK_EXPIRY_MIN:")));
    assert.ok(problemsOf({ AUTHLINK_LINK_EXPIRY_RECOVERY: "8d" }).some((p) => p.startsWith("AUTHLINK_LINK_EXPIRY_RECOVERY:")));
  });

  test("secrets never show when the configuration is printed", () => {
    const otpSecret = "o".repeat(32);
    const mongoPassword = "hunter2-database-password";
    const config = loadConfig({
      AUTHLINK_SERVICE_KEYS: KEY,
      AUTHLINK_OTP_SECRET: otpSecret,
      AUTHLINK_MONGODB_URI: `mongodb://app:${mongoPassword}@db.example.com/`,
    });
    for (const shown of [JSON.stringify(config), inspect(config, { depth: 10 }), String(config.serviceKeys), `${config.otp.secret}`]) {
      for (const secret of [KEY, otpSecret, mongoPassword]) assert.ok(!shown.includes(secret), `leaked in: ${shown.slice(0, 80)}`);
    }
    assert.equal(config.otp.secret.reveal(), otpSecret);
  });
});

describe("the link a person clicks: template, page, CORS, metrics, reflection", () => {
  const named = (env: Record<string, string>, name: string) => problemsOf(env).filter((p) => p.startsWith(`${name}:`));

  test("AUTHLINK_ACTION_LINK_TEMPLATE: {token} required, known placeholders only, https unless loopback", () => {
    for (const bad of [
      "https://app.example.com/confirm?type={type}",
      "https://app.example.com/confirm?t={token}&x={email}",
      "http://app.example.com/confirm#t={token}",
      "not a url {token}",
    ]) {
      assert.equal(named({ AUTHLINK_ACTION_LINK_TEMPLATE: bad }, "AUTHLINK_ACTION_LINK_TEMPLATE").length, 1, bad);
    }
    const config = loadConfig({ AUTHLINK_ACTION_LINK_TEMPLATE: "https://app.example.com/confirm#t={token}&k={type}&next={redirect_to}" });
    assert.equal(config.links.actionLink.kind, "template");
    assert.equal(loadConfig({ AUTHLINK_ACTION_LINK_TEMPLATE: "http://localhost:3000/c?t={token}" }).links.actionLink.kind, "template");
    assert.equal(loadConfig({}).links.actionLink.kind, "verify_page");
  });

  test("AUTHLINK_CORS_ORIGINS: exact origins only", () => {
    for (const bad of ["*", "null", "https://*.example.com", "https://app.example.com/", "https://app.example.com/path", "http://app.example.com", "app.example.com"]) {
      assert.equal(named({ AUTHLINK_CORS_ORIGINS: bad }, "AUTHLINK_CORS_ORIGINS").length, 1, bad);
    }
    assert.deepEqual(loadConfig({ AUTHLINK_CORS_ORIGINS: "https://app.example.com, http://localhost:5173" }).corsOrigins, [
      "https://app.example.com",
      "http://localhost:5173",
    ]);
  });

  test("AUTHLINK_PAGE_TITLE, AUTHLINK_METRICS_ADDR, AUTHLINK_REFLECTION", () => {
    assert.equal(named({ AUTHLINK_PAGE_TITLE: "x".repeat(81) }, "AUTHLINK_PAGE_TITLE").length, 1);
    assert.equal(named({ AUTHLINK_METRICS_ADDR: "9464" }, "AUTHLINK_METRICS_ADDR").length, 1);
    assert.equal(named({ AUTHLINK_ADDR: "127.0.0.1:8080", AUTHLINK_METRICS_ADDR: "127.0.0.1:8080" }, "AUTHLINK_METRICS_ADDR").length, 1);
    assert.equal(named({ AUTHLINK_REFLECTION: "maybe" }, "AUTHLINK_REFLECTION").length, 1);
    const config = loadConfig({ AUTHLINK_METRICS_ADDR: "127.0.0.1:9464", AUTHLINK_REFLECTION: "off" });
    assert.deepEqual(config.metricsListen, { host: "127.0.0.1", port: 9464 });
    assert.equal(config.reflection, false);
    assert.equal(loadConfig({}).metricsListen, undefined);
  });

  test("AUTHLINK_GRPC_ADDR: off by default; host:port on a port of its own (0 picks one)", () => {
    assert.equal(loadConfig({}).grpcListen, undefined);
    assert.deepEqual(loadConfig({ AUTHLINK_GRPC_ADDR: "0.0.0.0:9090" }).grpcListen, { host: "0.0.0.0", port: 9090 });
    assert.deepEqual(loadConfig({ AUTHLINK_GRPC_ADDR: "[::]:9090" }).grpcListen, { host: "::", port: 9090 });
    assert.deepEqual(loadConfig({ AUTHLINK_ADDR: "127.0.0.1:0", AUTHLINK_GRPC_ADDR: "127.0.0.1:0" }).grpcListen, { host: "127.0.0.1", port: 0 });
    assert.equal(named({ AUTHLINK_GRPC_ADDR: "9090" }, "AUTHLINK_GRPC_ADDR").length, 1);
    assert.equal(named({ AUTHLINK_ADDR: "127.0.0.1:8080", AUTHLINK_GRPC_ADDR: "127.0.0.1:8080" }, "AUTHLINK_GRPC_ADDR").length, 1);
    assert.equal(named({ AUTHLINK_METRICS_ADDR: "127.0.0.1:9464", AUTHLINK_GRPC_ADDR: "127.0.0.1:9464" }, "AUTHLINK_GRPC_ADDR").length, 1);
  });

  test("the default public URL follows AUTHLINK_ADDR; a public listen address needs AUTHLINK_PUBLIC_URL", () => {
    assert.equal(loadConfig({ AUTHLINK_ADDR: "127.0.0.1:9000" }).links.publicUrl.href, "http://127.0.0.1:9000/");
    assert.equal(loadConfig({ AUTHLINK_ADDR: "0.0.0.0:9000" }).links.publicUrl.href, "http://127.0.0.1:9000/");
    assert.equal(loadConfig({ AUTHLINK_ADDR: "[::1]:9000" }).links.publicUrl.href, "http://[::1]:9000/");
    assert.equal(named({ AUTHLINK_ADDR: "10.1.2.3:9000" }, "AUTHLINK_PUBLIC_URL").length, 1);
  });
});
