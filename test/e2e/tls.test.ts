import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { AuditService } from "../../gen/authlink/v1/audit_service_pb.js";
import { LinkAdminService } from "../../gen/authlink/v1/link_admin_service_pb.js";
import { UserAdminService } from "../../gen/authlink/v1/user_admin_service_pb.js";
import { linkParams } from "../support/links.js";
import { createTestCa, type IssuedCert } from "../support/certs.js";
import { Code, connectClient, grpc, grpcJsClient, grpcJsReason, reasonOf, rejection } from "../support/clients.js";
import { useTestDatabase } from "../support/mongo.js";
import { GRPC_JS_LISTENER, grpcAddressOf, grpcUrlOf, startTestServer, type TestServer } from "../support/test-server.js";

// TLS and mTLS on one port: HTTP/2 and HTTP/1.1 over TLS, the service role
// proven by a client certificate (SPIFFE URI SAN or CN) or a bearer key, and
// every kind of bad certificate answered with a gRPC status and a reason —
// never a dropped handshake.

const BILLING = "spiffe://example.org/ns/default/sa/billing";
const OPS_CN = "ops-service";
const DAY = 86_400_000;

const ca = createTestCa("authlink test CA");
const rogueCa = createTestCa("rogue CA");
const serverCert = ca.issue({ usage: "server", commonName: "localhost", dnsNames: ["localhost"], ips: ["127.0.0.1"] });
const caPem = Buffer.from(ca.certPem);

const clientCerts: Record<string, IssuedCert> = {
  spiffe: ca.issue({ usage: "client", commonName: "billing", uris: [BILLING] }),
  cn: ca.issue({ usage: "client", commonName: OPS_CN }),
  rogue: rogueCa.issue({ usage: "client", uris: [BILLING] }),
  expired: ca.issue({
    usage: "client",
    uris: [BILLING],
    notBefore: new Date(Date.now() - 10 * DAY),
    notAfter: new Date(Date.now() - DAY),
  }),
  notYetValid: ca.issue({ usage: "client", uris: [BILLING], notBefore: new Date(Date.now() + DAY) }),
  twoUris: ca.issue({ usage: "client", uris: [BILLING, "spiffe://example.org/ns/default/sa/other"] }),
  suffix: ca.issue({ usage: "client", uris: [`${BILLING}/extra`] }),
  prefix: ca.issue({ usage: "client", uris: [BILLING.slice(0, -1)] }),
  upperCase: ca.issue({ usage: "client", uris: [BILLING.toUpperCase()] }),
  trailingSlash: ca.issue({ usage: "client", uris: [`${BILLING}/`] }),
  cnCase: ca.issue({ usage: "client", commonName: OPS_CN.toUpperCase() }),
  noIdentity: ca.issue({ usage: "client" }),
};

const files: Record<string, Buffer> = {
  "/tls/server.pem": Buffer.from(serverCert.certPem),
  "/tls/server.key": Buffer.from(serverCert.keyPem),
  "/tls/client-ca.pem": caPem,
};

const database = await useTestDatabase("tls");
let server: TestServer;

before(async () => {
  server = await startTestServer({
    database,
    env: {
      ...GRPC_JS_LISTENER,
      AUTHLINK_TLS_CERT: "/tls/server.pem",
      AUTHLINK_TLS_KEY: "/tls/server.key",
      AUTHLINK_TLS_CLIENT_CA: "/tls/client-ca.pem",
      AUTHLINK_SERVICE_IDENTITIES: `${BILLING},${OPS_CN}`,
    },
    readFile: (path) => {
      const content = files[path];
      if (!content) throw Object.assign(new Error("no such file"), { code: "ENOENT" });
      return content;
    },
  });
});
after(() => server.close());

const tlsWith = (name: keyof typeof clientCerts | null) => {
  const cert = name ? clientCerts[name] : undefined;
  return { ca: caPem, cert: cert && Buffer.from(cert.certPem), key: cert && Buffer.from(cert.keyPem) };
};

let n = 0;
const magic = () => ({ type: LinkType.MAGICLINK, email: `tls-${++n}@example.com` });

