import { toBinary, type DescEnum, type DescExtension, type DescFile, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

// gRPC server reflection (grpc.reflection.v1 and v1alpha), which connect-node
// does not ship (connectrpc/connect-es#507). It is what lets `buf curl`,
// grpcurl and Postman call authlink without a copy of its .proto files.
//
// Both versions carry the same messages under different package names, so
// the answers are computed once, against a neutral shape, and only wrapped
// per version. Bad input never ends the stream: the protocol has an
// ErrorResponse for that, and a client exploring a server expects to go on
// asking after a miss.

export interface ServerReflectionOptions {
  /**
   * The files whose services are served. Their transitive imports are found
   * through `DescFile.dependencies`; the reflection protos themselves are
   * always added, since list_services names them too.
   */
  readonly files: readonly DescFile[];
  /**
   * Fully qualified names of the services the server routes, read on every
   * list_services request (so it may be filled after the router is built).
   * Duplicates are dropped, so one name per routed method is fine.
   */
  readonly serviceNames: () => readonly string[];
}

export interface ServerReflectionServices {
  readonly v1: ServiceImpl<typeof v1.ServerReflection>;
  readonly v1alpha: ServiceImpl<typeof v1alpha.ServerReflection>;
}

export function createServerReflection(options: ServerReflectionOptions): ServerReflectionServices {
  const answer = createAnswerer(options);
  async function* respond<R extends ReflectionRequest>(requests: AsyncIterable<R>) {
    for await (const request of requests) {
      yield { validHost: request.host, originalRequest: request, messageResponse: answer(request) };
    }
  }
  return {
    v1: { serverReflectionInfo: (requests) => respond(requests) },
    v1alpha: { serverReflectionInfo: (requests) => respond(requests) },
  };
}

/** What a v1 and a v1alpha ServerReflectionRequest have in common. */
interface ReflectionRequest {
  readonly host: string;
  readonly messageRequest:
    | {
        readonly case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType" | "listServices";
        readonly value: string;
      }
    | {
        readonly case: "fileContainingExtension";
        readonly value: { readonly containingType: string; readonly extensionNumber: number };
      }
    | { readonly case: undefined; readonly value?: undefined };
}

/** The message_response oneof, in a shape both versions accept as init. */
type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

function createAnswerer(options: ServerReflectionOptions): (request: ReflectionRequest) => ReflectionAnswer {
  const index = indexFiles([
    ...options.files,
    v1.file_grpc_reflection_v1_reflection,
    v1alpha.file_grpc_reflection_v1alpha_reflection,
  ]);

  const fileWithImports = (file: DescFile): ReflectionAnswer => ({
    case: "fileDescriptorResponse",
    value: { fileDescriptorProto: index.withImports(file) },
  });

  const answerRequest = (request: ReflectionRequest): ReflectionAnswer => {
    const { messageRequest } = request;
    switch (messageRequest.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: { service: [...new Set(options.serviceNames())].map((name) => ({ name })) },
        };
      case "fileByFilename": {
        if (messageRequest.value === "") return invalid("file_by_filename is empty");
        const file = index.files.get(messageRequest.value);
        return file ? fileWithImports(file) : notFound(`file not found: ${messageRequest.value}`);
      }
      case "fileContainingSymbol": {
        // Clients differ on whether a fully qualified name starts with a dot.
        const symbol = messageRequest.value.replace(/^\./, "");
        if (symbol === "") return invalid("file_containing_symbol is empty");
        const found = index.symbols.get(symbol);
        return found ? fileWithImports(found.file) : notFound(`symbol not found: ${symbol}`);
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = messageRequest.value;
        const typeName = containingType.replace(/^\./, "");
        if (typeName === "") return invalid("file_containing_extension has no containing_type");
        const extension = index.extensions.get(typeName)?.get(extensionNumber);
        return extension
          ? fileWithImports(extension.file)
          : notFound(`extension not found: ${typeName} number ${extensionNumber}`);
      }
      case "allExtensionNumbersOfType": {
        const typeName = messageRequest.value.replace(/^\./, "");
        if (typeName === "") return invalid("all_extension_numbers_of_type is empty");
        if (index.symbols.get(typeName)?.kind !== "message") return notFound(`message type not found: ${typeName}`);
        const numbers = [...(index.extensions.get(typeName)?.keys() ?? [])].sort((a, b) => a - b);
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: typeName, extensionNumber: numbers } };
      }
      case undefined:
        return invalid("the request sets no message_request");
    }
  };

  return (request) => {
    try {
      return answerRequest(request);
    } catch (error) {
      // serviceNames() is the caller's code; whatever it throws is answered,
      // not allowed to tear down a stream other requests are using.
      return errorAnswer(Code.Internal, `reflection failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
}

// gRPC status codes share connect's numbering (Code.NotFound === 5).
const notFound = (message: string) => errorAnswer(Code.NotFound, message);
const invalid = (message: string) => errorAnswer(Code.InvalidArgument, message);

function errorAnswer(code: Code, errorMessage: string): ReflectionAnswer {
  return { case: "errorResponse", value: { errorCode: code, errorMessage } };
}

// ---- the index of files, symbols and extensions ------------------------

type SymbolKind = "message" | "enum" | "enum value" | "field" | "oneof" | "extension" | "service" | "method";

interface FileIndex {
  /** By path, e.g. "authlink/v1/access.proto". */
  readonly files: ReadonlyMap<string, DescFile>;
  /** By fully qualified name, without the leading dot. */
  readonly symbols: ReadonlyMap<string, { readonly file: DescFile; readonly kind: SymbolKind }>;
  /** Extendee type name → field number → the extension. */
  readonly extensions: ReadonlyMap<string, ReadonlyMap<number, { readonly file: DescFile }>>;
  /** The serialized file first, then every file it imports, transitively, once each. */
  withImports(file: DescFile): Uint8Array[];
}

function indexFiles(roots: readonly DescFile[]): FileIndex {
  const files = new Map<string, DescFile>();
  const visit = (file: DescFile): void => {
    // The first file of a name wins; a second copy of a package (two
    // @bufbuild/protobuf installs, say) would describe the same file.
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    file.dependencies.forEach(visit);
  };
  roots.forEach(visit);

  const symbols = new Map<string, { file: DescFile; kind: SymbolKind }>();
  const extensions = new Map<string, Map<number, { file: DescFile }>>();
  for (const file of files.values()) {
    const add = (name: string, kind: SymbolKind) => {
      if (!symbols.has(name)) symbols.set(name, { file, kind });
    };
    const addExtension = (extension: DescExtension) => {
      add(extension.typeName, "extension");
      let numbers = extensions.get(extension.extendee.typeName);
      if (!numbers) extensions.set(extension.extendee.typeName, (numbers = new Map()));
      if (!numbers.has(extension.number)) numbers.set(extension.number, { file });
    };
    const addEnum = (desc: DescEnum) => {
      add(desc.typeName, "enum");
      // Enum values are scoped like C++ enumerators: siblings of their enum,
      // so authlink.v1.LINK_TYPE_SIGNUP, not authlink.v1.LinkType.LINK_TYPE_SIGNUP.
      const scope = desc.typeName.slice(0, Math.max(0, desc.typeName.lastIndexOf(".")));
      for (const value of desc.values) add(scope ? `${scope}.${value.name}` : value.name, "enum value");
    };
    const addMessage = (message: DescMessage) => {
      add(message.typeName, "message");
      for (const field of message.fields) add(`${message.typeName}.${field.name}`, "field");
      for (const oneof of message.oneofs) add(`${message.typeName}.${oneof.name}`, "oneof");
      message.nestedMessages.forEach(addMessage);
      message.nestedEnums.forEach(addEnum);
      message.nestedExtensions.forEach(addExtension);
    };
    file.messages.forEach(addMessage);
    file.enums.forEach(addEnum);
    file.extensions.forEach(addExtension);
    for (const service of file.services) {
      add(service.typeName, "service");
      for (const method of service.methods) add(`${service.typeName}.${method.name}`, "method");
    }
  }

  // Serialized once, up front: a descriptor that cannot be encoded fails at
  // start-up rather than on a client's first question.
  const encoded = new Map<string, Uint8Array>();
  for (const [name, file] of files) encoded.set(name, toBinary(FileDescriptorProtoSchema, file.proto));

  const withImports = (root: DescFile): Uint8Array[] => {
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    const visitImports = (name: string): void => {
      if (seen.has(name)) return;
      seen.add(name);
      const file = files.get(name);
      const bytes = encoded.get(name);
      // Always both: every import was indexed when the files were walked.
      if (!file || !bytes) return;
      out.push(bytes);
      for (const dependency of file.dependencies) visitImports(dependency.proto.name);
    };
    visitImports(root.proto.name);
    return out;
  };

  return { files, symbols, extensions, withImports };
}
