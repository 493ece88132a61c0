import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  AdminAuthService,
  GenerateLinkRequestSchema,
  GenerateLinkResponseSchema,
  LinkType,
  VerifyLinkRequestSchema,
  VerifyLinkResponseSchema,
} from "../gen/authlink/v1/admin_auth_service_pb.js";

// The references of the benchmark: the same AdminAuthService (gen/), answered
// with fixed responses of about authlink's size, by a bare transport — no
// authentication, validation, store or logging. What is left is the cost of
// the transport and the protobuf/JSON codec: a ceiling for authlink on it.
//
//   node dist/bench/reference-server.js connect-node|grpc-js PORT
//
// connect-node: gRPC over h2c and the Connect protocol over HTTP/1.1 on one
// port (the first bytes tell which, as authlink does). grpc-js: a plain
// @grpc/grpc-js Server (gRPC only). Prints "listening PORT" when ready.

const now = new Date();
const user = {
  id: "6b7f3c1e-8f0a-4a7e-9d2b-0c1d2e3f4a5b",
  email: "someone@bench.example.com",
  emailConfirmedAt: timestampFromDate(now),
  createdAt: timestampFromDate(now),
  updatedAt: timestampFromDate(now),
};
const generated = create(GenerateLinkResponseSchema, {
  actionLink: "http://127.0.0.1:8080/verify#token=8yNCq3kJ1v0bX2mZ9QwErTyUiOpAsDfGhJkLzXcVbNm&type=magiclink",
  emailOtp: "123456",
  hashedToken: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  verificationType: LinkType.MAGICLINK,
  user,
  expiresAt: timestampFromDate(new Date(now.getTime() + 3_600_000)),
});
const verified = create(VerifyLinkResponseSchema, {
  user,
  verificationType: LinkType.MAGICLINK,
  // About the size of authlink's EdDSA assertion.
  assertion: `eyJhbGciOiJFZERTQSIsImtpZCI6ImJlbmNoIn0.${"e".repeat(330)}.${"s".repeat(86)}`,
  assertionExpiresAt: timestampFromDate(new Date(now.getTime() + 300_000)),
});

const HTTP2_PREFACE_START = Buffer.from("PRI * HTTP/2.0");

async function serveConnectNode(port: number): Promise<void> {
  const handler = connectNodeAdapter({
    routes: (router: ConnectRouter) =>
      router.service(AdminAuthService, {
        generateLink: () => generated,
        verifyLink: () => verified,
        previewLink: () => {
          throw new Error("not served by the reference");
        },
      }),
  });
  const h2 = http2.createServer({}, handler);
  const h1 = http.createServer({ keepAliveTimeout: 60_000 }, handler);
  const listener = net.createServer((socket) => {
    socket.once("data", (head: Buffer) => {
      socket.pause();
      socket.unshift(head);
      if (head.subarray(0, HTTP2_PREFACE_START.length).equals(HTTP2_PREFACE_START)) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });
  await new Promise<void>((resolve) => listener.listen(port, "127.0.0.1", resolve));
}

function unary<I extends DescMessage, O extends DescMessage>(
  name: string,
  input: I,
  output: O,
): grpc.MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path: `/authlink.v1.AdminAuthService/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (message) => Buffer.from(toBinary(input, message)),
    requestDeserialize: (bytes) => fromBinary(input, bytes),
    responseSerialize: (message) => Buffer.from(toBinary(output, message)),
    responseDeserialize: (bytes) => fromBinary(output, bytes),
  };
}

async function serveGrpcJs(port: number): Promise<void> {
  const server = new grpc.Server();
  server.addService(
    {
      GenerateLink: unary("GenerateLink", GenerateLinkRequestSchema, GenerateLinkResponseSchema),
      VerifyLink: unary("VerifyLink", VerifyLinkRequestSchema, VerifyLinkResponseSchema),
    },
    {
      GenerateLink: (_call: unknown, callback: grpc.sendUnaryData<typeof generated>) => callback(null, generated),
      VerifyLink: (_call: unknown, callback: grpc.sendUnaryData<typeof verified>) => callback(null, verified),
    },
  );
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error) =>
      error ? reject(error) : resolve(),
    ),
  );
}

const [kind, portText] = process.argv.slice(2);
const port = Number(portText);
if (kind === "connect-node") await serveConnectNode(port);
else if (kind === "grpc-js") await serveGrpcJs(port);
else {
  process.stderr.write("usage: reference-server.js connect-node|grpc-js PORT\n");
  process.exit(2);
}
process.stdout.write(`listening ${port}\n`);
