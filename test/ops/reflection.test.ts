import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, createFileRegistry, fromBinary, getExtension } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { createClient, createRouterTransport, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Access, access } from "../../gen/authlink/v1/access_pb.js";
import { AdminAuthService, file_authlink_v1_admin_auth_service } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { createServerReflection } from "../../src/ops/reflection.js";

// Server reflection as real clients use it: `buf curl` (Go, with its own
// protobuf runtime) lists and calls methods with no .proto files at hand, and
// @grpc/grpc-js with @grpc/proto-loader (protobuf.js) drives the bidi stream
// request by request, for both v1 and v1alpha.

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const bufBinary = join(root, "node_modules", ".bin", "buf");
const reflectionProto = (version: Version) =>
  join(root, "node_modules", "@grpc", "reflection", "build", "proto", "grpc", "reflection", version, "reflection.proto");

type Version = "v1" | "v1alpha";
const versions: readonly Version[] = ["v1", "v1alpha"];

// ---- a bare connect-node server -----------------------------------------

/** Answers without a store or a key: reflection is what is under test. */
const stubAdminAuthService: ServiceImpl<typeof AdminAuthService> = {
  generateLink(request) {
    return {
      actionLink: "https://auth.example.com/verify#type=magiclink&token=stub",
      verificationType: request.type,
      user: { id: "user-1", email: request.email },
    };
  },
  verifyLink(request) {
    return { verificationType: request.type };
  },
  previewLink(request) {
    return { type: request.type };
  },
};

function reflectionRoutes(router: ConnectRouter): void {
  // Read lazily, so the list is whatever the router ends up serving,
  // reflection included.
  const reflection = createServerReflection({
    files: [file_authlink_v1_admin_auth_service],
    serviceNames: () => router.handlers.map((handler) => handler.service.typeName),
  });
  router.service(AdminAuthService, stubAdminAuthService);
  router.service(v1.ServerReflection, reflection.v1);
  router.service(v1alpha.ServerReflection, reflection.v1alpha);
}

interface BareServer {
  readonly url: string;
  readonly address: string;
  close(): Promise<void>;
}

async function startBareServer(): Promise<BareServer> {
  const server = http2.createServer(connectNodeAdapter({ routes: reflectionRoutes }));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    address: `127.0.0.1:${port}`,
    async close() {
      // Clients have closed their channels by now; a session still open here
      // is a leaked connection, and server.close() would wait for it forever.
      const open = [...sessions];
      for (const session of open) session.close();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
      await Promise.all(open.map((session) => (session.closed ? undefined : once(session, "close"))));
    },
  };
}

let server: BareServer;
before(async () => {
  server = await startBareServer();
});
after(() => server.close());

// ---- buf curl ----------------------------------------------------------

const execFileAsync = promisify(execFile);

async function bufCurl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(bufBinary, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], {
    timeout: 30_000,
  });
  return stdout;
}

describe("buf curl", () => {
  test("--list-services names every routed service", async () => {
    const services = (await bufCurl("--list-services", server.url)).trim().split("\n").sort();
    assert.deepEqual(services, [
      "authlink.v1.AdminAuthService",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
  });

  for (const version of versions) {
    test(`--list-methods over ${version}`, async () => {
      const methods = (await bufCurl("--reflect-protocol", `grpc-${version}`, "--list-methods", server.url)).trim().split("\n");
      assert.ok(methods.includes("authlink.v1.AdminAuthService/GenerateLink"), methods.join(", "));
      assert.ok(methods.includes("authlink.v1.AdminAuthService/VerifyLink"), methods.join(", "));
      assert.ok(methods.includes(`grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`), methods.join(", "));
    });
  }

  test("calls GenerateLink with JSON, the schema coming from reflection alone", async () => {
    const output = await bufCurl(
      "-d",
      JSON.stringify({ type: "LINK_TYPE_MAGICLINK", email: "a@example.com" }),
      `${server.url}/authlink.v1.AdminAuthService/GenerateLink`,
    );
    assert.deepEqual(JSON.parse(output), {
      actionLink: "https://auth.example.com/verify#type=magiclink&token=stub",
      verificationType: "LINK_TYPE_MAGICLINK",
      user: { id: "user-1", email: "a@example.com" },
    });
  });
});

// ---- @grpc/grpc-js -----------------------------------------------------

type GrpcJsMessage = Record<string, unknown>;

interface ReflectionStream {
  /** Sends one request and waits for its response (the protocol answers in order). */
  ask(request: GrpcJsMessage): Promise<GrpcJsMessage>;
  close(): Promise<void>;
}

const packageDefinitions = new Map<Version, protoLoader.PackageDefinition>();

function openReflectionStream(address: string, version: Version): ReflectionStream {
  let definition = packageDefinitions.get(version);
  if (!definition) {
    definition = protoLoader.loadSync(reflectionProto(version), {
      keepCase: true,
      longs: Number,
      enums: String,
      oneofs: true,
      arrays: true,
    });
    packageDefinitions.set(version, definition);
  }
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: Record<Version, { ServerReflection: grpc.ServiceClientConstructor }> };
  };
  const client = new loaded.grpc.reflection[version].ServerReflection(address, grpc.credentials.createInsecure());
  const call = (client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<GrpcJsMessage, GrpcJsMessage> })
    .ServerReflectionInfo();
  const waiting: { resolve(message: GrpcJsMessage): void; reject(error: unknown): void }[] = [];
  call.on("data", (message: GrpcJsMessage) => waiting.shift()?.resolve(message));
  call.on("error", (error) => {
    for (const waiter of waiting.splice(0)) waiter.reject(error);
  });
  const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  return {
    ask(request) {
      return new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        call.write(request);
      });
    },
    async close() {
      call.end();
      const status = await ended;
      client.close();
      assert.equal(status.code, grpc.status.OK, `the stream ends cleanly: ${status.details}`);
    },
  };
}

