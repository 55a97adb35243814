/**
 * `fsb image pull` and pull-on-create: an image from an OCI distribution
 * registry into containerd's content store, recorded as an image and
 * (optionally) unpacked, as `importImage` does for archives.
 *
 * @module
 */
import { Code } from "../../proto/grpc.ts";
import { FailedPreconditionError } from "../../registry/errors.ts";
import { ContainerdClient, isCode, unreachable } from "./client.ts";
import { type DockerAuth, readDockerAuth, type RegistryCredentials } from "./_docker_auth.ts";
import {
  GC_LABELS,
  type ImageRecipe,
  isIndex,
  type OciDescriptor,
  parseJson,
  pickManifest,
  recipeOf,
  unpackImage,
} from "./image.ts";
import { type ImageReference, parseReference, RegistryClient } from "./_registry_client.ts";
import { putImage } from "./import_image.ts";

/** Where and how pulls reach registries. */
export interface RegistryOptions {
  /** `HOST:PORT` registries spoken to over plain HTTP (`--insecure-registry`); others over HTTPS. */
  readonly insecure?: readonly string[];
  /**
   * A Docker `config.json` with credentials (`--registry-auth`); read when a
   * registry asks for credentials, so changes apply without a restart.
   */
  readonly authFile?: string;
  /** Credentials given directly (they win over `authFile` for the registries they name). */
  readonly auth?: DockerAuth;
  /** The fetch to use; the global one unless told (tests). */
  readonly fetch?: typeof fetch;
}

/** Options for {@linkcode ImagePuller} and {@linkcode pullImage}. */
export interface PullOptions extends RegistryOptions {
  /** containerd's socket (a path or `unix://` address). */
  readonly socket: string;
  /** containerd namespace; `fsb` unless told. */
  readonly namespace?: string;
  /** Snapshotter the image is for (and unpacked into); `overlayfs` unless told. */
  readonly snapshotter?: string;
  /**
   * Whether to unpack the layers into snapshots once pulled, so the first
   * create need not: true unless told (the runtime passes false and unpacks
   * itself).
   */
  readonly unpack?: boolean;
  /** Blobs downloaded at once; 3 unless told. */
  readonly concurrency?: number;
}

/** What one pull did. */
export interface PullResult {
  /** The image record's name: the normalized reference. */
  readonly name: string;
  /** The image record's target: the manifest or index the reference names. */
  readonly target: OciDescriptor;
  /** The manifest used (the target, or the host's entry of an index). */
  readonly manifest: OciDescriptor;
  /** Bytes downloaded: manifests, config and layers; what containerd had is not fetched. */
  readonly bytes: number;
  /** Blobs (config and layers) downloaded. */
  readonly blobsFetched: number;
  /** Blobs (config and layers) containerd already had. */
  readonly blobsPresent: number;
  /** Wall time of the pull, unpacking included when asked for. */
  readonly ms: number;
}

const WRITE_CHUNK_BYTES = 4 * 1024 * 1024;
// Bounds what a pull cut short (a crash) keeps from the garbage collector.
const LEASE_TTL_MS = 60 * 60_000;

/**
 * Pulls images into one containerd namespace. Concurrent pulls of one
 * (normalized) reference share a single pull, and concurrent pulls of
 * different references share the download of any blob they have in common;
 * blobs containerd already has are not downloaded again. A caller's signal
 * only stops that caller's wait: the shared pull carries on for the others.
 */
export class ImagePuller {
  readonly #opts: PullOptions;
  readonly #client: ContainerdClient;
  readonly #registry: RegistryClient;
  readonly #snapshotter: string;
  readonly #pulls = new Map<string, Promise<PullResult>>();
  readonly #downloads = new Map<string, Promise<number>>();

