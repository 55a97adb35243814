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
  #closed = false;
  #stops = new Set<() => void>();

  /** Connects lazily to the etcd members at `hosts` (each `host:port`). */
  constructor(hosts: readonly string[], opts: EtcdStoreOptions = {}) {
    this.#hosts = hosts.join(",");
    this.#client = new Etcd3({ hosts: hosts.map((h) => `http://${h}`) });
    this.#kv = this.#client.namespace(opts.prefix ?? "/fsb/");
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
  async put(key: string, value: T, opts?: PutOptions): Promise<number> {
    this.#open("put", key);
    const text = JSON.stringify(value);
    const expected = opts?.expectRevision;
    try {
      if (expected === undefined) {
        const res = await this.#kv.put(key).value(text).exec();
        return Number(res.header.revision);
      }
      const res = await this.#kv
        .if(key, expected === 0 ? "Create" : "Mod", "==", expected)
        .then(this.#kv.put(key).value(text))
        .else(this.#kv.get(key))
        .commit();
      if (res.succeeded) return Number(res.header.revision);
      throw new RevisionConflictError("put", key, { expected, actual: foundRevision(res) });
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  /** See {@linkcode Store.delete}. */
  async delete(key: string, opts?: PutOptions): Promise<boolean> {
    this.#open("delete", key);
    const expected = opts?.expectRevision;
    try {
      if (expected === undefined) {
        const res = await this.#kv.delete().key(key).exec();
        return res.deleted !== "0";
      }
      const res = await this.#kv
        .if(key, expected === 0 ? "Create" : "Mod", "==", expected)
        .then(this.#kv.delete().key(key))
        .else(this.#kv.get(key))
        .commit();
      if (!res.succeeded) {
        throw new RevisionConflictError("delete", key, { expected, actual: foundRevision(res) });
      }
      return expected !== 0;
    } catch (err) {
      throw this.#wrap(err);
    }
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
