/**
 * Several controllers on a real 3-member etcd cluster, each its own
 * `fsb controller serve` process, with a process-runtime agent that knows
 * them all (shared/DESIGN.md section 15).
 */
import assert from "node:assert/strict";
import type { FsbClient, SandboxInfo } from "../../cli/client.ts";
import { Code, RpcError } from "../../proto/rpc.ts";
import { type ControllerProcess, leads, startControllers } from "../support/controllers.ts";
import { ignoreWithout } from "../support/real_parts.ts";

const etcdTest = { ignore: ignoreWithout("etcd"), sanitizeOps: false, sanitizeResources: false };

/** Retries `fn` while it fails with UNAVAILABLE (a failover, a recovery window), until `timeoutMs`. */
async function retrying<T>(fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof RpcError) || err.code !== Code.UNAVAILABLE || Date.now() > deadline) {
        throw err;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function sleeper(name: string) {
  return { name, image: "busybox", command: ["sleep", "3600"] };
}

/** Every sandbox, through whichever controller leads. */
function listAll(client: FsbClient): Promise<SandboxInfo[]> {
  return retrying(() => client.sandboxes.list({ allNamespaces: true }));
}

Deno.test({
  name:
    "three controllers on etcd: exactly one leads, the others name it, and a client of any of them creates",
  ...etcdTest,
}, async () => {
  const scene = await startControllers(3);
  await scene.run(async () => {
    await scene.startAgent();
    const leader = await scene.leader();
    let leading = 0;
    for (const c of scene.controllers) {
      const one = scene.client([c.address]);
      try {
        if (c === leader) {
          assert.ok(await leads(one));
          leading++;
          continue;
        }
        await assert.rejects(one.sandboxes.list({ allNamespaces: true }), (err: RpcError) => {
          assert.equal(err.code, Code.UNAVAILABLE);
          assert.equal(
            err.message,
            `This controller does not lead; the leader is at ${leader.address}`,
          );
          return true;
        });
      } finally {
        one.close();
      }
    }
    assert.equal(leading, 1);
    // A client that lists a follower first gets to the leader.
    for (const [i, c] of scene.controllers.entries()) {
      const list = [c.address, ...scene.endpoints.filter((a) => a !== c.address)];
      const client = scene.client(list);
      try {
        const made = await retrying(() => client.sandboxes.create(sleeper(`via-${i}`)));
        assert.equal(made.phase, "Running");
      } finally {
        client.close();
      }
    }
    // Every controller wrote the same admin token into its own data dir.
    for (const c of scene.controllers) {
      assert.equal((await Deno.readTextFile(`${c.dataDir}/admin-token`)).trim(), scene.adminToken);
    }
    const client = scene.client();
    try {
      const names = (await listAll(client)).map((s) => s.name).sort();
      assert.deepEqual(names, ["via-0", "via-1", "via-2"]);
    } finally {
      client.close();
    }
  });
});

Deno.test({
  name:
    "kill -9 of the leader under a steady create load: another leads, creates resume, and every acknowledged sandbox is listed once and running",
  ...etcdTest,
}, async () => {
  const scene = await startControllers(3);
  await scene.run(async () => {
    await scene.startAgent();
    const first = await scene.leader();
    const acknowledged = new Set<string>();
    let killedAt = 0;
    let firstAfterKill = 0;
    const writers = 3;
    const perWriter = 12;
    const load = async (w: number) => {
      const client = scene.client();
      try {
        for (let n = 0; n < perWriter; n++) {
          const name = `load-${w}-${n}`;
          // The same name again after a failure: a create is idempotent by name.
          const made = await retrying(() => client.sandboxes.create(sleeper(name)), 60_000);
          assert.equal(made.name, name);
          acknowledged.add(name);
          const at = Date.now();
          // Acknowledged once the old leader was dead: the new one answered.
          if (killedAt > 0 && at > killedAt && firstAfterKill === 0) firstAfterKill = at;
          if (w === 0 && n === perWriter / 3) {
            await first.kill();
            killedAt = Date.now();
          }
        }
      } finally {
        client.close();
      }
    };
    await Promise.all(Array.from({ length: writers }, (_, w) => load(w)));
    const second = await scene.leader();
    assert.notEqual(second.address, first.address);
    assert.ok(killedAt > 0 && firstAfterKill > killedAt, "creates resumed after the kill");
    const client = scene.client();
    try {
      const all = await listAll(client);
      const names = all.map((s) => s.name);
      assert.equal(new Set(names).size, names.length, `no name listed twice: ${names}`);
      assert.equal(new Set(all.map((s) => s.sandboxId)).size, all.length, "no id listed twice");
      for (const name of acknowledged) {
        const s = all.find((x) => x.name === name);
        assert.ok(s !== undefined, `acknowledged ${name} is listed`);
        assert.equal(s.phase, "Running", `${name} runs`);
      }
      assert.equal(acknowledged.size, writers * perWriter);
    } finally {
      client.close();
    }
  });
});

Deno.test({
  name:
    "a leader stopped past its lease serves no write after SIGCONT, and the new leader's view wins",
  ...etcdTest,
}, async () => {
  const scene = await startControllers(2);
  let stopped: ControllerProcess | undefined;
  await scene.run(async () => {
    await scene.startAgent();
    stopped = await scene.leader();
    const before = scene.client();
    try {
      await retrying(() => before.sandboxes.create(sleeper("before")));
    } finally {
      before.close();
    }
    stopped.signal("SIGSTOP");
    const other = scene.controllers.find((c) => c !== stopped)!;
    const viaOther = scene.client([other.address]);
    try {
      // The other controller takes the lead once the stopped one's lease has run out.
      await retrying(async () => {
        if (!(await leads(viaOther))) throw new RpcError(Code.UNAVAILABLE, "not yet");
      });
      await retrying(() => viaOther.sandboxes.create(sleeper("after")));
      await retrying(() => viaOther.sandboxes.delete("before"));
      stopped.signal("SIGCONT");
      // At once, before any timer of its own has run: no write, no read as leader.
      const viaStopped = scene.client([stopped.address]);
      try {
        await assert.rejects(viaStopped.sandboxes.create(sleeper("stale")), (err: RpcError) => {
          assert.equal(err.code, Code.UNAVAILABLE);
          assert.match(err.message, /does not lead|no leader is elected yet|shutting down/);
          return true;
        });
        await assert.rejects(viaStopped.sandboxes.get("after"), { code: Code.UNAVAILABLE });
      } finally {
        viaStopped.close();
      }
      const names = (await listAll(viaOther)).map((s) => s.name);
      assert.deepEqual(names, ["after"], "the new leader's view: before deleted, stale never made");
    } finally {
      viaOther.close();
    }
  }).finally(() => stopped?.signal("SIGCONT"));
});

Deno.test({
  name:
    "one etcd member down changes nothing; with two down writes fail with UNAVAILABLE; restored, the controllers serve again",
  ...etcdTest,
}, async () => {
  const scene = await startControllers(2);
  await scene.run(async () => {
    await scene.startAgent();
    const client = scene.client();
    try {
      await retrying(() => client.sandboxes.create(sleeper("a")));
      const [m0, m1] = scene.etcd.members;
      await m0.kill();
      await retrying(() => client.sandboxes.create(sleeper("b")), 15_000);
      await m1.kill();
      // No quorum: the leader's lease cannot be kept, so it stops serving; nothing is written.
      const failed = await (async () => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          try {
            await client.sandboxes.create(sleeper("c"), { timeoutMs: 5_000 });
            await client.sandboxes.delete("c");
          } catch (err) {
            return err;
          }
          if (Date.now() > deadline) return undefined;
        }
      })();
      assert.ok(failed instanceof RpcError, `writes fail without quorum: ${failed}`);
      assert.ok(
        failed.code === Code.UNAVAILABLE || failed.code === Code.DEADLINE_EXCEEDED,
        `UNAVAILABLE (or the caller's deadline), got ${failed.code}: ${failed.message}`,
      );
      await m0.restart();
      await m1.restart();
      await retrying(() => client.sandboxes.create(sleeper("d")), 60_000);
      const names = (await listAll(client)).map((s) => s.name).filter((n) => n !== "c").sort();
      assert.deepEqual(names, ["a", "b", "d"]);
    } finally {
      client.close();
    }
  });
});
