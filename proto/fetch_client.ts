/**
 * A light gRPC client over Deno's own `fetch` (HTTP/2 with prior knowledge),
 * for short-lived processes such as the CLI: it loads neither `@grpc/grpc-js`
 * nor `node:http2`, which together cost about 100 ms of start-up here.
 *
 * Limits, acceptable for the CLI: `fetch` hides HTTP trailers, so a status is
 * seen only when the server answers "trailers-only" (which is how grpc-js
 * reports a failed call that has sent nothing yet); a server stream that fails
 * after sending messages just ends. TCP endpoints only (`HOST:PORT`).
 *
 * Client and bidirectional streams are full duplex over the one HTTP/2
 * stream: the requests are the request body, pulled from the caller's
 * iterable only as fast as the connection takes them (HTTP/2 flow control,
 * so a server that reads slowly slows the caller down); the iterable's end
 * half-closes the call. A bidirectional call's first answer (or trailers-only
 * failure) can arrive before the caller has sent its last request.
 *
 * With `tlsCa` it speaks HTTP/2 over TLS (`https://`, ALPN `h2` only),
 * trusting that CA besides Deno's default roots, and reports handshake
 * failures in plain words.
 *
 * Services are described by hand-written codecs ({@linkcode LiteService}, e.g.
 * `fastpath_lite.ts`), not protobuf-es schemas: loading protobuf-es and the
 * generated code would cost the CLI another 45 ms of start-up.
 *
 * @module
 */
import type { LiteClient, LiteService } from "./lite_service.ts";
import { type CallOptions, Code, RpcError } from "./rpc.ts";
import { parseHostPort } from "./host_port.ts";

function frame(body: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5 + body.length);
  new DataView(out.buffer).setUint32(1, body.length);
  out.set(body, 5);
  return out;
}

/** Splits gRPC length-prefixed messages out of a byte stream. */
async function* messages(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  // Network chunks are kept as they come and joined once a whole message is
  // there: joining at every chunk copied a 1 MiB message some 30 times over.
  let parts: Uint8Array[] = [];
  let held = 0;
  let need = 5;
  const take = (n: number): Uint8Array => {
    const first = parts[0];
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) parts.shift();
      else parts[0] = first.subarray(n);
      held -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const part = parts[0];
      const used = Math.min(part.length, n - at);
      out.set(part.subarray(0, used), at);
      at += used;
      if (used === part.length) parts.shift();
      else parts[0] = part.subarray(used);
    }
    held -= n;
    return out;
  };
  let length = -1;
  for await (const chunk of body) {
    if (chunk.length === 0) continue;
    parts.push(chunk);
    held += chunk.length;
    while (held >= need) {
      if (length < 0) {
        const prefix = take(5);
        if (prefix[0] !== 0) {
          throw new RpcError(Code.INTERNAL, "Compressed gRPC messages are not supported");
        }
        length = new DataView(prefix.buffer, prefix.byteOffset, 5).getUint32(1);
        need = length;
        if (need > 0) continue;
      }
      yield length === 0 ? new Uint8Array(0) : take(length);
      length = -1;
      need = 5;
    }
  }
  if (held > 0 || length >= 0) {
    throw new RpcError(Code.INTERNAL, "Truncated gRPC message in the response");
  }
  parts = [];
}

function statusOf(res: Response): RpcError | undefined {
  const status = res.headers.get("grpc-status");
  if (status !== null && status !== "0") {
    const message = res.headers.get("grpc-message") ?? "";
    let decoded = message;
    try {
      decoded = decodeURIComponent(message);
    } catch {
      // Not percent-encoded after all: show it as sent.
    }
    return new RpcError(Number(status), decoded);
  }
  if (res.status !== 200) {
    return new RpcError(Code.UNKNOWN, `Unexpected HTTP status ${res.status} from a gRPC server`);
  }
  return undefined;
}

/**
 * The requests of a client or bidirectional stream as a fetch request body:
 * each request is taken from the caller's iterable and framed only when fetch
 * asks for more (no read-ahead of its own), so the connection's flow control
 * reaches back to the caller. It owns the iterator: when the call is over it
 * stops pulling, closes the body and calls the iterator's `return()`.
 */
