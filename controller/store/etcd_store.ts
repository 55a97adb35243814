/**
 * The store for several controllers: etcd v3 through the `etcd3` package.
 *
 * `etcd3` brings its own gRPC stack: it imports `@grpc/grpc-js` itself (the
 * lock resolves it to the same 1.14.7 that `proto/grpc.ts` pins, so one copy
 * is loaded) and loads etcd's `rpc.proto` from its own package at import time.
 * This module is the only one importing `etcd3`, and `openStore` imports it
 * lazily, so a controller on SQLite never pays for loading it (about 80 ms).
 *
 * @module
 */
import { Etcd3, GRPCDeadlineExceededError, isRecoverableError } from "etcd3";
import type { IKeyValue, Namespace } from "etcd3";
import { UnavailableError } from "../../registry/errors.ts";
import { RevisionConflictError } from "./revision_conflict_error.ts";
import type {
  PutOptions,
  Store,
  StoreEntry,
  StoreEvent,
  StoreWatch,
  WatchOptions,
} from "./store.ts";

/** Options for {@linkcode EtcdStore}. */
export interface EtcdStoreOptions {
  /** Every key is stored under this prefix, so several fsb clusters can share one etcd; default `/fsb/`. */
  readonly prefix?: string;
}

/**
 * A leader's term in etcd, as {@linkcode EtcdStore.fenced} checks it: the
 * election key (absolute), its lease and its create revision, both decimal.
 * `LeaderElection.fence()` gives one.
 */
export interface EtcdFence {
  readonly key: string;
  readonly leaseId: string;
  readonly createRevision: string;
}

/**
 * A {@linkcode Store} in etcd. A key's revision is its etcd `mod_revision`;
 * compare-and-set is one etcd transaction comparing `create_revision == 0`
 * ("must not exist") or `mod_revision == n`, which on failure reads the key in
 * the same transaction so the conflict reports the revision it found.
 *
 * `etcd3` retries a call that failed to reach etcd (up to 3 attempts) and then
 * stops trying a host for 5 s. A compare-and-set whose reply was lost and that
 * was retried may therefore report a conflict against its own write, as with
 * any etcd client; callers re-read on conflict anyway.
 */
export class EtcdStore<T> implements Store<T> {
  #client: Etcd3;
  #kv: Namespace;
  #hosts: string;
  #prefix: string;
  #closed = false;
  #stops = new Set<() => void>();

  /** Connects lazily to the etcd members at `hosts` (each `host:port`). */
  constructor(hosts: readonly string[], opts: EtcdStoreOptions = {}) {
    this.#hosts = hosts.join(",");
    this.#client = new Etcd3({ hosts: hosts.map((h) => `http://${h}`) });
    this.#prefix = opts.prefix ?? "/fsb/";
    this.#kv = this.#client.namespace(this.#prefix);
  }

  /** The etcd members, each `host:port`, as given. */
  get endpoints(): readonly string[] {
    return this.#hosts.split(",");
  }

  /** The prefix every key is stored under, e.g. `/fsb/`. */
  get prefix(): string {
    return this.#prefix;
  }

