/**
 * The one module that touches `@grpc/grpc-js`: typed servers and clients for
 * protobuf-es service descriptors, and the single error-to-status mapping.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import {
  type CallContext,
  type CallOptions,
  Code,
  RpcError,
  type ServiceClient,
  type ServiceImpl,
  statusFromError,
} from "./rpc.ts";

export {
  type CallContext,
  type CallOptions,
  Code,
  type CodeName,
  codeName,
  RpcError,
  type ServiceClient,
  type ServiceImpl,
  statusFromError,
} from "./rpc.ts";

// grpc-js copies out of the serialized bytes with Buffer methods; a view costs no copy.
function serializer<D extends DescMessage>(schema: D): (value: MessageInitShape<D>) => Buffer {
  return (value) => {
    const msg = (value as { $typeName?: string }).$typeName === schema.typeName
      ? value as MessageShape<D>
      : create(schema, value);
    const bytes = toBinary(schema, msg);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> {
  return (bytes) => fromBinary(schema, bytes);
}

function methodPath(service: { typeName: string }, name: string): string {
  return `/${service.typeName}/${name}`;
}

function metadataRecord(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) {
    if (typeof v === "string") out[k] = v;
  }
  return out;
}

function toServiceError(err: unknown): grpc.ServiceError {
  const { code, message } = statusFromError(err);
  return Object.assign(new Error(message), {
    code,
    details: message,
    metadata: new grpc.Metadata(),
  });
}

/** Options for {@linkcode RpcServer}. */
export interface RpcServerOptions {
  /** Called with errors that map to INTERNAL or UNKNOWN, i.e. bugs rather than refusals. */
  onInternalError?: (err: unknown, method: string) => void;
}

/**
 * A gRPC server hosting typed services.
 *
 * It owns its listening sockets (grpc-js only sees connections injected into
 * it) so that closing never sends an HTTP/2 GOAWAY: Deno 2.9's node:http2
 * client aborts the whole process in nghttp2 when a GOAWAY reaches an idle
 * session (denoland/deno#36788), and every fsb server's peers are Deno
 * processes. Close waits for calls in flight, then drops the connections.
 */
export class RpcServer {
  #server: grpc.Server;
  #opts: RpcServerOptions;
  #net: NetServer | undefined;
  #sockets = new Set<Socket>();
  #inFlight = 0;
  #idle: (() => void) | undefined;

