/**
 * Heartbeats as deltas (issue 11, shared/DESIGN.md section 15): a heartbeat
 * carries per sandbox its id, phase and spec generation, never its spec; the
 * controller asks for the full status of a sandbox it lacks and adopts it
 * from the next heartbeat. A real controller and a real agent over gRPC on
 * loopback, process runtime; some heartbeats are the agent's own, some are
 * its report handed to the controller in process, to see what each carries.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { deltaReport } from "../../agent/_delta_report.ts";
import { SandboxSpecSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { type Cluster, startCluster, type TestAgent, waitFor } from "../support/cluster.ts";

/** Starts sandbox `name` on the agent's runtime directly: the controller never hears of it. */
async function stray(agent: TestAgent, name: string): Promise<string> {
  const sandboxId = crypto.randomUUID().replaceAll("-", "");
  const spec = create(SandboxSpecSchema, {
    sandboxId,
    name,
    namespace: "default",
    pool: "default-pool",
    image: "busybox",
    command: ["sleep", "30"],
    failurePolicy: "MANUAL",
    labels: { made: "by-hand" },
    createdAt: BigInt(Math.floor(Date.now() / 1000)),
    generation: 3,
  });
  await agent.runtime.create(spec, { logPath: join(agent.dataDir, "logs", `${sandboxId}.log`) });
  return sandboxId;
}

async function phaseOf(cluster: Cluster, name: string): Promise<string> {
  return (await cluster.client.getSandbox({ name })).phase;
}

Deno.test("Register tells the agent that heartbeats may be deltas", async () => {
  const cluster = await startCluster();
  try {
    const agent = cluster.agents.get("agent-1")!;
    const reply = await cluster.controller.controller.register(await agent.server.report());
    assert.equal(reply.deltaHeartbeats, true);
  } finally {
    await cluster.close();
  }
});

Deno.test("a delta heartbeat carries no spec and moves a sandbox's phase", async () => {
  const cluster = await startCluster();
  try {
    const made = await cluster.client.createSandbox({
      name: "d1",
      image: "busybox",
      command: ["sh", "-c", "exit 3"],
    });
    const agent = cluster.agents.get("agent-1")!;
    await waitFor(async () => (await agent.runtime.list())[0]?.phase === "Exited");
    const report = deltaReport(await agent.server.report(), new Set());
    assert.deepEqual(report.sandboxes, []);
    assert.equal(report.beats.length, 1);
    const [beat] = report.beats;
    assert.equal(beat.sandboxId, made.sandboxId);
    assert.equal(beat.phase, "Exited");
    assert.equal(beat.message, "exit code 3");
    assert.equal(beat.generation, 1);

    const reply = cluster.controller.controller.heartbeat(report);
    assert.deepEqual(reply, { reregister: false, sendSpecs: [] });
    const info = await cluster.client.getSandbox({ name: "d1" });
    assert.equal(info.phase, "Exited");
    assert.equal(info.message, "exit code 3");
    // The spec the controller holds is untouched by a report without one.
    assert.deepEqual(info.command, ["sh", "-c", "exit 3"]);
  } finally {
    await cluster.close();
  }
});

Deno.test("an agent's own delta heartbeats bring a sandbox's exit to the controller", async () => {
  const cluster = await startCluster();
  try {
    await cluster.client.createSandbox({
      name: "d2",
      image: "busybox",
      command: ["sh", "-c", "exit 4"],
    });
    await waitFor(async () => (await phaseOf(cluster, "d2")) === "Exited");
    assert.equal((await cluster.client.getSandbox({ name: "d2" })).message, "exit code 4");
  } finally {
    await cluster.close();
  }
});

Deno.test("a sandbox the controller lacks is asked for by id, then adopted from the full status sent next", async () => {
  const cluster = await startCluster();
  try {
    const agent = cluster.agents.get("agent-1")!;
    const id = await stray(agent, "d3");
    const controller = cluster.controller.controller;
    const first = controller.heartbeat(deltaReport(await agent.server.report(), new Set()));
    assert.deepEqual(first, { reregister: false, sendSpecs: [id] });
    await assert.rejects(
      cluster.client.getSandbox({ name: "d3" }),
      /Sandbox "default\/d3" not found/,
    );

    const next = deltaReport(await agent.server.report(), new Set(first.sendSpecs));
    assert.deepEqual(next.beats, []);
    assert.deepEqual(next.sandboxes.map((s) => s.spec?.sandboxId), [id]);
    assert.deepEqual(controller.heartbeat(next), { reregister: false, sendSpecs: [] });
    const info = await cluster.client.getSandbox({ name: "d3" });
    assert.equal(info.sandboxId, id);
    assert.equal(info.phase, "Running");
    assert.equal(info.agent, "agent-1");
    assert.deepEqual(info.labels, { made: "by-hand" });
    assert.equal(controller.registry.getAgentById("agent-1")!.allocated, 1);
    // Adopted, it is a beat like any other.
    const after = controller.heartbeat(deltaReport(await agent.server.report(), new Set()));
    assert.deepEqual(after, { reregister: false, sendSpecs: [] });
  } finally {
    await cluster.close();
  }
});

Deno.test("an agent's own heartbeats send the spec the controller asks for, and it is adopted", async () => {
  const cluster = await startCluster();
  try {
    const id = await stray(cluster.agents.get("agent-1")!, "d4");
    await waitFor(async () => {
      try {
        return (await cluster.client.getSandbox({ name: "d4" })).sandboxId === id;
      } catch {
        return false;
      }
    });
    const info = await cluster.client.getSandbox({ name: "d4" });
    assert.equal(info.phase, "Running");
    assert.deepEqual(info.command, ["sleep", "30"]);
  } finally {
    await cluster.close();
  }
});
