/**
 * The behaviour every Store implementation shares, as test steps that each
 * implementation's test file runs against a real instance.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  RevisionConflictError,
  type Store,
  type StoreEvent,
} from "../../../controller/store/mod.ts";
import { UnavailableError } from "../../../registry/errors.ts";

/** The value type the contract stores. */
export interface Doc {
  readonly name: string;
  readonly n: number;
  readonly tags?: string[];
}

/** A fresh, empty store plus a way to reopen it on the same data. */
export interface StoreFixture {
  /** The store as first opened. */
  readonly store: Store<Doc>;
  /** Closes the store opened last and opens a new one on the same data. */
  reopen(): Promise<Store<Doc>>;
  /** Closes whatever is open and removes the data. */
  cleanup(): Promise<void>;
}

/** Events seen by one watch, with a way to wait for the next ones. */
interface Collector {
  readonly events: StoreEvent<Doc>[];
  /** Resolves once at least `n` events arrived; fails the test after 10 s. */
  waitFor(n: number): Promise<void>;
}

function collect(
  store: Store<Doc>,
  prefix: string,
): Collector & { stop: () => void; ready: Promise<void> } {
  const events: StoreEvent<Doc>[] = [];
  let waiter: { n: number; resolve: () => void } | undefined;
  const stop = store.watch(prefix, (e) => {
    events.push(e);
    if (waiter && events.length >= waiter.n) waiter.resolve();
  });
  return {
    events,
    stop,
    ready: stop.ready,
    waitFor(n) {
      if (events.length >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        // A guard against hanging forever, not a synchronization sleep.
        const timer = setTimeout(
          () => reject(new Error(`waited 10 s for ${n} events, got ${events.length}`)),
          10_000,
        );
        waiter = {
          n,
          resolve: () => {
            clearTimeout(timer);
            waiter = undefined;
            resolve();
          },
        };
      });
    },
  };
}

function doc(name: string, n = 1): Doc {
  return { name, n };
}

/**
 * Runs the store contract as steps of the test `t`; `open` gives a fresh,
 * empty store for each step.
 */
