import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { AdminAuthService } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AuthlinkError, REASONS, type Reason } from "../../src/domain/errors.js";
import { accessRequirement } from "../../src/rpc/access-policy.js";
import { asAuthlinkError, toConnectError } from "../../src/rpc/error-details.js";
import { StoreUnavailableError } from "../../src/store/store.js";

describe("errors on the wire", () => {
  const expected: Record<Reason, Code> = {
    validation_failed: Code.InvalidArgument,
    redirect_not_allowed: Code.InvalidArgument,
    weak_password: Code.InvalidArgument,
    user_not_found: Code.NotFound,
    email_exists: Code.AlreadyExists,
    link_invalid_or_expired: Code.PermissionDenied,
    credentials_missing: Code.Unauthenticated,
    credentials_invalid: Code.Unauthenticated,
    not_service_role: Code.PermissionDenied,
    over_rate_limit: Code.ResourceExhausted,
    store_unavailable: Code.Unavailable,
    deadline_exceeded: Code.DeadlineExceeded,
    cancelled: Code.Canceled,
    internal: Code.Internal,
  };

  test("each reason has its status and travels as ErrorInfo", () => {
    for (const reason of Object.keys(REASONS) as Reason[]) {
      const error = toConnectError(new AuthlinkError(reason));
      assert.equal(error.code, expected[reason], reason);
      assert.deepEqual(error.findDetails(ErrorInfoSchema).map((d) => [d.reason, d.domain]), [[reason, "authlink"]]);
      assert.equal(error.findDetails(BadRequestSchema).length, 0);
    }
  });

  test("field violations and retry delays", () => {
    const invalid = toConnectError(new AuthlinkError("validation_failed", { violations: [{ field: "email", description: "is required" }] }));
    assert.deepEqual(invalid.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => [v.field, v.description]), [["email", "is required"]]);
    const limited = toConnectError(new AuthlinkError("over_rate_limit", { retryAfterMs: 1500 }));
    const delay = limited.findDetails(RetryInfoSchema)[0]?.retryDelay;
    assert.deepEqual([delay?.seconds, delay?.nanos], [1n, 500_000_000]);
  });

  test("unexpected errors become a bare INTERNAL; store outages UNAVAILABLE", () => {
    const internal = toConnectError(asAuthlinkError(new Error("E11000 duplicate key: secret-ish driver text")));
    assert.equal(internal.code, Code.Internal);
    assert.doesNotMatch(internal.message, /E11000|driver/);
    assert.equal(asAuthlinkError(new StoreUnavailableError("down")).reason, "store_unavailable");
    assert.equal(asAuthlinkError(new ConnectError("late", Code.DeadlineExceeded)).reason, "deadline_exceeded");
    assert.equal(asAuthlinkError(new DOMException("aborted", "AbortError")).reason, "cancelled");
    assert.equal(asAuthlinkError(new DOMException("timed out", "TimeoutError")).reason, "deadline_exceeded");
    const own = new AuthlinkError("email_exists");
    assert.equal(asAuthlinkError(own), own);
  });
});

describe("access declared in the contract", () => {
  test("GenerateLink needs the service role, VerifyLink is public", () => {
    assert.equal(accessRequirement(AdminAuthService.method.generateLink), "service_role");
    assert.equal(accessRequirement(AdminAuthService.method.verifyLink), "public");
  });
});
