import assert from "node:assert/strict";
import { EtcdStore } from "../../../controller/store/etcd_store.ts";
import { openStore, type Store } from "../../../controller/store/mod.ts";
import { UnavailableError } from "../../../registry/errors.ts";
import { startEtcd } from "../../support/etcd.ts";
import { ignoreWithout } from "../../support/real_parts.ts";
import { type Doc, storeContract, type StoreFixture } from "./store_contract.ts";

let fixtures = 0;

/** Each fixture gets its own key prefix in the shared etcd, so every step starts empty. */
function fixtureOn(endpoint: string): () => Promise<StoreFixture> {
  return () => {
    const prefix = `/fsb-test-${++fixtures}/`;
    let current: Store<Doc> = new EtcdStore<Doc>([endpoint], { prefix });
    return Promise.resolve({
      store: current,
      async reopen() {
        await current.close();
        current = new EtcdStore<Doc>([endpoint], { prefix });
        return current;
      },
      async cleanup() {
        await current.close();
        const root = new EtcdStore<Doc>([endpoint], { prefix });
        for (const e of await root.list("")) await root.delete(e.key);
        await root.close();
      },
    });
  };
}

Deno.test({ name: "EtcdStore against a real etcd", ignore: ignoreWithout("etcd") }, async (t) => {
  const etcd = await startEtcd();
  try {
    await t.step("meets the store contract", (t) => storeContract(t, fixtureOn(etcd.endpoint)));

    await t.step("openStore() etcd:// keeps keys under the URL's prefix", async () => {
      const a = await openStore<Doc>(`etcd://${etcd.endpoint}/tenant-a`, { dataDir: "/unused" });
      const b = await openStore<Doc>(`etcd://${etcd.endpoint}/tenant-b/`, { dataDir: "/unused" });
      const whole = new EtcdStore<Doc>([etcd.endpoint], { prefix: "/" });
      try {
        await a.put("sandboxes/default/x", { name: "x", n: 1 });
        assert.deepEqual(await b.list(""), []);
        assert.deepEqual(
          (await whole.list("tenant-a/")).map((e) => [e.key, e.value]),
          [["tenant-a/sandboxes/default/x", { name: "x", n: 1 }]],
        );
        await a.delete("sandboxes/default/x");
      } finally {
        await Promise.all([a.close(), b.close(), whole.close()]);
      }
    });

    await t.step("two clients on one prefix see each other's writes and conflicts", async () => {
      const url = `etcd://${etcd.endpoint}/shared/`;
      const one = await openStore<Doc>(url, { dataDir: "/unused" });
      const two = await openStore<Doc>(url, { dataDir: "/unused" });
      try {
        const seen: string[] = [];
        let arrived = () => {};
        const done = new Promise<void>((resolve) => arrived = resolve);
        const stop = two.watch("", (e) => {
          seen.push(`${e.type} ${e.key} ${e.revision}`);
          if (e.type === "delete") arrived();
        });
        await stop.ready;
        const r1 = await one.put("leader", { name: "one", n: 1 }, { expectRevision: 0 });
        await assert.rejects(two.put("leader", { name: "two", n: 1 }, { expectRevision: 0 }), {
          name: "RevisionConflictError",
          message: `Cannot put "leader" as it already exists at revision ${r1}`,
        });
        assert.equal(await two.delete("leader", { expectRevision: r1 }), true);
        await done;
        stop();
        assert.equal(seen.length, 2);
        assert.equal(seen[0], `put leader ${r1}`);
        assert.match(seen[1], /^delete leader \d+$/);
      } finally {
        await Promise.all([one.close(), two.close()]);
      }
    });
  } finally {
    await etcd.stop();
  }
});

Deno.test("openStore() etcd:// rejects with UnavailableError when etcd does not answer", async () => {
  // A port that was free a moment ago: nothing listens there.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  await assert.rejects(
    openStore(`etcd://127.0.0.1:${port}`, { dataDir: "/unused" }),
    (err: unknown) => {
      assert.ok(err instanceof UnavailableError);
      assert.ok(
        err.message.startsWith(`Cannot reach etcd at 127.0.0.1:${port}: `),
        err.message,
      );
      return true;
    },
  );
});
