import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { connectClient, grpc, grpcJsClient, grpcJsReason, reasonOf, rejection, type GrpcJsAdminClient, type GrpcJsMessage } from "../support/clients.js";
import { grpcFrame } from "../support/grpc-flood.js";
import { rawRequest } from "../support/http.js";
import { rawHttp2, reasonInStatusDetails } from "../support/http2.js";
import { useTestDatabase } from "../support/mongo.js";
import { GRPC_JS_LISTENER, GRPC_LISTENERS, grpcAddressOf, grpcUrlOf, startTestServer, type GrpcListener, type TestServer } from "../support/test-server.js";
import { LinkType } from "../../gen/authlink/v1/admin_auth_service_pb.js";

// Requests that cannot be read, through real sockets on every protocol:
// garbage and broken frames over gRPC, gRPC-Web and Connect (binary and
// JSON), strings that are not UTF-8 (a lone surrogate from grpc-js), and a
// fuzz of thousands of grpc-js calls with hostile strings. Every answer has a
// status other than INTERNAL or UNKNOWN, an ErrorInfo reason, and no parser
// text. Requests the protocol layer refuses are counted in
// authlink_protocol_refusals_total{kind} and logged at a bounded pace.

const database = await useTestDatabase("malformed");
let server: TestServer;
const grpcJsClients = new Map<GrpcListener, { admin: GrpcJsAdminClient; anyone: GrpcJsAdminClient }>();

const MAX_REQUEST_BYTES = 65_536;

before(async () => {
  server = await startTestServer({
    database,
    env: {
      ...GRPC_JS_LISTENER,
      AUTHLINK_METRICS_ADDR: "127.0.0.1:0",
      AUTHLINK_MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES),
      // The fuzz calls from one address: no per-address limit in its way.
      AUTHLINK_RATE_LIMIT_VERIFY_PER_ADDRESS: "off",
      AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL: "off",
      AUTHLINK_RATE_LIMIT_VERIFY_CODE_PER_EMAIL_AND_CLIENT: "off",
      AUTHLINK_RATE_LIMIT_GENERATE_PER_EMAIL: "off",
    },
  });
  for (const listener of GRPC_LISTENERS) {
    const address = grpcAddressOf(server, listener);
    grpcJsClients.set(listener, { admin: grpcJsClient(address, { key: server.serviceKey }), anyone: grpcJsClient(address) });
  }
});
after(async () => {
  for (const { admin, anyone } of grpcJsClients.values()) {
    admin.close();
    anyone.close();
  }
  await server.close();
});
const grpcJsOn = (listener: GrpcListener) => grpcJsClients.get(listener) as { admin: GrpcJsAdminClient; anyone: GrpcJsAdminClient };

/** Words of the parsers' own messages, none of which may reach a client (authlink's own may say "as JSON"). */
const PARSER_TEXT = /parse|binary|varint|utf-?8|from json|in json|protocol error|envelope|readMaxBytes|decompress|unexpected (token|end)|at position|premature|wire type/i;
const UNDECODABLE = "the request could not be decoded";

const service = "/authlink.v1.AdminAuthService";
const bearer = () => ({ authorization: `Bearer ${server.serviceKey}` });

/** A protobuf message of field 2 (a string: GenerateLinkRequest.email, VerifyLinkRequest.token) holding these bytes. */
const stringField2 = (bytes: number[]) => Buffer.from([0x12, bytes.length, ...bytes]);
const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
const loneSurrogateUtf8 = [0x61, 0xed, 0xa0, 0x80, 0x62]; // "a\ud800b" as protobufjs (grpc-js) encodes it

interface Expected {
  readonly code: number;
  readonly reason: string;
  readonly message?: string;
}
const undecodable: Expected = { code: 3, reason: "validation_failed", message: UNDECODABLE };

