import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AuthlinkError } from "../../src/domain/errors.js";
import { authorize } from "../../src/call/access.js";
import { resolveCaller, type CallerPolicy } from "../../src/identity/caller.js";
import { certificateIdentity, parseSubjectAltNames, readPeerCertificate, type PeerCertificate } from "../../src/identity/peer-certificate.js";
import { Secret } from "../../src/crypto/secret.js";
import { createServiceKeyMatcher, serviceKeyIdentity } from "../../src/identity/service-keys.js";
import type { TLSSocket } from "node:tls";

const KEY = "k".repeat(40);
const SPIFFE = "spiffe://example.org/ns/prod/sa/billing";
const policy: CallerPolicy = { keys: createServiceKeyMatcher([new Secret(KEY)]), serviceIdentities: new Set([SPIFFE, "ops"]) };
const none: PeerCertificate = { presented: false };
const cert = (identity: string | undefined, verified = true): PeerCertificate => ({
  presented: true,
  verified,
  verifyError: verified ? undefined : "CERT_HAS_EXPIRED",
  identity,
  identityProblem: identity ? undefined : "certificate has more than one URI SAN",
});

describe("resolveCaller", () => {
  test("credentials and what they make of the caller", () => {
    assert.deepEqual(resolveCaller(none, null, policy), { kind: "anonymous" });
    const byKey = { kind: "service", identity: serviceKeyIdentity(KEY), via: "service_key" };
    assert.deepEqual(resolveCaller(none, `Bearer ${KEY}`, policy), byKey);
    assert.deepEqual(resolveCaller(none, `bearer ${KEY}`, policy), byKey, "the scheme is case-insensitive");
    assert.equal(resolveCaller(none, `Bearer ${KEY}x`, policy).kind, "rejected");
    assert.equal(resolveCaller(none, `Basic ${KEY}`, policy).kind, "rejected");
    assert.equal(resolveCaller(none, "Bearer", policy).kind, "rejected");
    assert.deepEqual(resolveCaller(cert(SPIFFE), null, policy), { kind: "service", identity: SPIFFE, via: "mtls" });
    assert.deepEqual(resolveCaller(cert("ops"), null, policy), { kind: "service", identity: "ops", via: "mtls" });
  });

  test("a certificate that does not verify is credentials_invalid, even with a good key", () => {
    const caller = resolveCaller(cert(SPIFFE, false), `Bearer ${KEY}`, policy);
    assert.equal(caller.kind === "rejected" && caller.reason, "credentials_invalid");
  });

  test("identities are compared exactly", () => {
    for (const identity of [`${SPIFFE}/`, `${SPIFFE}x`, SPIFFE.slice(0, -1), SPIFFE.toUpperCase(), "OPS", " ops"]) {
      const caller = resolveCaller(cert(identity), null, policy);
      assert.equal(caller.kind === "rejected" && caller.reason, "not_service_role", identity);
    }
    const ambiguous = resolveCaller(cert(undefined), null, policy);
    assert.equal(ambiguous.kind === "rejected" && ambiguous.reason, "not_service_role");
  });

  test("a valid certificate that is not allow-listed may still present a service key", () => {
    assert.equal(resolveCaller(cert("someone-else"), `Bearer ${KEY}`, policy).kind, "service");
    const wrong = resolveCaller(cert("someone-else"), "Bearer nope-nope-nope", policy);
    assert.equal(wrong.kind === "rejected" && wrong.reason, "credentials_invalid");
  });
});

describe("authorize", () => {
  const reasonOf = (error: AuthlinkError | undefined) => error && [error.reason, error.kind];
  test("public methods take anyone; the rest need the service role", () => {
    assert.equal(authorize({ kind: "anonymous" }, "public"), undefined);
    assert.equal(authorize({ kind: "rejected", reason: "credentials_invalid", identity: undefined, detail: "" }, "public"), undefined);
    assert.equal(authorize({ kind: "service", identity: "x", via: "mtls" }, "service_role"), undefined);
    assert.deepEqual(reasonOf(authorize({ kind: "anonymous" }, "service_role")), ["credentials_missing", "unauthenticated"]);
    assert.deepEqual(reasonOf(authorize({ kind: "rejected", reason: "credentials_invalid", identity: undefined, detail: "" }, "service_role")), ["credentials_invalid", "unauthenticated"]);
    assert.deepEqual(reasonOf(authorize({ kind: "rejected", reason: "not_service_role", identity: "x", detail: "" }, "service_role")), ["not_service_role", "permission_denied"]);
  });
});

describe("certificate identity", () => {
  test("subject alternative names as Node renders them", () => {
    assert.deepEqual(parseSubjectAltNames(`URI:${SPIFFE}, DNS:svc.local, IP Address:10.0.0.1`), [
      { kind: "URI", value: SPIFFE },
      { kind: "DNS", value: "svc.local" },
      { kind: "IP Address", value: "10.0.0.1" },
    ]);
    assert.deepEqual(parseSubjectAltNames('URI:"spiffe://a/b, c", DNS:x'), [
      { kind: "URI", value: "spiffe://a/b, c" },
      { kind: "DNS", value: "x" },
    ]);
  });

  test("one URI SAN wins over the CN; two are ambiguous; else one CN", () => {
    assert.deepEqual(certificateIdentity(`URI:${SPIFFE}`, "billing"), { identity: SPIFFE, problem: undefined });
    assert.equal(certificateIdentity(`URI:${SPIFFE}, URI:spiffe://x/y`, "billing").identity, undefined);
    assert.deepEqual(certificateIdentity("DNS:x", "billing"), { identity: "billing", problem: undefined });
    assert.equal(certificateIdentity(undefined, ["a", "b"]).identity, undefined);
    assert.equal(certificateIdentity(undefined, undefined).identity, undefined);
  });

  test("readPeerCertificate reports what TLS decided", () => {
    const socket = (peer: object, authorized: boolean, authorizationError?: string) =>
      ({ getPeerCertificate: () => peer, authorized, authorizationError }) as unknown as TLSSocket;
    assert.deepEqual(readPeerCertificate(socket({}, false)), { presented: false });
    assert.deepEqual(readPeerCertificate(undefined), { presented: false });
    assert.deepEqual(readPeerCertificate(socket({ subject: { CN: "ops" } }, true)), {
      presented: true,
      verified: true,
      verifyError: undefined,
      identity: "ops",
      identityProblem: undefined,
    });
    const expired = readPeerCertificate(socket({ subject: { CN: "ops" }, subjectaltname: `URI:${SPIFFE}` }, false, "CERT_HAS_EXPIRED"));
    assert.equal(expired.presented && expired.verified, false);
    assert.equal(expired.presented && expired.verifyError, "CERT_HAS_EXPIRED");
    assert.equal(expired.presented && expired.identity, SPIFFE);
  });
});
