import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type Message } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createContextValues,
  createHandlerContext,
  type HandlerContext,
  type MethodImplSpec,
  type ServiceImplSpec,
} from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { once } from "node:events";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import type { CallBoundary, OpenCall } from "../call/call-boundary.js";
import { REQUEST_ID_HEADER, requestIdFrom } from "../call/request-id.js";
import { clientAddress, type TrustedProxies } from "../identity/client-address.js";
import { toAuthlinkError } from "../domain/errors.js";
import { verifiedPeerCertificate } from "../identity/peer-certificate.js";
import { failure } from "./call-adapter.js";
import { callKey } from "./context-values.js";
import { toConnectError } from "./error-details.js";
import { classifyGrpcJsStatus, type ProtocolRefusalKind } from "./protocol-errors.js";

/**
 * The call boundary on a @grpc/grpc-js Server: the same service
 * implementations connect-node routes (ServiceImplSpec, from
 * createServiceImplSpec), the same protobuf-es schemas on the wire (a
 * hand-built grpc-js ServiceDefinition whose (de)serializers are
 * toBinary/fromBinary), and the same errors. Two parts, like the connect-node
 * adapter (call-adapter.ts):
 *
 * - a server interceptor admits each call once its metadata is in and
 *   before its message is read (caller from `authorization` or the verified
 *   client certificate, access policy, refusal limit, request id, the client's
 *   deadline capped by the server's), so a refused call's message is never
 *   read or parsed;
 * - one handler per method runs the implementation with a HandlerContext
 *   that carries the admitted Call, and answers with the boundary's verdict.
 *
 * grpc-js answers some requests by itself while it reads them (over
 * grpc.max_receive_message_length, a message the deserializer refuses, a
 * second or a missing message, an unknown compression, a malformed
 * grpc-timeout, its own deadline timer). Those statuses never pass an
 * interceptor's responder: they are sent by the innermost call object. The
 * interceptor therefore routes that object's sendStatus through one funnel
 * that classifies such a status (protocol-errors.ts) and rewrites it into
 * authlink's answer — INVALID_ARGUMENT validation_failed instead of INTERNAL,
 * RESOURCE_EXHAUSTED request_too_large with its ErrorInfo — as the connect
 * adapter rewrites connect-node's error in place.
 *
 * Every answer carries the request id (x-request-id: in the response headers
 * of a success, with the status otherwise) and, for an error, the same
 * google.rpc.Status in grpc-status-details-bin as connect-node sends.
 */
export interface GrpcJsRoutes {
  /** For the grpc-js Server's options: the boundary's interceptor. */
  readonly interceptors: grpc.ServerInterceptor[];
  /** Adds every service to the server. */
  addTo(server: grpc.Server): void;
}

export interface GrpcJsRoutesOptions {
  readonly trustedProxies: TrustedProxies;
  /** Told of each request grpc-js refused while reading it (undecodable, oversize, ...). */
  readonly onProtocolRefusal?: ((kind: ProtocolRefusalKind) => void) | undefined;
}

/** The metrics label of calls on this listener. */
export const GRPC_JS_PROTOCOL = "grpc-js";

/** One call, from the interceptor to the handler (found by its request metadata). */
interface CallState {
  readonly method: DescMethod;
  /** The call as the boundary admitted it; undefined until admission is done. */
  open: OpenCall | undefined;
  requestId: string;
  /** The client left or its own deadline passed. */
  readonly transport: AbortController;
  /** The handler has the request and owns the call's end from here on. */
  handedOver: boolean;
  /** A status went out: nothing more can be answered. */
  answered: boolean;
  /** grpc-js answered before admission was done: how the call ends once it is. */
  endedEarly: unknown;
  /** Aborts `transport` when the client's deadline passes. */
  deadlineTimer: NodeJS.Timeout | undefined;
}

/** A status as grpc-js's server calls send it (its PartialStatusObject, not exported). */
type PartialStatus = Parameters<grpc.ServerInterceptingCallInterface["sendStatus"]>[0];

