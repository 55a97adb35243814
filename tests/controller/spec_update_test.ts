/**
 * Fault 7 of issue 11, second half: a client's UpdateSandbox reaches the
 * agent's record of the sandbox's spec (the one a restarted agent adopts and
 * reports), and an update the agent missed reaches it once it reports the
 * older generation, by Register or by heartbeat. A real controller and real
 * agents over gRPC on loopback, process runtimes; one test on real containerd.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { pino } from "pino";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import type { SandboxSpec } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { type Cluster, startCluster, waitFor } from "../support/cluster.ts";
import { startGatedAgent } from "../support/gated_agent.ts";
import { withContainerdCluster } from "../support/containerd_cluster.ts";
import { ignoreWithout } from "../support/real_parts.ts";
import { ContainerdRuntime } from "../../agent/containerd/mod.ts";

/** The spec runtime `runtime` keeps for sandbox `id`. */
async function recordOf(runtime: ProcessRuntime, id: string): Promise<SandboxSpec> {
  const held = (await runtime.list()).find((s) => s.spec.sandboxId === id);
  assert.ok(held !== undefined, `the runtime holds sandbox ${id}`);
  return held.spec;
}

/** Stops agent `id` and starts it again on the same data dir and runtime state. */
async function restartAgent(cluster: Cluster, id: string): Promise<ProcessRuntime> {
  const old = await cluster.stopAgent(id);
  const runtime = new ProcessRuntime({ stateDir: `${old.dataDir}/process`, images: ["busybox"] });
  await cluster.addAgent({ id, runtime });
  return runtime;
}

Deno.test("an update reaches the agent's record of the spec, and a restarted agent still holds it", async () => {
  const cluster = await startCluster();
  try {
    const made = await cluster.client.createSandbox({
      name: "s1",
      image: "busybox",
      command: ["sleep", "30"],
      labels: { a: "1" },
    });
    const runtime = cluster.agents.get("agent-1")!.runtime as ProcessRuntime;
    assert.equal((await recordOf(runtime, made.sandboxId)).generation, 1);
    const expireTime = BigInt(Math.floor(cluster.clock.now() / 1000) + 9999);
    await cluster.client.updateSandbox({ name: "s1", labels: { b: "2" }, expireTime });
    await waitFor(async () => (await recordOf(runtime, made.sandboxId)).generation === 2);
    const record = await recordOf(runtime, made.sandboxId);
    assert.deepEqual(record.labels, { a: "1", b: "2" });
    assert.equal(record.expireTime, expireTime);
    // What it runs by is as created.
    assert.deepEqual(record.command, ["sleep", "30"]);

    const again = await restartAgent(cluster, "agent-1");
    const kept = await recordOf(again, made.sandboxId);
    assert.equal(kept.generation, 2);
    assert.deepEqual(kept.labels, { a: "1", b: "2" });
    assert.equal(kept.expireTime, expireTime);
    const info = await cluster.client.getSandbox({ name: "s1" });
    assert.equal(info.phase, "Running");
    assert.deepEqual(info.labels, { a: "1", b: "2" });
  } finally {
    await cluster.close();
  }
});

Deno.test("updates in quick succession all reach the agent, the last one's spec last", async () => {
  const cluster = await startCluster();
  try {
    const made = await cluster.client.createSandbox({
      name: "s2",
      image: "busybox",
      command: ["sleep", "30"],
    });
    await Promise.all(
      ["1", "2", "3", "4"].map((n) => cluster.client.updateSandbox({ name: "s2", labels: { n } })),
    );
    const runtime = cluster.agents.get("agent-1")!.runtime as ProcessRuntime;
    await waitFor(async () => (await recordOf(runtime, made.sandboxId)).generation === 5);
    const info = await cluster.client.getSandbox({ name: "s2" });
    assert.deepEqual((await recordOf(runtime, made.sandboxId)).labels, info.labels);
  } finally {
    await cluster.close();
  }
});