describe("the service role by client certificate", () => {
  test("a SPIFFE identity over gRPC (grpc-js, HTTP/2 over TLS)", async () => {
    const client = grpcJsClient(`localhost:${server.port}`, { tls: tlsWith("spiffe") });
    after(() => client.close());
    const generated = await client.generateLink({ type: "LINK_TYPE_MAGICLINK", email: "grpcjs-tls@example.com" });
    assert.equal(generated.verification_type, "LINK_TYPE_MAGICLINK");
  });

  test("a CN identity over gRPC (connect-node, HTTP/2 over TLS)", async () => {
    const generated = await connectClient(server.url, { protocol: "grpc", tls: tlsWith("cn") }).generateLink(magic());
    assert.equal(generated.verificationType, LinkType.MAGICLINK);
  });

  test("a SPIFFE identity over Connect (HTTP/1.1 over TLS)", async () => {
    const client = connectClient(server.url, { protocol: "connect", httpVersion: "1.1", tls: tlsWith("spiffe") });
    const generated = await client.generateLink(magic());
    assert.ok(generated.actionLink.startsWith("https://auth.example.com/verify#"));
  });

  test("a service key works over TLS without a certificate", async () => {
    const generated = await connectClient(server.url, { protocol: "grpc", tls: tlsWith(null), key: server.serviceKey }).generateLink(magic());
    assert.equal(generated.verificationType, LinkType.MAGICLINK);
  });
});

describe("refusals are statuses with reasons, never dropped handshakes", () => {
  const cases: [string, keyof typeof clientCerts | null, Code, string][] = [
    ["no certificate and no key", null, Code.Unauthenticated, "credentials_missing"],
    ["a certificate from an untrusted CA", "rogue", Code.Unauthenticated, "credentials_invalid"],
    ["an expired certificate", "expired", Code.Unauthenticated, "credentials_invalid"],
    ["a certificate that is not valid yet", "notYetValid", Code.Unauthenticated, "credentials_invalid"],
    ["a certificate with two URI SANs", "twoUris", Code.PermissionDenied, "not_service_role"],
    ["an allowed SPIFFE ID plus a suffix", "suffix", Code.PermissionDenied, "not_service_role"],
    ["an allowed SPIFFE ID minus its last character", "prefix", Code.PermissionDenied, "not_service_role"],
    ["an allowed SPIFFE ID in upper case", "upperCase", Code.PermissionDenied, "not_service_role"],
    ["an allowed SPIFFE ID with a trailing slash", "trailingSlash", Code.PermissionDenied, "not_service_role"],
    ["an allowed CN in upper case", "cnCase", Code.PermissionDenied, "not_service_role"],
    ["a certificate with no identity at all", "noIdentity", Code.PermissionDenied, "not_service_role"],
  ];
  for (const [name, cert, code, reason] of cases) {
    test(`${name}: ${Code[code]} ${reason}`, async () => {
      for (const protocol of ["grpc", "connect"] as const) {
        const error = await rejection(connectClient(server.url, { protocol, tls: tlsWith(cert) }).generateLink(magic()));
        assert.equal(error.code, code, `${protocol}: ${error.message}`);
        assert.equal(reasonOf(error), reason, protocol);
      }
    });
  }

  test("grpc-js sees the same status and reason for an expired certificate", async () => {
    const client = grpcJsClient(`localhost:${server.port}`, { tls: tlsWith("expired") });
    after(() => client.close());
    const error = (await client.generateLink({ type: "LINK_TYPE_MAGICLINK", email: "x@example.com" }).then(
      () => assert.fail("expected UNAUTHENTICATED"),
      (e: unknown) => e,
    )) as grpc.ServiceError;
    assert.equal(error.code, grpc.status.UNAUTHENTICATED);
    assert.equal(grpcJsReason(error), "credentials_invalid");
  });

  test("a bad certificate does not block the public VerifyLink", async () => {
    const generated = await connectClient(server.url, { protocol: "grpc", tls: tlsWith("spiffe") }).generateLink(magic());
    const token = linkParams(generated.actionLink).get("token") ?? "";
    const verified = await connectClient(server.url, { protocol: "connect", tls: tlsWith("rogue") }).verifyLink({
      type: LinkType.MAGICLINK,
      credential: { case: "token", value: token },
    });
    assert.equal(verified.user?.id, generated.user?.id);
  });
});

