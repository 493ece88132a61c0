import { generateKeyPairSync, randomBytes } from "node:crypto";
import forge from "node-forge";

// Throw-away PKI for the TLS tests, made fresh per run: a CA that signs the
// server certificate and the client certificates authlink should trust, and a
// second CA nobody trusts. Leaf certificates can carry any identity (SPIFFE
// URI SANs, CN) and any validity window, including expired ones.

export interface KeyPair {
  readonly privateKeyPem: string;
  readonly publicKeyPem: string;
}

export interface IssuedCert {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface LeafOptions {
  readonly commonName?: string;
  readonly uris?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ips?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly usage: "server" | "client";
}

export interface TestCa {
  readonly certPem: string;
  issue(options: LeafOptions): IssuedCert;
}

const DAY = 86_400_000;

function rsaKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

/** One key for every leaf: key generation is the slow part and tests do not need distinct keys. */
let sharedLeafKey: KeyPair | undefined;

export function createTestCa(name: string): TestCa {
  const caKey = rsaKeyPair();
  const caCert = forge.pki.createCertificate();
  caCert.publicKey = forge.pki.publicKeyFromPem(caKey.publicKeyPem);
  caCert.serialNumber = `01${randomBytes(8).toString("hex")}`;
  caCert.validity.notBefore = new Date(Date.now() - DAY);
  caCert.validity.notAfter = new Date(Date.now() + 365 * DAY);
  const subject = [{ name: "commonName", value: name }];
  caCert.setSubject(subject);
  caCert.setIssuer(subject);
  caCert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  const caPrivate = forge.pki.privateKeyFromPem(caKey.privateKeyPem);
  caCert.sign(caPrivate, forge.md.sha256.create());

  return {
    certPem: forge.pki.certificateToPem(caCert),
    issue(options) {
      sharedLeafKey ??= rsaKeyPair();
      const cert = forge.pki.createCertificate();
      cert.publicKey = forge.pki.publicKeyFromPem(sharedLeafKey.publicKeyPem);
      cert.serialNumber = `02${randomBytes(8).toString("hex")}`;
      cert.validity.notBefore = options.notBefore ?? new Date(Date.now() - DAY);
      cert.validity.notAfter = options.notAfter ?? new Date(Date.now() + 30 * DAY);
      cert.setSubject(options.commonName ? [{ name: "commonName", value: options.commonName }] : []);
      cert.setIssuer(caCert.subject.attributes);
      const altNames = [
        ...(options.uris ?? []).map((value) => ({ type: 6, value })),
        ...(options.dnsNames ?? []).map((value) => ({ type: 2, value })),
        ...(options.ips ?? []).map((ip) => ({ type: 7, ip })),
      ];
      cert.setExtensions([
        { name: "basicConstraints", cA: false },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
        { name: "extKeyUsage", serverAuth: options.usage === "server", clientAuth: options.usage === "client" },
        ...(altNames.length > 0 ? [{ name: "subjectAltName", altNames }] : []),
        { name: "authorityKeyIdentifier", keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
      ]);
      cert.sign(caPrivate, forge.md.sha256.create());
      return { certPem: forge.pki.certificateToPem(cert), keyPem: sharedLeafKey.privateKeyPem };
    },
  };
}
