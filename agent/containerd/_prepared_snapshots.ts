/**
 * Writable snapshots prepared ahead of any request, per image, so that a
 * create the warm pool cannot serve skips `snapshot_prepare` (the
 * "prepared" path of shared/DESIGN.md section 13). Private to the folder.
 *
 * @module
 */
import type { Mount } from "../../proto/gen/containerd/types/mount_pb.ts";
import { normalizeImage } from "../../registry/normalize_image.ts";
import { type ContainerdClient, isNotFound } from "./client.ts";
import type { ImageRecipe } from "./image.ts";

/** The prefix of every prepared snapshot's key: what a sweep after a crash looks for. */
export const PREPARED_KEY_PREFIX = "fsb-prep-";
/**
 * Keeps a snapshot no container references yet from containerd's garbage
 * collector, which would otherwise remove it at the next collection.
 */
const GC_ROOT_LABEL = "containerd.io/gc.root";
const SNAPSHOTTER = "overlayfs";

/** A snapshot handed to a create: its key goes in the container's `snapshotKey`. */
export interface PreparedSnapshot {
  readonly key: string;
  readonly mounts: Mount[];
}

/** Where trouble the stock works around is reported (a pino logger fits). */
export interface PreparedLogger {
  warn(obj: object, msg: string): void;
}

/** Options for {@linkcode PreparedSnapshots}. */
export interface PreparedSnapshotsOptions {
  /** Stays the caller's to close. */
  readonly client: ContainerdClient;
  /** How many snapshots to keep ready per image (any spelling of its name). */
  readonly images: Readonly<Record<string, number>>;
  /**
   * The recipe of a local image, unpacked (its chain committed), or
   * undefined when the host lacks it; the runtime's, so recipes are shared.
   */
  readonly recipeOf: (image: string) => Promise<ImageRecipe | undefined>;
  /** How long after a take the refill starts, so it does not compete with the create; 100 ms unless told. */
  readonly refillDelayMs?: number;
  readonly logger?: PreparedLogger;
}

interface Stock {
  readonly image: string;
  readonly want: number;
  /** The image's chain, once known: what takes match on. */
  chainId?: string;
  readonly ready: PreparedSnapshot[];
}

/**
 * Keeps `images[image]` writable snapshots of each image's chain ready and
 * hands each out once. Takes are synchronous (no containerd call): a take
 * only removes a ready snapshot from the stock, and the refill comes later
 * in the background, one snapshot at a time.
 *
 * Ownership: a taken snapshot is the caller's from then on (its container's
 * `snapshotKey`; the caller removes it with the container, or at once if the
 * create fails). Snapshots carry the garbage collector's root label, since no
 * container references them while they wait; so {@linkcode start} removes
 * those an earlier run left that no container references, and
 * {@linkcode close} removes the ready ones.
 */
export class PreparedSnapshots {
  readonly #opts: PreparedSnapshotsOptions;
  readonly #stocks: Stock[];
  #refilling: Promise<void> | undefined;
  #refillTimer: ReturnType<typeof setTimeout> | undefined;
  #again = false;
  #closed = false;
  #started = false;

  /** Makes nothing until {@linkcode start}. */
  constructor(opts: PreparedSnapshotsOptions) {
    this.#opts = opts;
    const wanted = new Map<string, number>();
    for (const [image, n] of Object.entries(opts.images)) {
      if (n > 0) wanted.set(normalizeImage(image), n);
    }
    this.#stocks = [...wanted].map(([image, want]) => ({ image, want, ready: [] }));
  }

  /**
   * Removes prepared snapshots an earlier run left that no container
   * references (a crash between take and container create, or an unclean
   * stop), then starts filling the stock in the background.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    await this.#sweep();
    this.#refill();
  }

  /**
   * A ready snapshot of chain `chainId`, or undefined when none is ready.
   * Either way the stock refills later; a refill also notices an image whose
   * name now points at other layers (its ready snapshots then serve no one).
   */
  take(chainId: string): PreparedSnapshot | undefined {
    this.#refillLater();
    for (const stock of this.#stocks) {
      if (stock.chainId !== chainId) continue;
      const snapshot = stock.ready.shift();
      if (snapshot !== undefined) return snapshot;
    }
    return undefined;
  }

  /** Ready snapshots per normalized image. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.#stocks) out[s.image] = s.ready.length;
    return out;
  }

  /** Stops refilling and removes the snapshots not taken. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#refillTimer);
    this.#refillTimer = undefined;
    await this.#refilling;
    for (const stock of this.#stocks) {
      for (const s of stock.ready.splice(0)) await this.#remove(s.key);
    }
  }

  #refillLater(): void {
    if (this.#refillTimer !== undefined || this.#closed) return;
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      this.#refill();
    }, this.#opts.refillDelayMs ?? 100);
  }

  /** Fills every stock, one snapshot at a time; a take meanwhile makes it go round again. */
  #refill(): void {
    if (this.#closed || !this.#started) return;
    if (this.#refilling !== undefined) {
      this.#again = true;
      return;
    }
    this.#refilling = (async () => {
      do {
        this.#again = false;
        for (const stock of this.#stocks) {
          try {
            await this.#fill(stock);
          } catch (err) {
            this.#opts.logger?.warn(
              { image: stock.image, err: String(err) },
              "cannot prepare a snapshot ahead",
            );
          }
        }
      } while (this.#again && !this.#closed);
    })().finally(() => this.#refilling = undefined);
  }

  async #fill(stock: Stock): Promise<void> {
    const recipe = await this.#opts.recipeOf(stock.image);
    // An image the host lacks has nothing to prepare; a later take tries again.
    if (recipe === undefined) return;
    if (stock.chainId !== recipe.chainId) {
      // The name now points at another image: the old chain's snapshots serve no take.
      for (const s of stock.ready.splice(0)) await this.#remove(s.key);
      stock.chainId = recipe.chainId;
    }
    while (!this.#closed && stock.ready.length < stock.want) {
      const key = `${PREPARED_KEY_PREFIX}${crypto.randomUUID()}`;
      const { mounts } = await this.#opts.client.snapshots.prepare({
        snapshotter: SNAPSHOTTER,
        key,
        parent: recipe.chainId,
        labels: { [GC_ROOT_LABEL]: new Date().toISOString() },
      });
      if (this.#closed) {
        await this.#remove(key);
        return;
      }
      stock.ready.push({ key, mounts });
    }
  }

  async #sweep(): Promise<void> {
    const client = this.#opts.client;
    const { containers } = await client.containers.list({});
    const used = new Set(containers.map((c) => c.snapshotKey));
    const stale: string[] = [];
    for await (const res of client.snapshots.list({ snapshotter: SNAPSHOTTER })) {
      for (const info of res.info) {
        if (info.name.startsWith(PREPARED_KEY_PREFIX) && !used.has(info.name)) {
          stale.push(info.name);
        }
      }
    }
    for (const key of stale) await this.#remove(key);
  }

  async #remove(key: string): Promise<void> {
    await this.#opts.client.snapshots.remove({ snapshotter: SNAPSHOTTER, key }).catch((err) => {
      if (!isNotFound(err)) {
        this.#opts.logger?.warn({ key, err: String(err) }, "cannot remove a prepared snapshot");
      }
    });
  }
}
