import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createTestCa } from "../support/certs.js";
import { expectExit } from "../support/cli-process.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// The admin CLI over TLS with a client certificate (mTLS): the service role
// proven by the certificate alone (no service key anywhere), the server
// checked against --ca, and the refusals an operator meets: a certificate the
// server does not allow (PERMISSION_DENIED), none at all (UNAUTHENTICATED),
// and a server certificate the CLI does not trust (UNAVAILABLE: no call is
// made to an unverified server).

const OPS = "spiffe://example.org/ns/ops/sa/authlink-cli";
const ca = createTestCa("authlink CLI test CA");
const otherCa = createTestCa("another CA");
const serverCert = ca.issue({ usage: "server", commonName: "localhost", dnsNames: ["localhost"], ips: ["127.0.0.1"] });
const allowed = ca.issue({ usage: "client", commonName: "ops", uris: [OPS] });
const stranger = ca.issue({ usage: "client", commonName: "stranger", uris: ["spiffe://example.org/ns/ops/sa/someone-else"] });

const dir = mkdtempSync(join(tmpdir(), "authlink-cli-mtls-"));
const file = (name: string, content: string) => {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
};
const caFile = file("ca.pem", ca.certPem);
const otherCaFile = file("other-ca.pem", otherCa.certPem);
const certFile = file("ops.pem", allowed.certPem);
const keyFile = file("ops.key", allowed.keyPem);
const strangerCert = file("stranger.pem", stranger.certPem);
const strangerKey = file("stranger.key", stranger.keyPem);

const serverFiles: Record<string, string> = {
  "/tls/server.pem": serverCert.certPem,
  "/tls/server.key": serverCert.keyPem,
  "/tls/client-ca.pem": ca.certPem,
};

let server: TestServer;
let url: string;
before(async () => {
  server = await startTestServer({
    env: {
      AUTHLINK_TLS_CERT: "/tls/server.pem",
      AUTHLINK_TLS_KEY: "/tls/server.key",
      AUTHLINK_TLS_CLIENT_CA: "/tls/client-ca.pem",
      AUTHLINK_SERVICE_IDENTITIES: OPS,
    },
    readFile: (path) => {
      const content = serverFiles[path];
      if (content === undefined) throw Object.assign(new Error("no such file"), { code: "ENOENT" });
      return Buffer.from(content);
    },
  });
  // The certificate names localhost.
  url = `https://localhost:${server.port}`;
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** No service key in the environment: the certificate is the only credential. */
const env = { AUTHLINK_CLI_URL: "" };

for (const protocol of ["grpc", "connect"] as const) {
  test(`${protocol}: the client certificate alone proves the service role; the caller is audited under its SPIFFE ID`, async () => {
    const tls = ["--url", url, "--protocol", protocol, "--ca", caFile, "--cert", certFile, "--key", keyFile];
    const email = `mtls-${protocol}@example.com`;
    const generated = await expectExit(0, [...tls, "-o", "json", "generate", "magiclink", email], { env });
    const link = JSON.parse(generated.stdout) as { actionLink: string; hashedToken: string };
    assert.match(link.actionLink, /^https:\/\/auth\.example\.com\/verify#token=/);
    const got = await expectExit(0, [...tls, "-o", "json", "links", "get", link.hashedToken], { env });
    assert.equal((JSON.parse(got.stdout) as { link?: { issuedBy?: string } }).link?.issuedBy, OPS, got.stdout);
  });
}

test("a certificate the server does not allow: exit 1, PERMISSION_DENIED not_service_role", async () => {
  const result = await expectExit(1, ["--url", url, "--ca", caFile, "--cert", strangerCert, "--key", strangerKey, "users", "get", "a@example.com"], { env });
  assert.match(result.stderr, /PERMISSION_DENIED/);
  assert.match(result.stderr, /not_service_role/);
});

test("no certificate and no key: exit 1, UNAUTHENTICATED credentials_missing", async () => {
  const result = await expectExit(1, ["--url", url, "--ca", caFile, "links", "list"], { env });
  assert.match(result.stderr, /UNAUTHENTICATED/);
  assert.match(result.stderr, /credentials_missing/);
});

test("a server certificate the CLI does not trust: exit 1 before any call is answered", async () => {
  const result = await expectExit(1, ["--url", url, "--ca", otherCaFile, "--cert", certFile, "--key", keyFile, "links", "list"], { env });
  assert.match(result.stderr, /UNAVAILABLE|certificate/i);
});

test("--cert without --key, or TLS files with an http URL: exit 2 (usage), nothing sent", async () => {
  await expectExit(2, ["--url", url, "--ca", caFile, "--cert", certFile, "links", "list"], { env });
  await expectExit(2, ["--url", `http://127.0.0.1:${server.port}`, "--ca", caFile, "links", "list"], { env });
});
