/**
 * The warm containers a pool holds, per image, and their refill in the
 * background. Private to the warm pool, which claims from it.
 *
 * @module
 */
import type { ResolvedResources } from "../resources.ts";
import type { ContainerdClient } from "./client.ts";
import { WarmContainers, type WarmEntry, type WarmImage } from "./_warm_container.ts";

/** Where the stock reports trouble it works around. */
export interface WarmStockLogger {
  warn(obj: object, msg: string): void;
}

/** Options for {@linkcode WarmStock}. */
export interface WarmStockOptions {
  readonly containers: WarmContainers;
  /** For the waits that notice a warm container ending before its claim. */
  readonly client: ContainerdClient;
  /** How many to keep, by normalized image. */
  readonly targets: ReadonlyMap<string, number>;
  /** The limits warm containers are made with. */
  readonly limits: ResolvedResources;
  /** How many more containers the agent may hold now; no bound unless told. */
  readonly room?: () => number;
  /** How long after a claim the refill starts. */
  readonly refillDelayMs: number;
  /**
   * Whether claims are in flight: the refill then waits (for at most a
   * second at a time), as making a container would compete with them for
   * containerd's store and the CPUs. Never busy unless told.
   */
  readonly busy?: () => boolean;
  readonly logger?: WarmStockLogger;
}

/** One image's stock. */
interface Shelf {
  readonly target: number;
  readonly ready: WarmEntry[];
  making: number;
  /** The image as last resolved (undefined until a container of it was made or adopted). */
  img?: WarmImage;
  failures: number;
  retryAt: number;
}

const NO_DEADLINE_MS = 365 * 24 * 3600_000;
const MAX_BACKOFF_MS = 30_000;
const ROOM_RECHECK_MS = 1000;
/** The longest a refill waits for claims in flight to end: a steady stream of claims must not starve it. */
const MAX_BUSY_WAIT_MS = 1000;

/**
 * Ready warm containers per image, refilled one at a time (within the
 * caller's room, backing off per image after failures), each watched so that
 * one whose task ends before a claim is dropped and replaced.
 */
export class WarmStock {
  readonly #opts: WarmStockOptions;
  readonly #shelves = new Map<string, Shelf>();
  readonly #watchers = new Map<string, AbortController>();
  /** Ids of the containers being made. */
  readonly #making = new Set<string>();
  readonly #removals = new Set<Promise<void>>();
  #refilling: Promise<void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** When the refill first found claims in flight, since it last made a container. */
  #busySince: number | undefined;

  /** An empty stock of `opts.targets`; {@linkcode refill} fills it. */
  constructor(opts: WarmStockOptions) {
    this.#opts = opts;
    for (const [image, target] of opts.targets) {
      this.#shelves.set(image, { target, ready: [], making: 0, failures: 0, retryAt: 0 });
    }
  }

  /** How many of `image` to keep; undefined when it is not kept at all. */
  target(image: string): number | undefined {
    return this.#shelves.get(image)?.target;
  }

  /** `image` as last resolved, or undefined before a container of it was made or adopted. */
  image(image: string): WarmImage | undefined {
    return this.#shelves.get(image)?.img;
  }