export async function storeContract(
  t: Deno.TestContext,
  open: () => Promise<StoreFixture>,
): Promise<void> {
  async function step(name: string, fn: (f: StoreFixture) => Promise<void>): Promise<void> {
    await t.step(name, async () => {
      const f = await open();
      try {
        await fn(f);
      } finally {
        await f.cleanup();
      }
    });
  }

  await step("get() of a missing key resolves to undefined", async ({ store }) => {
    assert.equal(await store.get("sandboxes/default/missing"), undefined);
  });

  await step("put() resolves to the revision that get() then reports", async ({ store }) => {
    const value: Doc = { name: "a", n: 7, tags: ["x", "y"] };
    const revision = await store.put("sandboxes/default/a", value);
    assert.ok(revision > 0);
    assert.deepEqual(await store.get("sandboxes/default/a"), {
      key: "sandboxes/default/a",
      value,
      revision,
    });
  });

  await step("revisions increase across writes to any key, deletes included", async ({ store }) => {
    const r1 = await store.put("a", doc("a"));
    const r2 = await store.put("b", doc("b"));
    const r3 = await store.put("a", doc("a", 2));
    await store.delete("b");
    const r4 = await store.put("c", doc("c"));
    assert.ok(r1 < r2 && r2 < r3, `${r1} < ${r2} < ${r3}`);
    // The delete took a revision of its own, so the next put skips one.
    assert.ok(r4 > r3 + 1, `${r4} > ${r3} + 1`);
    assert.equal((await store.get("a"))?.revision, r3);
    assert.deepEqual((await store.get("a"))?.value, doc("a", 2));
  });

  await step("values come back as copies the caller may change", async ({ store }) => {
    const value = { name: "a", n: 1, tags: ["x"] };
    await store.put("k", value);
    value.tags.push("changed");
    const got = await store.get("k");
    assert.deepEqual(got?.value.tags, ["x"]);
    got?.value.tags?.push("again");
    assert.deepEqual((await store.get("k"))?.value.tags, ["x"]);
  });

  await step("delete() removes the key and resolves to whether it existed", async ({ store }) => {
    await store.put("sandboxes/default/a", doc("a"));
    assert.equal(await store.delete("sandboxes/default/a"), true);
    assert.equal(await store.get("sandboxes/default/a"), undefined);
    assert.equal(await store.delete("sandboxes/default/a"), false);
  });

  await step("list() returns the keys under the prefix only, sorted by key", async ({ store }) => {
    const keys = [
      "sandboxes/ns1/b",
      "sandboxes/ns10/a",
      "sandboxes/ns1/a",
      "sandboxes/ns1",
      "sandboxes/ns2/a",
      "sandboxes/ns1/c-1",
      "agents/ns1/a",
    ];
    for (const [i, key] of keys.entries()) await store.put(key, doc(key, i));
    const listed = await store.list("sandboxes/ns1/");
    assert.deepEqual(listed.map((e) => e.key), [
      "sandboxes/ns1/a",
      "sandboxes/ns1/b",
      "sandboxes/ns1/c-1",
    ]);
    for (const e of listed) assert.deepEqual(e, await store.get(e.key));
    assert.deepEqual(
      (await store.list("sandboxes/")).map((e) => e.key),
      keys.filter((k) => k.startsWith("sandboxes/")).sort(),
    );
    assert.deepEqual((await store.list("")).map((e) => e.key), [...keys].sort());
    assert.deepEqual(await store.list("nothing/"), []);
  });

  await step(
    "put() with the current revision succeeds and moves the revision on",
    async ({ store }) => {
      const r1 = await store.put("k", doc("a"));
      const r2 = await store.put("k", doc("b"), { expectRevision: r1 });
      assert.ok(r2 > r1);
      assert.deepEqual(await store.get("k"), { key: "k", value: doc("b"), revision: r2 });
    },
  );

  await step(
    "put() with a stale revision throws RevisionConflictError and writes nothing",
    async ({ store }) => {
      const r1 = await store.put("sandboxes/default/a", doc("a"));
      const r2 = await store.put("sandboxes/default/a", doc("b"));
      await assert.rejects(
        store.put("sandboxes/default/a", doc("c"), { expectRevision: r1 }),
        (err: unknown) => {
          assert.ok(err instanceof RevisionConflictError);
          assert.equal(
            err.message,
            `Cannot put "sandboxes/default/a" at revision ${r1} as it is at revision ${r2}`,
          );
          assert.equal(err.status, "ABORTED");
          assert.deepEqual([err.key, err.expected, err.actual], ["sandboxes/default/a", r1, r2]);
          return true;
        },
      );
      assert.deepEqual(await store.get("sandboxes/default/a"), {
        key: "sandboxes/default/a",
        value: doc("b"),
        revision: r2,
      });
    },
  );

  await step(
    "put() with a revision on a missing key throws RevisionConflictError",
    async ({ store }) => {
      await assert.rejects(
        store.put("k", doc("a"), { expectRevision: 5 }),
        new RevisionConflictError("put", "k", { expected: 5, actual: 0 }),
      );
      await assert.rejects(store.put("k", doc("a"), { expectRevision: 5 }), {
        name: "RevisionConflictError",
        message: 'Cannot put "k" at revision 5 as it does not exist',
      });
      assert.equal(await store.get("k"), undefined);
    },
  );

  await step("put() with expectRevision 0 creates a missing key only", async ({ store }) => {
    const r1 = await store.put("sandboxes/default/a", doc("a"), { expectRevision: 0 });
    assert.ok(r1 > 0);
    await assert.rejects(
      store.put("sandboxes/default/a", doc("b"), { expectRevision: 0 }),
      (err: unknown) => {
        assert.ok(err instanceof RevisionConflictError);
        assert.equal(
          err.message,
          `Cannot put "sandboxes/default/a" as it already exists at revision ${r1}`,
        );
        return true;
      },
    );
    assert.deepEqual((await store.get("sandboxes/default/a"))?.value, doc("a"));
    // After a delete the key may be created again.
    await store.delete("sandboxes/default/a");
    const r2 = await store.put("sandboxes/default/a", doc("c"), { expectRevision: 0 });
    assert.ok(r2 > r1);
  });

  await step("concurrent creates of one key: exactly one wins", async ({ store }) => {
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => store.put("k", doc("w", i), { expectRevision: 0 })),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r) => r.status === "rejected");
    assert.equal(won.length, 1);
    for (const r of lost) assert.ok(r.reason instanceof RevisionConflictError);
    const winner = results.findIndex((r) => r.status === "fulfilled");
    assert.deepEqual(await store.get("k"), {
      key: "k",
      value: doc("w", winner),
      revision: (won[0] as PromiseFulfilledResult<number>).value,
    });
  });

  await step("delete() with a revision deletes only at that revision", async ({ store }) => {
    const r1 = await store.put("k", doc("a"));
    const r2 = await store.put("k", doc("b"));
    await assert.rejects(store.delete("k", { expectRevision: r1 }), {
      name: "RevisionConflictError",
      message: `Cannot delete "k" at revision ${r1} as it is at revision ${r2}`,
    });
    assert.equal((await store.get("k"))?.revision, r2);
    assert.equal(await store.delete("k", { expectRevision: r2 }), true);
    assert.equal(await store.get("k"), undefined);
    await assert.rejects(store.delete("k", { expectRevision: r2 }), {
      name: "RevisionConflictError",
      message: `Cannot delete "k" at revision ${r2} as it does not exist`,
    });
  });

  await step("delete() with expectRevision 0 never deletes", async ({ store }) => {
    assert.equal(await store.delete("k", { expectRevision: 0 }), false);
    const r = await store.put("k", doc("a"));
    await assert.rejects(store.delete("k", { expectRevision: 0 }), {
      name: "RevisionConflictError",
      message: `Cannot delete "k" as it already exists at revision ${r}`,
    });
    assert.equal((await store.get("k"))?.revision, r);
  });

  await step("watch() sees puts and deletes under its prefix, in order", async ({ store }) => {
    const w = collect(store, "sandboxes/ns1/");
    await w.ready;
    const r1 = await store.put("sandboxes/ns1/a", doc("a"));
    await store.put("sandboxes/ns2/a", doc("other namespace"));
    await store.put("agents/x", doc("other prefix"));
    const r2 = await store.put("sandboxes/ns1/b", doc("b", 2));
    assert.equal(await store.delete("sandboxes/ns1/missing"), false);
    await store.delete("sandboxes/ns1/a");
    const r3 = await store.put("sandboxes/ns1/b", doc("b", 3), { expectRevision: r2 });
    await w.waitFor(4);
    w.stop();
    assert.equal(w.events.length, 4);
    const [put1, put2, del, put3] = w.events;
    assert.deepEqual(put1, { type: "put", key: "sandboxes/ns1/a", value: doc("a"), revision: r1 });
    assert.deepEqual(put2, {
      type: "put",
      key: "sandboxes/ns1/b",
      value: doc("b", 2),
      revision: r2,
    });
    assert.equal(del.type, "delete");
    assert.equal(del.key, "sandboxes/ns1/a");
    assert.ok(del.revision > r2 && del.revision < r3, `${r2} < ${del.revision} < ${r3}`);
    assert.deepEqual(put3, {
      type: "put",
      key: "sandboxes/ns1/b",
      value: doc("b", 3),
      revision: r3,
    });
  });

  await step("watch() delivers nothing after unsubscribe", async ({ store }) => {
    const stopped = collect(store, "k/");
    const barrier = collect(store, "k/");
    await Promise.all([stopped.ready, barrier.ready]);
    await store.put("k/1", doc("1"));
    await stopped.waitFor(1);
    stopped.stop();
    stopped.stop();
    await store.put("k/2", doc("2"));
    await store.delete("k/1");
    // The still-subscribed watch has seen both later writes, so the stopped one would have too.
    await barrier.waitFor(3);
    barrier.stop();
    assert.deepEqual(stopped.events.map((e) => e.key), ["k/1"]);
    assert.deepEqual(barrier.events.map((e) => `${e.type} ${e.key}`), [
      "put k/1",
      "put k/2",
      "delete k/1",
    ]);
  });

  await step("data and revisions survive close and reopen", async (f) => {
    const r1 = await f.store.put("sandboxes/default/a", doc("a"));
    await f.store.put("sandboxes/default/b", doc("b"));
    const rc = await f.store.put("sandboxes/default/c", doc("c"));
    await f.store.delete("sandboxes/default/b");
    // Deleting the newest key must not let its revision be handed out again.
    await f.store.delete("sandboxes/default/c");
    const before = await f.store.list("");
    const store = await f.reopen();
    assert.deepEqual(await store.list(""), before);
    assert.deepEqual(await store.get("sandboxes/default/a"), {
      key: "sandboxes/default/a",
      value: doc("a"),
      revision: r1,
    });
    const r2 = await store.put("sandboxes/default/c", doc("c2"));
    assert.ok(r2 > rc + 1, `${r2} > ${rc} + 1`);
    await assert.rejects(store.put("sandboxes/default/c", doc("c3"), { expectRevision: rc }), {
      name: "RevisionConflictError",
    });
  });

  await step("calls after close() reject with UnavailableError", async (f) => {
    await f.store.close();
    await f.store.close();
    await assert.rejects(
      f.store.get("k"),
      new UnavailableError('Cannot get "k" as the store is closed'),
    );
    await assert.rejects(f.store.put("k", doc("a")), {
      name: "UnavailableError",
      message: 'Cannot put "k" as the store is closed',
    });
  });
}