describe("the grpc-js listener over TLS: the same certificate, the same identities", () => {
  const grpcJsPort = () => grpcAddressOf(server, "grpc-js").split(":").pop();

  test("a SPIFFE identity (grpc-js client)", async () => {
    const client = grpcJsClient(`localhost:${grpcJsPort()}`, { tls: tlsWith("spiffe") });
    after(() => client.close());
    const generated = await client.generateLink({ type: "LINK_TYPE_MAGICLINK", email: "grpcjs-listener-tls@example.com" });
    assert.equal(generated.verification_type, "LINK_TYPE_MAGICLINK");
  });

  test("a CN identity (connect-node's gRPC client)", async () => {
    const generated = await connectClient(grpcUrlOf(server, "grpc-js"), { protocol: "grpc", tls: tlsWith("cn") }).generateLink(magic());
    assert.equal(generated.verificationType, LinkType.MAGICLINK);
  });

  test("a service key works over TLS without a certificate", async () => {
    const client = connectClient(grpcUrlOf(server, "grpc-js"), { protocol: "grpc", tls: tlsWith(null), key: server.serviceKey });
    assert.equal((await client.generateLink(magic())).verificationType, LinkType.MAGICLINK);
  });

  // grpc-js tells a call about a client certificate only when it verified
  // against the client CA: an untrusted, expired or not yet valid one reads
  // as no certificate (credentials_missing where the main port says
  // credentials_invalid). Same status code; the handshake is never dropped.
  const cases: [string, keyof typeof clientCerts | null, Code, string][] = [
    ["no certificate and no key", null, Code.Unauthenticated, "credentials_missing"],
    ["a certificate from an untrusted CA", "rogue", Code.Unauthenticated, "credentials_missing"],
    ["an expired certificate", "expired", Code.Unauthenticated, "credentials_missing"],
    ["a certificate that is not valid yet", "notYetValid", Code.Unauthenticated, "credentials_missing"],
    ["a certificate with two URI SANs", "twoUris", Code.PermissionDenied, "not_service_role"],
    ["an allowed SPIFFE ID plus a suffix", "suffix", Code.PermissionDenied, "not_service_role"],
    ["an allowed SPIFFE ID in upper case", "upperCase", Code.PermissionDenied, "not_service_role"],
    ["an allowed CN in upper case", "cnCase", Code.PermissionDenied, "not_service_role"],
    ["a certificate with no identity at all", "noIdentity", Code.PermissionDenied, "not_service_role"],
  ];
  for (const [name, cert, code, reason] of cases) {
    test(`${name}: ${Code[code]} ${reason}`, async () => {
      const error = await rejection(connectClient(grpcUrlOf(server, "grpc-js"), { protocol: "grpc", tls: tlsWith(cert) }).generateLink(magic()));
      assert.equal(error.code, code, error.message);
      assert.equal(reasonOf(error), reason);
    });
  }

  test("a bad certificate does not block the public VerifyLink", async () => {
    const generated = await connectClient(server.url, { protocol: "grpc", tls: tlsWith("spiffe") }).generateLink(magic());
    const token = linkParams(generated.actionLink).get("token") ?? "";
    const verified = await connectClient(grpcUrlOf(server, "grpc-js"), { protocol: "grpc", tls: tlsWith("rogue") }).verifyLink({
      type: LinkType.MAGICLINK,
      credential: { case: "token", value: token },
    });
    assert.equal(verified.user?.id, generated.user?.id);
  });
});

describe("the admin services: every method needs the service role", () => {
  /** Calls `method` with an empty request (and, for streams, reads the answer) and returns how it was refused. */
  async function refusalOf(service: DescService, methodName: string, cert: keyof typeof clientCerts | null): Promise<ConnectError> {
    const tls = tlsWith(cert);
    const transport = createGrpcTransport({ baseUrl: server.url, nodeOptions: { ...tls, servername: "localhost" } });
    const client = createClient(service, transport) as unknown as Record<string, (...args: unknown[]) => unknown>;
    const method = service.methods.find((m) => m.name === methodName);
    assert.ok(method);
    const call = client[method.localName];
    assert.ok(call, method.localName);
    try {
      if (method.methodKind === "unary") {
        await call({});
      } else {
        const input = method.methodKind === "bidi_streaming" ? [(async function* () {})()] : [{}];
        for await (const _ of call(...input) as AsyncIterable<unknown>) {
          // a refusal ends the stream before any message
        }
      }
    } catch (error) {
      return ConnectError.from(error);
    }
    assert.fail(`${service.name}/${methodName} answered without the service role`);
  }

  for (const service of [LinkAdminService, UserAdminService, AuditService]) {
    test(`${service.name}: no certificate → UNAUTHENTICATED credentials_missing; a certificate that is not a service role → PERMISSION_DENIED not_service_role`, async () => {
      for (const method of service.methods) {
        const missing = await refusalOf(service, method.name, null);
        assert.equal(missing.code, Code.Unauthenticated, `${method.name}: ${missing.message}`);
        assert.equal(reasonOf(missing), "credentials_missing", method.name);
        const notRole = await refusalOf(service, method.name, "noIdentity");
        assert.equal(notRole.code, Code.PermissionDenied, `${method.name}: ${notRole.message}`);
        assert.equal(reasonOf(notRole), "not_service_role", method.name);
      }
    });
  }
});
