/**
 * The one module that touches `@grpc/grpc-js`: typed servers and clients for
 * protobuf-es service descriptors, and the single error-to-status mapping.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { createServer, isIP, type Server as NetServer, type Socket } from "node:net";
import {
  checkServerIdentity,
  connect as tlsConnect,
  createSecureContext,
  createServer as createTlsServer,
  type SecureContext,
  type TLSSocket,
} from "node:tls";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
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
import {
  isLoopbackPeer,
  ReflectionIndex,
  type ReflectionProtocol,
  reflectionProtocols,
  type ReflectionRequest,
} from "./reflection.ts";

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

/** TLS for an {@linkcode RpcServer}: PEM texts, not file names. */
export interface RpcServerTls {
  /** The server's certificate (chain), PEM. */
  cert: string;
  /** The certificate's private key, PEM (unencrypted). */
  key: string;
  /**
   * CA certificate(s), PEM. When set, every client must present a certificate
   * signed by one of them (mutual TLS); a client without one is refused in the handshake.
   */
  ca?: string;
}

/** Options for {@linkcode RpcServer}. */
export interface RpcServerOptions {
  /** Called with errors that map to INTERNAL or UNKNOWN, i.e. bugs rather than refusals. */
  onInternalError?: (err: unknown, method: string) => void;
  /** Serve TLS only (ALPN `h2`); without it the server speaks plaintext HTTP/2. */
  tls?: RpcServerTls;
  /**
   * The largest request message accepted, in bytes (16 MiB by default); a
   * larger one fails with RESOURCE_EXHAUSTED.
   */
  maxReceiveBytes?: number;
  /**
   * Serve gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), describing
   * every service added, so that `grpcurl` and the like need no .proto files.
   * Off unless set. Callers on loopback (or a unix socket) are always let in;
   * any other caller only when `admit` returns for its call (throw an error,
   * e.g. PERMISSION_DENIED, to refuse it); without `admit`, loopback only.
   */
  reflection?: RpcReflectionOptions;
}

/** Who may use server reflection; see {@linkcode RpcServerOptions.reflection}. */
export interface RpcReflectionOptions {
  /** Called once per reflection stream from a caller not on loopback; throws to refuse it. */
  admit?: (ctx: CallContext) => void | Promise<void>;
}

/**
 * A gRPC server hosting typed services.
 *
 * It owns its listening sockets (grpc-js only sees connections injected into
 * it) so that closing never sends an HTTP/2 GOAWAY: Deno 2.9's node:http2
 * client aborts the whole process in nghttp2 when a GOAWAY reaches an idle
 * session (denoland/deno#36788), and every fsb server's peers are Deno
 * processes. Close waits for calls in flight, then drops the connections.
 *
 * With TLS the listening socket is a `node:tls` server and what is injected is
 * the decrypted `TLSSocket`, through a plaintext injector: Deno's node:http2
 * secure server does not wrap injected sockets in TLS (it would speak
 * plaintext HTTP/2 on them).
 */
export class RpcServer {
  #server: grpc.Server;
  #opts: RpcServerOptions;
  #net: NetServer | undefined;
  #sockets = new Set<Socket>();
  #inFlight = 0;
  #idle: (() => void) | undefined;
  #services: DescService[] = [];
  #reflection: ReflectionIndex | undefined;