  /** Creates an idle server; add services, then {@linkcode RpcServer.listen}. */
  constructor(opts: RpcServerOptions = {}) {
    this.#server = new grpc.Server({
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.max_receive_message_length": 16 * 1024 * 1024,
    });
    this.#opts = opts;
  }

  /** Registers `impl` for `service`. */
  add<S extends GenServiceMethods>(service: GenService<S>, impl: ServiceImpl<S>): void {
    const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const method of service.methods) {
      const path = methodPath(service, method.name);
      const fn = (impl as Record<string, unknown>)[method.localName];
      if (typeof fn !== "function") throw new Error(`No handler for ${path}`);
      const streaming = method.methodKind === "server_streaming";
      definition[method.localName] = {
        path,
        requestStream: false,
        responseStream: streaming,
        requestSerialize: serializer(method.input) as grpc.serialize<unknown>,
        requestDeserialize: deserializer(method.input),
        responseSerialize: serializer(method.output) as grpc.serialize<unknown>,
        responseDeserialize: deserializer(method.output),
      };
      handlers[method.localName] = streaming
        ? this.#streamHandler(path, fn as StreamFn)
        : this.#unaryHandler(path, fn as UnaryFn);
    }
    this.#server.addService(definition, handlers);
  }

  #report(err: unknown, path: string): void {
    const { code } = statusFromError(err);
    if (code === Code.INTERNAL || code === Code.UNKNOWN) this.#opts.onInternalError?.(err, path);
  }

  #enter(): void {
    this.#inFlight++;
  }

  #leave(): void {
    if (--this.#inFlight === 0) this.#idle?.();
  }

  #unaryHandler(path: string, fn: UnaryFn): grpc.handleUnaryCall<unknown, unknown> {
    return (call, callback) => {
      const ctl = new AbortController();
      call.on("cancelled", () => ctl.abort(new RpcError(Code.CANCELLED, "call cancelled")));
      const ctx: CallContext = { signal: ctl.signal, metadata: metadataRecord(call.metadata) };
      let result: unknown;
      try {
        result = fn(call.request, ctx);
      } catch (err) {
        this.#report(err, path);
        callback(toServiceError(err));
        return;
      }
      if (result instanceof Promise) {
        this.#enter();
        result.then(
          (value) => {
            this.#leave();
            callback(null, value);
          },
          (err) => {
            this.#leave();
            this.#report(err, path);
            callback(toServiceError(err));
          },
        );
      } else {
        callback(null, result);
      }
    };
  }

  #streamHandler(path: string, fn: StreamFn): grpc.handleServerStreamingCall<unknown, unknown> {
    return async (call) => {
      const ctl = new AbortController();
      call.on("cancelled", () => ctl.abort(new RpcError(Code.CANCELLED, "call cancelled")));
      const ctx: CallContext = { signal: ctl.signal, metadata: metadataRecord(call.metadata) };
      this.#enter();
      try {
        for await (const item of fn(call.request, ctx)) {
          if (ctl.signal.aborted) break;
          if (!call.write(item)) await drainOrAbort(call, ctl.signal);
        }
        if (!ctl.signal.aborted) call.end();
      } catch (err) {
        if (ctl.signal.aborted) return;
        this.#report(err, path);
        // emit("error") sends the status; destroy() would cut the stream without one.
        call.emit("error", toServiceError(err));
      } finally {
        this.#leave();
      }
    };
  }

  /**
   * Binds `address` (`HOST:PORT`, port 0 picks a free one, or `unix:///path`)
   * and starts serving. Resolves to the bound address.
   */
  listen(address: string): Promise<string> {
    const injector = this.#server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const net = createServer((socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      socket.setNoDelay(true);
      // A connection silent this long (no calls, no keepalive pings) is dropped,
      // so half-open or stalled handshakes cannot pile up.
      socket.setTimeout(IDLE_SOCKET_MS, () => socket.destroy());
      socket.on("error", () => socket.destroy());
      injector.injectConnection(socket);
    });
    this.#net = net;
    return new Promise((resolve, reject) => {
      net.once("error", (err) => reject(new Error(`Cannot listen on ${address}: ${err.message}`)));
      if (address.startsWith("unix:")) {
        const path = address.replace(/^unix:(\/\/)?/, "");
        net.listen(path, () => resolve(address));
        return;
      }
      const i = address.lastIndexOf(":");
      let host = address.slice(0, i);
      if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
      const port = Number(address.slice(i + 1));
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        reject(
          new Error(`Cannot listen on ${address}: expected HOST:PORT with a port in 0..65535`),
        );
        return;
      }
      net.listen({ host: host === "" ? "0.0.0.0" : host, port }, () => {
        const bound = net.address();
        const boundPort = typeof bound === "object" && bound !== null ? bound.port : port;
        resolve(`${address.slice(0, i)}:${boundPort}`);
      });
    });
  }

  /** Stops accepting connections, waits up to `graceMs` for calls in flight, then drops every connection. */
  async close(graceMs = 0): Promise<void> {
    const net = this.#net;
    this.#net = undefined;
    const closed = net === undefined
      ? Promise.resolve()
      : new Promise<void>((resolve) => net.close(() => resolve()));
    if (this.#inFlight > 0 && graceMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.#idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    await closed;
    this.#server.forceShutdown();
  }
}

