/**
 * The controller's persistent key-value store (shared/DESIGN.md section 7):
 * one interface, with an embedded SQLite implementation and an etcd one.
 *
 * Keys are strings such as `sandboxes/<namespace>/<name>`; values are
 * JSON-serializable objects, stored as JSON and handed back as fresh copies.
 * Every write gets a revision from one store-wide counter that only grows
 * (etcd's model), so a key's revision tells which of two writes came later
 * and serves as the token for compare-and-set.
 *
 * @module
 */

/** One stored key with its value and the revision of the write that last set it. */
export interface StoreEntry<T> {
  readonly key: string;
  readonly value: T;
  /** The revision of the last put of this key; always greater than 0. */
  readonly revision: number;
}

/** The compare part of a compare-and-set write. */
export interface PutOptions {
  /**
   * `0`: the key must not exist; `n > 0`: the key must currently be at revision
   * `n`; `undefined`: write unconditionally. A failed compare throws
   * `RevisionConflictError` and changes nothing.
   */
  readonly expectRevision?: number;
}

/** A change seen by {@linkcode Store.watch}. */
export type StoreEvent<T> =
  | { readonly type: "put"; readonly key: string; readonly value: T; readonly revision: number }
  | { readonly type: "delete"; readonly key: string; readonly revision: number };

/** Options for {@linkcode Store.watch}. */
export interface WatchOptions {
  /**
   * Called when the watch fails for good (etcd: e.g. permission denied; transient
   * disconnections are retried and not reported). Without it the error goes to
   * `reportError`, which ends the process unless something handles it.
   */
  readonly onError?: (err: Error) => void;
}

/**
 * What {@linkcode Store.watch} returns: call it to unsubscribe (idempotent; no
 * event is delivered after it returns).
 */
export interface StoreWatch {
  (): void;
  /**
   * Resolves once the watch is in place: every write committed after that is
   * delivered. It also resolves when the watch is stopped first. For the list-then-watch pattern, await it before `list` and
   * ignore events whose revision is not above the listed entry's.
   */
  readonly ready: Promise<void>;
}

/**
 * A key-value store with per-key revisions and compare-and-set.
 *
 * Failures to reach the backing store reject with `UnavailableError`
 * (`status` UNAVAILABLE), as do calls after {@linkcode Store.close}.
 */
export interface Store<T> {
  /** The entry at `key`, or undefined when there is none. */
  get(key: string): Promise<StoreEntry<T> | undefined>;
  /**
   * Writes `value` at `key` and resolves to the new revision; with
   * `expectRevision`, only if the compare holds, else rejects with
   * `RevisionConflictError`.
   */
  put(key: string, value: T, opts?: PutOptions): Promise<number>;
  /**
   * Deletes `key`; resolves to false when it did not exist. With
   * `expectRevision` (`n > 0`), only if the key is at that revision, else
   * rejects with `RevisionConflictError`; `expectRevision: 0` means "must not
   * exist", so it resolves to false or rejects.
   */
  delete(key: string, opts?: PutOptions): Promise<boolean>;
  /** Every entry whose key starts with `prefix`, sorted by key (byte order of the UTF-8 key). */
  list(prefix: string): Promise<StoreEntry<T>[]>;
  /**
   * Calls `onEvent` for every put and delete of a key starting with `prefix`,
   * in revision order. A delete's revision is the revision of the delete itself.
   * `onEvent` must not throw; what it throws is passed to `reportError`.
   */
  watch(prefix: string, onEvent: (e: StoreEvent<T>) => void, opts?: WatchOptions): StoreWatch;
  /** Stops every watch and releases the store; later calls reject. */
  close(): Promise<void>;
}
