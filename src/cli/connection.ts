import { readFileSync, statSync } from "node:fs";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { UsageError } from "./failure.js";
import { parseDuration } from "./values.js";

// Where the CLI connects and how it proves the service role: the server URL,
// the protocol, the service key (from the environment or a file, never a
// plain flag), client certificates for mTLS, and a deadline per call. Every
// command goes through these generated clients, so through the server's
// authentication, rate limits and audit.

export const DEFAULT_URL = "http://127.0.0.1:8080";
/** The deadline of a unary call unless --timeout says otherwise. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
export const PROTOCOLS = ["grpc", "connect"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** The global flags as commander hands them over (strings; validated here). */
export interface ConnectionFlags {
  readonly url: string;
  readonly protocol: string;
  /** Connect only: "1.1" (default) or "2". */
  readonly httpVersion?: string;
  readonly keyFile?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly ca?: string;
  readonly timeout?: string;
}

export interface Connection {
  readonly url: URL;
  readonly protocol: Protocol;
  readonly httpVersion: "1.1" | "2";
  /** The --timeout given, if any (0: none). */
  readonly timeoutMs: number | undefined;
  /** Whether a service key is sent (never the key itself, for messages). */
  readonly hasServiceKey: boolean;
  /** TLS material for node's https/http2 (mTLS client certificate, extra CA). */
  readonly tls: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
  client<T extends DescService>(service: T): Client<T>;
  /** Options for one call: its deadline (none when `timeout` is 0) and the command's abort signal. */
  callOptions(defaultTimeoutMs: number, signal?: AbortSignal): CallOptions;
}

export interface ConnectionEnv {
  readonly AUTHLINK_CLI_SERVICE_KEY?: string | undefined;
}

export function openConnection(flags: ConnectionFlags, env: ConnectionEnv, warn: (line: string) => void): Connection {
  let url: URL;
  try {
    url = new URL(flags.url);
  } catch {
    throw new UsageError(`--url: "${flags.url}" is not a URL (e.g. ${DEFAULT_URL})`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError("--url must be http:// or https://");
  if (!(PROTOCOLS as readonly string[]).includes(flags.protocol)) {
    throw new UsageError(`--protocol must be one of ${PROTOCOLS.join(", ")}`);
  }
  const protocol = flags.protocol as Protocol;
  if (flags.httpVersion !== undefined && flags.httpVersion !== "1.1" && flags.httpVersion !== "2") {
    throw new UsageError("--http-version must be 1.1 or 2");
  }
  if (flags.httpVersion === "1.1" && protocol === "grpc") throw new UsageError("--http-version 1.1 needs --protocol connect (gRPC is HTTP/2 only)");
  const httpVersion = protocol === "grpc" ? "2" : (flags.httpVersion ?? "1.1") as "1.1" | "2";

  const tls = {
    ca: flags.ca === undefined ? undefined : readPem(flags.ca, "--ca"),
    cert: flags.cert === undefined ? undefined : readPem(flags.cert, "--cert"),
    key: flags.key === undefined ? undefined : readPem(flags.key, "--key"),
  };
  if ((tls.ca || tls.cert || tls.key) && url.protocol !== "https:") {
    throw new UsageError("--ca, --cert and --key need an https:// URL");
  }
  if (Boolean(tls.cert) !== Boolean(tls.key)) throw new UsageError("--cert and --key go together (the client certificate and its key)");

  const serviceKey = flags.keyFile !== undefined ? readServiceKeyFile(flags.keyFile, warn) : env.AUTHLINK_CLI_SERVICE_KEY?.trim() || undefined;
  const timeoutMs = flags.timeout === undefined ? undefined : flags.timeout === "0" ? 0 : parseDuration(flags.timeout, "--timeout");

  const bearer: Interceptor = (next) => (req) => {
    if (serviceKey) req.header.set("authorization", `Bearer ${serviceKey}`);
    return next(req);
  };
  const nodeOptions = tls.ca || tls.cert ? { ca: tls.ca, cert: tls.cert, key: tls.key } : undefined;
  const baseUrl = url.href.replace(/\/$/, "");
  const transport: Transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl, interceptors: [bearer], nodeOptions })
      : httpVersion === "1.1"
        ? createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer], nodeOptions })
        : createConnectTransport({ baseUrl, httpVersion: "2", interceptors: [bearer], nodeOptions });

  return {
    url,
    protocol,
    httpVersion,
    timeoutMs,
    hasServiceKey: serviceKey !== undefined,
    tls,
    client: (service) => createClient(service, transport),
    callOptions(defaultTimeoutMs, signal) {
      const ms = timeoutMs ?? defaultTimeoutMs;
      return { timeoutMs: ms > 0 ? ms : undefined, signal };
    },
  };
}

function readPem(path: string, flag: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (error) {
    throw new UsageError(`${flag}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  if (!pem.includes("-----BEGIN")) throw new UsageError(`${flag}: ${path} is not a PEM file`);
  return pem;
}

/**
 * The service key from a file (its first line). A file others can read gets
 * a warning, as ssh does; a PEM file is refused, since it is surely the TLS
 * key given to the wrong flag.
 */
function readServiceKeyFile(path: string, warn: (line: string) => void): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
    if ((statSync(path).mode & 0o077) !== 0 && path !== "/dev/stdin") {
      warn(`warning: ${path} can be read by other users (chmod 600 it)`);
    }
  } catch (error) {
    throw new UsageError(`--key-file: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  if (text.includes("-----BEGIN")) {
    throw new UsageError("--key-file is the service key; a PEM private key goes to --key (with --cert) for mTLS");
  }
  const key = text.split(/\r?\n/)[0]?.trim() ?? "";
  if (key === "") throw new UsageError(`--key-file: ${path} is empty`);
  return key;
}
