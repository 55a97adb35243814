/**
 * The transport under `client.ts`: one FastPath client per endpoint, tried in
 * order while calls fail with UNAVAILABLE. TCP endpoints go over Deno's fetch
 * with the hand-written codecs (`proto/fetch_client.ts`,
 * `proto/fastpath_lite.ts`), which load neither grpc-js nor protobuf-es;
 * `unix:` endpoints, which fetch cannot dial, load grpc-js and the generated
 * schemas, on their first call only.
 *
 * @module
 */
import { type CallOptions, Code, RpcError } from "../proto/rpc.ts";
import { FetchChannel } from "../proto/fetch_client.ts";
import { FastPathLite, type FastPathLiteClient } from "../proto/fastpath_lite.ts";
import type { LiteMethodKind } from "../proto/lite_service.ts";

/** A FastPath client on one endpoint and the connection under it. */
interface Link {
  readonly client: FastPathLiteClient;
  ready(timeoutMs: number): Promise<void>;
  close(): void;
}

/** What {@linkcode Endpoints} needs to open its links. */
export interface EndpointsOptions {
  /** `HOST:PORT` or `unix:PATH` addresses, in the order they are tried. */
  readonly addresses: readonly string[];
  /** Sent with every call (`authorization`). */
  readonly metadata: Readonly<Record<string, string>>;
  /** PEM CA for TLS on TCP endpoints; cleartext when unset. */
  readonly tlsCa?: string;
}

type Methods = typeof FastPathLite.methods;
type NameOf<Kind extends LiteMethodKind> = {
  [K in keyof Methods]: Methods[K]["kind"] extends Kind ? K : never;
}[keyof Methods];
type UnaryName = NameOf<"unary">;
type StreamName = NameOf<"server_streaming">;
type ClientStreamName = NameOf<"client_streaming">;
type BidiName = NameOf<"bidi_streaming">;
/** The request of a call, or the request stream (an async iterable) of a client or bidi stream. */
type Req<K extends keyof FastPathLiteClient> = Parameters<FastPathLiteClient[K]>[0];
/** One request of a client or bidi stream. */
type ReqItem<K extends ClientStreamName | BidiName> = Req<K> extends AsyncIterable<infer I> ? I
  : never;
type Res<K extends UnaryName | ClientStreamName> = Awaited<ReturnType<FastPathLiteClient[K]>>;
type Item<K extends StreamName | BidiName> = ReturnType<FastPathLiteClient[K]> extends
  AsyncIterable<infer O> ? O : never;

/**
 * The endpoints of one client. A call goes to the endpoint that answered last
 * (the first one at the start); when it fails with UNAVAILABLE, the next
 * endpoint in the list is tried, and so on round the list once. A stream
 * fails over only before its first message. The deadline of a call covers all
 * of its attempts. A stream of requests fails over only while none of its
 * answers came and it has taken at most {@linkcode REPLAY_LIMIT} requests:
 * the next endpoint gets those again (nobody answered them), then the rest.
 */
export class Endpoints {
  readonly addresses: readonly string[];
  readonly #links: (Link | Promise<Link> | undefined)[];
  readonly #opts: EndpointsOptions;
  #preferred = 0;
  #closed = false;

  /**
   * Opens the TCP links at once, so that options the transport refuses (a CA
   * it cannot use) throw here; `unix:` links open on first use.
   */
  constructor(opts: EndpointsOptions) {
    this.addresses = opts.addresses.slice();
    this.#opts = opts;
    this.#links = this.addresses.map(() => undefined);
    try {
      this.addresses.forEach((address, i) => {
        if (!address.startsWith("unix:")) this.#links[i] = this.#fetchLink(address);
      });
    } catch (err) {
      this.close();
      throw err;
    }
  }

  #fetchLink(address: string): Link {
    const channel = new FetchChannel(address, {
      metadata: this.#opts.metadata,
      ...(this.#opts.tlsCa === undefined ? {} : { tlsCa: this.#opts.tlsCa }),
    });
    return {
      client: channel.client(FastPathLite),
      ready: (timeoutMs) => channel.ready(timeoutMs),
      close: () => channel.close(),
    };
  }

