/**
 * Write-behind persistence of the sandbox table to the store: writes of one
 * key queued in order, failed writes retried.
 *
 * @module
 */
import { fromJson } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { type SandboxSpec, SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { RevisionConflictError, type Store } from "./store/mod.ts";
import { type Entry, newEntry, recordOf, SANDBOX_PREFIX, type SandboxRecord } from "./_entry.ts";

/** Options for {@linkcode Persistence}. */
export interface PersistenceOptions {
  store: Store<SandboxRecord>;
  logger: Logger<"timing">;
  /** The sandbox table: a key's write stores what it holds when the write runs. */
  entries: ReadonlyMap<string, Entry>;
}

/** Writes the sandbox table to the store, behind the replies or through them. */
export class Persistence {
  /** Keys whose latest state is not yet written (write-behind). */
  readonly #dirty = new Set<string>();
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #retryTimers = new Set<ReturnType<typeof setTimeout>>();
  /** The last store write queued per key: writes of one key never overtake each other. */
  readonly #writes = new Map<string, Promise<void>>();
  readonly #store: Store<SandboxRecord>;
  readonly #log: Logger<"timing">;
  readonly #entries: ReadonlyMap<string, Entry>;
  /**
   * The store revision of each record as this controller last read or wrote
   * it: every write is a compare-and-set against it (shared/DESIGN.md
   * section 15), so a write that another writer got in before is noticed.
   */
  readonly #revisions = new Map<string, number>();
  #closed = false;

  /** Creates the writer of `opts.entries`. */
  constructor(opts: PersistenceOptions) {
    this.#store = opts.store;
    this.#log = opts.logger;
    this.#entries = opts.entries;
  }

  /** Reads the persisted sandboxes as entries placed nowhere yet, skipping unreadable ones. */
  async load(): Promise<Entry[]> {
    const out: Entry[] = [];
    const entries = await this.#store.list(SANDBOX_PREFIX);
    for (const { key, value, revision } of entries) {
      this.#revisions.set(key, revision);
      let spec: SandboxSpec;
      try {
        spec = fromJson(SandboxSpecSchema, value.spec);
      } catch (err) {
        this.#log.warn({ key, err }, "skipping unreadable sandbox record");
        continue;
      }
      out.push(newEntry(key, spec, {
        phase: value.phase,
        agentId: value.agentId,
        endpoints: value.endpoints,
        message: value.message,
        ip: value.ip ?? "",
        runtime: value.runtime ?? "",
        path: value.path ?? "",
      }));
    }
    return out;
  }

  /**
   * Write-behind: the key's latest state is written on a later turn of the
   * event loop, after the reply has gone out. Writes that fail are retried.
   */
  markDirty(key: string): void {
    this.#dirty.add(key);
    if (this.#flushTimer === undefined && !this.#closed) {
      this.#flushTimer = setTimeout(() => {
        this.#flushTimer = undefined;
        this.#writeDirty();
      }, 0);
    }
  }

  #writeDirty(): void {
    for (const key of this.#dirty) {
      this.#write(key).catch((err) => {
        this.#log.error({ err, key }, "store write failed; will retry");
        if (this.#closed) return;
        const timer = setTimeout(() => {
          this.#retryTimers.delete(timer);
          this.markDirty(key);
        }, 1_000);
        this.#retryTimers.add(timer);
      });
    }
    this.#dirty.clear();
  }

  /** Writes the key's current state now and waits for it (write-through). */
  persist(key: string): Promise<void> {
    this.#dirty.delete(key);
    return this.#write(key);
  }

  /**
   * Writes `entry` with `spec` in place of its own and, once the store has
   * it, makes `spec` the entry's: a failed write changes nothing.
   */
  writeSpec(entry: Entry, spec: SandboxSpec): Promise<void> {
    return this.#write(entry.key, { entry, spec });
  }

  /**
   * Queues a write of whatever the key holds when the write runs (the record,
   * or its absence), behind earlier writes of the same key; with `change`,
   * the entry with the changed spec, which it takes once written.
   */
  #write(key: string, change?: { entry: Entry; spec: SandboxSpec }): Promise<void> {
    const prev = this.#writes.get(key);
    const run = async () => {
      if (change !== undefined) {
        await this.#compareAndSet(key, recordOf(change.entry, change.spec));
        // Swapped in before the next queued write of the key runs, so none writes the old spec.
        change.entry.spec = change.spec;
        return;
      }
      const entry = this.#entries.get(key);
      await this.#compareAndSet(key, entry === undefined ? undefined : recordOf(entry));
    };
    const next = prev === undefined ? run() : prev.then(run, run);
    this.#writes.set(key, next);
    const forget = () => {
      if (this.#writes.get(key) === next) this.#writes.delete(key);
    };
    next.then(forget, forget);
    return next;
  }

  /**
   * Puts `record` (or deletes the key when undefined) if the key is still at
   * the revision this controller knows. A conflict means something else wrote
   * the record since: that is logged, and this controller's state, which the
   * lease fence says is the one in charge, is written over it.
   */
  async #compareAndSet(key: string, record: SandboxRecord | undefined): Promise<void> {
    for (let attempt = 1;; attempt++) {
      const expectRevision = this.#revisions.get(key) ?? 0;
      try {
        if (record !== undefined) {
          this.#revisions.set(key, await this.#store.put(key, record, { expectRevision }));
        } else {
          if (expectRevision !== 0) await this.#store.delete(key, { expectRevision });
          this.#revisions.delete(key);
        }
        return;
      } catch (err) {
        if (!(err instanceof RevisionConflictError) || attempt >= 3) throw err;
        this.#log.warn(
          { key, err },
          "sandbox record changed behind this controller; writing its state",
        );
        if (err.actual === 0) this.#revisions.delete(key);
        else this.#revisions.set(key, err.actual);
      }
    }
  }

  /** Waits until every pending store write is done. */
  async flush(): Promise<void> {
    if (this.#flushTimer !== undefined) {
      clearTimeout(this.#flushTimer);
      this.#flushTimer = undefined;
    }
    this.#writeDirty();
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes.values()]);
  }

  /** Stops scheduling writes and retries; call after {@linkcode Persistence.flush}. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#retryTimers) clearTimeout(timer);
    this.#retryTimers.clear();
  }
}
