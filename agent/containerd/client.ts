/**
 * A typed client for the containerd services fsb uses, over one gRPC channel
 * on containerd's unix socket.
 *
 * @module
 */
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import {
  type CallOptions,
  Code,
  RpcChannel,
  RpcError,
  type ServiceClient,
} from "../../proto/grpc.ts";
import { Containers } from "../../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import { Content, WriteAction } from "../../proto/gen/containerd/services/content/v1/content_pb.ts";
import { Diff } from "../../proto/gen/containerd/services/diff/v1/diff_pb.ts";
import { Images } from "../../proto/gen/containerd/services/images/v1/images_pb.ts";
import { Leases } from "../../proto/gen/containerd/services/leases/v1/leases_pb.ts";
import { Namespaces } from "../../proto/gen/containerd/services/namespaces/v1/namespace_pb.ts";
import { Snapshots } from "../../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Tasks } from "../../proto/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Version } from "../../proto/gen/containerd/services/version/v1/version_pb.ts";
import { UnavailableError } from "../../registry/errors.ts";

/** The typed client of a generated service descriptor. */
export type ClientOf<T> = T extends GenService<infer S extends GenServiceMethods> ? ServiceClient<S>
  : never;

/** Options for {@linkcode ContainerdClient}. */
export interface ContainerdClientOptions {
  /** containerd namespace sent with every call; `fsb` unless told. */
  readonly namespace?: string;
  /**
   * A lease id sent with every call: whatever the calls create is kept from
   * containerd's garbage collector until the lease is deleted.
   */
  readonly lease?: string;
  /** Default per-call timeout; 30 s unless told. Calls that wait pass their own. */
  readonly timeoutMs?: number;
  /**
   * Keepalive pings while calls are in flight, in ms; none unless told (0).
   * containerd allows one ping per 5 minutes and ends the connection, and the
   * calls on it, for more: a test shows it with a short interval.
   */
  readonly keepaliveMs?: number;
}

/** One connection and the calls in flight on it. */
interface Dial {
  readonly channel: RpcChannel;
  calls: number;
  /** Replaced: it closes once `calls` is 0. */
  retired: boolean;
  client<S extends GenServiceMethods>(service: GenService<S>): ServiceClient<S>;
}

type Method = (req: unknown, opts?: CallOptions) => unknown;

/** The namespace fsb's containers, images and snapshots live in. */
export const DEFAULT_NAMESPACE = "fsb";
const DEFAULT_TIMEOUT_MS = 30_000;
// containerd's gRPC server refuses messages above 16 MiB.
const WRITE_CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * A connection to containerd with a typed client per service. The
 * namespace (and lease, if any) travels as gRPC metadata on every call.
 * {@linkcode ContainerdClient.ready} may move later calls to a fresh
 * connection; calls in flight finish where they started.
 */
export class ContainerdClient {
  /** `unix:///...` address of the socket. */
  readonly address: string;
  /** The containerd namespace of every call. */
  readonly namespace: string;
  /** containerd's Version service. */
  readonly version: ClientOf<typeof Version>;
  /** containerd's Images service (name to root descriptor). */
  readonly images: ClientOf<typeof Images>;
  /** containerd's Content service (content-addressed blobs). */
  readonly content: ClientOf<typeof Content>;
  /** containerd's Snapshots service. */
  readonly snapshots: ClientOf<typeof Snapshots>;
  /** containerd's Diff service (layer unpacking). */
  readonly diff: ClientOf<typeof Diff>;
  /** containerd's Leases service. */
  readonly leases: ClientOf<typeof Leases>;
  /** containerd's Namespaces service (not namespaced itself). */
  readonly namespaces: ClientOf<typeof Namespaces>;
  /** containerd's Containers service (metadata). */
  readonly containers: ClientOf<typeof Containers>;
  /** containerd's Tasks service (processes). */
  readonly tasks: ClientOf<typeof Tasks>;
  readonly #opts: ContainerdClientOptions;
  /** Where new calls go. */
  #dial: Dial;
  /** Dials replaced by {@linkcode ContainerdClient.ready} whose calls have not all ended. */
  readonly #retired = new Set<Dial>();

