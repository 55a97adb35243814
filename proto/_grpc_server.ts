/**
 * {@linkcode RpcServer}: serves typed services over grpc-js on sockets it owns.
 * Private to `proto/`; `grpc.ts` exports it.
 *
 * @module
 */
import { parseHostPort } from "./host_port.ts";
import * as grpc from "@grpc/grpc-js";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { setImmediate } from "node:timers";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { type CallContext, Code, RpcError, type ServiceImpl, statusFromError } from "./rpc.ts";
import {
  isLoopbackPeer,
  ReflectionIndex,
  type ReflectionProtocol,
  reflectionProtocols,
  type ReflectionRequest,
} from "./reflection.ts";
import { deserializer, methodPath, serializer } from "./_grpc_codec.ts";
import type { RpcReflectionOptions, RpcServerOptions } from "./_grpc_server_options.ts";
import {
  type BidiFn,
  cancelReason,
  type ClientStreamFn,
  drainOrAbort,
  metadataRecord,
  type OpenCall,
  peerOf,
  requestStream,
  type ServerCall,
  started,
  type StreamFn,
  toServiceError,
  type UnaryFn,
} from "./_grpc_server_calls.ts";
import { checkTlsPems, TLS_HANDSHAKE_MS } from "./_grpc_tls.ts";
import { widenServerWindows, widenSessionWindows } from "./_grpc_windows.ts";
import { withoutClientGoaway } from "./_goaway_filter.ts";

