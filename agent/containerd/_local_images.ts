/**
 * The images a containerd runtime creates sandboxes from: found by any
 * spelling of their name, pulled when the policy allows, their recipes read
 * once and their layers unpacked once. Private to the folder.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import type { Mount } from "../../proto/gen/containerd/types/mount_pb.ts";
import { Code, RpcError } from "../../proto/grpc.ts";
import { FailedPreconditionError, UnavailableError } from "../../registry/errors.ts";
import { normalizeImage } from "../../registry/normalize_image.ts";
import { type ContainerdClient, isCode, isNotFound } from "./client.ts";
import {
  GC_LABELS,
  type ImageRecipe,
  type OciDescriptor,
  readRecipe,
  unpackImage,
} from "./image.ts";
import { ImagePuller, type PullResult, type RegistryOptions } from "./pull.ts";

const UNPACK_LEASE_TTL_MS = 60 * 60_000;

/** Options for {@linkcode LocalImages}. */
export interface LocalImagesOptions {
  /** The runtime's client; stays the caller's to close. */
  readonly client: ContainerdClient;
  /** containerd's socket, for the puller's own connection. */
  readonly socket: string;
  readonly snapshotter: string;
  /** Whether a missing image is pulled from its registry: `never` unless told. */
  readonly pull?: "if-missing" | "never";
  /** How pulls reach registries (plain-HTTP hosts, credentials). */
  readonly registry?: RegistryOptions;
}

/** An image found on the host: the name containerd stores it under, and its recipe. */
export interface LocalImage {
  readonly imageName: string;
  readonly recipe: ImageRecipe;
}

/** The images of one containerd namespace, as a runtime uses them. */
export class LocalImages {
  readonly #opts: LocalImagesOptions;
  /** Recipes by image target digest: content-addressed, so never stale. */
  readonly #recipes = new Map<string, Promise<ImageRecipe>>();
  /** Chain ids known to be committed snapshots. */
  readonly #unpacked = new Set<string>();
  readonly #unpacking = new Map<string, Promise<void>>();
  #puller: ImagePuller | undefined;

  /** Reads nothing until asked. */
  constructor(opts: LocalImagesOptions) {
    this.#opts = opts;
  }

  /**
   * Finds `spec.image` by its normalized name (any spelling stored in
   * containerd), pulling it when it is missing and the policy allows
   * (`onPulled` then marks the end of the pull), and reads its recipe.
   * Throws FailedPreconditionError naming the sandbox for an image the host
   * lacks (with the pull's reason when a pull failed).
   */
  async resolve(
    spec: SandboxSpec,
    signal: AbortSignal | undefined,
    onPulled?: () => void,
  ): Promise<LocalImage> {
    const found = await this.find(spec.image, signal);
    if (found !== undefined) return found;
    if (this.#opts.pull === "if-missing") {
      const pulled = await this.#pull(spec, signal);
      onPulled?.();
      return this.#withRecipe(pulled.name, pulled.target, spec.image);
    }
    throw new FailedPreconditionError(
      `Cannot create sandbox ${spec.sandboxId} as image "${spec.image}" is not present on this host`,
    );
  }