  /** Connects lazily to `socket`, a path or a `unix://` address. */
  constructor(socket: string, opts: ContainerdClientOptions = {}) {
    this.address = socketAddress(socket);
    this.namespace = opts.namespace ?? DEFAULT_NAMESPACE;
    this.#opts = opts;
    this.#dial = this.#newDial();
    this.version = this.#service(Version);
    this.images = this.#service(Images);
    this.content = this.#service(Content);
    this.snapshots = this.#service(Snapshots);
    this.diff = this.#service(Diff);
    this.leases = this.#service(Leases);
    this.namespaces = this.#service(Namespaces);
    this.containers = this.#service(Containers);
    this.tasks = this.#service(Tasks);
  }

  /**
   * Whether containerd answers its Version service within `timeoutMs`.
   *
   * When it cannot be reached, later calls go to a fresh connection, which
   * dials at once instead of after the transport's reconnect backoff (which
   * grows to minutes during a long outage). Calls in flight stay on the
   * connection they started on, which closes when the last of them ends: a
   * failed probe never cuts a create, an exec or a long wait. Only the probed
   * connection is replaced, so concurrent probes replace it once.
   */
  async ready(timeoutMs: number): Promise<boolean> {
    const dial = this.#dial;
    try {
      await this.#on(dial, () => dial.client(Version).version({}, { timeoutMs }));
      return true;
    } catch (err) {
      if (isCode(err, Code.UNAVAILABLE) && dial === this.#dial) {
        this.#dial = this.#newDial();
        this.#retire(dial);
      }
      return false;
    }
  }

  #newDial(): Dial {
    const metadata: Record<string, string> = { "containerd-namespace": this.namespace };
    if (this.#opts.lease !== undefined) metadata["containerd-lease"] = this.#opts.lease;
    const channel = new RpcChannel(this.address, {
      metadata,
      timeoutMs: this.#opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      // containerd (Go gRPC) answers pings more often than every 5 minutes with
      // a GOAWAY that fails the calls in flight, such as a long exec's Wait.
      keepaliveMs: this.#opts.keepaliveMs ?? 0,
    });
    const clients = new Map<unknown, unknown>();
    return {
      channel,
      calls: 0,
      retired: false,
      client<S extends GenServiceMethods>(service: GenService<S>): ServiceClient<S> {
        let client = clients.get(service) as ServiceClient<S> | undefined;
        if (client === undefined) clients.set(service, client = channel.client(service));
        return client;
      },
    };
  }

