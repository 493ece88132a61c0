import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport as createWebTransport } from "@connectrpc/connect-web";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRegistry } from "@bufbuild/protobuf";
import { AdminAuthService } from "../../gen/authlink/v1/admin_auth_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema, file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";

// Real clients over real sockets: connect-node (gRPC over HTTP/2, Connect and
// gRPC-Web over HTTP/1.1 or HTTP/2), connect-web over fetch, and @grpc/grpc-js
// with @grpc/proto-loader reading the .proto files (a second, independent
// protobuf implementation).

export type AdminClient = Client<typeof AdminAuthService>;

export interface TlsClientOptions {
  readonly ca: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

export interface ConnectClientOptions {
  readonly protocol?: "grpc" | "connect" | "grpcweb";
  readonly httpVersion?: "1.1" | "2";
  /** Service key for `authorization: Bearer`; null sends none. */
  readonly key?: string | null;
  readonly tls?: TlsClientOptions;
  readonly useBinaryFormat?: boolean;
  /** Extra request headers (e.g. x-forwarded-for). */
  readonly headers?: Readonly<Record<string, string>>;
}

function bearer(key: string | null | undefined, headers: Readonly<Record<string, string>> = {}): Interceptor {
  return (next) => async (req) => {
    if (key) req.header.set("authorization", `Bearer ${key}`);
    for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
    return next(req);
  };
}

export function connectClient(baseUrl: string, options: ConnectClientOptions = {}): AdminClient {
  const protocol = options.protocol ?? "grpc";
  const httpVersion = options.httpVersion ?? (protocol === "grpc" ? "2" : "1.1");
  const nodeOptions = options.tls
    ? { ca: options.tls.ca, cert: options.tls.cert, key: options.tls.key, servername: "localhost" }
    : undefined;
  const common = { baseUrl, interceptors: [bearer(options.key, options.headers)], useBinaryFormat: options.useBinaryFormat };
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ ...common, nodeOptions })
      : protocol === "grpcweb"
        ? httpVersion === "2"
          ? createGrpcWebTransport({ ...common, httpVersion: "2", nodeOptions })
          : createGrpcWebTransport({ ...common, httpVersion: "1.1", nodeOptions })
        : httpVersion === "2"
          ? createConnectTransport({ ...common, httpVersion: "2", nodeOptions })
          : createConnectTransport({ ...common, httpVersion: "1.1", nodeOptions });
  return createClient(AdminAuthService, transport);
}

/** connect-web, as a browser uses it: Connect protocol over fetch (HTTP/1.1), JSON. */
export function webClient(baseUrl: string, key?: string): AdminClient {
  return createClient(AdminAuthService, createWebTransport({ baseUrl, interceptors: [bearer(key)] }));
}

/** The ErrorInfo reason of a Connect error, if any. */
export function reasonOf(error: ConnectError): string | undefined {
  return error.findDetails(ErrorInfoSchema)[0]?.reason;
}

export function fieldViolationsOf(error: ConnectError): string[] {
  return error.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
}

/** Awaits a call that must fail and returns its ConnectError. */
export async function rejection(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("the call succeeded but was expected to fail");
}

// ---- @grpc/grpc-js ------------------------------------------------------

const here = dirname(fileURLToPath(import.meta.url));
const protoRoot = join(here, "..", "..", "..", "proto");
const googleProtos = dirname(dirname(createRequire(import.meta.url).resolve("google-proto-files/package.json")));

// Plain-object shapes as proto-loader produces them (keepCase: snake_case fields).
export type GrpcJsMessage = Record<string, unknown>;

export interface GrpcJsAdminClient {
  generateLink(request: GrpcJsMessage, metadata?: grpc.Metadata): Promise<GrpcJsMessage>;
  verifyLink(request: GrpcJsMessage, metadata?: grpc.Metadata): Promise<GrpcJsMessage>;
  previewLink(request: GrpcJsMessage, metadata?: grpc.Metadata): Promise<GrpcJsMessage>;
  close(): void;
}

const packageDefinitions = new Map<string, protoLoader.PackageDefinition>();

/**
 * The constructor of an authlink service's @grpc/grpc-js client, from its
 * .proto file read by proto-loader (snake_case fields, enums as names, longs
 * as strings, defaults and oneofs filled in); each file is loaded once.
 */
export function grpcJsServiceClient(protoFile: string, serviceName: string): grpc.ServiceClientConstructor {
  let definition = packageDefinitions.get(protoFile);
  if (!definition) {
    definition = protoLoader.loadSync(join(protoRoot, protoFile), {
      includeDirs: [protoRoot, join(googleProtos, "google-proto-files")],
      keepCase: true,
      enums: String,
      longs: String,
      defaults: true,
      oneofs: true,
    });
    packageDefinitions.set(protoFile, definition);
  }
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { authlink: { v1: Record<string, grpc.ServiceClientConstructor> } };
  const constructor = loaded.authlink.v1[serviceName];
  if (!constructor) throw new Error(`${protoFile} has no service ${serviceName}`);
  return constructor;
}

export function grpcJsClient(
  address: string,
  options: { key?: string | null; tls?: TlsClientOptions } = {},
): GrpcJsAdminClient {
  const AdminAuthServiceClient = grpcJsServiceClient("authlink/v1/admin_auth_service.proto", "AdminAuthService");
  const credentials = options.tls
    ? grpc.credentials.createSsl(options.tls.ca, options.tls.key ?? null, options.tls.cert ?? null)
    : grpc.credentials.createInsecure();
  const client = new AdminAuthServiceClient(address, credentials, {
    "grpc.ssl_target_name_override": "localhost",
  }) as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  const call =
    (method: string) =>
    (request: GrpcJsMessage, metadata = new grpc.Metadata()): Promise<GrpcJsMessage> => {
      if (options.key) metadata.set("authorization", `Bearer ${options.key}`);
      return new Promise((resolve, reject) => {
        (client[method] as (r: unknown, m: grpc.Metadata, cb: (e: unknown, res: GrpcJsMessage) => void) => void).call(
          client,
          request,
          metadata,
          (error, response) => (error ? reject(error as Error) : resolve(response)),
        );
      });
    };
  return {
    generateLink: call("GenerateLink"),
    verifyLink: call("VerifyLink"),
    previewLink: call("PreviewLink"),
    close: () => client.close(),
  };
}

const detailsRegistry = createRegistry(file_google_rpc_error_details);

/** The ErrorInfo reason carried in grpc-status-details-bin of a grpc-js error. */
export function grpcJsReason(error: grpc.ServiceError): string | undefined {
  const raw = error.metadata?.get("grpc-status-details-bin")[0];
  if (!raw) return undefined;
  const status = fromBinary(StatusSchema, raw as Buffer);
  for (const detail of status.details) {
    const unpacked = anyUnpack(detail, detailsRegistry);
    if (unpacked?.$typeName === "google.rpc.ErrorInfo") return (unpacked as unknown as { reason: string }).reason;
  }
  return undefined;
}

export { Code, grpc };
