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

/** Options for {@linkcode SqliteStore}. */
export interface SqliteStoreOptions {
  /** How long a call waits for another connection's lock; 5 s unless told. */
  readonly lockWaitMs?: number;
}

const DEFAULT_LOCK_WAIT_MS = 5000;
/** Pauses between tries on a locked database grow from the first to the last. */
const FIRST_PAUSE_MS = 1;
const LAST_PAUSE_MS = 50;
/** Opening runs once, before anything is served, so it may wait for a lock the usual way. */
const OPEN_BUSY_TIMEOUT_MS = 5000;

/**
 * A {@linkcode Store} in one SQLite file, for a single controller process.
 *
 * Durability: WAL journal with `synchronous=FULL`: every commit is fsynced
 * before its call returns, so what was acknowledged (a STRONG create above
 * all) survives a power loss or kernel crash, not only the process being
 * killed. It costs an fsync per write (about 0.15 ms here, against 0.03 ms
 * with NORMAL); writes are few next to reads, and FAST creates persist
 * behind their reply anyway.
 *
 * Locks: `node:sqlite` is synchronous, so SQLite's own busy wait would hold
 * the event loop while another connection (a second controller by mistake,
 * a backup tool) holds the write lock. Instead a locked database fails at
 * once, and the call retries on timers with a growing pause, up to
 * `lockWaitMs` (then UnavailableError); writes stay in call order meanwhile.
 *
 * Watches see the writes made through this instance only: another process
 * writing the same file is not noticed (its writes are still read by `get` and
 * `list`, and compare-and-set stays correct across processes, as every write
 * runs in an immediate transaction).
 */
export class SqliteStore<T> implements Store<T> {
  #db: DatabaseSync;
  #closed = false;
  readonly #file: string;
  readonly #lockWaitMs: number;
  /** The last write waiting for a lock, which later writes queue behind. */
  #waiting: Promise<unknown> | undefined;
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
  constructor(file: string, opts: SqliteStoreOptions = {}) {
    if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true });
    this.#file = file;
    this.#lockWaitMs = opts.lockWaitMs ?? DEFAULT_LOCK_WAIT_MS;
    const db = new DatabaseSync(file);
    this.#db = db;
    try {
      db.exec(`PRAGMA busy_timeout = ${OPEN_BUSY_TIMEOUT_MS}`);
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
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
      // From now on a lock held elsewhere fails at once, and #retry waits on timers.
      db.exec("PRAGMA busy_timeout = 0");
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** See {@linkcode Store.get}. */
  get(key: string): Promise<StoreEntry<T> | undefined> {
    return this.#read("get", key, () => {
      const row = this.#select.get(key) as Omit<Row, "key"> | undefined;
      return row && { key, value: JSON.parse(row.value) as T, revision: row.revision };
    });
  }

  /** See {@linkcode Store.put}. */
  put(key: string, value: T, opts?: PutOptions): Promise<number> {
    const text = JSON.stringify(value);
    const expected = opts?.expectRevision;
    return this.#write("put", key, () => {
      const revision = this.#transaction(() => {
        if (expected !== undefined) this.#check("put", key, expected);
        const next = (this.#nextRevision.get() as { value: number }).value;
        this.#upsert.run(key, text, next);
        return next;
      });
      if (this.#subscribers.size > 0) this.#notify("put", key, text, revision);
      return revision;
    });
  }

  /** See {@linkcode Store.delete}. */
  delete(key: string, opts?: PutOptions): Promise<boolean> {
    const expected = opts?.expectRevision;
    return this.#write("delete", key, () => {
      const revision = this.#transaction(() => {
        if (this.#check("delete", key, expected) === 0) return 0;
        const next = (this.#nextRevision.get() as { value: number }).value;
        this.#remove.run(key);
        return next;
      });
      if (revision === 0) return false;
      if (this.#subscribers.size > 0) this.#notify("delete", key, "", revision);
      return true;
    });
  }

  /** See {@linkcode Store.list}. */
  list(prefix: string): Promise<StoreEntry<T>[]> {
    return this.#read("list", prefix, () => {
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
      return out;
    });
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

  /** Runs `fn` in an immediate transaction: committed when it returns, rolled back when it throws. */
  #transaction<R>(fn: () => R): R {
    this.#begin.run();
    try {
      const out = fn();
      this.#commit.run();
      return out;
    } catch (err) {
      if (this.#db.isTransaction) this.#rollback.run();
      throw err;
    }
  }

  /** A read: at once, or retried while another connection locks the database. */
  #read<R>(op: string, key: string, fn: () => R): Promise<R> {
    try {
      this.#open(op, key);
      return Promise.resolve(fn());
    } catch (err) {
      if (!isLocked(err)) return Promise.reject(err);
      return this.#retry(op, key, fn, performance.now());
    }
  }

  /**
   * A write: at once when no earlier write is waiting for a lock; else after
   * them, so that writes land in call order.
   */
  #write<R>(op: string, key: string, fn: () => R): Promise<R> {
    const started = performance.now();
    if (this.#waiting === undefined) {
      try {
        this.#open(op, key);
        return Promise.resolve(fn());
      } catch (err) {
        if (!isLocked(err)) return Promise.reject(err);
      }
    }
    const first = this.#waiting === undefined;
    const turn = (this.#waiting ?? Promise.resolve()).then(() =>
      this.#retry(op, key, fn, started, first)
    );
    const settled = turn.then(() => {}, () => {});
    this.#waiting = settled;
    settled.then(() => {
      if (this.#waiting === settled) this.#waiting = undefined;
    });
    return turn;
  }

  /**
   * Tries `fn` until the database is no longer locked, pausing on timers
   * between tries (so the event loop runs), until `lockWaitMs` after `started`.
   */
  async #retry<R>(
    op: string,
    key: string,
    fn: () => R,
    started: number,
    pauseFirst = true,
  ): Promise<R> {
    let pause = FIRST_PAUSE_MS;
    for (let tried = pauseFirst;; tried = true) {
      if (tried) {
        const left = started + this.#lockWaitMs - performance.now();
        if (left <= 0) {
          throw new UnavailableError(
            `Cannot ${op} "${key}" as the store ${this.#file} stayed locked by another connection for ${this.#lockWaitMs} ms`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
        pause = Math.min(pause * 2, LAST_PAUSE_MS);
      }
      try {
        this.#open(op, key);
        return fn();
      } catch (err) {
        if (!isLocked(err)) throw err;
      }
    }
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

/** Whether `err` is SQLite's SQLITE_BUSY: another connection holds a lock we need. */
function isLocked(err: unknown): boolean {
  return err instanceof Error && /^database is locked\b/.test(err.message);
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
