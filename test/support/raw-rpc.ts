import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import http from "node:http";
import http2 from "node:http2";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";

// Unary calls by hand, gRPC over HTTP/2 and Connect over HTTP/1.1, that send
// their deadline as the protocol's header (grpc-timeout, connect-timeout-ms)
// but never enforce it themselves: a generated client gives up at its own
// deadline, so it cannot tell whether the server answered in time. These wait
// for the server's answer (up to `giveUpMs`) and report when it came.

export interface RawAnswer {
  /** The gRPC status name ("OK", "UNAVAILABLE", ...), or "NO_ANSWER" when the server said nothing before giveUpMs. */
  readonly code: string;
  /** The ErrorInfo reason, if any. */
  readonly reason: string | undefined;
  /** Milliseconds from sending to the answer. */
  readonly ms: number;
}

const GRPC_CODES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
  "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

interface RawCallBase {
  /** e.g. "/authlink.v1.AdminAuthService/GenerateLink" */
  readonly path: string;
  /** The deadline sent to the server; undefined sends none. */
  readonly timeoutMs: number | undefined;
  readonly headers?: Readonly<Record<string, string>>;
  /** How long to wait for the server before reporting NO_ANSWER. */
  readonly giveUpMs: number;
}

export interface RawGrpcCall<Desc extends DescMessage> extends RawCallBase {
  readonly schema: Desc;
  readonly message: MessageInitShape<Desc>;
}

export interface RawConnectCall extends RawCallBase {
  /** The request in protobuf JSON. */
  readonly json: unknown;
}

/** One unary gRPC call on an open HTTP/2 session. */
export function rawGrpcCall<Desc extends DescMessage>(session: http2.ClientHttp2Session, call: RawGrpcCall<Desc>): Promise<RawAnswer> {
  const started = performance.now();
  const body = toBinary(call.schema, create(call.schema, call.message));
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  return new Promise((resolve) => {
    const stream = session.request({
      ":method": "POST",
      ":path": call.path,
      "content-type": "application/grpc+proto",
      te: "trailers",
      ...(call.timeoutMs === undefined ? {} : { "grpc-timeout": `${call.timeoutMs}m` }),
      ...call.headers,
    });
    let settled = false;
    const finish = (code: string, reason: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stream.close();
      resolve({ code, reason, ms: performance.now() - started });
    };
    const timer = setTimeout(() => finish("NO_ANSWER", undefined), call.giveUpMs);
    const fromMetadata = (headers: http2.IncomingHttpHeaders) => {
      const status = headers["grpc-status"];
      if (status === undefined) return false;
      const details = headers["grpc-status-details-bin"];
      finish(GRPC_CODES[Number(status)] ?? `code ${String(status)}`, typeof details === "string" ? reasonFromStatusDetails(details) : undefined);
      return true;
    };
    stream.on("response", (headers) => void fromMetadata(headers)); // trailers-only answers
    stream.on("trailers", (trailers) => void fromMetadata(trailers));
    stream.on("data", () => undefined);
    stream.on("error", () => finish("NO_ANSWER", undefined));
    stream.on("close", () => finish("NO_ANSWER", undefined));
    stream.end(frame);
  });
}

function reasonFromStatusDetails(base64: string): string | undefined {
  const status = fromBinary(StatusSchema, Buffer.from(base64, "base64"));
  const info = status.details.find((d) => d.typeUrl.endsWith("/google.rpc.ErrorInfo"));
  return info ? fromBinary(ErrorInfoSchema, info.value).reason : undefined;
}

/** One unary Connect call (JSON over HTTP/1.1, a connection of its own). */
export function rawConnectCall(baseUrl: string, call: RawConnectCall): Promise<RawAnswer> {
  const started = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const finish = (code: string, reason: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ code, reason, ms: performance.now() - started });
    };
    const req = http.request(
      `${baseUrl}${call.path}`,
      {
        method: "POST",
        agent: false,
        headers: {
          "content-type": "application/json",
          "connect-protocol-version": "1",
          ...(call.timeoutMs === undefined ? {} : { "connect-timeout-ms": String(call.timeoutMs) }),
          ...call.headers,
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => {
          if (res.statusCode === 200) return finish("OK", undefined);
          try {
            const error = JSON.parse(text) as { code?: string; details?: { type: string; value: string }[] };
            const info = error.details?.find((d) => d.type === "google.rpc.ErrorInfo");
            finish((error.code ?? "unknown").toUpperCase(), info ? fromBinary(ErrorInfoSchema, Buffer.from(info.value, "base64")).reason : undefined);
          } catch {
            finish(`HTTP ${res.statusCode}`, undefined);
          }
        });
      },
    );
    const timer = setTimeout(() => finish("NO_ANSWER", undefined), call.giveUpMs);
    req.on("error", () => finish("NO_ANSWER", undefined));
    req.end(JSON.stringify(call.json));
  });
}