  /** Ready and in-the-making containers. */
  get held(): number {
    let n = 0;
    for (const shelf of this.#shelves.values()) n += shelf.ready.length + shelf.making;
    return n;
  }

  /** Containers being made now. */
  get making(): number {
    return this.#making.size;
  }

  /** Ready containers per image. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [image, shelf] of this.#shelves) out[image] = shelf.ready.length;
    return out;
  }

  /** Whether container `id` is this stock's (ready or being made). */
  holds(id: string): boolean {
    return this.#watchers.has(id) || this.#making.has(id);
  }

  /**
   * The first ready container of `image` for which `open` gives something
   * (e.g. its FIFO, opened), taken out of the stock; the others tried on the
   * way, stale (made from another config than `img`'s) or refused, go.
   */
  take<T>(
    image: string,
    opts: { img: WarmImage; open: (entry: WarmEntry) => T | undefined },
  ): [WarmEntry, T] | undefined {
    const shelf = this.#shelves.get(image);
    if (shelf === undefined) return undefined;
    const config = opts.img.recipe.configDescriptor.digest;
    for (let entry = shelf.ready.shift(); entry !== undefined; entry = shelf.ready.shift()) {
      this.#unwatch(entry.id);
      const got = entry.config === config ? opts.open(entry) : undefined;
      if (got !== undefined) return [entry, got];
      this.retire(entry);
    }
    return undefined;
  }

  /**
   * Takes adopted `entry` into the stock when it is what the stock would
   * make now (image, config, limits) and its image is short of its target;
   * false otherwise (the caller removes it).
   */
  adopt(entry: WarmEntry, img: WarmImage): boolean {
    const shelf = this.#shelves.get(entry.image);
    const l = entry.limits;
    const want = this.#opts.limits;
    if (
      shelf === undefined || shelf.ready.length + shelf.making >= shelf.target ||
      entry.config !== img.recipe.configDescriptor.digest ||
      l.pids !== want.pids || l.cpuMillis !== want.cpuMillis || l.memoryBytes !== want.memoryBytes
    ) {
      return false;
    }
    shelf.img = img;
    this.#shelve(shelf, entry);
    return true;
  }

  /** Removes `entry` (and its log, at `logPath`) in the background; {@linkcode settled} waits for it. */
  retire(entry: WarmEntry, logPath = entry.logPath): void {
    this.#unwatch(entry.id);
    const removal = this.#opts.containers.remove(entry.id, { fifo: entry.fifo, logPath })
      .catch((err) =>
        this.#opts.logger?.warn(
          { container: entry.id, err: String(err) },
          "removing a warm container failed",
        )
      )
      .finally(() => this.#removals.delete(removal));
    this.#removals.add(removal);
  }

  /** Starts a background refill now, unless one runs; never waits for it. */
  refill(): void {
    if (this.#stopped || this.#refilling !== undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#refilling = this.#fill().finally(() => this.#refilling = undefined);
  }

  /** Starts a refill after the refill delay (e.g. after a claim). */
  refillSoon(): void {
    this.#wake(this.#opts.refillDelayMs);
  }

  /**
   * Stops refilling, waits for a container being made (removed once made),
   * and hands back the ready ones, no longer watched: the caller removes or
   * leaves them.
   */
  async stop(): Promise<WarmEntry[]> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#refilling;
    const out: WarmEntry[] = [];
    for (const shelf of this.#shelves.values()) {
      for (const entry of shelf.ready.splice(0)) {
        this.#unwatch(entry.id);
        out.push(entry);
      }
    }
    return out;
  }

  /** Until every removal started has ended. */
  async settled(): Promise<void> {
    while (this.#removals.size > 0) await Promise.all(this.#removals);
  }

  /** Makes containers, one at a time, until every image has its count or must wait. */
  async #fill(): Promise<void> {
    while (!this.#stopped) {
      const now = Date.now();
      let next: [string, Shelf] | undefined;
      let wait = Infinity;
      for (const [image, shelf] of this.#shelves) {
        if (shelf.ready.length + shelf.making >= shelf.target) continue;
        if (shelf.retryAt > now) {
          wait = Math.min(wait, shelf.retryAt - now);
          continue;
        }
        next ??= [image, shelf];
      }
      if (next === undefined) {
        if (wait !== Infinity) this.#wake(wait);
        return;
      }
      if ((this.#opts.room?.() ?? Infinity) <= 0) {
        this.#wake(ROOM_RECHECK_MS);
        return;
      }
      if (this.#opts.busy?.() && now - (this.#busySince ??= now) < MAX_BUSY_WAIT_MS) {
        this.#wake(this.#opts.refillDelayMs);
        return;
      }
      this.#busySince = undefined;
      await this.#makeOne(...next);
    }
  }

  async #makeOne(image: string, shelf: Shelf): Promise<void> {
    shelf.making++;
    const id = WarmContainers.newId();
    this.#making.add(id);
    try {
      const img = await this.#opts.containers.resolve(image);
      if (shelf.img?.recipe.configDescriptor.digest !== img.recipe.configDescriptor.digest) {
        // The image was re-tagged: what was made from the old one must not be handed out.
        for (const stale of shelf.ready.splice(0)) this.retire(stale);
      }
      shelf.img = img;
      const entry = await this.#opts.containers.make(img, { id, limits: this.#opts.limits });
      shelf.failures = 0;
      if (this.#stopped) this.retire(entry);
      else this.#shelve(shelf, entry);
    } catch (err) {
      shelf.failures++;
      shelf.retryAt = Date.now() + Math.min(MAX_BACKOFF_MS, 100 * 2 ** shelf.failures);
      this.#opts.logger?.warn(
        { image, err: String(err), failures: shelf.failures },
        "cannot make a warm container",
      );
    } finally {
      shelf.making--;
      this.#making.delete(id);
    }
  }

  #wake(ms: number): void {
    if (this.#stopped || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.refill();
    }, ms);
  }

  /** Puts `entry` on `shelf` and drops it should its task end before a claim. */
  #shelve(shelf: Shelf, entry: WarmEntry): void {
    shelf.ready.push(entry);
    const watcher = new AbortController();
    this.#watchers.set(entry.id, watcher);
    this.#opts.client.tasks.wait({ containerId: entry.id }, {
      timeoutMs: NO_DEADLINE_MS,
      signal: watcher.signal,
    }).then(
      () => {
        const at = shelf.ready.indexOf(entry);
        if (at < 0) return;
        shelf.ready.splice(at, 1);
        this.#opts.logger?.warn({ container: entry.id }, "a warm container ended before a claim");
        this.retire(entry);
        this.refillSoon();
      },
      () => {},
    );
  }

  #unwatch(id: string): void {
    this.#watchers.get(id)?.abort();
    this.#watchers.delete(id);
  }
}
