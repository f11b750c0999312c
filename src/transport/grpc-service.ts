// Binds protoc-gen-es v2 service descriptors to @grpc/grpc-js: one function
// turns a GenService into a grpc ServiceDefinition (paths, binary codecs), one
// registers typed handlers on a grpc.Server, one builds a typed client. Nothing
// here knows any particular service.
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";

type MethodShape = GenServiceMethods[string];
type Req<M extends MethodShape> = MessageShape<M["input"]>;
type Res<M extends MethodShape> = MessageShape<M["output"]>;

/** The server-side handler of each method, typed by its kind and messages. */
export type ServiceHandlers<T extends GenServiceMethods> = {
  [K in keyof T]: T[K]["methodKind"] extends "unary"
    ? grpc.handleUnaryCall<Req<T[K]>, Res<T[K]>>
    : T[K]["methodKind"] extends "client_streaming"
      ? grpc.handleClientStreamingCall<Req<T[K]>, Res<T[K]>>
      : T[K]["methodKind"] extends "server_streaming"
        ? grpc.handleServerStreamingCall<Req<T[K]>, Res<T[K]>>
        : grpc.handleBidiStreamingCall<Req<T[K]>, Res<T[K]>>;
};

/** ServiceHandlers of a generated service: `HandlersOf<typeof Cluster>`. */
export type HandlersOf<S> = S extends GenService<infer T> ? ServiceHandlers<T> : never;

export interface CallOptions {
  /** Deadline in milliseconds from now (ignored when `deadline` is set). */
  timeoutMs?: number;
  deadline?: grpc.Deadline;
  metadata?: grpc.Metadata;
}

/** The client-side method of each method: unary calls return a promise, streams the grpc-js stream. */
export type ServiceClient<T extends GenServiceMethods> = {
  [K in keyof T]: T[K]["methodKind"] extends "unary"
    ? (request: MessageInitShape<T[K]["input"]>, options?: CallOptions) => Promise<Res<T[K]>>
    : T[K]["methodKind"] extends "client_streaming"
      ? (callback: grpc.requestCallback<Res<T[K]>>, options?: CallOptions) => grpc.ClientWritableStream<Req<T[K]>>
      : T[K]["methodKind"] extends "server_streaming"
        ? (request: MessageInitShape<T[K]["input"]>, options?: CallOptions) => grpc.ClientReadableStream<Res<T[K]>>
        : (options?: CallOptions) => grpc.ClientDuplexStream<Req<T[K]>, Res<T[K]>>;
};

/** ServiceClient of a generated service: `ClientOf<typeof Cluster>`. */
export type ClientOf<S> = S extends GenService<infer T> ? ServiceClient<T> : never;

export interface TypedClient<T extends GenServiceMethods> {
  readonly methods: ServiceClient<T>;
  /** The underlying grpc-js client (channel state, waitForReady). */
  readonly grpcClient: grpc.Client;
  close(): void;
}

/** `/pgraft.v1.Cluster/KvPut` */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** A view of the encoded bytes as a Buffer, without copying. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function serializer<D extends DescMessage>(desc: D): grpc.serialize<MessageShape<D>> {
  return (value) => asBuffer(toBinary(desc, value));
}

function deserializer<D extends DescMessage>(desc: D): grpc.deserialize<MessageShape<D>> {
  return (bytes) => fromBinary(desc, bytes);
}

/** One grpc-js method definition for a protobuf-es method descriptor. */
export function methodDefinition(method: DescMethod): grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage>> {
  return {
    path: methodPath(method),
    originalName: method.localName,
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    requestSerialize: serializer(method.input),
    requestDeserialize: deserializer(method.input),
    responseSerialize: serializer(method.output),
    responseDeserialize: deserializer(method.output),
  };
}

/**
 * The grpc-js ServiceDefinition of a generated service; its keys are the
 * methods' local names (`kvPut`), as in the generated descriptor.
 */
export function serviceDefinition<T extends GenServiceMethods>(service: GenService<T>): grpc.ServiceDefinition<ServiceHandlers<T>> {
  const def: Record<string, grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage>>> = {};
  for (const m of service.methods) def[m.localName] = methodDefinition(m);
  return def as grpc.ServiceDefinition<ServiceHandlers<T>>;
}

/** Register typed handlers for every method of `service` on `server`. */
export function addService<T extends GenServiceMethods>(server: grpc.Server, service: GenService<T>, handlers: ServiceHandlers<T>): void {
  server.addService(serviceDefinition(service), handlers);
}

