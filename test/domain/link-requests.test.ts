import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AuthlinkError } from "../../src/domain/errors.js";
import { MAX_DATA_DEPTH, validateGenerateLink, validateVerifyLink, type GenerateLinkInput } from "../../src/domain/link-requests.js";
import type { JsonObject } from "../../src/domain/user.js";
import type { LinkSettings } from "../../src/domain/link-settings.js";
import { compileRedirectPolicy } from "../../src/domain/redirect-policy.js";
import { createOtpCodec } from "../../src/crypto/otp.js";
import { Secret } from "../../src/crypto/secret.js";

const settings: LinkSettings = {
  publicUrl: new URL("https://auth.example.com"),
  actionLink: { kind: "verify_page", publicUrl: new URL("https://auth.example.com") },
  expiry: { defaultMs: { signup: 1, magiclink: 2, recovery: 3, invite: 4, email_change: 5 }, minMs: 60_000, maxMs: 600_000 },
  otpMaxAttempts: 5,
  secureEmailChange: true,
  password: { minLength: 8 },
  maxUserDataBytes: 100,
  tombstoneGraceMs: 86_400_000,
};
const redirects = compileRedirectPolicy(["https://app.example.com/**"]).policy;
const otp = createOtpCodec(new Secret("x".repeat(32)), 6);

const base: GenerateLinkInput = {
  type: "magiclink",
  email: "ann@example.com",
  redirectTo: "",
  data: undefined,
  password: "",
  newEmail: "",
  expiresInMs: undefined,
};

function failure(run: () => unknown): { reason: string; fields: string[] } {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof AuthlinkError, String(error));
    return { reason: error.reason, fields: error.violations.map((v) => v.field) };
  }
  assert.fail("the request was accepted");
}
const generate = (input: Partial<GenerateLinkInput>) => () => validateGenerateLink({ ...base, ...input }, settings, redirects);

describe("validateGenerateLink", () => {
  test("a valid request comes back normalized, with the type's default expiry", () => {
    const request = validateGenerateLink({ ...base, email: "Ann@Example.com", redirectTo: "https://APP.example.com/x" }, settings, redirects);
    assert.deepEqual(request, {
      type: "magiclink",
      email: "ann@example.com",
      redirectTo: "https://app.example.com/x",
      data: undefined,
      password: undefined,
      newEmail: undefined,
      expiresInMs: 2,
    });
  });

  test("every malformed field at once, by its protobuf name", () => {
    const result = failure(generate({ type: "invite", email: "nope", password: "x", newEmail: "a@example.com", expiresInMs: 1, data: { k: "v".repeat(200) } }));
    assert.deepEqual(result, { reason: "validation_failed", fields: ["email", "password", "new_email", "data", "expires_in"] });
  });

  test("password: required for signup, refused elsewhere, bounded in length", () => {
    assert.deepEqual(failure(generate({ type: "signup" })).fields, ["password"]);
    assert.deepEqual(failure(generate({ type: "recovery", password: "long enough pass" })).fields, ["password"]);
    assert.deepEqual(failure(generate({ type: "signup", password: "p".repeat(257) })), { reason: "validation_failed", fields: ["password"] });
  });

  test("new_email: required for email change, different after normalization, refused elsewhere", () => {
    assert.deepEqual(failure(generate({ type: "email_change" })).fields, ["new_email"]);
    assert.deepEqual(failure(generate({ type: "email_change", email: "Ann@X.com", newEmail: "ann@x.COM" })).fields, ["new_email"]);
    assert.deepEqual(failure(generate({ type: "email_change", newEmail: "bad@" })).fields, ["new_email"]);
    assert.deepEqual(failure(generate({ type: "signup", password: "long enough pass", newEmail: "b@example.com" })).fields, ["new_email"]);
    assert.equal(validateGenerateLink({ ...base, type: "email_change", newEmail: "New@Example.com" }, settings, redirects).newEmail, "new@example.com");
  });

  test("data: only for signup, invite and magiclink, measured in UTF-8 bytes of JSON", () => {
    for (const type of ["recovery", "email_change"] as const) {
      assert.ok(failure(generate({ type, data: {}, newEmail: "b@example.com" })).fields.includes("data"), type);
    }
    const exactly = { k: "x".repeat(100 - '{"k":""}'.length) };
    assert.equal(Buffer.byteLength(JSON.stringify(exactly)), 100);
    validateGenerateLink({ ...base, data: exactly }, settings, redirects);
    // 100 characters of JSON, but é takes two bytes: 101 bytes.
    const multibyte = { k: `${"x".repeat(100 - '{"k":""}'.length - 1)}é` };
    assert.equal(JSON.stringify(multibyte).length, 100);
    assert.deepEqual(failure(generate({ data: multibyte })).fields, ["data"]);
  });

  test("data: nested at most 32 levels deep (checked without recursion)", () => {
    const nested = (levels: number) => {
      let value: JsonObject = { leaf: "x" };
      for (let i = 1; i < levels; i++) value = { d: value };
      return value;
    };
    validateGenerateLink({ ...base, data: nested(MAX_DATA_DEPTH) }, { ...settings, maxUserDataBytes: 1_000_000 }, redirects);
    for (const levels of [MAX_DATA_DEPTH + 1, 100_000]) {
      const run = () => validateGenerateLink({ ...base, data: nested(levels) }, { ...settings, maxUserDataBytes: 1_000_000 }, redirects);
      assert.deepEqual(failure(run).fields, ["data"], `${levels} levels`);
    }
  });

  test("expires_in: bounds inclusive", () => {
    assert.equal(validateGenerateLink({ ...base, expiresInMs: 60_000 }, settings, redirects).expiresInMs, 60_000);
    assert.equal(validateGenerateLink({ ...base, expiresInMs: 600_000 }, settings, redirects).expiresInMs, 600_000);
    for (const expiresInMs of [59_999, 600_001, -1, NaN, 0]) {
      assert.deepEqual(failure(generate({ expiresInMs })).fields, ["expires_in"], String(expiresInMs));
    }
  });

  test("precedence: malformed input, then the redirect, then password strength", () => {
    assert.equal(failure(generate({ email: "bad", redirectTo: "https://evil.net/" })).reason, "validation_failed");
    assert.deepEqual(failure(generate({ type: "signup", password: "password", redirectTo: "https://evil.net/" })), {
      reason: "redirect_not_allowed",
      fields: ["redirect_to"],
    });
    assert.deepEqual(failure(generate({ type: "signup", password: "password" })), { reason: "weak_password", fields: ["password"] });
  });

  test("an unknown type is reported", () => {
    assert.deepEqual(failure(generate({ type: undefined })).fields, ["type"]);
  });
});

