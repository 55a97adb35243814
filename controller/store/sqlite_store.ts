/**
 * The embedded store: one SQLite file through `node:sqlite`.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
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

const SCHEMA_VERSION = 1;

interface Subscriber<T> {
  readonly prefix: string;
  readonly onEvent: (e: StoreEvent<T>) => void;
}

interface Row {
  key: string;
  value: string;
  revision: number;
}

const alreadyReady: Promise<void> = Promise.resolve();

/**
 * A {@linkcode Store} in one SQLite file, for a single controller process.
 *
 * Durability: WAL journal with `synchronous=NORMAL`. A commit reaches the OS
 * (the WAL file) before the call returns, so everything acknowledged survives
 * the process being killed, SIGKILL included; the WAL is fsynced only at
 * checkpoints, so a power loss or kernel crash may lose the last commits
 * (never corrupting the file). That trade buys sub-100 µs writes.
 *
 * Watches see the writes made through this instance only: another process
 * writing the same file is not noticed (its writes are still read by `get` and
 * `list`, and compare-and-set stays correct across processes, as every write
 * runs in an immediate transaction).
 */
export class SqliteStore<T> implements Store<T> {
  #db: DatabaseSync;
  #closed = false;
  #subscribers = new Set<Subscriber<T>>();
  #begin: StatementSync;
  #commit: StatementSync;
  #rollback: StatementSync;
  #select: StatementSync;
  #selectRevision: StatementSync;
  #nextRevision: StatementSync;
  #upsert: StatementSync;
  #remove: StatementSync;
  #listAll: StatementSync;
  #listRange: StatementSync;