for (const listener of GRPC_LISTENERS) {
describe(`gRPC on the ${listener} listener: requests that cannot be read answer with a reason, never INTERNAL`, () => {
  const cases: { name: string; method?: string; body: Buffer; headers?: Record<string, string>; expected: Expected }[] = [
    { name: "a message that is not protobuf (bad varint)", body: grpcFrame(garbage), expected: undecodable },
    { name: "a string field that is not UTF-8 (a lone surrogate)", body: grpcFrame(stringField2(loneSurrogateUtf8)), expected: undecodable },
    { name: "a string field longer than the message", body: grpcFrame(Buffer.from([0x12, 0x7f, 0x61])), expected: undecodable },
    { name: "a truncated envelope", body: grpcFrame(Buffer.alloc(100)).subarray(0, 20), expected: undecodable },
    { name: "two messages in a unary call", body: Buffer.concat([grpcFrame(Buffer.alloc(0)), grpcFrame(Buffer.alloc(0))]), expected: undecodable },
    { name: "no message at all", body: Buffer.alloc(0), expected: undecodable },
    { name: "a compressed message without grpc-encoding", body: grpcFrame(garbage, 1), expected: undecodable },
    { name: "gzip that is not gzip", body: grpcFrame(garbage, 1), headers: { "grpc-encoding": "gzip" }, expected: undecodable },
    { name: "a message over the size limit", body: grpcFrame(Buffer.alloc(MAX_REQUEST_BYTES + 10)), expected: { code: 8, reason: "request_too_large" } },
    { name: "an unknown compression", body: grpcFrame(garbage, 1), headers: { "grpc-encoding": "snappy" }, expected: { code: 12, reason: "compression_not_supported" } },
    { name: "a malformed grpc-timeout", body: grpcFrame(Buffer.alloc(0)), headers: { "grpc-timeout": "soon" }, expected: { code: 3, reason: "validation_failed", message: "a request header is invalid" } },
  ];
  for (const { name, method = "GenerateLink", body, headers, expected } of cases) {
    test(name, async () => {
      const response = await rawHttp2(grpcUrlOf(server, listener), {
        path: `${service}/${method}`,
        headers: { "content-type": "application/grpc", te: "trailers", ...bearer(), ...headers },
        body,
      });
      const message = decodeURIComponent(response.headers["grpc-message"] ?? "");
      assert.equal(response.status, 200);
      assert.equal(response.headers["grpc-status"], String(expected.code), message);
      assert.equal(reasonInStatusDetails(response.headers["grpc-status-details-bin"]), expected.reason);
      if (expected.message) assert.equal(message, expected.message);
      assert.doesNotMatch(message, PARSER_TEXT);
      assert.match(response.headers["x-request-id"] ?? "", /^[0-9a-f-]{36}$/, "the answer carries a request id");
    });
  }

  test("the public VerifyLink and PreviewLink answer the same to anyone", async () => {
    for (const method of ["VerifyLink", "PreviewLink"]) {
      const response = await rawHttp2(grpcUrlOf(server, listener), {
        path: `${service}/${method}`,
        headers: { "content-type": "application/grpc", te: "trailers" },
        body: grpcFrame(stringField2(loneSurrogateUtf8)),
      });
      assert.equal(response.headers["grpc-status"], "3", method);
      assert.equal(reasonInStatusDetails(response.headers["grpc-status-details-bin"]), "validation_failed", method);
    }
  });

  test("a caller without a credential is refused before its body is read: credentials_missing, not an undecodable body", async () => {
    const response = await rawHttp2(grpcUrlOf(server, listener), {
      path: `${service}/GenerateLink`,
      headers: { "content-type": "application/grpc", te: "trailers", "x-forwarded-for": "198.51.100.7" },
      body: grpcFrame(garbage),
    });
    assert.equal(response.headers["grpc-status"], "16");
    assert.equal(reasonInStatusDetails(response.headers["grpc-status-details-bin"]), "credentials_missing");
  });
});

describe(`oversized messages do not wear out an HTTP/2 connection (${listener} listener)`, () => {
  // Each refused body is discarded once answered: otherwise its stream and the
  // bytes already sent stay charged to the connection, which then refuses new
  // streams (ENHANCE_YOUR_CALM, "Bandwidth exhausted") after a few hundred.
  test("400 oversized grpc-js messages on one connection, each refused with a reason; then an ordinary call succeeds", async () => {
    const client = grpcJsClient(grpcAddressOf(server, listener));
    try {
      const token = "x".repeat(MAX_REQUEST_BYTES + 4_000);
      const answers = new Map<string, number>();
      for (let i = 0; i < 400; i++) {
        const error = await client.previewLink({ type: "LINK_TYPE_MAGICLINK", token }).then(
          () => assert.fail("an oversized message was accepted"),
          (e: unknown) => e as grpc.ServiceError,
        );
        const key = `${grpc.status[error.code]} ${grpcJsReason(error) ?? error.details}`;
        answers.set(key, (answers.get(key) ?? 0) + 1);
      }
      assert.deepEqual(Object.fromEntries(answers), { "RESOURCE_EXHAUSTED request_too_large": 400 });
      const preview = await client.previewLink({ type: "LINK_TYPE_MAGICLINK", token: "a".repeat(43) }).then(
        () => "ok",
        (e: unknown) => grpc.status[(e as grpc.ServiceError).code],
      );
      assert.notEqual(preview, "RESOURCE_EXHAUSTED");
    } finally {
      client.close();
    }
  });
});
}

