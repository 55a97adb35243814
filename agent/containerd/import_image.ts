/**
 * `fsb image import`: an OCI image layout archive into containerd, unpacked,
 * so that creates never pull.
 *
 * @module
 */
import { normalizeImage } from "../../registry/normalize_image.ts";
import { InvalidArgumentError } from "../../registry/errors.ts";
import { Code } from "../../proto/grpc.ts";
import { ContainerdClient, isCode, unreachable } from "./client.ts";
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
import { readChunks, readRange, readTarIndex, type TarEntry } from "./_tar.ts";

/** Options for {@linkcode importImage}. */
export interface ImportImageOptions {
  /** containerd's socket (a path or `unix://` address). */
  readonly socket: string;
  /** containerd namespace; `fsb` unless told. */
  readonly namespace?: string;
  /** Snapshotter to unpack into; `overlayfs` unless told. */
  readonly snapshotter?: string;
}

const NAME_ANNOTATIONS = ["io.containerd.image.name", "org.opencontainers.image.ref.name"];
const CHUNK_BYTES = 4 * 1024 * 1024;
// Bounds what an import cut short (a crash) keeps from the garbage collector.
const LEASE_TTL_MS = 60 * 60_000;

interface Archive {
  readonly file: Deno.FsFile;
  readonly entries: Map<string, TarEntry>;
  readonly path: string;
}

/**
 * Imports the OCI image layout archive at `tarPath` (`oci-layout`,
 * `index.json`, `blobs/sha256/...`): every entry of `index.json` that carries
 * a name (`io.containerd.image.name`, else `org.opencontainers.image.ref.name`)
 * becomes an image of that normalized name, its blobs are written to the
 * content store, and its layers (the host platform's, for an index) are
 * unpacked into snapshots. An image of the same name is replaced. Resolves
 * to the image names.
 *
 * Everything runs under a lease, so the garbage collector cannot take blobs
 * or snapshots before the image record and labels that keep them exist.
 * Throws InvalidArgumentError for an archive that is not an OCI layout or
 * names no image.
 */
export async function importImage(tarPath: string, opts: ImportImageOptions): Promise<string[]> {
  const snapshotter = opts.snapshotter ?? "overlayfs";
  const file = await Deno.open(tarPath, { read: true });
  const client = new ContainerdClient(opts.socket, { namespace: opts.namespace });
  let leased: ContainerdClient | undefined;
  let leaseId: string | undefined;
  try {
    const archive: Archive = { file, entries: await readTarIndex(file), path: tarPath };
    const index = archive.entries.get("index.json");
    if (index === undefined || !archive.entries.has("oci-layout")) {
      throw new InvalidArgumentError(
        "archive",
        `${tarPath} is not an OCI image layout (no index.json or oci-layout)`,
      );
    }
    const entries =
      parseJson<{ manifests?: OciDescriptor[] }>(await readRange(file, index)).manifests ?? [];
    const named = entries.flatMap((desc) => {
      const name = NAME_ANNOTATIONS.map((k) => desc.annotations?.[k]).find((n) => n);
      return name === undefined ? [] : [{ name: normalizeImage(name), desc }];
    });
    if (named.length === 0) {
      throw new InvalidArgumentError(
        "archive",
        `${tarPath} names no image (no ref.name annotation in index.json)`,
      );
    }
    const { lease } = await client.leases.create({
      id: `fsb-import-${crypto.randomUUID()}`,
      labels: { [GC_LABELS.expire]: new Date(Date.now() + LEASE_TTL_MS).toISOString() },
    });
    leaseId = lease!.id;
    leased = client.withLease(leaseId);
    const names: string[] = [];
    for (const { name, desc } of named) {
      const target = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
      const recipe = await storeImage(leased, archive, { target, name, snapshotter });
      await unpackImage(leased, recipe, { snapshotter });
      await putImage(leased, { name, target });
      names.push(name);
    }
    return [...new Set(names)];
  } catch (err) {
    throw unreachable(err, client.address);
  } finally {
    leased?.close();
    if (leaseId !== undefined) await client.leases.delete({ id: leaseId }).catch(() => {});
    client.close();
    file.close();
  }
}