class RequestPump {
  readonly body: ReadableStream<Uint8Array>;
  readonly #codec: Codec<unknown>;
  readonly #reqs: AsyncIterable<unknown>;
  readonly #abort = new AbortController();
  #iterator: AsyncIterator<unknown> | undefined;
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  #stopped = false;
  /** Set when the caller's iterable threw, or a request could not be encoded. */
  failure: { readonly error: unknown } | undefined;

  constructor(codec: Codec<unknown>, reqs: AsyncIterable<unknown>) {
    this.#codec = codec;
    this.#reqs = reqs;
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: (controller) => this.#pull(controller),
      cancel: () => this.stop(),
      // Nothing is pulled before fetch reads: the connection sets the pace.
    }, { highWaterMark: 0 });
  }

  /** Aborted when the requests failed: the call is cancelled with them. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  async #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    if (this.#stopped) return;
    this.#iterator ??= this.#reqs[Symbol.asyncIterator]();
    let next: IteratorResult<unknown>;
    try {
      next = await this.#iterator.next();
    } catch (error) {
      // An iterator that threw is finished: no return() for it.
      this.#iterator = undefined;
      this.#fail(error);
      return;
    }
    if (this.#stopped) return; // The call ended while the caller made this request.
    if (next.done === true) {
      this.#iterator = undefined;
      this.stop(); // The half-close.
      return;
    }
    let bytes: Uint8Array;
    try {
      bytes = encode(this.#codec, next.value);
    } catch (error) {
      this.#fail(error);
      return;
    }
    controller.enqueue(frame(bytes));
  }

  #fail(error: unknown): void {
    if (this.#stopped) return;
    this.failure = { error };
    this.stop();
    this.#abort.abort(error);
  }

  /**
   * Ends the request body (at once, even while the caller is still making a
   * request) and lets go of the iterator. Not waiting for its `return()`: a
   * generator busy in `next()` (waiting for input) answers only after that.
   */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      this.#controller?.close();
    } catch {
      // Already closed or cancelled by fetch.
    }
    const iterator = this.#iterator;
    this.#iterator = undefined;
    if (iterator?.return === undefined) return;
    try {
      iterator.return().catch(() => {});
    } catch {
      // A return() that throws at once has nothing more to clean up either.
    }
  }
}

/** The part of a {@linkcode LiteService} method a call needs. */
interface Codec<O> {
  readonly encode: (req: never) => Uint8Array;
  readonly decode: (bytes: Uint8Array) => O;
}

// A request the codec cannot write, or an answer it cannot read, is INTERNAL,
// as grpc-js reports them, and never passes for a connection failure.
function encode(codec: Codec<unknown>, req: unknown): Uint8Array {
  try {
    // The client's signature already holds `req` to the method's request type.
    return codec.encode(req as never);
  } catch (err) {
    throw new RpcError(
      Code.INTERNAL,
      `Request message serialization failure: ${(err as Error).message}`,
    );
  }
}

function decode<O>(codec: Codec<O>, bytes: Uint8Array): O {
  try {
    return codec.decode(bytes);
  } catch (err) {
    throw new RpcError(Code.INTERNAL, `Response message parsing error: ${(err as Error).message}`);
  }
}

/** Options for {@linkcode FetchChannel}. */
export interface FetchChannelOptions {
  /** Default per-call timeout in milliseconds. */
  timeoutMs?: number;
  /** Sent with every call (e.g. `authorization`). */
  metadata?: Readonly<Record<string, string>>;
  /**
   * Connect over TLS, trusting this CA certificate (PEM text; Deno's default
   * roots stay trusted too) for the server's certificate; plaintext HTTP/2 when unset.
   */
  tlsCa?: string;
  /** A client certificate (PEM) for servers that require mutual TLS; needs `tlsCa`, `tlsKey`. */
  tlsCert?: string;
  /** The client certificate's private key (PEM). */
  tlsKey?: string;
}

