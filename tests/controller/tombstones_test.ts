/**
 * Tombstones (controller/_tombstones.ts) over a real SQLite store: which are
 * kept in the store, and what the in-memory bound drops.
 *
 * @module
 */
import assert from "node:assert/strict";
import { openStore } from "../../controller/store/mod.ts";
import { type TombstoneRecord, Tombstones } from "../../controller/_tombstones.ts";
import { silentLogger } from "../support/cluster.ts";

Deno.test("tombstones awaiting their agent are never dropped; confirmed ones are bounded at 10,000, oldest first", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-tombstones-" });
  const store = await openStore<TombstoneRecord>("sqlite:", { dataDir: dir });
  try {
    const tombstones = new Tombstones({ store, logger: silentLogger() });
    const ids = Array.from({ length: 10_001 }, (_, i) => i.toString(16).padStart(32, "0"));
    await Promise.all(ids.map((id) => tombstones.add(id, "a1")));
    assert.ok(ids.every((id) => tombstones.has(id)), "a pending tombstone was dropped");
    assert.equal((await store.list("tombstones/")).length, 10_001);
    assert.equal(tombstones.pendingOn("a1").length, 10_001);
    assert.deepEqual(tombstones.pendingOn("a2"), []);

    // A restarted controller reads them back.
    const reloaded = new Tombstones({ store, logger: silentLogger() });
    assert.equal(await reloaded.load(), 10_001);
    assert.deepEqual(await store.get(`tombstones/${ids[0]}`).then((e) => e?.value), {
      agentId: "a1",
    });

    for (const id of ids) tombstones.gone(id);
    await tombstones.flush();
    assert.deepEqual(await store.list("tombstones/"), []);
    assert.deepEqual(tombstones.pendingOn("a1"), []);
    // Confirmed ids stay in memory against reports in flight, up to the bound: the oldest goes.
    assert.equal(tombstones.has(ids[0]), false);
    assert.ok(ids.slice(1).every((id) => tombstones.has(id)));
    tombstones.close();
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
