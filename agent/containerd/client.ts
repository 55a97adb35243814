/**
 * A typed client for the containerd services fsb uses, over one gRPC channel
 * on containerd's unix socket.
 *
 * @module
 */
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { Code, RpcChannel, RpcError, type ServiceClient } from "../../proto/grpc.ts";
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
}

/** The namespace fsb's containers, images and snapshots live in. */
export const DEFAULT_NAMESPACE = "fsb";
const DEFAULT_TIMEOUT_MS = 30_000;
// containerd's gRPC server refuses messages above 16 MiB.
const WRITE_CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * One connection to containerd with a typed client per service. The
 * namespace (and lease, if any) travels as gRPC metadata on every call.
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
  readonly #channel: RpcChannel;
  readonly #opts: ContainerdClientOptions;

  /** Connects lazily to `socket`, a path or a `unix://` address. */
  constructor(socket: string, opts: ContainerdClientOptions = {}) {
    this.address = socketAddress(socket);
    this.namespace = opts.namespace ?? DEFAULT_NAMESPACE;
    this.#opts = opts;
    const metadata: Record<string, string> = { "containerd-namespace": this.namespace };
    if (opts.lease !== undefined) metadata["containerd-lease"] = opts.lease;
    this.#channel = new RpcChannel(this.address, {
      metadata,
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    this.version = this.#channel.client(Version);
    this.images = this.#channel.client(Images);
    this.content = this.#channel.client(Content);
    this.snapshots = this.#channel.client(Snapshots);
    this.diff = this.#channel.client(Diff);
    this.leases = this.#channel.client(Leases);
    this.namespaces = this.#channel.client(Namespaces);
    this.containers = this.#channel.client(Containers);
    this.tasks = this.#channel.client(Tasks);
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

  /** Closes the connection. */
  close(): void {
    this.#channel.close();
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