/**
 * A gRPC server hosting typed services.
 *
 * It owns its listening sockets (grpc-js only sees connections injected into
 * it) so that closing never sends an HTTP/2 GOAWAY: Deno 2.9's node:http2
 * client aborts the whole process in nghttp2 when a GOAWAY reaches an idle
 * session (denoland/deno#36788), and every fsb server's peers are Deno
 * processes. Close waits for calls in flight, then drops the connections.
 *
 * Streaming calls of every kind are served. A request stream is pulled (see
 * {@linkcode ServiceImpl}); responses are written as fast as the client reads
 * them. A streaming call's response headers go out with its first response
 * message, or else with its status (trailers-only): a client that cannot read
 * trailers (Deno's fetch) then still sees an error raised before any response.
 * Deno's fetch sends a request body before the response headers arrive, so
 * it is not held up by this.
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
  /** Calls in flight by peer, as grpc-js names a call's peer (see peerOf). */
  #callsByPeer = new Map<string, number>();
  #idleSocketMs: number;
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
    this.#idleSocketMs = opts.idleSocketMs ?? IDLE_SOCKET_MS;
    if (!Number.isSafeInteger(this.#idleSocketMs) || this.#idleSocketMs <= 0) {
      throw new Error(`idleSocketMs must be a positive integer, got ${this.#idleSocketMs}`);
    }
    this.#server = new grpc.Server({
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.max_receive_message_length": maxReceiveBytes,
    });
    widenServerWindows(this.#server);
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
      const kind = method.methodKind;
      definition[method.localName] = {
        path,
        requestStream: kind === "client_streaming" || kind === "bidi_streaming",
        responseStream: kind === "server_streaming" || kind === "bidi_streaming",
        requestSerialize: serializer(method.input) as grpc.serialize<unknown>,
        requestDeserialize: deserializer(method.input),
        responseSerialize: serializer(method.output) as grpc.serialize<unknown>,
        responseDeserialize: deserializer(method.output),
      };
      handlers[method.localName] = kind === "unary"
        ? this.#unaryHandler(path, fn as UnaryFn)
        : kind === "server_streaming"
        ? this.#streamHandler(path, fn as StreamFn)
        : kind === "client_streaming"
        ? this.#clientStreamHandler(path, fn as ClientStreamFn)
        : this.#bidiHandler(path, fn as BidiFn);
    }
    this.#server.addService(definition, handlers);
  }

  /** Registers one version of the reflection service, which has no generated descriptors. */
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
    }, { [method.localName]: this.#bidiHandler(path, this.#reflect(opts)) });
  }

  #reflect(opts: RpcReflectionOptions): BidiFn {
    const index = () => this.#reflection ??= new ReflectionIndex(this.#services);
    return async function* (reqs, ctx) {
      // Nothing is read before the caller is admitted.
      if (!isLoopbackPeer(ctx.peer)) {
        if (opts.admit === undefined) {
          throw new RpcError(
            Code.PERMISSION_DENIED,
            "server reflection is served to callers on loopback only",
          );
        }
        await opts.admit(ctx);
      }
      const answers = index();
      const sent = new Set<string>();
      for await (const req of reqs) yield answers.answer(req as ReflectionRequest, sent);
    };
  }

  #report(err: unknown, path: string): void {
    const { code } = statusFromError(err);
    if (code === Code.INTERNAL || code === Code.UNKNOWN) this.#opts.onInternalError?.(err, path);
  }

  /**
   * Counts a call in flight, for close() and for its connection's idle timeout,
   * until its handler is done (the function returned is called) and grpc-js has
   * closed the call: it reports "cancelled" once it has handed the status to
   * HTTP/2 (and on a real cancel), so that close() does not cut a status off.
   */
  #enter(call: ServerCall): () => void {
    const peer = call.getPeer();
    this.#inFlight++;
    this.#callsByPeer.set(peer, (this.#callsByPeer.get(peer) ?? 0) + 1);
    let handled = false;
    let closed = false;
    const leave = () => {
      const calls = this.#callsByPeer.get(peer)! - 1;
      if (calls > 0) this.#callsByPeer.set(peer, calls);
      else this.#callsByPeer.delete(peer);
      if (--this.#inFlight === 0) this.#idle?.();
    };
    call.once("cancelled", () => {
      closed = true;
      if (handled) leave();
    });
    return () => {
      if (handled) return;
      handled = true;
      if (closed) leave();
    };
  }

  /** Starts a streaming call: its context, and its place among the calls in flight. */
  #open(call: ServerCall): OpenCall {
    const ctl = new AbortController();
    const onCancel = () => ctl.abort(cancelReason(call));
    call.on("cancelled", onCancel);
    const done = this.#enter(call);
    return {
      ctx: { signal: ctl.signal, metadata: metadataRecord(call.metadata), peer: call.getPeer() },
      // grpc-js reports every call cancelled once its status is sent: from then on, that is no news.
      answered: () => {
        call.off("cancelled", onCancel);
        return !ctl.signal.aborted;
      },
      done,
    };
  }

  #unaryHandler(path: string, fn: UnaryFn): grpc.handleUnaryCall<unknown, unknown> {
    return (call, callback) => {
      const ctl = new AbortController();
      call.on("cancelled", () => ctl.abort(cancelReason(call)));
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
        const done = this.#enter(call);
        result.then(
          (value) => callback(null, value),
          (err) => {
            this.#report(err, path);
            callback(toServiceError(err));
          },
        ).finally(done);
      } else {
        callback(null, result);
      }
    };
  }

  #streamHandler(path: string, fn: StreamFn): grpc.handleServerStreamingCall<unknown, unknown> {
    return (call) => {
      const { ctx, answered, done } = this.#open(call);
      const responses = started(() => fn(call.request, ctx));
      this.#respond(call, responses, { path, ctx, answered, done });
    };
  }

  #clientStreamHandler(
    path: string,
    fn: ClientStreamFn,
  ): grpc.handleClientStreamingCall<unknown, unknown> {
    return (call, callback) => {
      const { ctx, answered, done } = this.#open(call);
      new Promise((resolve) => resolve(fn(requestStream(call, ctx.signal), ctx))).then(
        (value) => {
          if (answered()) callback(null, value);
        },
        (err) => {
          if (!answered()) return;
          this.#report(err, path);
          callback(toServiceError(err));
        },
      ).finally(done);
    };
  }

  #bidiHandler(path: string, fn: BidiFn): grpc.handleBidiStreamingCall<unknown, unknown> {
    return (call) => {
      const { ctx, answered, done } = this.#open(call);
      const responses = started(() => fn(requestStream(call, ctx.signal), ctx));
      this.#respond(call, responses, { path, ctx, answered, done });
    };
  }

  /**
   * Writes a handler's responses to `call` as fast as the client takes them,
   * then the status: OK at their end, or what the handler threw.
   */
  #respond(
    call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
    responses: AsyncIterable<unknown>,
    { path, ctx, answered, done }: OpenCall & { path: string },
  ): void {
    const write = async () => {
      for await (const item of responses) {
        if (ctx.signal.aborted) break;
        if (!call.write(item)) await drainOrAbort(call, ctx.signal);
      }
    };
    write().then(
      () => {
        if (answered()) call.end();
      },
      (err) => {
        if (!answered()) return;
        this.#report(err, path);
        // emit("error") sends the status; destroy() would cut the stream without one.
        call.emit("error", toServiceError(err));
      },
    ).finally(done);
  }

  /**
   * Binds `address` (`HOST:PORT`, port 0 picks a free one, or `unix:///path`)
   * and starts serving. Resolves to the bound address.
   */
  listen(address: string): Promise<string> {
    const injector = this.#server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    widenSessionWindows(this.#server);
    const track = (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      socket.on("error", () => socket.destroy());
    };
    // A connection silent this long with no call in flight is dropped, so that
    // half-open or stalled connections cannot pile up. One with a call in flight
    // is the call's to end; the traffic that ends the call restarts the idle time.
    // (Unix socket peers have no name: a call on one keeps them all.)
    const serve = (socket: Socket) => {
      const peer = peerOf(socket);
      socket.on("timeout", () => {
        if (!this.#callsByPeer.has(peer)) socket.destroy();
      });
      socket.setTimeout(this.#idleSocketMs);
      // Deno 2.9.6 crashes on a client's GOAWAY after many calls: see _goaway_filter.ts.
      injector.injectConnection(withoutClientGoaway(socket));
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
      let host: string;
      let port: number;
      try {
        ({ host, port } = parseHostPort(address, { listen: true, what: "listen address" }));
      } catch (err) {
        reject(new Error(`Cannot listen on ${address}: ${(err as Error).message}`));
        return;
      }
      net.listen({ host: host === "" ? "0.0.0.0" : host, port }, () => {
        const bound = net.address();
        const boundPort = typeof bound === "object" && bound !== null ? bound.port : port;
        resolve(address.slice(0, address.lastIndexOf(":") + 1) + boundPort);
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
    // Deno's node:http2 hands trailers to the connection in a setImmediate after
    // grpc-js sent them (and closed the call): the last statuses go out first.
    await new Promise((resolve) => setImmediate(resolve));
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    await closed;
    this.#server.forceShutdown();
  }
}

/** Our clients ping every 30 s, so only dead or stalled connections stay silent this long. */
const IDLE_SOCKET_MS = 5 * 60_000;