Deno.test("an update made while the agent is stopped reaches it when it registers with the older generation", async () => {
  const cluster = await startCluster();
  try {
    const made = await cluster.client.createSandbox({
      name: "s3",
      image: "busybox",
      command: ["sleep", "30"],
      labels: { a: "1" },
    });
    const stopped = await cluster.stopAgent("agent-1");
    // The controller still counts the agent in (its clock has not moved): the push fails.
    const updated = await cluster.client.updateSandbox({ name: "s3", labels: { a: "2" } });
    assert.deepEqual(updated.labels, { a: "2" });
    const onDisk = new ProcessRuntime({ stateDir: `${stopped.dataDir}/process` });
    const before = await recordOf(onDisk, made.sandboxId);
    await onDisk.close();
    assert.equal(before.generation, 1);
    assert.deepEqual(before.labels, { a: "1" });

    const runtime = new ProcessRuntime({
      stateDir: `${stopped.dataDir}/process`,
      images: ["busybox"],
    });
    await cluster.addAgent({ id: "agent-1", runtime });
    await waitFor(async () => (await recordOf(runtime, made.sandboxId)).generation === 2);
    assert.deepEqual((await recordOf(runtime, made.sandboxId)).labels, { a: "2" });
  } finally {
    await cluster.close();
  }
});

Deno.test("an update the agent missed while unreachable reaches it when it heartbeats the older generation", async () => {
  const lines: string[] = [];
  const logger = pino<"timing">({ level: "warn", customLevels: { timing: 25 } }, {
    write: (line: string) => lines.push(line),
  });
  const cluster = await startCluster({ agents: [], logger });
  try {
    const agent = await startGatedAgent(cluster, "gated");
    try {
      const made = await cluster.client.createSandbox({
        name: "s4",
        image: "busybox",
        command: ["sleep", "30"],
        labels: { a: "1" },
      });
      agent.shut();
      await cluster.client.updateSandbox({ name: "s4", labels: { a: "2" } });
      // The push at the update fails, and so do those at the heartbeats while the gate is shut.
      const failed = () =>
        lines.filter((l) =>
          l.includes(made.sandboxId) && l.includes("cannot send the sandbox's updated spec")
        ).length;
      await waitFor(() => failed() >= 2);
      assert.equal((await recordOf(agent.runtime, made.sandboxId)).generation, 1);
      assert.ok(agent.server.registered);

      agent.open();
      await waitFor(async () => (await recordOf(agent.runtime, made.sandboxId)).generation === 2);
      assert.deepEqual((await recordOf(agent.runtime, made.sandboxId)).labels, { a: "2" });
    } finally {
      await agent.close();
    }
  } finally {
    await cluster.close();
  }
});

Deno.test({
  name: "an update reaches the spec a containerd container carries, which a new runtime lists",
  ignore: ignoreWithout("containerd", "root"),
}, async () => {
  await withContainerdCluster("runc", async ({ cluster, containerd, dir }) => {
    const made = await cluster.client.createSandbox({
      name: "c1",
      image: "busybox",
      command: ["sleep", "30"],
      labels: { a: "1" },
    });
    await cluster.client.updateSandbox({ name: "c1", labels: { a: "2" } });
    const runtime = cluster.agents.get("ctrd")!.runtime;
    const record = async () =>
      (await runtime.list()).find((s) => s.spec.sandboxId === made.sandboxId)?.spec;
    await waitFor(async () => (await record())?.generation === 2);
    assert.deepEqual((await record())?.labels, { a: "2" });
    // What an agent restarted on this containerd would adopt.
    const restarted = new ContainerdRuntime({
      socket: containerd.socket,
      stateDir: join(dir, "state"),
    });
    try {
      const [listed] = await restarted.list();
      assert.equal(listed.spec.sandboxId, made.sandboxId);
      assert.equal(listed.spec.generation, 2);
      assert.deepEqual(listed.spec.labels, { a: "2" });
      assert.equal(listed.phase, "Running");
    } finally {
      await restarted.close();
    }
  });
});
