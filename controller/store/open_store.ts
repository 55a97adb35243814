/**
 * Opens the store named by the controller's `--store` flag.
 *
 * @module
 */
import { isAbsolute, join } from "node:path";
import { InvalidArgumentError } from "../../registry/errors.ts";
import { hostPortProblem } from "../../proto/host_port.ts";
import { SqliteStore } from "./sqlite_store.ts";
import type { Store } from "./store.ts";

/** Options for {@linkcode openStore}. */
export interface OpenStoreOptions {
  /** The controller's `--data-dir`: where a relative SQLite path lives. */
  readonly dataDir: string;
}

/**
 * Opens a store from its URL:
 * - `sqlite:` is `DATA_DIR/fsb.db`; `sqlite:PATH` is PATH, relative to
 *   `dataDir` unless absolute; `sqlite::memory:` lives in memory. The file and
 *   its directory are created when missing.
 * - `etcd://HOST:PORT[,HOST:PORT...][/PREFIX/]`: the etcd cluster, keys under
 *   PREFIX (default `/fsb/`). It checks that etcd answers before resolving.
 *
 * A malformed URL rejects with InvalidArgumentError (field `store`); an etcd
 * that does not answer, with UnavailableError.
 */
export async function openStore<T>(url: string, opts: OpenStoreOptions): Promise<Store<T>> {
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length);
    if (path === ":memory:") return new SqliteStore<T>(path);
    if (path === "") return new SqliteStore<T>(join(opts.dataDir, "fsb.db"));
    return new SqliteStore<T>(isAbsolute(path) ? path : join(opts.dataDir, path));
  }
  if (url.startsWith("etcd://")) {
    const rest = url.slice("etcd://".length);
    const slash = rest.indexOf("/");
    const hosts = (slash < 0 ? rest : rest.slice(0, slash)).split(",");
    const path = slash < 0 ? "" : rest.slice(slash);
    for (const host of hosts) {
      const problem = hostPortProblem(host);
      if (problem !== undefined) {
        throw new InvalidArgumentError(
          "store",
          `etcd member "${host}" must be HOST:PORT (${problem}), in "${url}"`,
        );
      }
    }
    const prefix = path === "" || path === "/" ? "/fsb/" : path.endsWith("/") ? path : `${path}/`;
    // Loaded on demand: importing etcd3 costs ~80 ms that a SQLite controller should not pay.
    const { EtcdStore } = await import("./etcd_store.ts");
    const store = new EtcdStore<T>(hosts, { prefix });
    try {
      await store.get("");
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }
  throw new InvalidArgumentError(
    "store",
    `must be sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...], got "${url}"`,
  );
}
