import http2 from "node:http2";

// Many gRPC calls as fast as one HTTP/2 connection carries them: hand-made
// requests on node:http2 (no client library in the way), a fixed number in
// flight, every answer's grpc-status counted. For floods and fuzzing at the
// wire level.

export interface FloodOptions {
  /** e.g. /authlink.v1.AdminAuthService/GenerateLink */
  readonly path: string;
  /** The request body: one or more length-prefixed messages (see grpcFrame). */
  readonly body: Buffer | ((i: number) => Buffer);
  readonly headers?: Readonly<Record<string, string>> | ((i: number) => Readonly<Record<string, string>>);
  readonly calls: number;
  /** Calls in flight at once (default 50). */
  readonly concurrency?: number;
}

export interface FloodResult {
  readonly calls: number;
  /** How many calls ended with each grpc-status ("16", "8", ...), or "stream error". */
  readonly byStatus: Readonly<Record<string, number>>;
  readonly elapsedMs: number;
}

/** A gRPC length-prefixed message: flag 0 (uncompressed), 4-byte big-endian length, the bytes. */
export function grpcFrame(message: Uint8Array, flags = 0): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(flags, 0);
  header.writeUInt32BE(message.byteLength, 1);
  return Buffer.concat([header, message]);
}

export async function grpcFlood(baseUrl: string, options: FloodOptions): Promise<FloodResult> {
  const session = http2.connect(baseUrl);
  session.on("error", () => undefined); // each stream reports its own failure
  const byStatus: Record<string, number> = {};
  const concurrency = options.concurrency ?? 50;
  let issued = 0;
  const started = performance.now();

  const one = (i: number) =>
    new Promise<string>((resolve) => {
      const headers = typeof options.headers === "function" ? options.headers(i) : (options.headers ?? {});
      const stream = session.request({
        ":method": "POST",
        ":path": options.path,
        "content-type": "application/grpc",
        te: "trailers",
        ...headers,
      });
      let status: string | undefined;
      const take = (h: http2.IncomingHttpHeaders) => {
        const value = h["grpc-status"];
        if (typeof value === "string") status = value;
      };
      stream.on("response", take);
      stream.on("trailers", take);
      stream.on("data", () => undefined);
      stream.on("error", () => undefined);
      stream.on("close", () => resolve(status ?? "stream error"));
      stream.end(typeof options.body === "function" ? options.body(i) : options.body);
    });

  const worker = async () => {
    while (issued < options.calls) {
      const status = await one(issued++);
      byStatus[status] = (byStatus[status] ?? 0) + 1;
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, options.calls) }, worker));
  } finally {
    await new Promise<void>((resolve) => session.close(() => resolve()));
  }
  return { calls: options.calls, byStatus, elapsedMs: performance.now() - started };
}