function fileDescriptorsOf(response: GrpcJsMessage): FileDescriptorProto[] {
  assert.equal(response.message_response, "file_descriptor_response", JSON.stringify(response.error_response));
  const files = (response.file_descriptor_response as { file_descriptor_proto: Buffer[] }).file_descriptor_proto;
  return files.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

function errorOf(response: GrpcJsMessage): { error_code: number; error_message: string } {
  assert.equal(response.message_response, "error_response");
  return response.error_response as { error_code: number; error_message: string };
}

for (const version of versions) {
  describe(`@grpc/grpc-js reflection ${version}`, () => {
    const open = (t: TestContext): ReflectionStream => {
      const stream = openReflectionStream(server.address, version);
      t.after(() => stream.close());
      return stream;
    };

    test("list_services echoes the host and the request", async (t) => {
      const response = await open(t).ask({ host: "authlink.example", list_services: "*" });
      assert.equal(response.valid_host, "authlink.example");
      const original = response.original_request as GrpcJsMessage;
      assert.equal(original.host, "authlink.example");
      assert.equal(original.list_services, "*");
      const names = (response.list_services_response as { service: { name: string }[] }).service.map((s) => s.name);
      assert.deepEqual(names.sort(), [
        "authlink.v1.AdminAuthService",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]);
    });

    test("file_containing_symbol for the service sends its file and every import", async (t) => {
      const files = fileDescriptorsOf(await open(t).ask({ file_containing_symbol: "authlink.v1.AdminAuthService" }));
      const [first] = files;
      assert.equal(first?.name, "authlink/v1/admin_auth_service.proto");
      assert.deepEqual(
        files.map((f) => f.name).sort(),
        [
          "authlink/v1/access.proto",
          "authlink/v1/admin_auth_service.proto",
          "google/protobuf/descriptor.proto",
          "google/protobuf/duration.proto",
          "google/protobuf/struct.proto",
          "google/protobuf/timestamp.proto",
        ],
      );
      const service = first?.service.find((s) => s.name === "AdminAuthService");
      assert.deepEqual(
        service?.method.map((m) => [m.name, m.inputType, m.outputType]),
        [
          ["GenerateLink", ".authlink.v1.GenerateLinkRequest", ".authlink.v1.GenerateLinkResponse"],
          ["VerifyLink", ".authlink.v1.VerifyLinkRequest", ".authlink.v1.VerifyLinkResponse"],
          ["PreviewLink", ".authlink.v1.PreviewLinkRequest", ".authlink.v1.PreviewLinkResponse"],
        ],
      );
      // The access policy lives in a custom method option; a client that
      // reads the contract through reflection must see it too.
      const policy = Object.fromEntries(
        (service?.method ?? []).map((m) => [m.name, m.options ? getExtension(m.options, access) : undefined]),
      );
      assert.deepEqual(policy, { GenerateLink: Access.SERVICE_ROLE, VerifyLink: Access.PUBLIC, PreviewLink: Access.PUBLIC });
      // Self-contained: the files resolve with nothing else at hand.
      assert.ok(first);
      const registry = createFileRegistry(first, (name) => files.find((f) => f.name === name));
      assert.equal(registry.getService("authlink.v1.AdminAuthService")?.methods.length, 3);
    });

    const symbols: [string, string][] = [
      ["authlink.v1.AdminAuthService.GenerateLink", "authlink/v1/admin_auth_service.proto"],
      [".authlink.v1.VerifyLinkRequest", "authlink/v1/admin_auth_service.proto"],
      ["authlink.v1.LinkType", "authlink/v1/admin_auth_service.proto"],
      ["authlink.v1.LINK_TYPE_INVITE", "authlink/v1/admin_auth_service.proto"],
      ["authlink.v1.EmailOtp.otp", "authlink/v1/admin_auth_service.proto"],
      ["authlink.v1.VerifyLinkRequest.credential", "authlink/v1/admin_auth_service.proto"],
      ["authlink.v1.access", "authlink/v1/access.proto"],
      ["authlink.v1.Access", "authlink/v1/access.proto"],
      ["google.protobuf.Struct", "google/protobuf/struct.proto"],
      ["google.protobuf.FieldDescriptorProto.Type", "google/protobuf/descriptor.proto"],
      [`grpc.reflection.${version}.ServerReflection`, `grpc/reflection/${version}/reflection.proto`],
    ];
    test("file_containing_symbol finds methods, messages, enums, values, fields, oneofs and extensions", async (t) => {
      const stream = open(t);
      for (const [symbol, file] of symbols) {
        const [first] = fileDescriptorsOf(await stream.ask({ file_containing_symbol: symbol }));
        assert.equal(first?.name, file, symbol);
      }
    });

    test("an unknown symbol is NOT_FOUND inside the stream, which goes on answering", async (t) => {
      const stream = open(t);
      const missing = errorOf(await stream.ask({ file_containing_symbol: "authlink.v1.NoSuchThing" }));
      assert.equal(missing.error_code, grpc.status.NOT_FOUND);
      assert.match(missing.error_message, /authlink\.v1\.NoSuchThing/);
      const [first] = fileDescriptorsOf(await stream.ask({ file_containing_symbol: "authlink.v1.AdminAuthService" }));
      assert.equal(first?.name, "authlink/v1/admin_auth_service.proto");
    });

    test("file_by_filename answers known files and NOT_FOUND for others", async (t) => {
      const stream = open(t);
      const files = fileDescriptorsOf(await stream.ask({ file_by_filename: "authlink/v1/access.proto" }));
      assert.deepEqual(files.map((f) => f.name), ["authlink/v1/access.proto", "google/protobuf/descriptor.proto"]);
      const missing = errorOf(await stream.ask({ file_by_filename: "authlink/v1/missing.proto" }));
      assert.equal(missing.error_code, grpc.status.NOT_FOUND);
    });

    test("a request without a question is INVALID_ARGUMENT, and the stream survives it", async (t) => {
      const stream = open(t);
      assert.equal(errorOf(await stream.ask({ host: "x" })).error_code, grpc.status.INVALID_ARGUMENT);
      assert.equal(errorOf(await stream.ask({ file_containing_symbol: "" })).error_code, grpc.status.INVALID_ARGUMENT);
      const response = await stream.ask({ list_services: "" });
      assert.equal(response.message_response, "list_services_response");
    });

    test("extensions: by number, and all numbers of a type", async (t) => {
      const stream = open(t);
      const [file] = fileDescriptorsOf(
        await stream.ask({ file_containing_extension: { containing_type: "google.protobuf.MethodOptions", extension_number: 51001 } }),
      );
      assert.equal(file?.name, "authlink/v1/access.proto");
      const unknownNumber = errorOf(
        await stream.ask({ file_containing_extension: { containing_type: "google.protobuf.MethodOptions", extension_number: 4 } }),
      );
      assert.equal(unknownNumber.error_code, grpc.status.NOT_FOUND);

      const numbers = await stream.ask({ all_extension_numbers_of_type: "google.protobuf.MethodOptions" });
      assert.equal(numbers.message_response, "all_extension_numbers_response");
      const body = numbers.all_extension_numbers_response as { base_type_name: string; extension_number: number[] };
      assert.equal(body.base_type_name, "google.protobuf.MethodOptions");
      assert.ok(body.extension_number.includes(51001), JSON.stringify(body.extension_number));
      const noExtensions = await stream.ask({ all_extension_numbers_of_type: "authlink.v1.EmailOtp" });
      assert.deepEqual((noExtensions.all_extension_numbers_response as { extension_number: number[] }).extension_number, []);
      const unknownType = errorOf(await stream.ask({ all_extension_numbers_of_type: "authlink.v1.Nope" }));
      assert.equal(unknownType.error_code, grpc.status.NOT_FOUND);
    });
  });
}

// ---- in memory ---------------------------------------------------------

test("a failing serviceNames() is an INTERNAL error response, not a broken stream", async () => {
  const reflection = createServerReflection({
    files: [],
    serviceNames: () => {
      throw new Error("router not ready");
    },
  });
  const transport = createRouterTransport((router) => router.service(v1.ServerReflection, reflection.v1));
  const client = createClient(v1.ServerReflection, transport);
  async function* requests() {
    yield create(v1.ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
    yield create(v1.ServerReflectionRequestSchema, {
      messageRequest: { case: "fileContainingSymbol", value: "grpc.reflection.v1.ServerReflection" },
    });
  }
  const responses = [];
  for await (const response of client.serverReflectionInfo(requests())) responses.push(response.messageResponse);
  assert.equal(responses[0]?.case, "errorResponse");
  assert.equal(responses[0]?.value.errorCode, 13);
  assert.match(responses[0]?.value.errorMessage ?? "", /router not ready/);
  // With no files given, the reflection protos themselves are still there.
  assert.equal(responses[1]?.case, "fileDescriptorResponse");
});