/** One HTTP/2 connection to a gRPC server, shared by the clients made from it. */
export class FetchChannel {
  readonly address: string;
  readonly #http: Deno.HttpClient;
  /** `http://HOST:PORT`, or `https://` with TLS. */
  readonly #origin: string;
  readonly #tls: boolean;
  readonly #timeoutMs: number | undefined;
  /** Sent with every call (e.g. `authorization`). */
  readonly #metadata: Readonly<Record<string, string>>;
  #connectError: string | undefined;

  /** Prepares a channel to `address` (`HOST:PORT`); it connects on first use. */
  constructor(address: string, opts: FetchChannelOptions = {}) {
    if (address.startsWith("unix:")) {
      throw new RpcError(Code.INVALID_ARGUMENT, `FetchChannel needs HOST:PORT, got ${address}`);
    }
    const { tlsCa, tlsCert, tlsKey } = opts;
    if ((tlsCert === undefined) !== (tlsKey === undefined)) {
      throw new RpcError(
        Code.INVALID_ARGUMENT,
        "A TLS client certificate and its key go together: give both or neither",
      );
    }
    if (tlsCert !== undefined && tlsCa === undefined) {
      throw new RpcError(Code.INVALID_ARGUMENT, "A TLS client certificate needs tlsCa");
    }
    // Deno takes any text here and only fails each handshake later, as an unknown authority.
    if (tlsCa !== undefined && !tlsCa.includes("-----BEGIN CERTIFICATE-----")) {
      throw new RpcError(Code.INVALID_ARGUMENT, "The TLS CA is not a PEM certificate");
    }
    this.address = address;
    this.#tls = tlsCa !== undefined;
    // One client per channel: its connection pool holds the one HTTP/2 connection all calls share.
    this.#http = tlsCa === undefined
      ? Deno.createHttpClient({ http1: false, http2: true })
      : Deno.createHttpClient({
        http1: false,
        http2: true,
        caCerts: [tlsCa],
        ...(tlsCert === undefined || tlsKey === undefined ? {} : { cert: tlsCert, key: tlsKey }),
      });
    this.#origin = `${this.#tls ? "https" : "http"}://${address}`;
    this.#timeoutMs = opts.timeoutMs;
    this.#metadata = opts.metadata ?? {};
  }