  /**
   * Opens (creating when missing) the database at `file`, and the directory
   * holding it. `":memory:"` gives a store that lives as long as the instance.
   */
  constructor(file: string) {
    if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true });
    const db = new DatabaseSync(file);
    this.#db = db;
    try {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = NORMAL");
      // Another process (a second controller by mistake, a backup tool) may hold the lock briefly.
      db.exec("PRAGMA busy_timeout = 5000");
      const version = (db.prepare("PRAGMA user_version").get() as { user_version: number })
        .user_version;
      if (version > SCHEMA_VERSION) {
        throw new Error(
          `Cannot open store "${file}" as its schema version ${version} is newer than this fsb's ${SCHEMA_VERSION}`,
        );
      }
      db.exec(`
        CREATE TABLE IF NOT EXISTS kv (
          key TEXT PRIMARY KEY,
          value TEXT NOT NULL,
          revision INTEGER NOT NULL
        ) WITHOUT ROWID;
        -- The store-wide revision counter. It cannot be derived from max(kv.revision):
        -- deleting the newest key would let a later write reuse a revision a caller
        -- still holds for that key, and a stale compare-and-set would then succeed.
        CREATE TABLE IF NOT EXISTS meta (
          name TEXT PRIMARY KEY,
          value INTEGER NOT NULL
        ) WITHOUT ROWID;
        INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);
        PRAGMA user_version = ${SCHEMA_VERSION};
      `);
      this.#begin = db.prepare("BEGIN IMMEDIATE");
      this.#commit = db.prepare("COMMIT");
      this.#rollback = db.prepare("ROLLBACK");
      this.#select = db.prepare("SELECT value, revision FROM kv WHERE key = ?");
      this.#selectRevision = db.prepare("SELECT revision FROM kv WHERE key = ?");
      this.#nextRevision = db.prepare(
        "UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value",
      );
      this.#upsert = db.prepare(
        "INSERT INTO kv (key, value, revision) VALUES (?, ?, ?) " +
          "ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision",
      );
      this.#remove = db.prepare("DELETE FROM kv WHERE key = ?");
      this.#listAll = db.prepare("SELECT key, value, revision FROM kv ORDER BY key");
      this.#listRange = db.prepare(
        "SELECT key, value, revision FROM kv WHERE key >= ? AND key < ? ORDER BY key",
      );
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** See {@linkcode Store.get}. */
  get(key: string): Promise<StoreEntry<T> | undefined> {
    try {
      this.#open("get", key);
      const row = this.#select.get(key) as Omit<Row, "key"> | undefined;
      return Promise.resolve(
        row && { key, value: JSON.parse(row.value) as T, revision: row.revision },
      );
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** See {@linkcode Store.put}. */
  put(key: string, value: T, opts?: PutOptions): Promise<number> {
    try {
      this.#open("put", key);
      const text = JSON.stringify(value);
      const expected = opts?.expectRevision;
      this.#begin.run();
      let revision: number;
      try {
        if (expected !== undefined) this.#check("put", key, expected);
        revision = (this.#nextRevision.get() as { value: number }).value;
        this.#upsert.run(key, text, revision);
        this.#commit.run();
      } catch (err) {
        if (this.#db.isTransaction) this.#rollback.run();
        throw err;
      }
      if (this.#subscribers.size > 0) this.#notify("put", key, text, revision);
      return Promise.resolve(revision);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** See {@linkcode Store.delete}. */
  delete(key: string, opts?: PutOptions): Promise<boolean> {
    try {
      this.#open("delete", key);
      const expected = opts?.expectRevision;
      this.#begin.run();
      let revision = 0;
      try {
        const current = this.#check("delete", key, expected);
        if (current !== 0) {
          revision = (this.#nextRevision.get() as { value: number }).value;
          this.#remove.run(key);
        }
        this.#commit.run();
      } catch (err) {
        if (this.#db.isTransaction) this.#rollback.run();
        throw err;
      }
      if (revision === 0) return Promise.resolve(false);
      if (this.#subscribers.size > 0) this.#notify("delete", key, "", revision);
      return Promise.resolve(true);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** See {@linkcode Store.list}. */
  list(prefix: string): Promise<StoreEntry<T>[]> {
    try {
      this.#open("list", prefix);
      const end = prefixEnd(prefix);
      const rows = (end === undefined
        ? this.#listAll.all()
        : this.#listRange.all(prefix, end)) as unknown as Row[];
      const out: StoreEntry<T>[] = [];
      for (const row of rows) {
        // Only an all-U+10FFFF prefix has no upper bound and needs this filter.
        if (end === undefined && !row.key.startsWith(prefix)) {
          continue;
        }
        out.push({ key: row.key, value: JSON.parse(row.value) as T, revision: row.revision });
      }
      return Promise.resolve(out);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * See {@linkcode Store.watch}. Events are delivered synchronously, after the
   * write commits and before its promise settles; the watch is ready at once.
   */
  watch(prefix: string, onEvent: (e: StoreEvent<T>) => void, _opts?: WatchOptions): StoreWatch {
    const subscriber: Subscriber<T> = { prefix, onEvent };
    if (!this.#closed) this.#subscribers.add(subscriber);
    const subscribers = this.#subscribers;
    return Object.assign(() => void subscribers.delete(subscriber), { ready: alreadyReady });
  }

  /** See {@linkcode Store.close}. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#subscribers.clear();
      this.#db.close();
    }
    return Promise.resolve();
  }

  #open(op: string, key: string): void {
    if (this.#closed) throw new UnavailableError(`Cannot ${op} "${key}" as the store is closed`);
  }

  /** Checks the compare inside the open transaction; returns the key's current revision (0 = absent). */
  #check(op: "put" | "delete", key: string, expected: number | undefined): number {
    const row = this.#selectRevision.get(key) as { revision: number } | undefined;
    const actual = row === undefined ? 0 : row.revision;
    if (expected !== undefined && actual !== expected) {
      throw new RevisionConflictError(op, key, { expected, actual });
    }
    return actual;
  }

  #notify(type: "put" | "delete", key: string, text: string, revision: number): void {
    let event: StoreEvent<T> | undefined;
    for (const s of this.#subscribers) {
      if (!key.startsWith(s.prefix)) continue;
      event ??= type === "put"
        ? { type, key, value: JSON.parse(text) as T, revision }
        : { type, key, revision };
      try {
        s.onEvent(event);
      } catch (err) {
        reportError(err);
      }
    }
  }
}

/**
 * The smallest string above every string that starts with `prefix`, in UTF-8
 * byte order (which is code point order and SQLite's BINARY collation), or
 * undefined when there is none (empty prefix, or only U+10FFFF characters).
 */
function prefixEnd(prefix: string): string | undefined {
  let p = prefix;
  while (p.length > 0) {
    const last = p.codePointAt(p.length - 1)!;
    // A trailing low surrogate belongs to a pair: step back over the whole code point.
    const isPair = last >= 0xdc00 && last <= 0xdfff && p.length >= 2 &&
      p.codePointAt(p.length - 2)! > 0xffff;
    const cp = isPair ? p.codePointAt(p.length - 2)! : last;
    const head = p.slice(0, p.length - (isPair ? 2 : 1));
    if (cp < 0x10ffff) {
      // Lone surrogates cannot be encoded; the next encodable code point after them is U+E000.
      const next = cp + 1 >= 0xd800 && cp + 1 <= 0xdfff ? 0xe000 : cp + 1;
      return head + String.fromCodePoint(next);
    }
    p = head;
  }
  return undefined;
}