/** Status objects authlink made itself: the funnel lets them pass as they are. */
type AuthlinkStatus = grpc.StatusObject & { readonly authlink: true };

export function createGrpcJsRoutes(
  services: readonly ServiceImplSpec[],
  boundary: CallBoundary,
  options: GrpcJsRoutesOptions,
): GrpcJsRoutes {
  const { trustedProxies, onProtocolRefusal } = options;
  const methods = new Map<string, DescMethod>();
  for (const { service } of services) for (const method of service.methods) methods.set(pathOf(method), method);
  const byMetadata = new WeakMap<grpc.Metadata, CallState>();

  const interceptor: grpc.ServerInterceptor = (descriptor, call) => {
    const method = methods.get(descriptor.path);
    if (!method) return new grpc.ServerInterceptingCall(call);
    const state: CallState = {
      method,
      open: undefined,
      requestId: "",
      transport: new AbortController(),
      handedOver: false,
      answered: false,
      endedEarly: undefined,
      deadlineTimer: undefined,
    };

    // The funnel: every status of this call, whoever sends it, passes here.
    const send = call.sendStatus.bind(call);
    call.sendStatus = (status) => {
      if (state.answered) return;
      state.answered = true;
      clearTimeout(state.deadlineTimer);
      send(isAuthlinkStatus(status) ? status : transportStatus(status));
    };
    const transportStatus = (status: PartialStatus): PartialStatus => {
      if (status.code === grpc.status.OK) return status;
      const refusal = classifyGrpcJsStatus(status.code, status.details ?? "");
      if (refusal) onProtocolRefusal?.(refusal.kind);
      const cause: unknown =
        refusal?.answer ??
        (status.code === grpc.status.DEADLINE_EXCEEDED ? new DOMException("the client's deadline passed", "TimeoutError") : undefined);
      // Whatever still runs for this call (a use case, a read) stops now.
      state.transport.abort(cause instanceof DOMException ? cause : new DOMException("grpc-js answered the call", "AbortError"));
      if (cause === undefined) {
        state.open?.endWithStatus(grpc.status[status.code] ?? "UNKNOWN");
        return status;
      }
      if (!state.open) {
        // Answered before admission was done (a malformed grpc-timeout): the
        // boundary ends the call the same way once it has admitted it.
        state.endedEarly = cause;
        return statusOf(failureBeforeAdmission(cause, state.requestId));
      }
      return statusOf(failure(state.open, cause));
    };
    const answer = (error: unknown) => call.sendStatus(statusOf(error));

    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, passOn) {
            const header = (name: string) => textOf(metadata.get(name));
            state.requestId = requestIdFrom(header(REQUEST_ID_HEADER));
            state.deadlineTimer = armDeadline(call.getDeadline(), state.transport);
            const connection = call.getConnectionInfo();
            boundary
              .admit({
                method,
                protocol: GRPC_JS_PROTOCOL,
                certificate: verifiedPeerCertificate(call.getAuthContext().sslPeerCertificate),
                authorization: header("authorization"),
                clientAddress: clientAddress(connection.remoteAddress ?? "", header("x-forwarded-for") ?? undefined, trustedProxies),
                // Well formed by now, so the boundary keeps it: early answers and the call agree on it.
                requestIdHeader: state.requestId,
                signal: state.transport.signal,
              })
              .then(
                (open) => {
                  state.open = open;
                  if (state.answered) {
                    open.end(state.endedEarly ?? state.transport.signal.reason);
                    return;
                  }
                  if (open.refused) {
                    answer(failure(open, open.refused));
                    return;
                  }
                  // While the request is read, the call's own deadline ends it.
                  open.call.signal.addEventListener(
                    "abort",
                    () => {
                      if (!state.handedOver && !state.answered) answer(failure(open, open.call.signal.reason));
                    },
                    { once: true },
                  );
                  byMetadata.set(metadata, state);
                  passOn(metadata);
                },
                () => {
                  // The boundary itself failed (it does not, short of a bug): no details to leak.
                  answer(new ConnectError("internal error", Code.Internal, { [REQUEST_ID_HEADER]: state.requestId }));
                },
              );
          },
          onCancel() {
            // grpc-js reports the end of every call here, answered or not.
            if (!state.answered) {
              state.answered = true;
              clearTimeout(state.deadlineTimer);
              state.transport.abort(new DOMException("the client went away", "AbortError"));
              if (state.open && !state.handedOver) state.open.end(state.transport.signal.reason);
            }
          },
        });
      },
    });
  };

  const takeState = (metadata: grpc.Metadata): { state: CallState; open: OpenCall } => {
    const state = byMetadata.get(metadata);
    if (!state?.open) throw new Error("the grpc-js call adapter's interceptor is not installed on this server");
    state.handedOver = true;
    return { state, open: state.open };
  };

  return {
    interceptors: [interceptor],
    addTo(server) {
      for (const { service, methods: specs } of services) {
        const definition: Record<string, grpc.MethodDefinition<Message, Message>> = {};
        const implementation: grpc.UntypedServiceImplementation = {};
        for (const method of service.methods) {
          const spec = specs[method.localName];
          if (!spec) continue;
          definition[method.name] = methodDefinition(method);
          implementation[method.name] = handlerOf(spec, takeState);
        }
        server.addService(definition, implementation);
      }
    },
  };
}