describe("gRPC-Web and Connect: the same answers", () => {
  /** The trailer frame of a gRPC-Web response body, as headers. */
  const grpcWebTrailers = (body: Buffer): Record<string, string> => {
    const trailers: Record<string, string> = {};
    for (let offset = 0; offset + 5 <= body.length; ) {
      const length = body.readUInt32BE(offset + 1);
      const frame = body.subarray(offset + 5, offset + 5 + length);
      if (body[offset] === 0x80) {
        for (const line of frame.toString("latin1").split("\r\n")) {
          const colon = line.indexOf(":");
          if (colon > 0) trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
      }
      offset += 5 + length;
    }
    return trailers;
  };
  /** The code and ErrorInfo reason of a Connect error body. */
  const connectError = (text: string) => {
    const error = JSON.parse(text) as { code: string; message: string; details?: { type: string; value: string }[] };
    const info = error.details?.find((d) => d.type === "google.rpc.ErrorInfo");
    const reason = info && fromBinary(ErrorInfoSchema, Buffer.from(info.value, "base64")).reason;
    return { code: error.code, message: error.message, reason };
  };

  test("gRPC-Web over HTTP/1.1: garbage and a lone surrogate", async () => {
    for (const message of [garbage, stringField2(loneSurrogateUtf8)]) {
      const response = await fetch(`${server.url}${service}/GenerateLink`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", ...bearer() },
        body: grpcFrame(message),
      });
      assert.equal(response.status, 200);
      const trailers = grpcWebTrailers(Buffer.from(await response.arrayBuffer()));
      assert.equal(trailers["grpc-status"], "3");
      assert.equal(reasonInStatusDetails(trailers["grpc-status-details-bin"]), "validation_failed");
      assert.equal(decodeURIComponent(trailers["grpc-message"] ?? ""), UNDECODABLE);
    }
  });

  const connectCases: { name: string; contentType: string; body: Buffer | string; status: number; code: string; reason: string; field?: string }[] = [
    { name: "binary: not protobuf", contentType: "application/proto", body: garbage, status: 400, code: "invalid_argument", reason: "validation_failed" },
    { name: "binary: a lone surrogate", contentType: "application/proto", body: stringField2(loneSurrogateUtf8), status: 400, code: "invalid_argument", reason: "validation_failed" },
    { name: "JSON: not JSON", contentType: "application/json", body: "{nope", status: 400, code: "invalid_argument", reason: "validation_failed" },
    { name: "JSON: a number for a string", contentType: "application/json", body: '{"token": 5}', status: 400, code: "invalid_argument", reason: "validation_failed", field: "token" },
    { name: "JSON: a lone surrogate", contentType: "application/json", body: '{"type":"LINK_TYPE_MAGICLINK","token":"a\\ud800b"}', status: 400, code: "invalid_argument", reason: "validation_failed", field: "token" },
    { name: "JSON: an object for an enum", contentType: "application/json", body: '{"type":{"a":1},"token":"t"}', status: 400, code: "invalid_argument", reason: "validation_failed" },
    { name: "JSON: over the size limit", contentType: "application/json", body: JSON.stringify({ token: "t".repeat(MAX_REQUEST_BYTES) }), status: 429, code: "resource_exhausted", reason: "request_too_large" },
  ];
  for (const { name, contentType, body, status, code, reason, field } of connectCases) {
    test(`Connect ${name}`, async () => {
      const response = await rawRequest(`${server.url}${service}/VerifyLink`, { headers: { "content-type": contentType }, body });
      assert.equal(response.status, status, response.body);
      const error = connectError(response.body);
      assert.deepEqual([error.code, error.reason], [code, reason]);
      assert.doesNotMatch(error.message, PARSER_TEXT);
      if (reason === "validation_failed") assert.equal(error.message, UNDECODABLE);
      if (field) assert.match(response.body, new RegExp(`"field":"${field}"`), "the JSON error names the field");
    });
  }
});

