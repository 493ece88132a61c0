import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { LinkAdminService } from "../../gen/authlink/v1/link_admin_service_pb.js";
import { grpcJsServiceClient, type GrpcJsMessage } from "./clients.js";

// Real clients of LinkAdminService over real sockets: connect-node in each of
// its protocols and HTTP versions, and @grpc/grpc-js with proto-loader reading
// the .proto files (for the bulk methods' two streaming shapes).

export type LinkAdminClient = Client<typeof LinkAdminService>;

/** A protocol and HTTP version connect-node speaks. */
export type Wire = "grpc" | "grpcweb/1.1" | "grpcweb/2" | "connect/1.1" | "connect/2";

export function linkAdminClient(baseUrl: string, wire: Wire, key: string | null, headers: Record<string, string> = {}): LinkAdminClient {
  const auth: Interceptor = (next) => async (req) => {
    if (key) req.header.set("authorization", `Bearer ${key}`);
    for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
    return next(req);
  };
  const common = { baseUrl, interceptors: [auth] };
  const transports: Record<Wire, () => Transport> = {
    grpc: () => createGrpcTransport(common),
    "grpcweb/1.1": () => createGrpcWebTransport({ ...common, httpVersion: "1.1" }),
    "grpcweb/2": () => createGrpcWebTransport({ ...common, httpVersion: "2" }),
    "connect/1.1": () => createConnectTransport({ ...common, httpVersion: "1.1" }),
    "connect/2": () => createConnectTransport({ ...common, httpVersion: "2" }),
  };
  return createClient(LinkAdminService, transports[wire]());
}

// ---- @grpc/grpc-js ------------------------------------------------------

export type { GrpcJsMessage };

export interface GrpcJsLinkAdminClient {
  /** BulkGenerateLinks: every result, or the call's error. */
  bulkGenerateLinks(request: GrpcJsMessage): Promise<GrpcJsMessage[]>;
  /** StreamGenerateLinks: writes the rows, reads every result. */
  streamGenerateLinks(rows: readonly GrpcJsMessage[]): Promise<GrpcJsMessage[]>;
  close(): void;
}

export function grpcJsLinkAdminClient(address: string, key: string | null): GrpcJsLinkAdminClient {
  const LinkAdminServiceClient = grpcJsServiceClient("authlink/v1/link_admin_service.proto", "LinkAdminService");
  const client = new LinkAdminServiceClient(address, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (...args: unknown[]) => unknown>;
  const metadata = () => {
    const m = new grpc.Metadata();
    if (key) m.set("authorization", `Bearer ${key}`);
    return m;
  };
  const readAll = (stream: grpc.ClientReadableStream<GrpcJsMessage>): Promise<GrpcJsMessage[]> =>
    new Promise((resolve, reject) => {
      const results: GrpcJsMessage[] = [];
      stream.on("data", (message: GrpcJsMessage) => results.push(message));
      stream.on("error", reject);
      stream.on("end", () => resolve(results));
    });
  return {
    bulkGenerateLinks(request) {
      const call = (client.BulkGenerateLinks as (r: unknown, m: grpc.Metadata) => grpc.ClientReadableStream<GrpcJsMessage>).call(
        client,
        request,
        metadata(),
      );
      return readAll(call);
    },
    streamGenerateLinks(rows) {
      const call = (client.StreamGenerateLinks as (m: grpc.Metadata) => grpc.ClientDuplexStream<GrpcJsMessage, GrpcJsMessage>).call(
        client,
        metadata(),
      );
      const results = readAll(call);
      void (async () => {
        for (const row of rows) {
          if (!call.write({ row })) await new Promise((resolve) => call.once("drain", resolve));
        }
        call.end();
      })();
      return results;
    },
    close: () => client.close(),
  };
}
