/**
 * An agent process restarting (its server gone, then a new one on the same
 * state) under calls in flight: a followed log stream and a delete go on
 * (issue 11). Real gRPC over loopback, the process runtime.
 */
import assert from "node:assert/strict";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import { type Cluster, startCluster, waitFor } from "../support/cluster.ts";

const decoder = new TextDecoder();

/** Stops agent `id` and starts it again on the same data dir and runtime state. */
async function restartAgent(cluster: Cluster, id: string): Promise<ProcessRuntime> {
  const old = await cluster.stopAgent(id);
  const runtime = new ProcessRuntime({ stateDir: `${old.dataDir}/process`, images: ["busybox"] });
  await cluster.addAgent({ id, runtime });
  return runtime;
}

Deno.test("a followed log stream goes on across its agent restarting, nothing repeated or lost", async () => {
  const cluster = await startCluster();
  try {
    await cluster.client.createSandbox({
      name: "counter",
      image: "busybox",
      command: ["sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done"],
    });
    let out = "";
    const reading = (async () => {
      for await (const chunk of cluster.client.streamLogs({ name: "counter", follow: true })) {
        out += decoder.decode(chunk.data);
        if (/^(\d+\n)*4[0-9]\n/m.test(out) && out.split("\n").length > 45) return;
      }
    })();
    await waitFor(() => out.includes("\n5\n"));
    await restartAgent(cluster, "agent-1");
    await reading;
    const numbers = out.trimEnd().split("\n").map(Number);
    assert.deepEqual(numbers, numbers.map((_, i) => i), "every line once, in order");
    assert.ok(numbers.length > 40);
  } finally {
    await cluster.close();
  }
});

Deno.test("a delete while its agent is down succeeds, and the agent removes the sandbox when it is back", async () => {
  const cluster = await startCluster();
  try {
    const made = await cluster.client.createSandbox({
      name: "doomed",
      image: "busybox",
      command: ["sleep", "600"],
    });
    const old = await cluster.stopAgent("agent-1");
    const deleted = await cluster.client.deleteSandbox({ name: "doomed" });
    assert.equal(deleted.name, "doomed");
    assert.deepEqual((await cluster.client.listSandboxes({})).sandboxes, []);
    // Still running on the host until its agent is back and told.
    assert.equal((await old.runtime.list()).length, 1);
    const runtime = new ProcessRuntime({
      stateDir: `${old.dataDir}/process`,
      images: ["busybox"],
    });
    await cluster.addAgent({ id: "agent-1", runtime });
    await waitFor(async () => {
      await cluster.heartbeatAll();
      return !(await runtime.list()).some((s) => s.spec.sandboxId === made.sandboxId);
    });
    assert.deepEqual((await cluster.client.listSandboxes({})).sandboxes, []);
  } finally {
    await cluster.close();
  }
});
