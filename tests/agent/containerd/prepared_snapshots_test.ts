// The prepared path on real containerd (each test starts its own) and runc:
// snapshots made ahead for creates the warm pool cannot serve.
import assert from "node:assert/strict";
import { join } from "node:path";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { FailedPreconditionError } from "../../../registry/errors.ts";
import {
  type ContainerdClient,
  ContainerdRuntime,
  type ContainerdRuntimeOptions,
  importImage,
} from "../../../agent/containerd/mod.ts";
import { PREPARED_KEY_PREFIX } from "../../../agent/containerd/_prepared_snapshots.ts";
import { buildBusyboxImage } from "../../support/busybox_image.ts";
import { type ContainerdServer, startContainerd } from "../../support/containerd.ts";
import { ignoreWithout } from "../../support/real_parts.ts";
import { eventually } from "../_runtime_harness.ts";

const IGNORE = ignoreWithout("containerd", "root");
const BUSYBOX = "docker.io/library/busybox:latest";

interface Scene {
  readonly server: ContainerdServer;
  readonly dir: string;
  /** A runtime on the scene's containerd, started; closed after the test unless the test did. */
  runtime(opts?: Partial<ContainerdRuntimeOptions>): Promise<ContainerdRuntime>;
  spec(command: string[], extra?: JsonObject): SandboxSpec;
  logPath(id: string): string;
}

