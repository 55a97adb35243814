/**
 * Reading OCI images out of containerd's content store and unpacking their
 * layers into snapshots.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { Code } from "../../proto/grpc.ts";
import { FailedPreconditionError } from "../../registry/errors.ts";
import { type ContainerdClient, isCode, isNotFound } from "./client.ts";

/** An OCI descriptor as it appears in manifests and indexes. */
export interface OciDescriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Record<string, string>;
  readonly platform?: {
    readonly os?: string;
    readonly architecture?: string;
    readonly variant?: string;
  };
}

/** The runtime part of an image config (`config` in the OCI image config JSON). */
export interface ImageRunConfig {
  readonly Entrypoint?: string[] | null;
  readonly Cmd?: string[] | null;
  readonly Env?: string[] | null;
  readonly WorkingDir?: string;
  readonly User?: string;
}

/** What fsb needs of one image for one platform. */
export interface ImageRecipe {
  /** The manifest chosen (the target itself, or the host's entry of an index). */
  readonly manifest: OciDescriptor;
  readonly configDescriptor: OciDescriptor;
  readonly config: ImageRunConfig;
  readonly layers: readonly OciDescriptor[];
  /** Uncompressed layer digests, from the config's `rootfs.diff_ids`. */
  readonly diffIds: readonly string[];
  /** `chainIds[i]` names the committed snapshot of layers 0..i. */
  readonly chainIds: readonly string[];
  /** The snapshot a container's rootfs is prepared on (the last chain id). */
  readonly chainId: string;
}

/** Media types that describe an index (many manifests, one per platform). */
const INDEX_TYPES = new Set([
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
]);

/** containerd's garbage-collector labels: a blob keeps what they name alive. */
export const GC_LABELS = {
  config: "containerd.io/gc.ref.content.config",
  layer: (i: number) => `containerd.io/gc.ref.content.l.${i}`,
  manifest: (i: number) => `containerd.io/gc.ref.content.m.${i}`,
  snapshot: (snapshotter: string) => `containerd.io/gc.ref.snapshot.${snapshotter}`,
  expire: "containerd.io/gc.expire",
  uncompressed: "containerd.io/uncompressed",
} as const;

/** The host's platform in OCI terms. */
export function hostPlatform(): { os: string; architecture: string } {
  const arch = Deno.build.arch === "aarch64" ? "arm64" : "amd64";
  return { os: "linux", architecture: arch };
}

/** Whether a descriptor (or a parsed blob) is an index rather than a manifest. */
export function isIndex(mediaType: string, parsed?: { manifests?: unknown }): boolean {
  return INDEX_TYPES.has(mediaType) || (mediaType === "" && Array.isArray(parsed?.manifests));
}

/** Picks the host platform's manifest from an index's entries (the only one, if none says its platform). */
export function pickManifest(manifests: readonly OciDescriptor[], what: string): OciDescriptor {
  const want = hostPlatform();
  const match =
    manifests.find((m) =>
      m.platform?.os === want.os && m.platform?.architecture === want.architecture
    ) ?? (manifests.length === 1 && manifests[0].platform === undefined ? manifests[0] : undefined);
  if (match === undefined) {
    throw new FailedPreconditionError(
      `Cannot use image ${what} as it has no ${want.os}/${want.architecture} manifest`,
    );
  }
  return match;
}

/** `sha256:` digest of `bytes`. */
export function sha256Digest(bytes: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Chain ids of a layer stack: the first diff id, then hash("parent child") per layer. */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diffId of diffIds) {
    out.push(out.length === 0 ? diffId : sha256Digest(`${out[out.length - 1]} ${diffId}`));
  }
  return out;
}

/**
 * Builds the recipe from a parsed manifest and config, checking that they
 * agree; `manifest` is the manifest's descriptor, `what` names the image in errors.
 */
export function recipeOf(
  manifestJson: { config?: OciDescriptor; layers?: OciDescriptor[] },
  configJson: { config?: ImageRunConfig; rootfs?: { diff_ids?: string[] } },
  opts: { manifest: OciDescriptor; what: string },
): ImageRecipe {
  const { manifest, what } = opts;
  const layers = manifestJson.layers ?? [];
  const diffIds = configJson.rootfs?.diff_ids ?? [];
  if (
    manifestJson.config === undefined || layers.length !== diffIds.length || layers.length === 0
  ) {
    throw new FailedPreconditionError(
      `Cannot use image ${what} as its manifest and config disagree on its layers`,
    );
  }
  const chain = chainIds(diffIds);
  return {
    manifest,
    configDescriptor: manifestJson.config,
    config: configJson.config ?? {},
    layers,
    diffIds,
    chainIds: chain,
    chainId: chain[chain.length - 1],
  };
}