  /**
   * `image` as the host has it, by its normalized name (any spelling stored
   * in containerd), with its recipe; undefined when the host lacks it. Never
   * pulls.
   */
  async find(image: string, signal?: AbortSignal): Promise<LocalImage | undefined> {
    const client = this.#opts.client;
    const wanted = normalizeImage(image);
    let found;
    try {
      ({ image: found } = await client.images.get({ name: wanted }, { signal }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      // Stored under another spelling, e.g. `busybox:latest` by another tool.
      const { images } = await client.images.list({}, { signal });
      found = images.find((i) => normalizeImage(i.name) === wanted);
    }
    if (found?.target === undefined) return undefined;
    const { mediaType, digest, size } = found.target;
    return await this.#withRecipe(found.name, { mediaType, digest, size: Number(size) }, image);
  }

  /** Image `imageName` of root `target` with its recipe, read once per digest. */
  async #withRecipe(imageName: string, target: OciDescriptor, asked: string): Promise<LocalImage> {
    let recipe = this.#recipes.get(target.digest);
    if (recipe === undefined) {
      // Shared by concurrent creates, so no one create's signal may cancel it.
      recipe = readRecipe(this.#opts.client, target, { what: `"${asked}"` });
      this.#recipes.set(target.digest, recipe);
      recipe.catch(() => this.#recipes.delete(target.digest));
    }
    return { imageName, recipe: await recipe };
  }

  /** Whether the recipe's layers are known to be committed snapshots. */
  unpacked(recipe: ImageRecipe): boolean {
    return this.#unpacked.has(recipe.chainId);
  }

  /**
   * Unpacks the image's layers if they are not committed snapshots yet; one
   * unpack per chain at a time. With `again`, a chain thought unpacked is
   * checked anew (e.g. its snapshots were collected since).
   */
  unpack(recipe: ImageRecipe, opts: { again?: boolean } = {}): Promise<void> {
    if (opts.again) this.#unpacked.delete(recipe.chainId);
    let pending = this.#unpacking.get(recipe.chainId);
    if (pending === undefined) {
      pending = this.#unpackLeased(recipe).finally(() => this.#unpacking.delete(recipe.chainId));
      this.#unpacking.set(recipe.chainId, pending);
    }
    return pending;
  }

  /** A local image's recipe with its chain unpacked, or undefined when the host lacks it. */
  async recipeOf(image: string): Promise<ImageRecipe | undefined> {
    let recipe;
    try {
      ({ recipe } = await this.resolve(create(SandboxSpecSchema, { image }), undefined));
    } catch (err) {
      if (err instanceof FailedPreconditionError) return undefined;
      throw err;
    }
    if (!this.unpacked(recipe)) await this.unpack(recipe);
    return recipe;
  }

  /**
   * Prepares writable snapshot `key` on the recipe's chain. A chain gone
   * since it was unpacked (image removed and collected) is unpacked again; a
   * stale snapshot under `key` (no container owns it yet) is replaced.
   */
  async prepareSnapshot(key: string, recipe: ImageRecipe): Promise<Mount[]> {
    const { client, snapshotter } = this.#opts;
    const req = { snapshotter, key, parent: recipe.chainId };
    for (let attempt = 0;; attempt++) {
      try {
        return (await client.snapshots.prepare(req)).mounts;
      } catch (err) {
        if (attempt > 0) throw err;
        if (isNotFound(err)) {
          await this.unpack(recipe, { again: true });
        } else if (isCode(err, Code.ALREADY_EXISTS)) {
          await client.snapshots.remove({ snapshotter, key });
        } else {
          throw err;
        }
      }
    }
  }

  /** Closes the puller's connection, if a pull made one. */
  close(): void {
    this.#puller?.close();
  }

  /**
   * Pulls the spec's image (without unpacking: the create does that). A
   * registry's refusal (no such image, credentials, a corrupt blob, no
   * manifest for this platform) becomes a FailedPreconditionError naming the
   * sandbox and the image with the pull's reason; UnavailableError (registry
   * or containerd unreachable) and containerd's own errors pass as they are.
   */
  async #pull(spec: SandboxSpec, signal: AbortSignal | undefined): Promise<PullResult> {
    this.#puller ??= new ImagePuller({
      ...this.#opts.registry,
      socket: this.#opts.socket,
      namespace: this.#opts.client.namespace,
      snapshotter: this.#opts.snapshotter,
      unpack: false,
    });
    try {
      return await this.#puller.pull(spec.image, { signal });
    } catch (err) {
      if (err instanceof RpcError || err instanceof UnavailableError || signal?.aborted) throw err;
      throw new FailedPreconditionError(
        `Cannot create sandbox ${spec.sandboxId} as image "${spec.image}" is not present on this host and pulling it failed: ${
          (err as Error).message
        }`,
      );
    }
  }

  async #unpackLeased(recipe: ImageRecipe): Promise<void> {
    const client = this.#opts.client;
    const { lease } = await client.leases.create({
      id: `fsb-unpack-${crypto.randomUUID()}`,
      labels: { [GC_LABELS.expire]: new Date(Date.now() + UNPACK_LEASE_TTL_MS).toISOString() },
    });
    const leased = client.withLease(lease!.id);
    try {
      await unpackImage(leased, recipe, { snapshotter: this.#opts.snapshotter });
      this.#unpacked.add(recipe.chainId);
    } catch (err) {
      if (isNotFound(err)) {
        throw new FailedPreconditionError(
          `Cannot unpack image with config ${recipe.configDescriptor.digest} as its content is missing: ${
            (err as Error).message
          }`,
        );
      }
      throw err;
    } finally {
      leased.close();
      await client.leases.delete({ id: lease!.id }).catch(() => {});
    }
  }
}
