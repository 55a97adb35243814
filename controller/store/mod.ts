/**
 * The controller's persistent store (shared/DESIGN.md section 7): the
 * {@linkcode Store} interface, {@linkcode openStore} to open one from a
 * `--store` URL, and the conflict error its compare-and-set throws.
 *
 * `EtcdStore` is exported as a type only, so that importing this module does
 * not load etcd3; `openStore` loads it when an `etcd://` URL asks for it.
 *
 * @module
 */
export type {
  PutOptions,
  Store,
  StoreEntry,
  StoreEvent,
  StoreWatch,
  WatchOptions,
} from "./store.ts";
export { RevisionConflictError } from "./revision_conflict_error.ts";
export { SqliteStore } from "./sqlite_store.ts";
export type { EtcdStore, EtcdStoreOptions } from "./etcd_store.ts";
export { openStore, type OpenStoreOptions } from "./open_store.ts";