for (const listener of GRPC_LISTENERS) {
describe(`grpc-js client, ${listener} listener: a lone surrogate in any string field`, () => {
  const lone = "a\ud800b";
  const cases: [string, (c: ReturnType<typeof grpcJsOn>) => Promise<GrpcJsMessage>][] = [
    ["GenerateLink.email", (c) => c.admin.generateLink({ type: "LINK_TYPE_MAGICLINK", email: `x${lone}@example.com` })],
    ["GenerateLink.redirect_to", (c) => c.admin.generateLink({ type: "LINK_TYPE_MAGICLINK", email: "x@example.com", redirect_to: `https://app.example.com/${lone}` })],
    ["GenerateLink.password", (c) => c.admin.generateLink({ type: "LINK_TYPE_SIGNUP", email: "x@example.com", password: `correct horse ${lone}` })],
    ["GenerateLink.new_email", (c) => c.admin.generateLink({ type: "LINK_TYPE_EMAIL_CHANGE", email: "x@example.com", new_email: `y${lone}@example.com` })],
    ["GenerateLink.data (a key)", (c) => c.admin.generateLink({ type: "LINK_TYPE_MAGICLINK", email: "x@example.com", data: { fields: { [lone]: { stringValue: "v" } } } })],
    ["GenerateLink.data (a value)", (c) => c.admin.generateLink({ type: "LINK_TYPE_MAGICLINK", email: "x@example.com", data: { fields: { name: { stringValue: lone } } } })],
    ["VerifyLink.token", (c) => c.anyone.verifyLink({ type: "LINK_TYPE_MAGICLINK", token: lone })],
    ["VerifyLink.email_otp.email", (c) => c.anyone.verifyLink({ type: "LINK_TYPE_MAGICLINK", email_otp: { email: `x${lone}@example.com`, otp: "123456" } })],
    ["VerifyLink.email_otp.otp", (c) => c.anyone.verifyLink({ type: "LINK_TYPE_MAGICLINK", email_otp: { email: "x@example.com", otp: `12345${lone}` } })],
    ["PreviewLink.token", (c) => c.anyone.previewLink({ type: "LINK_TYPE_MAGICLINK", token: lone })],
  ];
  for (const [field, call] of cases) {
    test(field, async () => {
      const error = await call(grpcJsOn(listener)).then(
        () => assert.fail("the call succeeded"),
        (e: unknown) => e as grpc.ServiceError,
      );
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT, error.details);
      assert.equal(grpcJsReason(error), "validation_failed");
      assert.equal(error.details, UNDECODABLE);
    });
  }

  test("well-formed text outside the BMP (a surrogate pair) is fine", async () => {
    const generated = await grpcJsOn(listener).admin.generateLink({
      type: "LINK_TYPE_MAGICLINK",
      email: "emoji-data@example.com",
      data: { fields: { name: { stringValue: "Zoë 😀" } } },
    });
    assert.deepEqual((generated.user as { user_metadata: unknown }).user_metadata, { fields: { name: { kind: "stringValue", stringValue: "Zoë 😀" } } });
  });
});
}