  /** Creates the puller; it connects to containerd on first use. */
  constructor(opts: PullOptions) {
    this.#opts = opts;
    this.#snapshotter = opts.snapshotter ?? "overlayfs";
    this.#client = new ContainerdClient(opts.socket, { namespace: opts.namespace });
    this.#registry = new RegistryClient({
      insecure: opts.insecure,
      fetch: opts.fetch,
      credentials: (registry) => this.#credentials(registry),
    });
  }

  /**
   * Pulls `ref` (a tag or a digest; Docker Hub unless it names a registry)
   * and records it as an image named by its normalized reference, replacing
   * an image of that name.
   *
   * Throws InvalidArgumentError for a malformed reference; NotFoundError
   * naming the reference for a repository, tag or digest the registry lacks;
   * UnauthenticatedError or PermissionDeniedError naming the registry when
   * it refuses; DigestMismatchError naming the digest for a blob or
   * manifest whose bytes do not match it; FailedPreconditionError for an
   * image with no manifest for this host's platform; UnavailableError when
   * the registry or containerd cannot be reached.
   */
  pull(ref: string, opts: { signal?: AbortSignal } = {}): Promise<PullResult> {
    let parsed: ImageReference;
    try {
      parsed = parseReference(ref);
    } catch (err) {
      return Promise.reject(err);
    }
    let pending = this.#pulls.get(parsed.name);
    if (pending === undefined) {
      pending = this.#pull(parsed).catch((err) => {
        throw unreachable(err, this.#client.address);
      }).finally(() => this.#pulls.delete(parsed.name));
      this.#pulls.set(parsed.name, pending);
    }
    return untilAborted(pending, opts.signal);
  }

  /** Closes the containerd connection. */
  close(): void {
    this.#client.close();
  }

  async #credentials(registry: string): Promise<RegistryCredentials | undefined> {
    const given = this.#opts.auth?.get(registry);
    if (given !== undefined) return given;
    if (this.#opts.authFile === undefined) return undefined;
    return (await readDockerAuth(this.#opts.authFile)).get(registry);
  }

  async #pull(ref: ImageReference): Promise<PullResult> {
    const t0 = performance.now();
    const client = this.#client;
    const { lease } = await client.leases.create({
      id: `fsb-pull-${crypto.randomUUID()}`,
      labels: { [GC_LABELS.expire]: new Date(Date.now() + LEASE_TTL_MS).toISOString() },
    });
    const leaseId = lease!.id;
    const leased = client.withLease(leaseId);
    const stats = { bytes: 0, fetched: 0, present: 0 };
    const onBytes = (n: number) => stats.bytes += n;
    try {
      const root = await this.#registry.manifest(ref);
      stats.bytes += root.bytes.byteLength;
      const target = root.descriptor;
      const rootJson = parseJson<IndexOrManifest>(root.bytes);
      let manifest = root;
      let manifestJson = rootJson;
      if (isIndex(target.mediaType, rootJson)) {
        const entry = pickManifest(rootJson.manifests ?? [], ref.name);
        manifest = await this.#registry.manifest(ref, { at: entry });
        stats.bytes += manifest.bytes.byteLength;
        manifestJson = parseJson(manifest.bytes);
        if (isIndex(manifest.descriptor.mediaType, manifestJson)) {
          throw new FailedPreconditionError(
            `Cannot pull ${ref.name} as its index names another index (${entry.digest}) for this platform`,
          );
        }
      }
      const configDesc = manifestJson.config;
      if (configDesc === undefined) {
        throw new FailedPreconditionError(
          `Cannot pull ${ref.name} as manifest ${manifest.descriptor.digest} has no config`,
        );
      }
      const configBytes = await this.#registry.blobBytes(ref, configDesc, { onBytes });
      stats.fetched++;
      const recipe = recipeOf(manifestJson, parseJson(configBytes), {
        manifest: manifest.descriptor,
        what: ref.name,
      });
      await this.#storeLayers(leased, ref, recipe, stats);
      await this.#storeRoots(leased, { recipe, configBytes, manifest, root, rootJson });
      if (this.#opts.unpack ?? true) {
        await unpackImage(leased, recipe, { snapshotter: this.#snapshotter });
      }
      await putImage(leased, { name: ref.name, target });
      return {
        name: ref.name,
        target,
        manifest: manifest.descriptor,
        bytes: stats.bytes,
        blobsFetched: stats.fetched,
        blobsPresent: stats.present,
        ms: performance.now() - t0,
      };
    } finally {
      leased.close();
      await client.leases.delete({ id: leaseId }).catch(() => {});
    }
  }

  /** Every layer into the content store (under the pull's lease), a few at a time. */
  async #storeLayers(
    client: ContainerdClient,
    ref: ImageReference,
    recipe: ImageRecipe,
    stats: { bytes: number; fetched: number; present: number },
  ): Promise<void> {
    const jobs = recipe.layers.map((layer, i) => async () => {
      const labels: Record<string, string> = layer.digest === recipe.diffIds[i]
        ? {}
        : { [GC_LABELS.uncompressed]: recipe.diffIds[i] };
      const fetched = await this.#ensureBlob(client, ref, layer, labels, (n) => stats.bytes += n);
      if (fetched) stats.fetched++;
      else stats.present++;
    });
    await runLimited(jobs, this.#opts.concurrency ?? 3);
  }

  /**
   * Makes sure blob `desc` is in the content store and in `client`'s lease,
   * with `labels`: a blob containerd has is only leased and labelled; one
   * another pull is downloading is waited for; others are downloaded.
   * Resolves to whether this call downloaded it.
   */
  async #ensureBlob(
    client: ContainerdClient,
    ref: ImageReference,
    desc: OciDescriptor,
    labels: Record<string, string>,
    onBytes: (n: number) => void,
  ): Promise<boolean> {
    if (await leaseExisting(client, desc, labels)) return false;
    const shared = this.#downloads.get(desc.digest);
    if (shared !== undefined) {
      await shared.catch(() => {});
      if (await leaseExisting(client, desc, labels)) return false;
    }
    const download = (async () => {
      const chunks = this.#registry.blob(ref, desc, { chunkBytes: WRITE_CHUNK_BYTES, onBytes });
      await client.writeBlob(desc, chunks, { ref: ingestRef(desc.digest), labels });
      return desc.size;
    })();
    this.#downloads.set(desc.digest, download);
    try {
      await download;
    } finally {
      if (this.#downloads.get(desc.digest) === download) this.#downloads.delete(desc.digest);
    }
    return true;
  }

  /** Config, manifest and index (children before the blobs that name them), with their GC labels. */
  async #storeRoots(
    client: ContainerdClient,
    parts: {
      recipe: ImageRecipe;
      configBytes: Uint8Array;
      manifest: { descriptor: OciDescriptor; bytes: Uint8Array };
      root: { descriptor: OciDescriptor; bytes: Uint8Array };
      rootJson: IndexOrManifest;
    },
  ): Promise<void> {
    const { recipe, configBytes, manifest, root, rootJson } = parts;
    await client.writeBlob(recipe.configDescriptor, [configBytes], {
      ref: ingestRef(recipe.configDescriptor.digest),
      labels: { [GC_LABELS.snapshot(this.#snapshotter)]: recipe.chainId },
    });
    const manifestLabels: Record<string, string> = {
      [GC_LABELS.config]: recipe.configDescriptor.digest,
    };
    recipe.layers.forEach((l, i) => manifestLabels[GC_LABELS.layer(i)] = l.digest);
    await client.writeBlob(manifest.descriptor, [manifest.bytes], {
      ref: ingestRef(manifest.descriptor.digest),
      labels: manifestLabels,
    });
    if (manifest !== root) {
      // Only this host's manifest is pulled; the index names just that one,
      // so the collector never looks for the other platforms' content.
      const indexLabels: Record<string, string> = {};
      (rootJson.manifests ?? []).forEach((m, i) => {
        if (m.digest === manifest.descriptor.digest) indexLabels[GC_LABELS.manifest(i)] = m.digest;
      });
      await client.writeBlob(root.descriptor, [root.bytes], {
        ref: ingestRef(root.descriptor.digest),
        labels: indexLabels,
      });
    }
  }
}

/**
 * Pulls `ref` once with a puller of its own (see {@linkcode ImagePuller.pull}),
 * unpacking it unless told not to.
 */
export async function pullImage(ref: string, opts: PullOptions): Promise<PullResult> {
  const puller = new ImagePuller(opts);
  try {
    return await puller.pull(ref);
  } finally {
    puller.close();
  }
}

interface IndexOrManifest {
  manifests?: OciDescriptor[];
  config?: OciDescriptor;
  layers?: OciDescriptor[];
}

function ingestRef(digest: string): string {
  return `fsb-pull-${crypto.randomUUID()}-${digest}`;
}

/**
 * Whether containerd has blob `desc`: an empty write of it under `client`'s
 * lease answers ALREADY_EXISTS for a blob that exists, and containerd then
 * adds the blob to the lease (so the collector cannot take it before the
 * image names it); `writeBlob` sets `labels` on it. For a missing blob the
 * write fails (its commit is short) and is aborted.
 */
async function leaseExisting(
  client: ContainerdClient,
  desc: OciDescriptor,
  labels: Record<string, string>,
): Promise<boolean> {
  try {
    await client.writeBlob(desc, [], { ref: ingestRef(desc.digest), labels });
    return true;
  } catch (err) {
    if (isCode(err, Code.UNAVAILABLE)) throw err;
    return false;
  }
}

async function runLimited(jobs: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  let failed: { err: unknown } | undefined;
  const worker = async () => {
    while (failed === undefined && next < jobs.length) {
      const job = jobs[next++];
      try {
        await job();
      } catch (err) {
        failed ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, jobs.length)) }, worker));
  if (failed !== undefined) throw failed.err;
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