  /** Creates an idle server; add services, then {@linkcode RpcServer.listen}. */
  constructor(opts: RpcServerOptions = {}) {
    if (opts.tls !== undefined) checkTlsPems("server", opts.tls);
    const maxReceiveBytes = opts.maxReceiveBytes ?? 16 * 1024 * 1024;
    if (!Number.isSafeInteger(maxReceiveBytes) || maxReceiveBytes <= 0) {
      throw new Error(`maxReceiveBytes must be a positive integer, got ${maxReceiveBytes}`);
    }
    this.#server = new grpc.Server({
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.max_receive_message_length": maxReceiveBytes,
    });
    this.#opts = opts;
    if (opts.reflection !== undefined) {
      for (const protocol of reflectionProtocols()) this.#addReflection(protocol, opts.reflection);
    }
  }

  /** Registers `impl` for `service`. */
  add<S extends GenServiceMethods>(service: GenService<S>, impl: ServiceImpl<S>): void {
    this.#services.push(service);
    this.#reflection = undefined;
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

  /**
   * Registers one version of the reflection service, straight with grpc-js:
   * it is the only bidirectional stream a server hosts, so RpcServer has no
   * general bidi support.
   */
  #addReflection(protocol: ReflectionProtocol, opts: RpcReflectionOptions): void {
    const { service, request, response } = protocol;
    this.#services.push(service);
    const method = service.methods[0];
    const path = methodPath(service, method.name);
    this.#server.addService({
      [method.localName]: {
        path,
        requestStream: true,
        responseStream: true,
        requestSerialize: serializer(request) as grpc.serialize<unknown>,
        requestDeserialize: deserializer(request),
        responseSerialize: serializer(response) as grpc.serialize<unknown>,
        responseDeserialize: deserializer(response),
      },
    }, { [method.localName]: this.#reflectionHandler(path, opts) });
  }

  #reflectionHandler(
    path: string,
    opts: RpcReflectionOptions,
  ): grpc.handleBidiStreamingCall<unknown, unknown> {
    // Events rather than `for await`: ending a Readable's async iteration
    // destroys the stream, and then the call's status is never sent.
    return (call) => {
      const ctl = new AbortController();
      const ctx: CallContext = { signal: ctl.signal, metadata: metadataRecord(call.metadata) };
      this.#enter();
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        this.#leave();
      };
      const fail = (err: unknown) => {
        if (finished) return;
        this.#report(err, path);
        // emit("error") sends the status; destroy() would cut the stream without one.
        call.emit("error", toServiceError(err));
        finish();
      };
      call.on("cancelled", () => {
        ctl.abort(new RpcError(Code.CANCELLED, "call cancelled"));
        finish();
      });
      // Nothing is read before the caller is admitted.
      call.pause();
      const admitted = isLoopbackPeer(call.getPeer())
        ? Promise.resolve()
        : opts.admit === undefined
        ? Promise.reject(
          new RpcError(
            Code.PERMISSION_DENIED,
            "server reflection is served to callers on loopback only",
          ),
        )
        : Promise.resolve().then(() => opts.admit!(ctx));
      admitted.then(() => {
        if (finished) return;
        const index = this.#reflection ??= new ReflectionIndex(this.#services);
        const sent = new Set<string>();
        call.on("data", (req: unknown) => {
          if (finished) return;
          let answer;
          try {
            answer = index.answer(req as ReflectionRequest, sent);
          } catch (err) {
            fail(err);
            return;
          }
          if (!call.write(answer)) {
            call.pause();
            call.once("drain", () => call.resume());
          }
        });
        call.on("end", () => {
          if (finished) return;
          call.end();
          finish();
        });
        call.resume();
      }, fail);
    };
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
    const track = (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      socket.on("error", () => socket.destroy());
    };
    // A connection silent this long (no calls, no keepalive pings) is dropped,
    // so half-open or stalled connections cannot pile up.
    const serve = (socket: Socket) => {
      socket.setTimeout(IDLE_SOCKET_MS, () => socket.destroy());
      injector.injectConnection(socket);
    };
    const tls = this.#opts.tls;
    let net: NetServer;
    if (tls === undefined) {
      net = createServer((socket) => {
        track(socket);
        socket.setNoDelay(true);
        serve(socket);
      });
    } else {
      net = createTlsServer({
        cert: tls.cert,
        key: tls.key,
        ca: tls.ca,
        requestCert: tls.ca !== undefined,
        rejectUnauthorized: tls.ca !== undefined,
        ALPNProtocols: ["h2"],
        handshakeTimeout: TLS_HANDSHAKE_MS,
      }, (socket: TLSSocket) => {
        track(socket);
        serve(socket);
      });
      // The raw TCP socket, tracked from accept so that close() also drops handshakes in progress.
      net.on("connection", (socket: Socket) => {
        track(socket);
        socket.setNoDelay(true);
      });
      // A failed handshake (plaintext client, untrusted or missing client certificate, timeout).
      net.on("tlsClientError", (_err: Error, socket: TLSSocket) => socket.destroy());
    }
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

/** A TLS handshake takes a round trip or two; one not done by then is stalled or hostile. */
const TLS_HANDSHAKE_MS = 10_000;

/**
 * Fails fast on PEM texts that cannot work: node:tls in Deno accepts anything
 * when the context is made and only fails each handshake later.
 */
function checkTlsPems(
  side: "server" | "client",
  tls: { cert?: string; key?: string; ca?: string },
) {
  let cert: X509Certificate | undefined;
  if (tls.cert !== undefined) {
    try {
      cert = new X509Certificate(tls.cert);
    } catch (err) {
      throw new Error(
        `TLS ${side} certificate is not a PEM certificate: ${(err as Error).message}`,
      );
    }
  }
  if (tls.key !== undefined) {
    let key;
    try {
      key = createPrivateKey(tls.key);
    } catch (err) {
      throw new Error(`TLS ${side} key is not a PEM private key: ${(err as Error).message}`);
    }
    if (cert !== undefined && !cert.checkPrivateKey(key)) {
      throw new Error(`TLS ${side} key does not match the ${side} certificate`);
    }
  }
  if (tls.ca !== undefined) {
    try {
      new X509Certificate(tls.ca);
    } catch (err) {
      throw new Error(`TLS CA is not a PEM certificate: ${(err as Error).message}`);
    }
  }
}