async function withScene(fn: (s: Scene) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_prepared_test_" });
  let server: ContainerdServer | undefined;
  const runtimes: ContainerdRuntime[] = [];
  try {
    const tar = await buildBusyboxImage(dir);
    server = await startContainerd();
    await importImage(tar, { socket: server.socket });
    const socket = server.socket;
    await fn({
      server,
      dir,
      runtime: async (opts = {}) => {
        const runtime = new ContainerdRuntime({
          socket,
          stateDir: join(dir, "state"),
          shimGroup: false,
          ...opts,
        });
        runtimes.push(runtime);
        await runtime.startWarm({ freeSlots: () => 10 });
        return runtime;
      },
      spec: (command, extra = {}) => {
        const id = crypto.randomUUID().replaceAll("-", "");
        return fromJson(SandboxSpecSchema, {
          sandboxId: id,
          name: `sb-${id.slice(0, 8)}`,
          namespace: "default",
          image: "busybox",
          command,
          ...extra,
        });
      },
      logPath: (id) => join(dir, "logs", `${id}.log`),
    });
  } finally {
    for (const r of runtimes) await r.close().catch(() => {});
    await server?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function preparedKeys(client: ContainerdClient): Promise<string[]> {
  const keys: string[] = [];
  for await (const res of client.snapshots.list({ snapshotter: "overlayfs" })) {
    for (const info of res.info) {
      if (info.name.startsWith(PREPARED_KEY_PREFIX)) keys.push(info.name);
    }
  }
  return keys.sort();
}

async function readLog(path: string): Promise<string> {
  return await Deno.readTextFile(path).catch(() => "");
}

Deno.test({
  name:
    "create() takes a snapshot prepared ahead (path prepared, no snapshot_prepare stage), then goes cold once none is left",
  ignore: IGNORE,
}, async () => {
  await withScene(async (s) => {
    // No refill within the test: what it takes is what was ready.
    const runtime = await s.runtime({ prepared: { busybox: 2 }, refillDelayMs: 600_000 });
    await eventually("two ready", () => runtime.preparedCounts()[BUSYBOX] === 2);
    const stock = await preparedKeys(runtime.client);
    assert.equal(stock.length, 2);
    const spec = s.spec(["sh", "-c", "echo prepared $$; pwd"], { workingDir: "/tmp" });
    const made = await runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    assert.equal(made.path, "prepared");
    assert.equal(made.stageMs.snapshot_prepare, undefined, JSON.stringify(made.stageMs));
    // The container runs on one of the snapshots that were ready.
    const { container } = await runtime.client.containers.get({ id: spec.sandboxId });
    assert.ok(stock.includes(container!.snapshotKey), container!.snapshotKey);
    await eventually(
      "its output",
      async () => (await readLog(s.logPath(spec.sandboxId))) === "prepared 1\n/tmp\n",
    );
    assert.equal(runtime.preparedCounts()[BUSYBOX], 1);
    // Deleted, its snapshot goes with it; the other stays ready.
    assert.equal(await runtime.delete(spec.sandboxId, 0), true);
    const left = await preparedKeys(runtime.client);
    assert.deepEqual(left, stock.filter((k) => k !== container!.snapshotKey));
    // Once the stock is used up, creates take the cold path: a miss never fails.
    const specs = [1, 2].map(() => s.spec(["sleep", "600"]));
    const paths = [];
    for (const sp of specs) {
      paths.push((await runtime.create(sp, { logPath: s.logPath(sp.sandboxId) })).path);
    }
    assert.deepEqual(paths, ["prepared", "cold"]);
    for (const sp of specs) await runtime.delete(sp.sandboxId, 0);
  });
});

Deno.test({
  name: "a create that fails on a prepared snapshot removes it; close() removes the ones not taken",
  ignore: IGNORE,
}, async () => {
  await withScene(async (s) => {
    const runtime = await s.runtime({ prepared: { busybox: 1 } });
    await eventually("one ready", () => runtime.preparedCounts()[BUSYBOX] === 1);
    const [taken] = await preparedKeys(runtime.client);
    const spec = s.spec(["/no/such/command"]);
    await assert.rejects(
      runtime.create(spec, { logPath: s.logPath(spec.sandboxId) }),
      FailedPreconditionError,
    );
    assert.ok(!(await preparedKeys(runtime.client)).includes(taken));
    assert.deepEqual((await runtime.client.containers.list({})).containers, []);
    await eventually("one ready", () => runtime.preparedCounts()[BUSYBOX] === 1);
    await runtime.closeWarm();
    assert.deepEqual(await preparedKeys(runtime.client), []);
  });
});

Deno.test({
  name:
    "prepared snapshots outlive containerd's garbage collection, and a restart sweeps those a crash left",
  ignore: IGNORE,
}, async () => {
  await withScene(async (s) => {
    const first = await s.runtime({ prepared: { busybox: 2 } });
    await eventually("two ready", () => first.preparedCounts()[BUSYBOX] === 2);
    const spec = s.spec(["sleep", "600"]);
    assert.equal(
      (await first.create(spec, { logPath: s.logPath(spec.sandboxId) })).path,
      "prepared",
    );
    await eventually("two ready", () => first.preparedCounts()[BUSYBOX] === 2);
    // Deleting a lease with `sync` runs a garbage collection before it answers.
    const { lease } = await first.client.leases.create({ id: "fsb-test-gc" });
    await first.client.leases.delete({ id: lease!.id, sync: true });
    const before = await preparedKeys(first.client);
    assert.equal(before.length, 3, "two ready and the running sandbox's");
    // The agent dies without closing anything (the process is gone, containerd stays).
    first.client.close();
    const second = await s.runtime({ prepared: { busybox: 1 } });
    await eventually("one ready", () => second.preparedCounts()[BUSYBOX] === 1);
    const after = await preparedKeys(second.client);
    // The sandbox's snapshot stays with it; the two the crash left are gone, one new one is ready.
    const { container } = await second.client.containers.get({ id: spec.sandboxId });
    assert.equal(after.length, 2);
    assert.ok(after.includes(container!.snapshotKey));
    assert.equal(after.filter((k) => before.includes(k)).length, 1);
    assert.equal((await second.list()).map((x) => x.phase).join(), "Running");
    await second.delete(spec.sandboxId, 0);
    assert.equal((await preparedKeys(second.client)).length, 1);
  });
});

Deno.test({
  name:
    "an image name pointing at other layers gets snapshots of its new chain; the old ones are removed",
  ignore: IGNORE,
}, async () => {
  await withScene(async (s) => {
    const runtime = await s.runtime({ prepared: { busybox: 2 } });
    await eventually("two ready", () => runtime.preparedCounts()[BUSYBOX] === 2);
    const old = await preparedKeys(runtime.client);
    // busybox again, with a layer of its own on top: the same name, another chain.
    const tar = await buildBusyboxImage(join(s.dir, "retagged"), {
      extraLayer: { "etc/retagged": "yes\n" },
    });
    await importImage(tar, { socket: s.server.socket });
    const first = s.spec(["cat", "/etc/retagged"]);
    const made = await runtime.create(first, { logPath: s.logPath(first.sandboxId) });
    assert.equal(made.path, "cold", "no snapshot of the new chain was ready yet");
    // The miss makes the stock look again: the old chain's snapshots go, the new one's come.
    await eventually("two of the new chain", async () => {
      const keys = await preparedKeys(runtime.client);
      return keys.length === 2 && !keys.some((k) => old.includes(k));
    });
    const second = s.spec(["cat", "/etc/retagged"]);
    assert.equal(
      (await runtime.create(second, { logPath: s.logPath(second.sandboxId) })).path,
      "prepared",
    );
    await eventually(
      "the new layer's file",
      async () => (await readLog(s.logPath(second.sandboxId))) === "yes\n",
    );
    for (const sp of [first, second]) await runtime.delete(sp.sandboxId, 0);
  });
});