  /** See {@linkcode Store.get}. */
  async get(key: string): Promise<StoreEntry<T> | undefined> {
    this.#open("get", key);
    try {
      const res = await this.#kv.get(key).exec();
      const kv = res.kvs[0];
      return kv && entry(key, kv);
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  /** See {@linkcode Store.put}. */
  put(key: string, value: T, opts?: PutOptions): Promise<number> {
    return this.#put(key, value, opts, undefined);
  }

  /** See {@linkcode Store.delete}. */
  delete(key: string, opts?: PutOptions): Promise<boolean> {
    return this.#delete(key, opts, undefined);
  }

  /**
   * A view of this store whose every write also checks `fence`: one
   * transaction compares the record's revision (when asked) and that the
   * election key `fence.key` still exists, created at `fence.createRevision`
   * on lease `fence.leaseId`. Once that term has ended (the lease expired or
   * was revoked, the key deleted), every write through the view fails with
   * UnavailableError saying so, and nothing is written: a deposed leader
   * cannot overwrite its successor (DESIGN section 15). Reads, lists and
   * watches are the store's own. The fence key must lie under this store's
   * prefix. Closing the view only stops its writes; the store stays open.
   */
  fenced(fence: EtcdFence): Store<T> {
    if (!fence.key.startsWith(this.#prefix)) {
      throw new RangeError(
        `fence key "${fence.key}" is not under the store's prefix "${this.#prefix}"`,
      );
    }
    const relative = { ...fence, key: fence.key.slice(this.#prefix.length) };
    let closed = false;
    const check = (op: string, key: string) => {
      if (closed) throw new UnavailableError(`Cannot ${op} "${key}" as the store is closed`);
    };
    return {
      get: (key) => this.get(key),
      list: (prefix) => this.list(prefix),
      watch: (prefix, onEvent, opts) => this.watch(prefix, onEvent, opts),
      put: (key, value, opts) => {
        check("put", key);
        return this.#put(key, value, opts, relative);
      },
      delete: (key, opts) => {
        check("delete", key);
        return this.#delete(key, opts, relative);
      },
      close: () => {
        closed = true;
        return Promise.resolve();
      },
    };
  }

  async #put(
    key: string,
    value: T,
    opts: PutOptions | undefined,
    fence: EtcdFence | undefined,
  ): Promise<number> {
    this.#open("put", key);
    const text = JSON.stringify(value);
    const expected = opts?.expectRevision;
    try {
      if (expected === undefined && fence === undefined) {
        const res = await this.#kv.put(key).value(text).exec();
        return Number(res.header.revision);
      }
      const res = await this.#txn(key, expected, fence)
        .then(this.#kv.put(key).value(text))
        .else(...this.#reads(key, fence))
        .commit();
      if (res.succeeded) return Number(res.header.revision);
      throw this.#refusal("put", key, expected, fence, res);
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  async #delete(
    key: string,
    opts: PutOptions | undefined,
    fence: EtcdFence | undefined,
  ): Promise<boolean> {
    this.#open("delete", key);
    const expected = opts?.expectRevision;
    try {
      if (expected === undefined && fence === undefined) {
        const res = await this.#kv.delete().key(key).exec();
        return res.deleted !== "0";
      }
      const res = await this.#txn(key, expected, fence)
        .then(this.#kv.delete().key(key))
        .else(...this.#reads(key, fence))
        .commit();
      if (!res.succeeded) throw this.#refusal("delete", key, expected, fence, res);
      if (expected !== undefined) return expected !== 0;
      return res.responses[0]?.response_delete_range?.deleted !== "0";
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  /** A transaction comparing `key`'s revision (when `expected` is set) and the fence (when given). */
  #txn(key: string, expected: number | undefined, fence: EtcdFence | undefined) {
    let txn = expected === undefined
      ? this.#kv.if(fence!.key, "Create", "==", fence!.createRevision)
      : this.#kv.if(key, expected === 0 ? "Create" : "Mod", "==", expected);
    if (fence !== undefined) {
      if (expected !== undefined) txn = txn.and(fence.key, "Create", "==", fence.createRevision);
      txn = txn.and(fence.key, "Lease", "==", fence.leaseId);
    }
    return txn;
  }

  /** What a refused transaction reads to say why: the record, then the fence key. */
  #reads(key: string, fence: EtcdFence | undefined) {
    return fence === undefined ? [this.#kv.get(key)] : [this.#kv.get(key), this.#kv.get(fence.key)];
  }

  /** The error for a refused write: the fence's end if it was that, else a revision conflict. */
  #refusal(
    op: "put" | "delete",
    key: string,
    expected: number | undefined,
    fence: EtcdFence | undefined,
    res: { responses: { response_range?: { kvs: IKeyValue[] } }[] },
  ): Error {
    if (fence !== undefined) {
      const kv = res.responses[1]?.response_range?.kvs[0];
      if (
        kv === undefined || kv.create_revision !== fence.createRevision ||
        kv.lease !== fence.leaseId
      ) {
        return new UnavailableError(
          `Cannot ${op} "${key}" as this controller no longer leads: its term (election key ` +
            `"${this.#prefix}${fence.key}", lease ${fence.leaseId}) has ended`,
        );
      }
    }
    return new RevisionConflictError(op, key, {
      expected: expected ?? 0,
      actual: foundRevision(res),
    });
  }

  /** See {@linkcode Store.list}. etcd returns a range in key order already. */
  async list(prefix: string): Promise<StoreEntry<T>[]> {
    this.#open("list", prefix);
    try {
      const res = await this.#kv.getAll().prefix(prefix).exec();
      return res.kvs.map((kv) => entry(kv.key.toString(), kv));
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  /**
   * See {@linkcode Store.watch}. `ready` resolves when etcd confirms the watch;
   * after a lost connection `etcd3` re-creates it from the next unseen revision,
   * so no event is skipped, unless etcd compacted that revision away meanwhile.
   */
  watch(prefix: string, onEvent: (e: StoreEvent<T>) => void, opts?: WatchOptions): StoreWatch {
    if (this.#closed) return Object.assign(() => {}, { ready: Promise.resolve() });
    let stopped = false;
    // `watcher()` (unlike `create()`) returns before anything can arrive, so the
    // listeners below miss no event that etcd sends in the same tick as its confirmation.
    const watcher = this.#kv.watch().prefix(prefix).watcher();
    // Runs inside etcd3's stream handler, so nothing may escape: a value that is
    // not JSON (written by something else under our prefix) is reported, not thrown.
    const deliver = (type: "put" | "delete", kv: IKeyValue) => {
      if (stopped) return;
      try {
        const key = kv.key.toString();
        const revision = Number(kv.mod_revision);
        onEvent(
          type === "put"
            ? { type, key, value: JSON.parse(kv.value.toString()) as T, revision }
            : { type, key, revision },
        );
      } catch (err) {
        reportError(err);
      }
    };
    watcher.on("put", (kv: IKeyValue) => deliver("put", kv));
    watcher.on("delete", (kv: IKeyValue) => deliver("delete", kv));
    let settle = () => {};
    const ready = new Promise<void>((resolve) => settle = resolve);
    watcher.once("connected", () => settle());
    const stop = () => {
      if (stopped) return;
      stopped = true;
      settle();
      this.#stops.delete(stop);
      watcher.cancel().catch(() => {
        // Cancelling only fails when the connection is gone, which ends the watch anyway.
      });
    };
    watcher.on("error", (err: Error) => {
      if (stopped) return;
      stop();
      const wrapped = new UnavailableError(
        `Cannot watch "${prefix}" in etcd at ${this.#hosts}: ${err.message}`,
      );
      if (opts?.onError) opts.onError(wrapped);
      else reportError(wrapped);
    });
    this.#stops.add(stop);
    return Object.assign(stop, { ready });
  }

  /** See {@linkcode Store.close}. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const stop of [...this.#stops]) stop();
      this.#client.close();
    }
    return Promise.resolve();
  }

  #open(op: string, key: string): void {
    if (this.#closed) throw new UnavailableError(`Cannot ${op} "${key}" as the store is closed`);
  }

  /** Turns "etcd cannot be reached" failures into UnavailableError; anything else is a bug and stays as it is. */
  #wrap(err: unknown): unknown {
    if (!(err instanceof Error) || err instanceof RevisionConflictError) return err;
    const unreachable = isRecoverableError(err) || err instanceof GRPCDeadlineExceededError ||
      (err as { isBrokenCircuitError?: boolean }).isBrokenCircuitError === true;
    if (!unreachable) return err;
    const wrapped = new UnavailableError(`Cannot reach etcd at ${this.#hosts}: ${err.message}`);
    wrapped.cause = err;
    return wrapped;
  }
}

function entry<T>(key: string, kv: IKeyValue): StoreEntry<T> {
  return { key, value: JSON.parse(kv.value.toString()) as T, revision: Number(kv.mod_revision) };
}

/** The key's mod_revision read by the failure branch of a compare-and-set (0 = absent). */
function foundRevision(res: { responses: { response_range?: { kvs: IKeyValue[] } }[] }): number {
  const kv = res.responses[0]?.response_range?.kvs[0];
  return kv ? Number(kv.mod_revision) : 0;
}