  /** Resolves once a TCP connection can be made, or rejects with UNAVAILABLE after `timeoutMs`. */
  async ready(timeoutMs: number): Promise<void> {
    const { host: hostname, port } = parseHostPort(this.address, { what: "endpoint" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const conn = await Promise.race([
        Deno.connect({ hostname, port }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
      conn.close();
    } catch (err) {
      throw new RpcError(
        Code.UNAVAILABLE,
        `Cannot connect to ${this.address}: ${(err as Error).message}`,
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** A typed client for `service` over this channel. */
  client<S extends LiteService>(service: S): LiteClient<S> {
    const out: Record<string, unknown> = {};
    for (const [localName, method] of Object.entries(service.methods)) {
      const url = `${this.#origin}/${service.typeName}/${method.name}`;
      switch (method.kind) {
        case "unary":
          out[localName] = (req: unknown, opts?: CallOptions) =>
            this.#unary(url, method, req, opts);
          break;
        case "server_streaming":
          out[localName] = (req: unknown, opts?: CallOptions) =>
            this.#stream(url, method, req, opts);
          break;
        case "client_streaming":
          out[localName] = (reqs: AsyncIterable<unknown>, opts?: CallOptions) =>
            this.#clientStream(url, method, reqs, opts);
          break;
        case "bidi_streaming":
          out[localName] = (reqs: AsyncIterable<unknown>, opts?: CallOptions) =>
            this.#bidiStream(url, method, reqs, opts);
          break;
      }
    }
    return out as LiteClient<S>;
  }

  /**
   * Sends a call and resolves to its response once the server's headers
   * arrived. With a `pump`, the body is its stream of requests, sent while
   * the answer comes, and a failure of the requests is what the call fails with.
   */
  async #call(
    url: string,
    body: Uint8Array | RequestPump,
    opts: CallOptions | undefined,
  ): Promise<Response> {
    const pump = body instanceof RequestPump ? body : undefined;
    const timeoutMs = opts?.timeoutMs ?? this.#timeoutMs;
    const signals: AbortSignal[] = [];
    if (opts?.signal) signals.push(opts.signal);
    if (timeoutMs !== undefined) signals.push(AbortSignal.timeout(timeoutMs));
    if (pump !== undefined) signals.push(pump.signal);
    const headers: Record<string, string> = {
      ...this.#metadata,
      "content-type": "application/grpc",
      te: "trailers",
    };
    if (timeoutMs !== undefined) headers["grpc-timeout"] = `${Math.max(1, Math.ceil(timeoutMs))}m`;
    try {
      const res = await fetch(url, {
        method: "POST",
        client: this.#http,
        headers,
        body: pump === undefined ? frame(body as Uint8Array) : pump.body,
        // Deno's fetch sends the body while the answer comes in, over HTTP/2 both ways at once.
        ...(pump === undefined ? {} : { duplex: "half" }),
        signal: signals.length === 0 ? undefined : AbortSignal.any(signals),
      });
      const err = statusOf(res);
      if (err !== undefined) {
        await res.body?.cancel();
        throw err;
      }
      return res;
    } catch (err) {
      throw this.#callError(err, pump);
    }
  }

  /** The error a call fails with: its requests' own failure first, else the transport's. */
  #callError(err: unknown, pump: RequestPump | undefined): unknown {
    return pump?.failure !== undefined ? pump.failure.error : this.#transportError(err);
  }

  #transportError(err: unknown): RpcError {
    if (err instanceof RpcError) return err;
    if (err instanceof DOMException && err.name === "TimeoutError") {
      return new RpcError(Code.DEADLINE_EXCEEDED, "Deadline exceeded");
    }
    if (err instanceof DOMException && err.name === "AbortError") {
      return new RpcError(Code.CANCELLED, "Call cancelled");
    }
    // fetch says "fetch failed" and hides the socket error in `cause`, after the URL and layers.
    const cause = err instanceof Error && err.cause instanceof Error
      ? err.cause.message
      : undefined;
    const full = cause ?? (err instanceof Error ? err.message : String(err));
    const tlsReason = this.#tls ? rustlsReason(full) : undefined;
    const message = cause === undefined ? full : lastPart(cause).replace(/ \(os error \d+\)$/, "");
    // Calls queued on a connection that failed are "canceled"; they failed for the same reason.
    if (/canceled/.test(message) && this.#connectError !== undefined) {
      return new RpcError(Code.UNAVAILABLE, this.#connectError);
    }
    if (tlsReason !== undefined) {
      this.#connectError = `Cannot reach ${this.address} over TLS: ${tlsReason}`;
    } else if (!this.#tls && /frame with invalid size/.test(message)) {
      // A TLS server's alert record, read as an HTTP/2 frame header, is a frame of over 1 MiB.
      this.#connectError = `Cannot connect to ${this.address}: ${message} ` +
        "(the server may require TLS: check --tls-ca)";
    } else {
      this.#connectError = `Cannot connect to ${this.address}: ${message}`;
    }
    return new RpcError(Code.UNAVAILABLE, this.#connectError);
  }

  // decode() throws RpcError, which #transportError passes on as it is.
  async #unary<O>(
    url: string,
    codec: Codec<O>,
    req: unknown,
    opts: CallOptions | undefined,
  ): Promise<O> {
    const res = await this.#call(url, encode(codec, req), opts);
    let answer: { readonly value: O } | undefined;
    try {
      // Read to the end of the stream, past the response: a body dropped before the trailers
      // came makes fetch reset the stream (RST_STREAM), a small write of its own that, on a
      // socket fetch leaves with Nagle on, held the next call's request back until the
      // server's delayed ACK: 40-45 ms stalls on a third of back-to-back calls.
      for await (const msg of messages(res.body!)) answer ??= { value: decode(codec, msg) };
    } catch (err) {
      throw this.#transportError(err);
    }
    if (answer !== undefined) return answer.value;
    throw new RpcError(
      Code.UNKNOWN,
      "The server ended the call without a response or a visible status",
    );
  }

  async *#stream<O>(
    url: string,
    codec: Codec<O>,
    req: unknown,
    opts: CallOptions | undefined,
  ): AsyncGenerator<O> {
    const res = await this.#call(url, encode(codec, req), opts);
    try {
      for await (const msg of messages(res.body!)) yield decode(codec, msg);
    } catch (err) {
      const e = this.#transportError(err);
      if (e.code === Code.CANCELLED && opts?.signal?.aborted) return;
      throw e;
    }
  }

  async #clientStream<O>(
    url: string,
    codec: Codec<O>,
    reqs: AsyncIterable<unknown>,
    opts: CallOptions | undefined,
  ): Promise<O> {
    const pump = new RequestPump(codec, reqs);
    try {
      const res = await this.#call(url, pump, opts);
      let answer: { readonly value: O } | undefined;
      try {
        // To the end of the stream, as in #unary: no reset that stalls the next call.
        for await (const msg of messages(res.body!)) answer ??= { value: decode(codec, msg) };
      } catch (err) {
        throw this.#callError(err, pump);
      }
      if (answer !== undefined) return answer.value;
      throw new RpcError(
        Code.UNKNOWN,
        "The server ended the call without a response or a visible status",
      );
    } finally {
      pump.stop();
    }
  }

  async *#bidiStream<O>(
    url: string,
    codec: Codec<O>,
    reqs: AsyncIterable<unknown>,
    opts: CallOptions | undefined,
  ): AsyncGenerator<O> {
    const pump = new RequestPump(codec, reqs);
    try {
      const res = await this.#call(url, pump, opts);
      try {
        for await (const msg of messages(res.body!)) yield decode(codec, msg);
      } catch (err) {
        const e = this.#callError(err, pump);
        // As with server streams: the caller's own abort ends the answers quietly.
        if (e instanceof RpcError && e.code === Code.CANCELLED && opts?.signal?.aborted) return;
        throw e;
      }
    } finally {
      pump.stop();
    }
  }

  /** Closes the connection. */
  close(): void {
    this.#http.close();
  }
}

/**
 * Plain words for the TLS failures Deno's fetch (hyper and rustls) reports, or
 * undefined when `cause` is not a TLS failure (a refused connection, a reset).
 */
function rustlsReason(cause: string): string | undefined {
  const cert = /invalid peer certificate: (.*)$/.exec(cause)?.[1];
  if (cert !== undefined) {
    if (/^UnknownIssuer/.test(cert)) {
      return "certificate signed by an unknown authority (check --tls-ca)";
    }
    if (/CaUsedAsEndEntity/.test(cert)) {
      return "the server presents a CA (self-signed?) certificate; it needs one signed by the CA " +
        "in --tls-ca";
    }
    if (/^(Expired|NotValidYet)/.test(cert)) {
      return `the server's certificate is expired or not yet valid (${cert})`;
    }
    if (/not valid for name|NotValidForName/.test(cert)) {
      return `the server's ${cert}`;
    }
    if (/^Revoked/.test(cert)) return "the server's certificate is revoked";
    return `invalid server certificate: ${cert}`;
  }
  if (/received fatal alert: CertificateRequired/.test(cause)) {
    return "the server requires a client certificate";
  }
  const alert = /received fatal alert: (\w+)/.exec(cause)?.[1];
  if (alert !== undefined) {
    return /Certificate|UnknownCA|AccessDenied|DecryptError/.test(alert)
      ? `the server refused the client certificate (TLS alert ${alert})`
      : `the server ended the TLS handshake (TLS alert ${alert})`;
  }
  if (/peer closed connection without sending TLS close_notify/.test(cause)) {
    return "the server closed the connection during the TLS handshake (does it refuse the client " +
      "certificate?)";
  }
  if (/corrupt message|InvalidContentType|InvalidMessage|peer is incompatible/.test(cause)) {
    return `the server does not speak TLS here (${lastPart(cause)})`;
  }
  if (/NoApplicationProtocol|ALPN/i.test(cause)) {
    return "the server does not offer HTTP/2 (ALPN h2) over TLS";
  }
  return undefined;
}

/** What follows the last ": " of an error chain's text (all of it when there is none). */
function lastPart(text: string): string {
  const at = text.lastIndexOf(": ");
  return at < 0 ? text : text.slice(at + 2);
}