/** Resolves when `call` can take more writes or `signal` aborts, leaving no listener behind. */
function drainOrAbort(
  call: grpc.ServerWritableStream<unknown, unknown>,
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.once("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Our clients ping every 30 s, so only dead or stalled connections stay silent this long. */
const IDLE_SOCKET_MS = 5 * 60_000;

type UnaryFn = (req: unknown, ctx: CallContext) => unknown;
type StreamFn = (req: unknown, ctx: CallContext) => AsyncIterable<unknown>;

/** Options for {@linkcode RpcChannel}. */
export interface RpcChannelOptions {
  /** Metadata sent with every call (e.g. containerd's namespace). */
  metadata?: Record<string, string>;
  /** Default per-call timeout in milliseconds. */
  timeoutMs?: number;
}

/** One connection to a server, shared by the typed clients made from it. */
export class RpcChannel {
  #client: grpc.Client;
  #opts: RpcChannelOptions;
  readonly address: string;

  /** Connects lazily to `address` (`HOST:PORT` or `unix:///path`). */
  constructor(address: string, opts: RpcChannelOptions = {}) {
    this.address = address;
    this.#opts = opts;
    this.#client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.keepalive_time_ms": 30_000,
      "grpc.enable_retries": 0,
    });
  }

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(this.#opts.metadata ?? {})) md.set(k, v);
    return md;
  }

  #callOptions(opts: CallOptions | undefined): grpc.CallOptions {
    const timeoutMs = opts?.timeoutMs ?? this.#opts.timeoutMs;
    return timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
  }

  /** Waits until the channel is connected, or rejects with UNAVAILABLE after `timeoutMs`. */
  ready(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#client.waitForReady(Date.now() + timeoutMs, (err) => {
        if (err) {
          reject(new RpcError(Code.UNAVAILABLE, `Cannot reach ${this.address}: ${err.message}`));
        } else resolve();
      });
    });
  }

  /** A typed client for `service` over this channel. */
  client<S extends GenServiceMethods>(service: GenService<S>): ServiceClient<S> {
    const out: Record<string, unknown> = {};
    for (const method of service.methods) {
      const path = methodPath(service, method.name);
      const ser = serializer(method.input);
      const de = deserializer(method.output);
      out[method.localName] = method.methodKind === "server_streaming"
        ? (req: unknown, opts?: CallOptions) => this.#stream(path, ser, de, req, opts)
        : (req: unknown, opts?: CallOptions) => this.#unary(path, ser, de, req, opts);
    }
    return out as ServiceClient<S>;
  }

  #unary(
    path: string,
    ser: (v: never) => Buffer,
    de: (b: Buffer) => unknown,
    req: unknown,
    opts: CallOptions | undefined,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const call = this.#client.makeUnaryRequest(
        path,
        ser as (v: unknown) => Buffer,
        de,
        req,
        this.#metadata(),
        this.#callOptions(opts),
        (err, value) => err ? reject(fromServiceError(err)) : resolve(value),
      );
      const signal = opts?.signal;
      if (signal) {
        if (signal.aborted) call.cancel();
        else signal.addEventListener("abort", () => call.cancel(), { once: true });
      }
    });
  }

  async *#stream(
    path: string,
    ser: (v: never) => Buffer,
    de: (b: Buffer) => unknown,
    req: unknown,
    opts: CallOptions | undefined,
  ): AsyncGenerator<unknown> {
    const call = this.#client.makeServerStreamRequest(
      path,
      ser as (v: unknown) => Buffer,
      de,
      req,
      this.#metadata(),
      this.#callOptions(opts),
    );
    const onAbort = () => call.cancel();
    opts?.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const item of call) yield item;
    } catch (err) {
      if ((err as grpc.ServiceError).code === Code.CANCELLED && opts?.signal?.aborted) return;
      throw fromServiceError(err as grpc.ServiceError);
    } finally {
      opts?.signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  /** Closes the connection; calls in flight fail with CANCELLED or UNAVAILABLE. */
  close(): void {
    this.#client.close();
  }
}

function fromServiceError(err: grpc.ServiceError): RpcError {
  const details = err.details || err.message;
  // A peer that vanished mid-call surfaces as a client-side RST_STREAM, which
  // grpc-js reports as INTERNAL; to the caller it is an unreachable server.
  if (err.code === Code.INTERNAL && /triggered by internal client error/.test(details)) {
    return new RpcError(Code.UNAVAILABLE, details);
  }
  // A Go server whose own context deadline (the one our grpc-timeout set) fires first answers
  // UNKNOWN "context deadline exceeded"; to the caller that is the deadline passing.
  if (err.code === Code.UNKNOWN && /context deadline exceeded/.test(details)) {
    return new RpcError(Code.DEADLINE_EXCEEDED, details);
  }
  return new RpcError(err.code ?? Code.UNKNOWN, details);
}