describe("validateVerifyLink", () => {
  const token = "A".repeat(43);
  test("exactly one well-formed credential and a type", () => {
    assert.deepEqual(validateVerifyLink({ type: "magiclink", credential: { kind: "token", token } }, otp), { type: "magiclink", credential: { kind: "token", token } });
    assert.deepEqual(validateVerifyLink({ type: "invite", credential: { kind: "email_otp", email: "A@B.co", otp: "012345" } }, otp), {
      type: "invite",
      credential: { kind: "email_otp", email: "a@b.co", otp: "012345" },
    });
    assert.deepEqual(failure(() => validateVerifyLink({ type: undefined, credential: { kind: "none" } }, otp)).fields, ["type", "credential"]);
    for (const bad of ["A".repeat(42), "A".repeat(44), `${"A".repeat(42)}=`, `${"A".repeat(42)}+`, ""]) {
      assert.deepEqual(failure(() => validateVerifyLink({ type: "magiclink", credential: { kind: "token", token: bad } }, otp)).fields, ["token"]);
    }
    assert.deepEqual(failure(() => validateVerifyLink({ type: "magiclink", credential: { kind: "email_otp", email: "x", otp: "12345" } }, otp)).fields, [
      "email_otp.email",
      "email_otp.otp",
    ]);
  });
});

describe("messages a grpc-js caller can read", () => {
  // connect-node percent-encodes grpc-message; grpc-js decodes it with
  // decodeURI, which leaves ; / ? : @ & = + $ , # encoded. Every message and
  // field description of a rejected request must survive that round trip.
  const survivesGrpcJs = (text: string) => decodeURI(encodeURIComponent(text)) === text;
  const rejected: (() => unknown)[] = [
    generate({ type: undefined }),
    generate({ email: "" }),
    generate({ email: "no-at-sign" }),
    generate({ email: "a@b@c.com" }),
    generate({ email: "é@example.com" }),
    generate({ email: `${"a".repeat(65)}@example.com` }),
    generate({ email: "ann@localhost" }),
    generate({ type: "signup", password: "" }),
    generate({ type: "signup", password: "x".repeat(300) }),
    generate({ type: "signup", password: "password" }),
    generate({ password: "Secret-123456" }),
    generate({ newEmail: "b@example.com" }),
    generate({ type: "email_change", newEmail: "ann@example.com" }),
    generate({ type: "recovery", data: { a: 1 } }),
    generate({ data: { big: "x".repeat(200) } }),
    generate({ expiresInMs: 1 }),
    generate({ redirectTo: "javascript:alert(1)" }),
    generate({ redirectTo: "https://user:pw@app.example.com/" }),
    generate({ redirectTo: "https://evil.example.net/" }),
    generate({ redirectTo: "http://app.example.com/" }),
    generate({ redirectTo: "https://app.example.com/a b" }),
    generate({ redirectTo: "/relative" }),
    () => validateVerifyLink({ type: undefined, credential: { kind: "none" } }, otp),
    () => validateVerifyLink({ type: "magiclink", credential: { kind: "token", token: "short" } }, otp),
    () => validateVerifyLink({ type: "magiclink", credential: { kind: "email_otp", email: "x", otp: "12" } }, otp),
  ];
  for (const [index, run] of rejected.entries()) {
    test(`rejected request #${index + 1}`, () => {
      try {
        run();
      } catch (error) {
        assert.ok(error instanceof AuthlinkError);
        assert.ok(survivesGrpcJs(error.message), error.message);
        for (const v of error.violations) assert.ok(survivesGrpcJs(v.description), `${v.field}: ${v.description}`);
        return;
      }
      assert.fail("the request was accepted");
    });
  }
});
