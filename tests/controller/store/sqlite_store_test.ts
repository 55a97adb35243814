import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openStore, SqliteStore, type Store } from "../../../controller/store/mod.ts";
import { InvalidArgumentError, UnavailableError } from "../../../registry/errors.ts";
import { type Doc, storeContract, type StoreFixture } from "./store_contract.ts";

async function openFixture(): Promise<StoreFixture> {
  const dir = await Deno.makeTempDir({ prefix: "fsb-sqlite-" });
  const file = join(dir, "fsb.db");
  let current: Store<Doc> = new SqliteStore<Doc>(file);
  return {
    store: current,
    async reopen() {
      await current.close();
      current = new SqliteStore<Doc>(file);
      return current;
    },
    async cleanup() {
      await current.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("SqliteStore meets the store contract", (t) => storeContract(t, openFixture));

Deno.test("openStore() sqlite: puts fsb.db in a data dir it creates", async () => {
  const root = await Deno.makeTempDir({ prefix: "fsb-sqlite-" });
  try {
    const dataDir = join(root, "missing", "data");
    const store = await openStore<Doc>("sqlite:", { dataDir });
    await store.put("k", { name: "a", n: 1 });
    await store.close();
    const db = new DatabaseSync(join(dataDir, "fsb.db"));
    try {
      // WAL is a property of the file, so a fresh connection reports what the store set.
      assert.deepEqual({ ...db.prepare("PRAGMA journal_mode").get() }, { journal_mode: "wal" });
      assert.deepEqual({ ...db.prepare("SELECT key, value FROM kv").get() }, {
        key: "k",
        value: '{"name":"a","n":1}',
      });
    } finally {
      db.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("openStore() sqlite:PATH is relative to the data dir unless absolute", async () => {
  const root = await Deno.makeTempDir({ prefix: "fsb-sqlite-" });
  try {
    const relative = await openStore<Doc>("sqlite:sub/one.db", { dataDir: root });
    await relative.close();
    assert.ok(existsSync(join(root, "sub", "one.db")));
    const absolutePath = join(root, "abs", "two.db");
    const absolute = await openStore<Doc>(`sqlite:${absolutePath}`, { dataDir: "/nonexistent" });
    await absolute.close();
    assert.ok(existsSync(absolutePath));
    const memory = await openStore<Doc>("sqlite::memory:", { dataDir: "/nonexistent" });
    await memory.put("k", { name: "m", n: 1 });
    assert.deepEqual((await memory.get("k"))?.value, { name: "m", n: 1 });
    await memory.close();
    assert.ok(!existsSync("/nonexistent"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("openStore() rejects an unknown scheme or a bad etcd member", async () => {
  await assert.rejects(
    openStore("postgres://db", { dataDir: "/tmp" }),
    new InvalidArgumentError(
      "store",
      'must be sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...], got "postgres://db"',
    ),
  );
  await assert.rejects(openStore("etcd://127.0.0.1:2379,127.0.0.1", { dataDir: "/tmp" }), {
    name: "InvalidArgumentError",
    message:
      'Invalid store: etcd member "127.0.0.1" must be HOST:PORT (expected HOST:PORT), in "etcd://127.0.0.1:2379,127.0.0.1"',
  });
  await assert.rejects(openStore("etcd://h:70000", { dataDir: "/tmp" }), {
    name: "InvalidArgumentError",
    message:
      'Invalid store: etcd member "h:70000" must be HOST:PORT (the port must be within 1..65535), in "etcd://h:70000"',
  });
});

Deno.test("SqliteStore: a SIGKILLed writer loses no acknowledged put", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-sqlite-" });
  const file = join(dir, "fsb.db");
  const moduleUrl = new URL("../../../controller/store/sqlite_store.ts", import.meta.url).href;
  // The child prints a key's number only after its put resolved, then keeps writing until killed.
  const code = `
    import { SqliteStore } from ${JSON.stringify(moduleUrl)};
    const store = new SqliteStore(${JSON.stringify(file)});
    const out = Deno.stdout;
    const enc = new TextEncoder();
    for (let i = 0; ; i++) {
      await store.put("keys/" + String(i).padStart(8, "0"), { name: "k" + i, n: i });
      out.writeSync(enc.encode(i + "\\n"));
    }
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const acknowledged: number[] = [];
  let buffered = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop()!;
    for (const line of lines) acknowledged.push(Number(line));
    if (acknowledged.length >= 2000) {
      child.kill("SIGKILL");
      break;
    }
  }
  const status = await child.status;
  assert.equal(status.signal, "SIGKILL");
  try {
    const store = new SqliteStore<Doc>(file);
    try {
      const listed = await store.list("keys/");
      const present = new Map(listed.map((e) => [e.key, e.value]));
      for (const i of acknowledged) {
        assert.deepEqual(present.get("keys/" + String(i).padStart(8, "0")), {
          name: "k" + i,
          n: i,
        });
      }
      // Writes went on between the last acknowledgment read and the kill; they may or may not be there.
      assert.ok(listed.length >= acknowledged.length);
      // The store keeps working on the file the killed process left behind.
      const r = await store.put("after", { name: "after", n: 0 });
      assert.ok(r > listed.length);
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteStore: a put inside a watch callback is seen in order", async () => {
  const store = new SqliteStore<Doc>(":memory:");
  const seen: string[] = [];
  const stop = store.watch("", (e) => {
    seen.push(`${e.type} ${e.key}`);
    if (e.key === "a") void store.put("b", { name: "b", n: 2 });
  });
  await store.put("a", { name: "a", n: 1 });
  stop();
  await store.close();
  assert.deepEqual(seen, ["put a", "put b"]);
});

/** The store at `file`, a second connection to it, and both closed after `fn`. */
async function withLockHolder(
  opts: { lockWaitMs?: number },
  fn: (store: SqliteStore<Doc>, other: DatabaseSync, file: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb-sqlite-" });
  const file = join(dir, "fsb.db");
  const store = new SqliteStore<Doc>(file, opts);
  // Another process's connection, as far as SQLite's locks go.
  const other = new DatabaseSync(file);
  try {
    await fn(store, other, file);
  } finally {
    if (other.isTransaction) other.exec("ROLLBACK");
    other.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("SqliteStore: writes waiting for another connection's lock leave the event loop running, then land in call order", async () => {
  await withLockHolder({}, async (store, other) => {
    await store.put("k", { name: "before", n: 0 });
    other.exec("BEGIN IMMEDIATE");
    const t0 = performance.now();
    const timer = new Promise<number>((resolve) =>
      setTimeout(() => resolve(performance.now() - t0), 20)
    );
    const settled: string[] = [];
    const first = store.put("k", { name: "a", n: 1 }).finally(() => settled.push("first"));
    const second = store.put("k", { name: "b", n: 2 }).finally(() => settled.push("second"));
    const fired = await timer;
    assert.ok(fired < 150, `a 20 ms timer fired after ${fired.toFixed(0)} ms`);
    assert.deepEqual(settled, [], "the writes wait for the lock");
    // Reads are not held up by a writer (WAL).
    assert.deepEqual((await store.get("k"))?.value, { name: "before", n: 0 });
    other.exec("COMMIT");
    const [r1, r2] = await Promise.all([first, second]);
    assert.ok(r2 > r1, `revisions ${r1} then ${r2}`);
    assert.deepEqual(settled, ["first", "second"]);
    assert.deepEqual((await store.get("k"))?.value, { name: "b", n: 2 });
  });
});

Deno.test("SqliteStore: a write fails with UnavailableError when another connection keeps the lock past lockWaitMs", async () => {
  await withLockHolder({ lockWaitMs: 150 }, async (store, other, file) => {
    other.exec("BEGIN IMMEDIATE");
    const t0 = performance.now();
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    try {
      await assert.rejects(store.delete("k"), (err: Error) => {
        assert.ok(err instanceof UnavailableError, `${err}`);
        assert.equal(
          err.message,
          `Cannot delete "k" as the store ${file} stayed locked by another connection for 150 ms`,
        );
        return true;
      });
    } finally {
      clearInterval(ticker);
    }
    const waited = performance.now() - t0;
    assert.ok(waited >= 150 && waited < 1000, `waited ${waited.toFixed(0)} ms`);
    assert.ok(ticks >= 5, `a 10 ms interval ticked ${ticks} times meanwhile`);
    other.exec("COMMIT");
    // The lock gone, writes go through again.
    assert.ok(await store.put("k", { name: "a", n: 1 }) > 0);
  });
});