const decoder = new TextDecoder();

/** Parses a JSON blob. */
export function parseJson<T>(bytes: Uint8Array): T {
  return JSON.parse(decoder.decode(bytes)) as T;
}

/**
 * Reads the recipe of the image whose root descriptor is `target` from the
 * content store: the index (if any), the host's manifest and its config.
 * Missing content is a FailedPreconditionError naming the image (`what`).
 */
export async function readRecipe(
  client: ContainerdClient,
  target: OciDescriptor,
  opts: { what: string; signal?: AbortSignal },
): Promise<ImageRecipe> {
  const { what, signal } = opts;
  const read = async (digest: string) => {
    try {
      return await client.readBlob(digest, signal);
    } catch (err) {
      if (isNotFound(err)) {
        throw new FailedPreconditionError(
          `Cannot use image ${what} as its content ${digest} is missing`,
        );
      }
      throw err;
    }
  };
  let manifest = target;
  let json = parseJson<
    { manifests?: OciDescriptor[]; config?: OciDescriptor; layers?: OciDescriptor[] }
  >(
    await read(target.digest),
  );
  if (isIndex(target.mediaType, json)) {
    manifest = pickManifest(json.manifests ?? [], what);
    json = parseJson(await read(manifest.digest));
  }
  if (json.config === undefined) {
    throw new FailedPreconditionError(`Cannot use image ${what} as its manifest has no config`);
  }
  const config = parseJson<{ config?: ImageRunConfig; rootfs?: { diff_ids?: string[] } }>(
    await read(json.config.digest),
  );
  return recipeOf(json, config, { manifest, what });
}

/** Options for {@linkcode unpackImage}. */
export interface UnpackOptions {
  readonly snapshotter: string;
}

/**
 * Makes sure every layer of `recipe` is a committed snapshot named by its
 * chain id, applying missing ones from the content store through containerd's
 * diff service, and labels the config blob so that the garbage collector
 * keeps the snapshot chain as long as the image.
 *
 * `client` must run under a lease: the extraction snapshots and the layer
 * blobs must survive the garbage collector until the label is set.
 */
export async function unpackImage(
  client: ContainerdClient,
  recipe: ImageRecipe,
  opts: UnpackOptions,
): Promise<void> {
  const { snapshotter } = opts;
  // Find the first missing layer from the top: everything below a committed
  // snapshot is committed too.
  let have = recipe.chainIds.length;
  while (have > 0) {
    try {
      await client.snapshots.stat({ snapshotter, key: recipe.chainIds[have - 1] });
      break;
    } catch (err) {
      if (!isNotFound(err)) throw err;
      have--;
    }
  }
  for (let i = have; i < recipe.chainIds.length; i++) {
    const chainId = recipe.chainIds[i];
    const parent = i === 0 ? "" : recipe.chainIds[i - 1];
    const key = `fsb-extract-${crypto.randomUUID()} ${chainId}`;
    const { mounts } = await client.snapshots.prepare({ snapshotter, key, parent });
    try {
      const layer = recipe.layers[i];
      const { applied } = await client.diff.apply(
        {
          diff: { mediaType: layer.mediaType, digest: layer.digest, size: BigInt(layer.size) },
          mounts,
        },
        { timeoutMs: 10 * 60_000 },
      );
      if (applied?.digest !== recipe.diffIds[i]) {
        throw new FailedPreconditionError(
          `Cannot unpack layer ${layer.digest} as it unpacked to ${applied?.digest}, not ${
            recipe.diffIds[i]
          }`,
        );
      }
      await client.snapshots.commit({ snapshotter, name: chainId, key });
    } catch (err) {
      await client.snapshots.remove({ snapshotter, key }).catch(() => {});
      // Someone else unpacked the same layer meanwhile: theirs serves as well.
      if (!isCode(err, Code.ALREADY_EXISTS)) throw err;
    }
  }
  await client.setBlobLabels(recipe.configDescriptor.digest, {
    [GC_LABELS.snapshot(snapshotter)]: recipe.chainId,
  });
}