function callArgs(o: CallOptions | undefined): { metadata: grpc.Metadata; options: grpc.CallOptions } {
  const options: grpc.CallOptions = {};
  if (o?.deadline !== undefined) options.deadline = o.deadline;
  else if (o?.timeoutMs !== undefined) options.deadline = Date.now() + o.timeoutMs;
  return { metadata: o?.metadata ?? new grpc.Metadata(), options };
}

/**
 * A typed client for `service` at `address` ("127.0.0.1:7400").
 * `options` are grpc-js channel options (keepalive, message sizes, ...).
 */
export function createClient<T extends GenServiceMethods>(
  service: GenService<T>,
  address: string,
  credentials: grpc.ChannelCredentials,
  options: grpc.ClientOptions = {},
): TypedClient<T> {
  const client = new grpc.Client(address, credentials, options);
  const methods: Record<string, unknown> = {};
  for (const m of service.methods) {
    const path = methodPath(m);
    const ser = serializer(m.input);
    const de = deserializer(m.output);
    switch (m.methodKind) {
      case "unary":
        methods[m.localName] = (request: MessageInitShape<DescMessage>, o?: CallOptions) =>
          new Promise<MessageShape<DescMessage>>((resolve, reject) => {
            const { metadata, options: co } = callArgs(o);
            client.makeUnaryRequest(path, ser, de, create(m.input, request), metadata, co, (err, res) => {
              if (err) reject(err);
              else if (res === undefined) reject(new Error(`${path}: empty response`));
              else resolve(res);
            });
          });
        break;
      case "client_streaming":
        methods[m.localName] = (callback: grpc.requestCallback<MessageShape<DescMessage>>, o?: CallOptions) => {
          const { metadata, options: co } = callArgs(o);
          return client.makeClientStreamRequest(path, ser, de, metadata, co, callback);
        };
        break;
      case "server_streaming":
        methods[m.localName] = (request: MessageInitShape<DescMessage>, o?: CallOptions) => {
          const { metadata, options: co } = callArgs(o);
          return client.makeServerStreamRequest(path, ser, de, create(m.input, request), metadata, co);
        };
        break;
      case "bidi_streaming":
        methods[m.localName] = (o?: CallOptions) => {
          const { metadata, options: co } = callArgs(o);
          return client.makeBidiStreamRequest(path, ser, de, metadata, co);
        };
        break;
    }
  }
  return {
    methods: methods as ServiceClient<T>,
    grpcClient: client,
    close: () => client.close(),
  };
}

/** A grpc status error for a handler's callback (`callback(statusError(...))`). */
export function statusError(code: grpc.status, details: string, metadata?: grpc.Metadata): grpc.ServerErrorResponse {
  const e: grpc.ServerErrorResponse = Object.assign(new Error(details), { code, details });
  if (metadata) e.metadata = metadata;
  return e;
}

/** True for an error carrying a grpc status code (what grpc-js hands to callbacks). */
export function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && typeof (e as Partial<grpc.ServiceError>).code === "number";
}

/**
 * The unary methods of `handlers`, called in-process with the shape of a
 * client: the same validation, forwarding and errors as over the network,
 * without a socket (the SQL endpoint uses it). A call is not cancellable and
 * has no deadline of its own; streaming methods throw.
 */
export function localClient<T extends GenServiceMethods>(service: GenService<T>, handlers: ServiceHandlers<T>): ServiceClient<T> {
  const methods: Record<string, unknown> = {};
  for (const m of service.methods) {
    if (m.methodKind !== "unary") {
      methods[m.localName] = () => {
        throw new Error(`${methodPath(m)}: only unary methods can be called in-process`);
      };
      continue;
    }
    const handler = (handlers as Record<string, unknown>)[m.localName] as grpc.handleUnaryCall<MessageShape<DescMessage>, MessageShape<DescMessage>>;
    methods[m.localName] = (request: MessageInitShape<DescMessage>, o?: CallOptions) =>
      new Promise<MessageShape<DescMessage>>((resolve, reject) => {
        const call = {
          request: create(m.input, request),
          metadata: o?.metadata ?? new grpc.Metadata(),
          cancelled: false,
          getPeer: () => "in-process",
          getDeadline: () => Infinity,
          getPath: () => methodPath(m),
          on: () => call,
          once: () => call,
        };
        handler(call as unknown as grpc.ServerUnaryCall<MessageShape<DescMessage>, MessageShape<DescMessage>>, (err, res) => {
          if (err) reject(err instanceof Error ? err : Object.assign(new Error(err.details ?? "error"), err));
          else if (res === undefined || res === null) reject(new Error(`${methodPath(m)}: empty response`));
          else resolve(res);
        });
      });
  }
  return methods as ServiceClient<T>;
}
