import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { getOption, hasOption } from "@bufbuild/protobuf";
import { cors as connectCors } from "@connectrpc/connect";
import { Access, access } from "../../gen/authlink/v1/access_pb.js";
import { AdminAuthService, LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { publicMethodPaths } from "../../src/web/cors.js";
import { connectClient } from "../support/clients.js";
import { connectJson, rawRequest, type RawResponse } from "../support/http.js";
import { linkParams } from "../support/links.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// CORS for Connect-web over plain HTTP: preflights and responses for the
// public methods from the configured origins only. The browser's side of it
// (a real cross-origin call, and one that is blocked): verify-page.browser.test.ts.

const ALLOWED = "https://app.example.com";
const OTHER_ALLOWED = "http://localhost:5173";
const STRANGER = "https://evil.example.net";
const SERVICE = AdminAuthService.typeName;

function accessControlHeaders(response: RawResponse): string[] {
  return Object.keys(response.headers).filter((name) => name.startsWith("access-control-"));
}

function preflight(server: TestServer, method: string, origin: string, requestHeaders = "content-type,connect-protocol-version") {
  return rawRequest(`${server.url}/${SERVICE}/${method}`, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": requestHeaders },
  });
}

test("the public methods come from the contract's access option, not from a list", () => {
  const fromContract = AdminAuthService.methods
    .filter((m) => hasOption(m, access) && getOption(m, access) === Access.PUBLIC)
    .map((m) => `/${SERVICE}/${m.name}`);
  assert.deepEqual([...publicMethodPaths([AdminAuthService])].sort(), fromContract.sort());
  assert.deepEqual([...publicMethodPaths([AdminAuthService])].sort(), [`/${SERVICE}/PreviewLink`, `/${SERVICE}/VerifyLink`]);
  // A service without the option (health) has no public methods by the contract.
  assert.equal(publicMethodPaths([Health]).size, 0);
});

describe("with AUTHLINK_CORS_ORIGINS set", () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ env: { AUTHLINK_CORS_ORIGINS: `${ALLOWED}, ${OTHER_ALLOWED}` } });
  });
  after(() => server.close());

  for (const method of ["VerifyLink", "PreviewLink"]) {
    test(`a preflight for ${method} from an allowed origin gets what Connect needs, without credentials`, async () => {
      for (const origin of [ALLOWED, OTHER_ALLOWED]) {
        const response = await preflight(server, method, origin);
        assert.equal(response.status, 204);
        assert.equal(response.headers["access-control-allow-origin"], origin);
        assert.equal(response.headers["access-control-allow-credentials"], undefined);
        const methods = String(response.headers["access-control-allow-methods"]).split(",");
        assert.deepEqual(methods, [...connectCors.allowedMethods]);
        const allowed = String(response.headers["access-control-allow-headers"]).toLowerCase().split(",");
        for (const name of connectCors.allowedHeaders) assert.ok(allowed.includes(name.toLowerCase()), name);
        assert.ok(allowed.includes("x-request-id"));
        assert.ok(Number(response.headers["access-control-max-age"]) > 0);
        assert.match(String(response.headers.vary), /origin/i);
      }
    });
  }

  test("the response of a cross-origin call names the origin and exposes Connect's headers", async () => {
    const response = await connectJson(server.url, "VerifyLink", { type: "LINK_TYPE_MAGICLINK", token: "x".repeat(43) }, { origin: ALLOWED });
    assert.equal(response.status, 403); // the token is unknown; the point is the headers
    assert.equal(response.headers["access-control-allow-origin"], ALLOWED);
    assert.equal(response.headers["access-control-allow-credentials"], undefined);
    const exposed = String(response.headers["access-control-expose-headers"]).toLowerCase().split(",");
    for (const name of connectCors.exposedHeaders) assert.ok(exposed.includes(name.toLowerCase()), name);
    assert.ok(exposed.includes("x-request-id"));
  });

  test("an origin not on the list gets no CORS headers at all", async () => {
    for (const origin of [STRANGER, "null", `${ALLOWED}.evil.net`, ALLOWED.replace("https", "http"), `${ALLOWED}:443`, ALLOWED.toUpperCase()]) {
      const response = await preflight(server, "VerifyLink", origin);
      assert.notEqual(response.status, 204, origin);
      assert.deepEqual(accessControlHeaders(response), [], origin);
      const call = await connectJson(server.url, "VerifyLink", { type: "LINK_TYPE_MAGICLINK", token: "x".repeat(43) }, { origin });
      assert.deepEqual(accessControlHeaders(call), [], origin);
    }
  });

  test("service-role methods never get CORS headers, even for an allowed origin", async () => {
    const response = await preflight(server, "GenerateLink", ALLOWED, "content-type,connect-protocol-version,authorization");
    assert.notEqual(response.status, 204);
    assert.deepEqual(accessControlHeaders(response), []);
    const call = await connectJson(
      server.url,
      "GenerateLink",
      { type: "LINK_TYPE_MAGICLINK", email: "cors-generate@example.com" },
      { origin: ALLOWED, authorization: `Bearer ${server.serviceKey}` },
    );
    assert.equal(call.status, 200); // served (a backend may send an Origin header) but not readable by a browser
    assert.deepEqual(accessControlHeaders(call), []);
  });

  test("other paths get no CORS headers: health, reflection, unknown methods, the verify page", async () => {
    for (const path of [
      "/grpc.health.v1.Health/Check",
      `/${SERVICE}/NoSuchMethod`,
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      "/verify",
      `/${SERVICE}/VerifyLink/extra`,
    ]) {
      const response = await rawRequest(`${server.url}${path}`, {
        method: "OPTIONS",
        headers: { origin: ALLOWED, "access-control-request-method": "POST" },
      });
      assert.deepEqual(accessControlHeaders(response), [], path);
    }
  });

  test("a preflight consumes nothing: the link still redeems once", async () => {
    const client = connectClient(server.url, { key: server.serviceKey });
    const generated = await client.generateLink({ type: LinkType.MAGICLINK, email: "cors-preflight@example.com" });
    const token = linkParams(generated.actionLink).get("token") ?? "";
    for (const method of ["VerifyLink", "PreviewLink"]) await preflight(server, method, ALLOWED);
    const verified = await connectClient(server.url, { protocol: "connect" }).verifyLink({
      type: LinkType.MAGICLINK,
      credential: { case: "token", value: token },
    });
    assert.equal(verified.user?.email, "cors-preflight@example.com");
  });
});

describe("without AUTHLINK_CORS_ORIGINS", () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  test("no origin gets CORS headers", async () => {
    const response = await preflight(server, "VerifyLink", ALLOWED);
    assert.deepEqual(accessControlHeaders(response), []);
    const call = await connectJson(server.url, "VerifyLink", { type: "LINK_TYPE_MAGICLINK", token: "x".repeat(43) }, { origin: ALLOWED });
    assert.deepEqual(accessControlHeaders(call), []);
  });
});