type UnaryFn = (req: unknown, ctx: CallContext) => unknown;
type StreamFn = (req: unknown, ctx: CallContext) => AsyncIterable<unknown>;

/** TLS for an {@linkcode RpcChannel}: PEM texts, not file names. */
export interface RpcChannelTls {
  /** CA certificate(s) the server's certificate must chain to, PEM; the default roots when unset. */
  ca?: string;
  /** A client certificate (chain), PEM, for servers that require one (mutual TLS); needs `key`. */
  cert?: string;
  /** The client certificate's private key, PEM (unencrypted); needs `cert`. */
  key?: string;
  /**
   * The name the server's certificate must carry, when it differs from the
   * address's host (a DNS name or an IP address). Also sent as SNI when it is a DNS name.
   */
  serverName?: string;
}

/** Options for {@linkcode RpcChannel}. */
export interface RpcChannelOptions {
  /** Metadata sent with every call (e.g. containerd's namespace). */
  metadata?: Record<string, string>;
  /** Default per-call timeout in milliseconds. */
  timeoutMs?: number;
  /** Connect over TLS (ALPN `h2`), verifying the server's certificate; plaintext when unset. */
  tls?: RpcChannelTls;
}

/** One connection to a server, shared by the typed clients made from it. */
export class RpcChannel {
  #client: grpc.Client;
  #opts: RpcChannelOptions;
  #tls: TlsChannelCredentials | undefined;
  readonly address: string;

  /** Connects lazily to `address` (`HOST:PORT` or `unix:///path`). */
  constructor(address: string, opts: RpcChannelOptions = {}) {
    this.address = address;
    this.#opts = opts;
    this.#tls = opts.tls === undefined
      ? undefined
      : new TlsChannelCredentials(opts.tls, opts.tls.serverName ?? hostOf(address));
    this.#client = new grpc.Client(address, this.#tls ?? grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.keepalive_time_ms": 30_000,
      "grpc.enable_retries": 0,
    });
  }

  #metadata(opts?: CallOptions): grpc.Metadata {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(this.#opts.metadata ?? {})) md.set(k, v);
    for (const [k, v] of Object.entries(opts?.metadata ?? {})) md.set(k, v);
    return md;
  }

  #callOptions(opts: CallOptions | undefined): grpc.CallOptions {
    const timeoutMs = opts?.timeoutMs ?? this.#opts.timeoutMs;
    return timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
  }

  /** Waits until the channel is connected, or rejects with UNAVAILABLE after `timeoutMs`. */
  ready(timeoutMs: number): Promise<void> {
    const started = Date.now();
    return new Promise((resolve, reject) => {
      this.#client.waitForReady(started + timeoutMs, (err) => {
        if (!err) {
          resolve();
          return;
        }
        // waitForReady only says "Failed to connect before the deadline"; a handshake
        // that failed meanwhile says why.
        const failed = this.#tls?.lastFailure;
        const reason = failed !== undefined && failed.at >= started
          ? nodeTlsReason(failed.error.message) ?? failed.error.message
          : undefined;
        reject(
          new RpcError(
            Code.UNAVAILABLE,
            reason === undefined
              ? this.#unreachable(err.message)
              : `Cannot reach ${this.address} over TLS: ${reason}`,
          ),
        );
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
        this.#metadata(opts),
        this.#callOptions(opts),
        (err, value) => err ? reject(this.#error(err)) : resolve(value),
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
      this.#metadata(opts),
      this.#callOptions(opts),
    );
    const onAbort = () => call.cancel();
    opts?.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const item of call) yield item;
    } catch (err) {
      if ((err as grpc.ServiceError).code === Code.CANCELLED && opts?.signal?.aborted) return;
      throw this.#error(err as grpc.ServiceError);
    } finally {
      opts?.signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  /** Closes the connection; calls in flight fail with CANCELLED or UNAVAILABLE. */
  close(): void {
    this.#client.close();
  }

  #error(err: grpc.ServiceError): RpcError {
    const out = fromServiceError(err);
    if (out.code !== Code.UNAVAILABLE || this.#tls === undefined) return out;
    const message = this.#unreachable(out.message);
    return message === out.message ? out : new RpcError(Code.UNAVAILABLE, message);
  }

  /**
   * Names TLS and the endpoint when a connection failed in the handshake: grpc-js
   * reports "No connection established. Last error: Error: <node:tls message>".
   */
  #unreachable(message: string): string {
    const m =
      /Last error: (?:Error(?: \[\w+\])?: )?(.*?)(?: \(\d{4}-\d\d-\d\dT[^)]*\))?\. Resolution note: ?/
        .exec(message);
    const cause = m?.[1];
    if (this.#tls !== undefined && cause !== undefined) {
      const reason = nodeTlsReason(cause);
      if (reason !== undefined) return `Cannot reach ${this.address} over TLS: ${reason}`;
    }
    return `Cannot reach ${this.address}: ${message}`;
  }
}