  #retire(dial: Dial): void {
    dial.retired = true;
    if (dial.calls === 0) dial.channel.close();
    else this.#retired.add(dial);
  }

  #leave(dial: Dial): void {
    dial.calls--;
    if (dial.calls === 0 && dial.retired && this.#retired.delete(dial)) dial.channel.close();
  }

  /** Runs `call` counted on `dial`, until its promise settles. */
  #on<T>(dial: Dial, call: () => Promise<T>): Promise<T> {
    dial.calls++;
    let out: Promise<T>;
    try {
      out = call();
    } catch (err) {
      this.#leave(dial);
      return Promise.reject(err);
    }
    return out.finally(() => this.#leave(dial));
  }

  /** Counted on `dial` from the first pull until the stream ends or its consumer stops. */
  async *#streamOn<T>(call: (dial: Dial) => AsyncIterable<T>): AsyncGenerator<T> {
    const dial = this.#dial;
    dial.calls++;
    try {
      yield* call(dial);
    } finally {
      this.#leave(dial);
    }
  }

  /**
   * A typed client for `service` whose every call goes to the connection
   * current when it starts (a stream's: when first pulled), counted there.
   */
  #service<S extends GenServiceMethods>(service: GenService<S>): ServiceClient<S> {
    const out: Record<string, unknown> = {};
    for (const method of service.methods) {
      const name = method.localName;
      const on = (dial: Dial) => dial.client(service) as unknown as Record<string, Method>;
      const kind = method.methodKind;
      out[name] = kind === "unary" || kind === "client_streaming"
        ? (req: unknown, opts?: CallOptions) => {
          const dial = this.#dial;
          return this.#on(dial, () => on(dial)[name](req, opts) as Promise<unknown>);
        }
        : (req: unknown, opts?: CallOptions) =>
          this.#streamOn((dial) => on(dial)[name](req, opts) as AsyncIterable<unknown>);
    }
    return out as ServiceClient<S>;
  }

  /** A second connection whose calls all run under `lease`; close it when done. */
  withLease(lease: string): ContainerdClient {
    return new ContainerdClient(this.address, { ...this.#opts, namespace: this.namespace, lease });
  }

  /** Reads a whole blob from the content store. */
  async readBlob(digest: string, signal?: AbortSignal): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let total = 0;
    for await (const res of this.content.read({ digest }, { signal })) {
      parts.push(res.data);
      total += res.data.byteLength;
    }
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(total);
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.byteLength;
    }
    return out;
  }

  /**
   * Writes a blob into the content store under `ref` and commits it as
   * `digest` (containerd verifies size and digest), with `labels`.
   *
   * containerd's Write is a bidirectional stream; this sends one request per
   * call instead, each a session that resumes the ingest named `ref` at the
   * offset the last one reached, and the final one commits. A blob already
   * present only gets its labels updated. A failed write aborts the ingest.
   */
  async writeBlob(
    desc: { digest: string; size: number },
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    opts: { ref: string; labels?: Record<string, string> },
  ): Promise<void> {
    const labels = opts.labels ?? {};
    let offset = 0;
    let pending: Uint8Array | undefined;
    try {
      for await (const chunk of rechunk(chunks, WRITE_CHUNK_BYTES)) {
        if (pending !== undefined) {
          await this.#writeSession(desc, {
            ref: opts.ref,
            action: WriteAction.WRITE,
            offset,
            data: pending,
          });
          offset += pending.byteLength;
        }
        pending = chunk;
      }
      const data = pending ?? new Uint8Array();
      await this.#writeSession(desc, {
        ref: opts.ref,
        action: WriteAction.COMMIT,
        offset,
        data,
        labels,
      });
    } catch (err) {
      if (isCode(err, Code.ALREADY_EXISTS)) {
        await this.content.abort({ ref: opts.ref }).catch(() => {});
        if (Object.keys(labels).length > 0) await this.setBlobLabels(desc.digest, labels);
        return;
      }
      await this.content.abort({ ref: opts.ref }).catch(() => {});
      throw err;
    }
  }

  async #writeSession(
    desc: { digest: string; size: number },
    part: {
      ref: string;
      action: WriteAction;
      offset: number;
      data: Uint8Array;
      labels?: Record<string, string>;
    },
  ): Promise<void> {
    const req = {
      action: part.action,
      ref: part.ref,
      total: BigInt(desc.size),
      expected: desc.digest,
      offset: BigInt(part.offset),
      data: part.data,
      labels: part.labels ?? {},
    };
    // containerd answers each session with its status (twice for a one-message
    // session); draining the stream is what waits for the session to end.
    for await (const _ of this.content.write(req)) { /* drain */ }
  }

  /** Sets (adds or replaces) labels on a committed blob, leaving its other labels alone. */
  async setBlobLabels(digest: string, labels: Record<string, string>): Promise<void> {
    await this.content.update({
      info: { digest, labels },
      updateMask: { paths: Object.keys(labels).map((k) => `labels.${k}`) },
    });
  }

  /** Closes every connection; calls in flight fail. */
  close(): void {
    this.#dial.channel.close();
    for (const dial of this.#retired) dial.channel.close();
    this.#retired.clear();
  }
}

/** `unix:///abs/path` for a path or an address that already has a scheme. */
export function socketAddress(socket: string): string {
  if (socket.startsWith("unix:")) return socket;
  return `unix://${socket}`;
}

/** Whether `err` is a gRPC error with `code`. */
export function isCode(err: unknown, code: number): boolean {
  return err instanceof RpcError && err.code === code;
}

/** Whether `err` is containerd's NOT_FOUND. */
export function isNotFound(err: unknown): boolean {
  return isCode(err, Code.NOT_FOUND);
}

/**
 * Turns "containerd cannot be reached" into an UnavailableError naming the
 * socket; other errors pass through unchanged.
 */
export function unreachable(err: unknown, address: string): unknown {
  if (err instanceof RpcError && err.code === Code.UNAVAILABLE) {
    return new UnavailableError(`Cannot reach containerd at ${address}: ${err.message}`);
  }
  return err;
}

async function* rechunk(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  max: number,
): AsyncIterable<Uint8Array> {
  for await (const chunk of chunks) {
    for (let at = 0; at < chunk.byteLength; at += max) {
      yield chunk.subarray(at, Math.min(at + max, chunk.byteLength));
    }
  }
}
