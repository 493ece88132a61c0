import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import http2 from "node:http2";
import { createRegistry } from "@bufbuild/protobuf";
import { ErrorInfoSchema, file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";

// Hand-made HTTP/2 requests, for what gRPC clients will not send: broken
// frames, garbage messages, odd headers. Headers and trailers are merged into
// one object (a trailers-only answer carries its status in the headers).

export interface RawHttp2Response {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

export function rawHttp2(
  baseUrl: string,
  options: { path: string; method?: string; headers?: Record<string, string>; body?: Buffer | string },
): Promise<RawHttp2Response> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(baseUrl);
    session.on("error", reject);
    const stream = session.request({ ":method": options.method ?? "POST", ":path": options.path, ...options.headers });
    const headers: Record<string, string> = {};
    let status = 0;
    const chunks: Buffer[] = [];
    const take = (h: http2.IncomingHttpHeaders) => {
      for (const [name, value] of Object.entries(h)) {
        if (name === ":status") status = Number(value);
        else if (typeof value === "string") headers[name] = value;
      }
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", () => undefined); // the server may reset a stream it answered before reading it all
    stream.on("close", () => {
      session.close();
      resolve({ status, headers, body: Buffer.concat(chunks) });
    });
    stream.end(options.body);
  });
}

const registry = createRegistry(file_google_rpc_error_details);

/** The ErrorInfo reason in a grpc-status-details-bin header (base64 google.rpc.Status). */
export function reasonInStatusDetails(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const status = fromBinary(StatusSchema, Buffer.from(header, "base64"));
  for (const detail of status.details) {
    const unpacked = anyUnpack(detail, registry);
    if (unpacked?.$typeName === ErrorInfoSchema.typeName) return (unpacked as unknown as { reason: string }).reason;
  }
  return undefined;
}