function pathOf(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** The method as grpc-js sees it, with protobuf-es doing the (de)serializing: the same bytes as connect-node. */
function methodDefinition(method: DescMethod): grpc.MethodDefinition<Message, Message> {
  const serializer = (schema: DescMessage) => (message: Message) => Buffer.from(toBinary(schema, message));
  const deserializer = (schema: DescMessage) => (bytes: Buffer) => fromBinary(schema, bytes);
  return {
    path: pathOf(method),
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    requestSerialize: serializer(method.input),
    requestDeserialize: deserializer(method.input),
    responseSerialize: serializer(method.output),
    responseDeserialize: deserializer(method.output),
    originalName: method.localName,
  };
}

type TakeState = (metadata: grpc.Metadata) => { state: CallState; open: OpenCall };

/** The grpc-js handler of one method: runs the shared implementation and answers with the boundary's verdict. */
function handlerOf(spec: MethodImplSpec, takeState: TakeState): grpc.UntypedHandleCall {
  const output = spec.method.output;
  const reply = (value: unknown): Message => (isMessage(value, output) ? value : create(output, value as never));
  const started = (call: { metadata: grpc.Metadata; sendMetadata(metadata: grpc.Metadata): void }) => {
    const { state, open } = takeState(call.metadata);
    return { state, open, context: handlerContext(spec, call.metadata, open) };
  };

  switch (spec.kind) {
    case "unary":
      return (call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) => {
        const { open, context } = started(call);
        void (async () => spec.impl(call.request as never, context))().then(
          (response) => {
            call.sendMetadata(requestIdMetadata(open));
            open.end();
            callback(null, reply(response));
          },
          (error: unknown) => callback(statusOf(failure(open, error))),
        );
      };
    case "client_streaming":
      return (call: grpc.ServerReadableStream<Message, Message>, callback: grpc.sendUnaryData<Message>) => {
        const { open, context } = started(call);
        void (async () => spec.impl(call as AsyncIterable<never>, context))().then(
          (response) => {
            call.sendMetadata(requestIdMetadata(open));
            open.end();
            callback(null, reply(response));
          },
          (error: unknown) => callback(statusOf(failure(open, error))),
        );
      };
    case "server_streaming":
      return (call: grpc.ServerWritableStream<Message, Message>) => {
        const { open, context } = started(call);
        void stream(call, spec.impl(call.request as never, context), open, reply);
      };
    case "bidi_streaming":
      return (call: grpc.ServerDuplexStream<Message, Message>) => {
        const { open, context } = started(call);
        void stream(call, spec.impl(call as AsyncIterable<never>, context), open, reply);
      };
  }
}

/** Writes a streaming response, honouring backpressure, and ends the call after its last message or its error. */
async function stream(
  call: grpc.ServerWritableStream<Message, Message> | grpc.ServerDuplexStream<Message, Message>,
  messages: AsyncIterable<unknown>,
  open: OpenCall,
  reply: (value: unknown) => Message,
): Promise<void> {
  call.sendMetadata(requestIdMetadata(open));
  try {
    for await (const message of messages) {
      if (open.call.signal.aborted) break;
      if (!call.write(reply(message))) await once(call, "drain", { signal: open.call.signal });
    }
  } catch (error) {
    if (!open.call.signal.aborted || !isAbortError(error)) {
      call.emit("error", statusOf(failure(open, error, true)));
      return;
    }
  }
  // Normal completion ends as OK; a client that went away ends as cancelled.
  open.end(open.call.signal.aborted ? open.call.signal.reason : undefined);
  call.end();
}

function isAbortError(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}

/** What connect-node's handlers get: the Call under callKey, the call's signal, the request headers. */
function handlerContext(spec: MethodImplSpec, metadata: grpc.Metadata, open: OpenCall): HandlerContext {
  const requestHeader: [string, string][] = [];
  for (const [name, values] of Object.entries(metadata.getMap())) {
    if (typeof values === "string") requestHeader.push([name, values]);
  }
  return createHandlerContext({
    service: spec.method.parent,
    method: spec.method,
    protocolName: GRPC_JS_PROTOCOL,
    requestMethod: "POST",
    url: pathOf(spec.method),
    requestSignal: open.call.signal,
    requestHeader,
    contextValues: createContextValues().set(callKey, open.call),
  });
}

function requestIdMetadata(open: OpenCall): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set(REQUEST_ID_HEADER, open.call.requestId);
  return metadata;
}

