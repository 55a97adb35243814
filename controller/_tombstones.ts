/**
 * Ids of sandboxes the controller gave up on. Those whose container may still
 * be on an agent are kept in the store (`tombstones/<id>`) until the agent
 * confirms it is gone, so that no restart or failover adopts them; those
 * confirmed gone are kept in memory only, bounded, against reports already in
 * flight.
 *
 * @module
 */
import type { Logger } from "pino";
import type { Store } from "./store/mod.ts";

/** The store prefix of tombstones. */
export const TOMBSTONE_PREFIX = "tombstones/";

/** How many confirmed ids are remembered; the oldest go first. */
const CONFIRMED_LIMIT = 10_000;

/** How long a failed tombstone write waits before it is tried again. */
const RETRY_MS = 1_000;

/** What the store keeps per tombstone. */
export interface TombstoneRecord {
  /** The agent that may still hold the container ("" when unknown). */
  agentId: string;
}

/** Options for {@linkcode Tombstones}. */
export interface TombstonesOptions {
  store: Store<TombstoneRecord>;
  logger: Logger<"timing">;
}

/** Ids of sandboxes the controller gave up on; an agent reporting one is told to delete it. */
export class Tombstones {
  /** Containers that may still exist, by id, to the agent that may hold them: never dropped. */
  readonly #pending = new Map<string, string>();
  /** Ids whose agent confirmed the container gone, oldest first. */
  readonly #confirmed = new Set<string>();
  /** The last store write queued per id: writes of one id never overtake each other. */
  readonly #writes = new Map<string, Promise<void>>();
  readonly #retryTimers = new Set<ReturnType<typeof setTimeout>>();
  readonly #store: Store<TombstoneRecord>;
  readonly #log: Logger<"timing">;
  #closed = false;
  #warnedFull = false;

  /** Creates the set; {@linkcode Tombstones.load} fills it from the store. */
  constructor(opts: TombstonesOptions) {
    this.#store = opts.store;
    this.#log = opts.logger;
  }

  /** Reads the tombstones the store keeps; resolves to how many. */
  async load(): Promise<number> {
    for (const { key, value } of await this.#store.list(TOMBSTONE_PREFIX)) {
      this.#pending.set(key.slice(TOMBSTONE_PREFIX.length), value.agentId ?? "");
    }
    return this.#pending.size;
  }

  /** Whether `id` was given up on. */
  has(id: string): boolean {
    return this.#pending.has(id) || this.#confirmed.has(id);
  }

  /** The ids whose containers agent `agentId` may still hold. */
  pendingOn(agentId: string): string[] {
    const out: string[] = [];
    for (const [id, agent] of this.#pending) if (agent === agentId) out.push(id);
    return out;
  }

  /**
   * Records `id`, whose container `agentId` may still hold, in the store
   * until {@linkcode Tombstones.gone}. Resolves once the store has it; a
   * failed write rejects and is retried in the background.
   */
  add(id: string, agentId: string): Promise<void> {
    if (this.#pending.get(id) === agentId) return this.#writes.get(id) ?? Promise.resolve();
    this.#confirmed.delete(id);
    this.#pending.set(id, agentId);
    if (this.#pending.size > CONFIRMED_LIMIT && !this.#warnedFull) {
      // Each stands for a container that may still run, so none is dropped; many mean agents
      // that never came back to confirm their deletes.
      this.#warnedFull = true;
      this.#log.warn({ tombstones: this.#pending.size }, "many deletes await their agents");
    }
    return this.#write(id);
  }

  /**
   * The agent confirmed `id`'s container gone: its stored tombstone is
   * removed, and the id remembered in memory against reports in flight.
   */
  gone(id: string): void {
    const wasPending = this.#pending.delete(id);
    this.#confirmed.delete(id);
    if (this.#confirmed.size >= CONFIRMED_LIMIT) {
      const oldest = this.#confirmed.values().next().value;
      if (oldest !== undefined) this.#confirmed.delete(oldest);
    }
    this.#confirmed.add(id);
    if (wasPending || this.#writes.has(id)) {
      this.#write(id).catch(() => {/* logged and retried by #write */});
    }
  }

  /**
   * Drops `id` altogether: a stored record still names it, so that record,
   * not the tombstone, says what becomes of it.
   */
  revoke(id: string): void {
    this.#confirmed.delete(id);
    if (this.#pending.delete(id)) this.#write(id).catch(() => {});
  }

  /** Queues a write of what `id` is when the write runs: a tombstone, or none. */
  #write(id: string): Promise<void> {
    const key = `${TOMBSTONE_PREFIX}${id}`;
    const prev = this.#writes.get(id);
    const run = async () => {
      const agentId = this.#pending.get(id);
      if (agentId === undefined) await this.#store.delete(key);
      else await this.#store.put(key, { agentId });
    };
    const next = prev === undefined ? run() : prev.then(run, run);
    this.#writes.set(id, next);
    next.then(
      () => {
        if (this.#writes.get(id) === next) this.#writes.delete(id);
      },
      (err: unknown) => {
        if (this.#writes.get(id) === next) this.#writes.delete(id);
        this.#log.error({ err, id }, "tombstone write failed; will retry");
        if (this.#closed) return;
        const timer = setTimeout(() => {
          this.#retryTimers.delete(timer);
          this.#write(id).catch(() => {});
        }, RETRY_MS);
        this.#retryTimers.add(timer);
      },
    );
    return next;
  }

  /** Waits until every queued write is done. */
  async flush(): Promise<void> {
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes.values()]);
  }

  /** Stops retrying; call after {@linkcode Tombstones.flush}. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#retryTimers) clearTimeout(timer);
    this.#retryTimers.clear();
  }
}
