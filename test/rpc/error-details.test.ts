import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AuthlinkError, REASONS, toAuthlinkError, type Reason } from "../../src/domain/errors.js";
import { toConnectError } from "../../src/rpc/error-details.js";
import { StoreUnavailableError } from "../../src/domain/store.js";

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
    method_not_exposed: Code.PermissionDenied,
    over_rate_limit: Code.ResourceExhausted,
    request_too_large: Code.ResourceExhausted,
    compression_not_supported: Code.Unimplemented,
    store_unavailable: Code.Unavailable,
    deadline_exceeded: Code.DeadlineExceeded,
    cancelled: Code.Canceled,
    internal: Code.Internal,
    idempotency_key_in_use: Code.Aborted,
    link_not_found: Code.NotFound,
    link_already_used: Code.FailedPrecondition,
    email_change_not_pending: Code.FailedPrecondition,
  };

  test("each reason has its status and travels as ErrorInfo", () => {
    for (const reason of Object.keys(REASONS) as Reason[]) {
      const error = toConnectError(new AuthlinkError(reason));
      assert.equal(error.code, expected[reason], reason);
      assert.deepEqual(error.findDetails(ErrorInfoSchema).map((d) => [d.reason, d.domain]), [[reason, "authlink"]]);
      assert.equal(error.findDetails(BadRequestSchema).length, 0);
    }
  });

  test("messages stay readable after grpc-js decodes them (decodeURI leaves ;/?:@&=+$,# encoded)", () => {
    const survivesGrpcJs = (message: string) => decodeURI(encodeURIComponent(message)) === message;
    for (const reason of Object.keys(REASONS) as Reason[]) {
      assert.ok(survivesGrpcJs(new AuthlinkError(reason).message), reason);
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
    const internal = toConnectError(toAuthlinkError(new Error("E11000 duplicate key: secret-ish driver text")));
    assert.equal(internal.code, Code.Internal);
    assert.doesNotMatch(internal.message, /E11000|driver/);
    assert.equal(toAuthlinkError(new StoreUnavailableError("down")).reason, "store_unavailable");
    assert.equal(toAuthlinkError(new DOMException("aborted", "AbortError")).reason, "cancelled");
    assert.equal(toAuthlinkError(new DOMException("timed out", "TimeoutError")).reason, "deadline_exceeded");
    const own = new AuthlinkError("email_exists");
    assert.equal(toAuthlinkError(own), own);
  });

  test("an operation that failed its own way because the call ended is classified by the call's signal", () => {
    const late = new AbortController();
    late.abort(new DOMException("the call ran past the server's time limit", "TimeoutError"));
    assert.equal(toAuthlinkError(new Error("driver: operation interrupted"), late.signal).reason, "deadline_exceeded");
    const gone = new AbortController();
    gone.abort(new DOMException("the client went away", "AbortError"));
    assert.equal(toAuthlinkError(new Error("driver: operation interrupted"), gone.signal).reason, "cancelled");
  });
});