/**
 * Plain language for the node:tls failures a misconfigured TLS hop shows (as
 * Deno 2.9's node:tls words them), or undefined for failures that are not TLS's.
 */
function nodeTlsReason(cause: string): string | undefined {
  if (
    /unable to verify the first certificate|unable to get (local )?issuer|self[- ]signed certificate/
      .test(cause)
  ) {
    return `certificate signed by an unknown authority (check --tls-ca): ${cause}`;
  }
  if (/does not match certificate's altnames|ERR_TLS_CERT_ALTNAME_INVALID/.test(cause)) {
    return `certificate not valid for this server's name: ${cause}`;
  }
  if (/certificate has expired|not yet valid/.test(cause)) return `server certificate: ${cause}`;
  if (/CertificateRequired/.test(cause)) {
    return `the server requires a client certificate (${cause})`;
  }
  if (
    /fatal alert: (BadCertificate|UnknownCA|CertificateUnknown|AccessDenied|DecryptError)/.test(
      cause,
    )
  ) {
    return `the server refused the client certificate (${cause})`;
  }
  if (
    /wrong version number|corrupt message|packet length too long|InvalidContentType/.test(cause)
  ) {
    return `the server does not speak TLS (${cause})`;
  }
  if (/TLS|SSL|certificate|handshake|alert/i.test(cause)) return cause;
  return undefined;
}

/**
 * The host part of a channel address (`HOST:PORT`, `[V6]:PORT`, `dns:///HOST:PORT`);
 * `localhost` for unix sockets, as grpc-js takes it.
 */
function hostOf(address: string): string {
  if (address.startsWith("unix:")) return "localhost";
  const target = address.replace(/^[a-z0-9+.-]+:\/\/[^/]*\//i, "");
  const i = target.lastIndexOf(":");
  const host = i < 0 || target.endsWith("]") ? target : target.slice(0, i);
  return host.replace(/^\[|\]$/g, "");
}

type SecureConnector = ReturnType<grpc.ChannelCredentials["_createSecureConnector"]>;

/**
 * Client TLS, done here rather than by `grpc.credentials.createSsl`: grpc-js
 * always passes the target host as `servername` (SNI), and Deno's node:tls
 * throws on an IP address there ("The property 'options.servername' must not
 * be an IP address"), so createSsl cannot reach `127.0.0.1:9090`. This sends
 * SNI only for DNS names and still verifies the certificate against the IP.
 */
class TlsChannelCredentials extends grpc.ChannelCredentials {
  readonly #context: SecureContext;
  readonly #name: string;
  /** The last handshake that failed, until one succeeds. */
  lastFailure: { error: Error; at: number } | undefined;

  constructor(tls: RpcChannelTls, name: string) {
    super();
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      throw new Error("A TLS client certificate and its key go together: give both or neither");
    }
    checkTlsPems("client", tls);
    this.#context = createSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key });
    this.#name = name;
  }

  override _isSecure(): boolean {
    return true;
  }

  override _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  override _createSecureConnector(
    _target: unknown,
    _options: unknown,
    callCredentials?: grpc.CallCredentials,
  ): SecureConnector {
    const context = this.#context;
    const name = this.#name;
    const servername = isIP(name) === 0 ? name : undefined;
    return {
      connect: (socket) =>
        new Promise((resolve, reject) => {
          let done = false;
          const fail = (error: Error) => {
            if (done) return;
            done = true;
            this.lastFailure = { error, at: Date.now() };
            reject(error);
          };
          const tlsSocket = tlsConnect({
            socket,
            secureContext: context,
            servername,
            ALPNProtocols: ["h2"],
            checkServerIdentity: (_host, cert) => checkServerIdentity(name, cert),
          }, () => {
            if (!tlsSocket.authorized) {
              fail(tlsSocket.authorizationError);
              tlsSocket.destroy();
              return;
            }
            done = true;
            this.lastFailure = undefined;
            resolve({ socket: tlsSocket, secure: true });
          });
          // Errors after the handshake are the HTTP/2 session's to report.
          tlsSocket.on("error", fail);
        }),
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => callCredentials ?? grpc.credentials.createEmpty(),
      destroy: () => {},
    };
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