/**
 * An answer as a grpc-js status: the code, the message, the error's headers
 * (x-request-id) and, when it has details, grpc-status-details-bin holding the
 * google.rpc.Status that connect-node sends for the same error.
 */
function statusOf(error: unknown): AuthlinkStatus {
  const wire = error instanceof ConnectError ? error : new ConnectError("internal error", Code.Internal);
  const metadata = new grpc.Metadata();
  wire.metadata.forEach((value, name) => metadata.set(name, value));
  if (wire.details.length > 0) {
    const status = create(StatusSchema, {
      code: wire.code,
      message: wire.rawMessage,
      details: wire.details.map((detail) =>
        "desc" in detail
          ? anyPack(detail.desc, create(detail.desc, detail.value))
          : { typeUrl: `type.googleapis.com/${detail.type}`, value: detail.value },
      ),
    });
    metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, status)));
  }
  return { code: wire.code as number as grpc.status, details: wire.rawMessage, metadata, authlink: true };
}

function isAuthlinkStatus(status: PartialStatus): status is AuthlinkStatus {
  return (status as Partial<AuthlinkStatus>).authlink === true;
}

/** A protocol refusal grpc-js answered before the boundary admitted the call: the answer without an OpenCall. */
function failureBeforeAdmission(cause: unknown, requestId: string): ConnectError {
  return toConnectError(toAuthlinkError(cause), { [REQUEST_ID_HEADER]: requestId });
}

/** A grpc-js deadline (a Date, a timestamp in ms, or Infinity) as a timer that aborts the transport's signal. */
function armDeadline(deadline: grpc.Deadline, transport: AbortController): NodeJS.Timeout | undefined {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return undefined;
  return setTimeout(() => transport.abort(new DOMException("the client's deadline passed", "TimeoutError")), Math.max(0, at - Date.now()));
}

function textOf(values: grpc.MetadataValue[]): string | null {
  const [value] = values;
  return typeof value === "string" ? value : null;
}
