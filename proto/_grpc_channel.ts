/**
 * {@linkcode RpcChannel}: typed clients over one grpc-js connection. Private
 * to `proto/`; `grpc.ts` exports it.
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { type CallOptions, Code, RpcError, type ServiceClient } from "./rpc.ts";
import { deserializer, methodPath, serializer } from "./_grpc_codec.ts";
import { pumpRequests } from "./_grpc_request_pump.ts";
import { nodeTlsReason, type RpcChannelTls, TlsChannelCredentials } from "./_grpc_tls.ts";
import { FLOW_CONTROL_WINDOW } from "./_grpc_windows.ts";

/** Options for {@linkcode RpcChannel}. */
export interface RpcChannelOptions {
  /** Metadata sent with every call (e.g. containerd's namespace). */
  metadata?: Record<string, string>;
  /** Default per-call timeout in milliseconds. */
  timeoutMs?: number;
  /** Connect over TLS (ALPN `h2`), verifying the server's certificate; plaintext when unset. */
  tls?: RpcChannelTls;
  /**
   * Milliseconds between keepalive pings while calls are in flight, to find a
   * dead peer; 30 s unless told, 0 for none. Go gRPC servers (containerd)
   * allow one ping per 5 minutes by default and answer more with a GOAWAY
   * that fails the calls in flight: a quiet 130 s exec lost its exit status
   * so. A local unix socket needs none.
   */
  keepaliveMs?: number;
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
      ...(opts.keepaliveMs === 0 ? {} : { "grpc.keepalive_time_ms": opts.keepaliveMs ?? 30_000 }),
      "grpc.enable_retries": 0,
      // What the server may send before we read, as for RpcServer's peers.
      "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW,
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
      const m: ClientMethod = {
        path: methodPath(service, method.name),
        ser: serializer(method.input) as (value: unknown) => Buffer,
        de: deserializer(method.output),
      };
      const kind = method.methodKind;
      out[method.localName] = kind === "unary"
        ? (req: unknown, opts?: CallOptions) => this.#unary(m, req, opts)
        : kind === "server_streaming"
        ? (req: unknown, opts?: CallOptions) => this.#stream(m, req, opts)
        : kind === "client_streaming"
        ? (reqs: AsyncIterable<unknown>, opts?: CallOptions) => this.#clientStream(m, reqs, opts)
        : (reqs: AsyncIterable<unknown>, opts?: CallOptions) => this.#bidi(m, reqs, opts);
    }
    return out as ServiceClient<S>;
  }

  #unary(m: ClientMethod, req: unknown, opts: CallOptions | undefined): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const call = this.#client.makeUnaryRequest(
        m.path,
        m.ser,
        m.de,
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
    m: ClientMethod,
    req: unknown,
    opts: CallOptions | undefined,
  ): AsyncGenerator<unknown> {
    const call = this.#client.makeServerStreamRequest(
      m.path,
      m.ser,
      m.de,
      req,
      this.#metadata(opts),
      this.#callOptions(opts),
    );
    const dropAbort = onAbort(opts?.signal, () => call.cancel());
    try {
      for await (const item of call) yield item;
    } catch (err) {
      if ((err as grpc.ServiceError).code === Code.CANCELLED && opts?.signal?.aborted) return;
      throw this.#error(err as grpc.ServiceError);
    } finally {
      dropAbort();
      call.cancel();
    }
  }

  async #clientStream(
    m: ClientMethod,
    reqs: AsyncIterable<unknown>,
    opts: CallOptions | undefined,
  ): Promise<unknown> {
    let answer!: (result: { err: grpc.ServiceError | null; value?: unknown }) => void;
    const answered = new Promise<{ err: grpc.ServiceError | null; value?: unknown }>((resolve) =>
      answer = resolve
    );
    const call = this.#client.makeClientStreamRequest(
      m.path,
      m.ser,
      m.de,
      this.#metadata(opts),
      this.#callOptions(opts),
      (err, value) => answer({ err, value }),
    );
    const pump = pumpRequests(call, reqs);
    const dropAbort = onAbort(opts?.signal, () => call.cancel());
    const { err, value } = await answered;
    pump.stop();
    dropAbort();
    if (pump.failure !== undefined) throw pump.failure.err;
    if (err) throw this.#error(err);
    return value;
  }

  /** Like #stream, the call starts when the responses are first pulled. */
  async *#bidi(
    m: ClientMethod,
    reqs: AsyncIterable<unknown>,
    opts: CallOptions | undefined,
  ): AsyncGenerator<unknown> {
    const call = this.#client.makeBidiStreamRequest(
      m.path,
      m.ser,
      m.de,
      this.#metadata(opts),
      this.#callOptions(opts),
    );
    const pump = pumpRequests(call, reqs);
    // The response side is done once its status arrived, even with responses still unread.
    call.once("status", () => pump.stop());
    const dropAbort = onAbort(opts?.signal, () => call.cancel());
    try {
      // A client call's Readable may be iterated: its status comes as an error or the end.
      for await (const item of call) yield item;
      if (pump.failure !== undefined) throw pump.failure.err;
    } catch (err) {
      if (pump.failure !== undefined) throw pump.failure.err;
      if ((err as grpc.ServiceError).code === Code.CANCELLED && opts?.signal?.aborted) return;
      throw this.#error(err as grpc.ServiceError);
    } finally {
      dropAbort();
      pump.stop();
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

/** Calls `fn` when `signal` aborts (at once if it has); returns what undoes that. */
function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (signal === undefined) return () => {};
  if (signal.aborted) {
    fn();
    return () => {};
  }
  signal.addEventListener("abort", fn, { once: true });
  return () => signal.removeEventListener("abort", fn);
}

/** A method's path and codecs, for RpcChannel's calls. */
interface ClientMethod {
  readonly path: string;
  readonly ser: (value: unknown) => Buffer;
  readonly de: (bytes: Buffer) => unknown;
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