  // A unix socket is local: it carries the token but no TLS.
  async #grpcLink(address: string): Promise<Link> {
    const [{ RpcChannel }, { FastPath }] = await Promise.all([
      import("../proto/grpc.ts"),
      import("../proto/gen/fsb/fastpath/v1/fastpath_pb.ts"),
    ]);
    const channel = new RpcChannel(address, { metadata: { ...this.#opts.metadata } });
    return {
      // The generated client takes and gives the same shapes as the lite one.
      client: channel.client(FastPath),
      ready: (timeoutMs) => channel.ready(timeoutMs),
      close: () => channel.close(),
    };
  }

  #link(i: number): Link | Promise<Link> {
    this.#checkOpen();
    const link = this.#links[i];
    if (link !== undefined) return link;
    const opening = this.#grpcLink(this.addresses[i]).then((opened) => {
      if (this.#closed) {
        opened.close();
        this.#checkOpen();
      }
      this.#links[i] = opened;
      return opened;
    });
    // A failed import is tried again on the next call.
    opening.catch(() => this.#links[i] = undefined);
    this.#links[i] = opening;
    return opening;
  }

  #checkOpen(): void {
    if (this.#closed) throw new RpcError(Code.FAILED_PRECONDITION, "The fsb client is closed");
  }

  /**
   * After attempt `k` of a call failed: when the controller named its leader
   * (`... the leader is at HOST:PORT`, shared/DESIGN.md section 15) and that
   * is one of these endpoints not tried yet, it goes next.
   */
  #follow(err: RpcError, order: number[], k: number): void {
    const leader = LEADER_HINT.exec(err.message)?.[1];
    if (leader === undefined) return;
    const j = this.addresses.indexOf(leader);
    const p = order.indexOf(j, k + 1);
    if (p > k + 1) [order[k + 1], order[p]] = [order[p], order[k + 1]];
  }

  /** The endpoints' indexes in the order a call tries them. */
  #order(): number[] {
    const n = this.addresses.length;
    return Array.from({ length: n }, (_, k) => (this.#preferred + k) % n);
  }

  /** Makes a unary call, failing over on UNAVAILABLE. */
  async unary<K extends UnaryName>(method: K, req: Req<K>, opts: CallOptions): Promise<Res<K>> {
    const order = this.#order();
    const attempt = attempts(opts);
    const failures = new Failures();
    for (const [k, i] of order.entries()) {
      const link = await this.#link(i);
      try {
        const call = link.client[method] as (r: Req<K>, o: CallOptions) => Promise<Res<K>>;
        const res = await call(req, attempt(k));
        this.#preferred = i;
        return res;
      } catch (err) {
        if (!failsOver(err, opts, k === order.length - 1)) throw failures.worth(err);
        failures.add(err as RpcError);
        this.#follow(err as RpcError, order, k);
      }
    }
    throw new RpcError(Code.INTERNAL, "No endpoint was tried"); // Unreachable: the list is never empty.
  }

  /** Opens a server stream, failing over on UNAVAILABLE until the first message. */
  async *stream<K extends StreamName>(
    method: K,
    req: Req<K>,
    opts: CallOptions,
  ): AsyncGenerator<Item<K>> {
    const order = this.#order();
    const attempt = attempts(opts);
    const failures = new Failures();
    for (const [k, i] of order.entries()) {
      const link = await this.#link(i);
      let started = false;
      try {
        const open = link.client[method] as (r: Req<K>, o: CallOptions) => AsyncIterable<Item<K>>;
        for await (const item of open(req, attempt(k))) {
          if (!started) {
            started = true;
            this.#preferred = i;
          }
          yield item;
        }
        return;
      } catch (err) {
        if (started) throw err;
        if (!failsOver(err, opts, k === order.length - 1)) throw failures.worth(err);
        failures.add(err as RpcError);
        this.#follow(err as RpcError, order, k);
      }
    }
  }

  /** Makes a client-streaming call, failing over on UNAVAILABLE as the class says. */
  async clientStream<K extends ClientStreamName>(
    method: K,
    reqs: Req<K>,
    opts: CallOptions,
  ): Promise<Res<K>> {
    const order = this.#order();
    const attempt = attempts(opts);
    const failures = new Failures();
    const requests = new SharedRequests<ReqItem<K>>(reqs as AsyncIterable<ReqItem<K>>);
    try {
      for (const [k, i] of order.entries()) {
        const link = await this.#link(i);
        try {
          const call = link.client[method] as (
            r: AsyncIterable<ReqItem<K>>,
            o: CallOptions,
          ) => Promise<Res<K>>;
          const res = await call(requests.attempt(), attempt(k));
          this.#preferred = i;
          return res;
        } catch (err) {
          const last = k === order.length - 1 || !requests.replayable;
          if (!failsOver(err, opts, last)) throw failures.worth(err);
          failures.add(err as RpcError);
          this.#follow(err as RpcError, order, k);
        }
      }
      throw new RpcError(Code.INTERNAL, "No endpoint was tried"); // Unreachable, as in unary().
    } finally {
      requests.close();
    }
  }

  /** Opens a bidirectional stream, failing over on UNAVAILABLE as the class says. */
  async *bidiStream<K extends BidiName>(
    method: K,
    reqs: Req<K>,
    opts: CallOptions,
  ): AsyncGenerator<Item<K>> {
    const order = this.#order();
    const attempt = attempts(opts);
    const failures = new Failures();
    const requests = new SharedRequests<ReqItem<K>>(reqs as AsyncIterable<ReqItem<K>>);
    try {
      for (const [k, i] of order.entries()) {
        const link = await this.#link(i);
        let started = false;
        try {
          const open = link.client[method] as (
            r: AsyncIterable<ReqItem<K>>,
            o: CallOptions,
          ) => AsyncIterable<Item<K>>;
          for await (const item of open(requests.attempt(), attempt(k))) {
            if (!started) {
              started = true;
              this.#preferred = i;
              requests.answered();
            }
            yield item;
          }
          return;
        } catch (err) {
          if (started) throw err;
          const last = k === order.length - 1 || !requests.replayable;
          if (!failsOver(err, opts, last)) throw failures.worth(err);
          failures.add(err as RpcError);
          this.#follow(err as RpcError, order, k);
        }
      }
    } finally {
      requests.close();
    }
  }

  /**
   * Resolves once some endpoint takes a connection; rejects with the first
   * endpoint's error (UNAVAILABLE) when none does within `timeoutMs`.
   */
  async ready(timeoutMs: number): Promise<void> {
    const tries = this.#order().map(async (i) => (await this.#link(i)).ready(timeoutMs));
    try {
      await Promise.any(tries);
    } catch (err) {
      throw err instanceof AggregateError ? err.errors[0] : err;
    }
  }

  /**
   * The raw FastPath client over these endpoints, failover included, for
   * calls the public client does not wrap (`fsb debug profile`).
   */
  liteClient(): FastPathLiteClient {
    const out: Record<string, unknown> = {};
    for (const [name, method] of Object.entries(FastPathLite.methods)) {
      const kind: LiteMethodKind = method.kind;
      switch (kind) {
        case "unary":
          out[name] = (req: never, opts?: CallOptions) =>
            this.unary(name as UnaryName, req, opts ?? {});
          break;
        case "server_streaming":
          out[name] = (req: never, opts?: CallOptions) =>
            this.stream(name as StreamName, req, opts ?? {});
          break;
        case "client_streaming":
          out[name] = (reqs: never, opts?: CallOptions) =>
            this.clientStream(name as ClientStreamName, reqs, opts ?? {});
          break;
        case "bidi_streaming":
          out[name] = (reqs: never, opts?: CallOptions) =>
            this.bidiStream(name as BidiName, reqs, opts ?? {});
          break;
      }
    }
    return out as FastPathLiteClient;
  }

  /** Closes every link; calls made after this fail with FAILED_PRECONDITION. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const link of this.#links) {
      if (link === undefined) continue;
      if (link instanceof Promise) link.then((l) => l.close(), () => {});
      else link.close();
    }
  }
}

/**
 * How many requests of a stream are kept to be sent again to the next
 * endpoint. The transports take requests only as the connection allows, so a
 * call refused at once (no connection, a server's UNAVAILABLE) has taken a
 * few; one that took more has been read, and is not tried elsewhere.
 */
export const REPLAY_LIMIT = 16;

/**
 * The requests of one call, shared by its attempts on successive endpoints
 * (one at a time): each attempt gets first what earlier ones took, then the
 * rest, pulled from the caller's iterable once. An attempt's `return()` only
 * ends that attempt; {@linkcode SharedRequests.close} lets the caller's
 * iterator go once the call is over.
 */
class SharedRequests<T> {
  readonly #source: AsyncIterable<T>;
  #iterator: AsyncIterator<T> | undefined;
  /** Taken from the source, in order; those handed out are let go once no replay can come. */
  readonly #taken: (T | undefined)[] = [];
  /** Below this index, `#taken` holds nothing any more. */
  #forgotten = 0;
  #answered = false;
  #ended = false;
  #failure: { readonly error: unknown } | undefined;
  #pulling: Promise<void> | undefined;

  constructor(source: AsyncIterable<T>) {
    this.#source = source;
  }

  /** Whether another attempt could get every request again. */
  get replayable(): boolean {
    return !this.#answered && this.#taken.length <= REPLAY_LIMIT;
  }

  /** The call has an answer: no other attempt will come, and nothing need be kept for one. */
  answered(): void {
    this.#answered = true;
  }

  /** Lets go of the requests before `at` once they can no longer be replayed. */
  #forget(at: number): void {
    if (this.replayable) return;
    for (; this.#forgotten < at; this.#forgotten++) this.#taken[this.#forgotten] = undefined;
  }

  /** The requests for one attempt. */
  attempt(): AsyncIterable<T> {
    let at = 0;
    let over = false;
    const done = (): IteratorResult<T> => ({ done: true, value: undefined });
    const next = async (): Promise<IteratorResult<T>> => {
      while (!over) {
        if (at < this.#taken.length) {
          const value = this.#taken[at++] as T;
          this.#forget(at);
          return { done: false, value };
        }
        if (this.#failure !== undefined) throw this.#failure.error;
        if (this.#ended) return done();
        await this.#pull();
      }
      return done();
    };
    const iterator: AsyncIterator<T> = {
      next,
      return: () => {
        over = true;
        return Promise.resolve(done());
      },
    };
    return { [Symbol.asyncIterator]: () => iterator };
  }

  // One pull at a time, whichever attempt asks: an attempt that gave up
  // while its pull was on leaves the request to the next one.
  #pull(): Promise<void> {
    this.#pulling ??= (async () => {
      try {
        this.#iterator ??= this.#source[Symbol.asyncIterator]();
        const next = await this.#iterator.next();
        if (next.done === true) this.#ended = true;
        else this.#taken.push(next.value);
      } catch (error) {
        this.#failure = { error };
        this.#ended = true;
      } finally {
        this.#pulling = undefined;
      }
    })();
    return this.#pulling;
  }

  /** Lets the caller's iterator go (its `return()`, not awaited) unless it ended by itself. */
  close(): void {
    const iterator = this.#iterator;
    this.#iterator = undefined;
    if (this.#ended || iterator?.return === undefined) return;
    this.#ended = true;
    try {
      iterator.return().catch(() => {});
    } catch {
      // Nothing more to let go of.
    }
  }
}

/**
 * The options of each attempt of one call: the first gets the caller's own,
 * later ones what is left of its deadline.
 */
function attempts(opts: CallOptions): (k: number) => CallOptions {
  const { timeoutMs } = opts;
  if (timeoutMs === undefined) return () => opts;
  const deadline = performance.now() + timeoutMs;
  return (k) => {
    if (k === 0) return opts;
    const left = deadline - performance.now();
    if (left <= 0) throw new RpcError(Code.DEADLINE_EXCEEDED, "Deadline exceeded");
    return { ...opts, timeoutMs: left };
  };
}

/** How a controller that does not lead names the one that does. */
const LEADER_HINT = /the leader is at (\S+:\d+)$/;

// How the transports word a connection they could not make (`_channel.ts` reads them too).
const CONNECT_FAILURE =
  /^(?:Cannot connect to |Cannot reach \S+ over TLS: |No connection established|Name resolution failed)/;

/**
 * The UNAVAILABLE answers of the endpoints tried so far. When the last
 * endpoint cannot even be reached, the error worth reporting is an earlier
 * controller's own UNAVAILABLE (an agent it cannot reach), not the refused
 * connection.
 */
class Failures {
  #answered: RpcError | undefined;

  add(err: RpcError): void {
    if (this.#answered === undefined && !CONNECT_FAILURE.test(err.message)) this.#answered = err;
  }

  worth(err: unknown): unknown {
    const unreachable = err instanceof RpcError && err.code === Code.UNAVAILABLE &&
      CONNECT_FAILURE.test(err.message);
    return unreachable && this.#answered !== undefined ? this.#answered : err;
  }
}

function failsOver(err: unknown, opts: CallOptions, last: boolean): boolean {
  return !last && err instanceof RpcError && err.code === Code.UNAVAILABLE &&
    opts.signal?.aborted !== true;
}

/**
 * The {@linkcode Endpoints} under each client `client.ts` made, for the CLI's
 * own calls (`_channel.ts`) without a public way in.
 */
export const endpointsOf: WeakMap<object, Endpoints> = new WeakMap();