/** Writes the blobs of the image rooted at `target`, children before the blobs that name them. */
async function storeImage(
  client: ContainerdClient,
  archive: Archive,
  opts: { target: OciDescriptor; name: string; snapshotter: string },
): Promise<ImageRecipe> {
  const { target, name, snapshotter } = opts;
  const rootBytes = await readBlobEntry(archive, target.digest);
  const root = parseJson<
    { manifests?: OciDescriptor[]; config?: OciDescriptor; layers?: OciDescriptor[] }
  >(
    rootBytes,
  );
  let manifest = target;
  let manifestBytes = rootBytes;
  let manifestJson = root;
  if (isIndex(target.mediaType, root)) {
    manifest = pickManifest(root.manifests ?? [], name);
    manifestBytes = await readBlobEntry(archive, manifest.digest);
    manifestJson = parseJson(manifestBytes);
  }
  const configDesc = manifestJson.config;
  if (configDesc === undefined) {
    throw new InvalidArgumentError(
      "archive",
      `${archive.path}: manifest ${manifest.digest} has no config`,
    );
  }
  const configBytes = await readBlobEntry(archive, configDesc.digest);
  const recipe = recipeOf(manifestJson, parseJson(configBytes), { manifest, what: name });
  const ref = (digest: string) => `fsb-import-${crypto.randomUUID()}-${digest}`;

  for (let i = 0; i < recipe.layers.length; i++) {
    const layer = recipe.layers[i];
    const entry = blobEntry(archive, layer.digest);
    const labels: Record<string, string> = layer.digest === recipe.diffIds[i]
      ? {}
      : { [GC_LABELS.uncompressed]: recipe.diffIds[i] };
    await client.writeBlob(layer, readChunks(archive.file, entry, { chunkBytes: CHUNK_BYTES }), {
      ref: ref(layer.digest),
      labels,
    });
  }
  await client.writeBlob(configDesc, [configBytes], {
    ref: ref(configDesc.digest),
    labels: { [GC_LABELS.snapshot(snapshotter)]: recipe.chainId },
  });
  const manifestLabels: Record<string, string> = { [GC_LABELS.config]: configDesc.digest };
  recipe.layers.forEach((l, i) => manifestLabels[GC_LABELS.layer(i)] = l.digest);
  await client.writeBlob(manifest, [manifestBytes], {
    ref: ref(manifest.digest),
    labels: manifestLabels,
  });
  if (manifest !== target) {
    // Only the host's manifest is stored; the index names just that one, so
    // the collector never looks for platforms the archive may not carry.
    const indexLabels: Record<string, string> = {};
    (root.manifests ?? []).forEach((m, i) => {
      if (m.digest === manifest.digest) indexLabels[GC_LABELS.manifest(i)] = m.digest;
    });
    await client.writeBlob(target, [rootBytes], { ref: ref(target.digest), labels: indexLabels });
  }
  return recipe;
}

/** Creates the image record, or points an existing one at the new target (import and pull alike). */
export async function putImage(
  client: ContainerdClient,
  { name, target }: { name: string; target: OciDescriptor },
): Promise<void> {
  const image = {
    name,
    target: { mediaType: target.mediaType, digest: target.digest, size: BigInt(target.size) },
  };
  try {
    await client.images.create({ image });
  } catch (err) {
    if (!isCode(err, Code.ALREADY_EXISTS)) throw err;
    await client.images.update({ image, updateMask: { paths: ["target"] } });
  }
}

function blobEntry(archive: Archive, digest: string): TarEntry {
  const [algo, hex] = digest.split(":");
  const entry = archive.entries.get(`blobs/${algo}/${hex}`);
  if (entry === undefined) {
    throw new InvalidArgumentError("archive", `${archive.path} lacks blob ${digest}`);
  }
  return entry;
}

function readBlobEntry(archive: Archive, digest: string): Promise<Uint8Array> {
  return readRange(archive.file, blobEntry(archive, digest));
}