describe("fuzz: thousands of grpc-js and Connect calls with hostile strings", () => {
  const FUZZ_CALLS = Number(process.env.AUTHLINK_TEST_FUZZ_CALLS ?? 3_000);
  const seed = Number(process.env.AUTHLINK_TEST_FUZZ_SEED ?? Date.now() % 1_000_000);
  const random = mulberry32(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const pieces = [
    "\ud800", "\udbff", "\udc00", "\udfff", "\ud83d\ude00", "\u0000", "\u0001", "\u001f", "\u007f", "\u0085", "\u2028",
    "\ufeff", "\ufffd", "\uffff", "é", "ß", "İ", "ﬀ", "a", "Z", "0", "@", ".", "-", "_", "+", "%", "/", "\\", "\"", "'",
    "<", ">", "$", "{", "}", "example.com", "https://", "app.example.com", " ", "\t", "\r\n",
  ];
  // Most strings are well-formed (so that calls get past decoding into validation and the use cases);
  // a third may hold lone surrogates.
  const wellFormed = pieces.filter((piece) => !/[\ud800-\udfff]/.test(piece) || /^[\ud800-\udbff][\udc00-\udfff]$/.test(piece));
  const text = (): string => {
    const pool = random() < 0.3 ? pieces : wellFormed;
    const roll = random();
    const length = roll < 0.02 ? MAX_REQUEST_BYTES + Math.floor(random() * 4_000) : roll < 0.07 ? 2_000 + Math.floor(random() * 6_000) : Math.floor(random() * 40);
    let out = "";
    while (out.length < length) out += length > 1_000 && random() < 0.9 ? "x".repeat(500) : pick(pool);
    return out;
  };
  let fuzzed = 0;
  const maybe = (value: () => unknown) => (random() < 0.5 ? value() : undefined);
  const types = ["LINK_TYPE_UNSPECIFIED", "LINK_TYPE_SIGNUP", "LINK_TYPE_MAGICLINK", "LINK_TYPE_RECOVERY", "LINK_TYPE_INVITE", "LINK_TYPE_EMAIL_CHANGE"];
  const email = () => {
    const roll = random();
    return roll < 0.3 ? `fuzz-${++fuzzed}@example.com` : roll < 0.6 ? `${text()}@example.com` : text();
  };
  const generateRequest = (): GrpcJsMessage => ({
    type: random() < 0.4 ? "LINK_TYPE_MAGICLINK" : pick(types),
    email: email(),
    redirect_to: maybe(() => (random() < 0.5 ? `https://app.example.com/${text()}` : text())),
    password: maybe(text),
    new_email: maybe(email),
    data: maybe(() => ({ fields: { [text()]: { stringValue: text() }, name: { stringValue: text() } } })),
  });
  // Some tokens and codes are well-formed, so that the calls reach the store.
  const token = () => (random() < 0.3 ? randomBytes(32).toString("base64url") : text());
  const otp = () => (random() < 0.3 ? String(Math.floor(random() * 1e6)).padStart(6, "0") : text());
  const verifyRequest = (): GrpcJsMessage =>
    random() < 0.5 ? { type: pick(types), token: token() } : { type: pick(types), email_otp: { email: email(), otp: otp() } };

  for (const listener of GRPC_LISTENERS) {
  test(`${FUZZ_CALLS} grpc-js calls to the ${listener} listener: no INTERNAL or UNKNOWN, every error has a reason`, { timeout: 600_000 }, async (t) => {
    const grpcJs = grpcJsOn(listener);
    const outcomes = new Map<string, number>();
    const problems: string[] = [];
    const one = async () => {
      const roll = random();
      const [name, call] =
        roll < 0.5
          ? ["GenerateLink", () => grpcJs.admin.generateLink(generateRequest())]
          : roll < 0.8
            ? ["VerifyLink", () => pick([grpcJs.admin, grpcJs.anyone]).verifyLink(verifyRequest())]
            : ["PreviewLink", () => grpcJs.anyone.previewLink({ type: pick(types), token: token() })];
      try {
        await (call as () => Promise<unknown>)();
        outcomes.set(`${name as string} OK`, (outcomes.get(`${name as string} OK`) ?? 0) + 1);
      } catch (e) {
        const error = e as grpc.ServiceError;
        const reason = grpcJsReason(error);
        const key = `${name as string} ${grpc.status[error.code]} ${reason ?? "(no reason)"}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
        if (error.code === grpc.status.INTERNAL || error.code === grpc.status.UNKNOWN || reason === undefined || PARSER_TEXT.test(error.details)) {
          if (problems.length < 10) problems.push(`${key}: ${error.details}`);
        }
      }
    };
    let done = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (done < FUZZ_CALLS) {
          done++;
          await one();
        }
      }),
    );
    t.diagnostic(`seed ${seed} (AUTHLINK_TEST_FUZZ_SEED): ${JSON.stringify(Object.fromEntries([...outcomes].sort()))}`);
    assert.deepEqual(problems, [], `seed ${seed}`);
  });
  }

  test("Connect JSON: the same strings from connect-node's client", async (t) => {
    const client = connectClient(server.url, { protocol: "connect", useBinaryFormat: false });
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const error = await rejection(client.verifyLink({ type: LinkType.MAGICLINK, credential: { case: "token", value: text() } }));
      const key = `${error.code} ${reasonOf(error) ?? "(no reason)"}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      assert.ok(reasonOf(error), `${error.code}: ${error.message}`);
      assert.doesNotMatch(error.rawMessage, PARSER_TEXT);
    }
    t.diagnostic(JSON.stringify(Object.fromEntries(outcomes)));
  });
});

describe("protocol refusals: counted by kind, logged at a bounded pace", () => {
  const scrape = async () => (await fetch(`${server.metricsUrl}/metrics`)).text();
  const refusals = (metrics: string, kind: string) => {
    const line = metrics.split("\n").find((l) => l.startsWith(`authlink_protocol_refusals_total{kind="${kind}"}`));
    return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
  };

  type Send = () => Promise<unknown>;
  /** The refusals a gRPC request's frame or headers cause, sent with `grpcCall`. */
  const grpcFrameRefusals = (grpcCall: (body: Buffer, headers?: Record<string, string>) => Promise<unknown>): Record<string, Send> => ({
    oversize: () => grpcCall(grpcFrame(Buffer.alloc(MAX_REQUEST_BYTES + 1))),
    bad_envelope: () => grpcCall(grpcFrame(Buffer.alloc(10)).subarray(0, 8)),
    undecodable: () => grpcCall(grpcFrame(garbage)),
    compression_not_supported: () => grpcCall(grpcFrame(garbage, 1), { "grpc-encoding": "snappy" }),
    bad_header: () => grpcCall(grpcFrame(Buffer.alloc(0)), { "grpc-timeout": "soon" }),
  });
  /** Sends each refusal twice; each kind's counter must have grown by exactly two. */
  const assertCountedTwice = async (sent: Record<string, Send>) => {
    const before = await scrape();
    for (const send of Object.values(sent)) {
      await send();
      await send();
    }
    const afterwards = await scrape();
    for (const kind of Object.keys(sent)) assert.equal(refusals(afterwards, kind) - refusals(before, kind), 2, kind);
  };

  test("each kind of refusal is counted once per request", async () => {
    const grpcCall = (body: Buffer, headers: Record<string, string> = {}) =>
      rawHttp2(server.url, { path: `${service}/VerifyLink`, headers: { "content-type": "application/grpc", te: "trailers", ...headers }, body });
    await assertCountedTwice({
      unknown_path: () => rawRequest(`${server.url}${service}/NoSuchMethod`, { headers: { "content-type": "application/json" }, body: "{}" }),
      method_not_allowed: () => rawRequest(`${server.url}${service}/GenerateLink`, { method: "PUT", headers: { "content-type": "application/json" }, body: "{}" }),
      unsupported_media_type: () => rawRequest(`${server.url}${service}/VerifyLink`, { headers: { "content-type": "text/plain" }, body: "hello" }),
      http_version_not_supported: () =>
        rawRequest(`${server.url}/grpc.reflection.v1.ServerReflection/ServerReflectionInfo`, { headers: { "content-type": "application/connect+proto" }, body: "" }),
      ...grpcFrameRefusals(grpcCall),
    });
  });

  test("the grpc-js listener counts its refusals under the same kinds", async () => {
    const grpcCall = (body: Buffer, headers: Record<string, string> = {}) =>
      rawHttp2(grpcUrlOf(server, "grpc-js"), { path: `${service}/VerifyLink`, headers: { "content-type": "application/grpc", te: "trailers", ...headers }, body });
    await assertCountedTwice(grpcFrameRefusals(grpcCall));
  });

  test("a burst is logged in one line per kind and interval, with a count", async () => {
    const lines = () =>
      server.logs
        .map((line) => JSON.parse(line) as { msg: string; kind?: string; count?: number })
        .filter((line) => line.msg === "requests refused by the protocol layer" && line.kind === "unsupported_media_type");
    const before = lines().length;
    await Promise.all(
      Array.from({ length: 50 }, () => rawRequest(`${server.url}${service}/VerifyLink`, { headers: { "content-type": "text/csv" }, body: "a,b" })),
    );
    const added = lines().slice(before);
    assert.ok(added.length <= 1, `${added.length} lines for a burst of 50`);
    const logged = lines();
    assert.equal(logged[0]?.count, 1, "the first refusal of a kind is logged at once");
  });
});

/** A small seeded PRNG, so that a failing fuzz run can be repeated. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
