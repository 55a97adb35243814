import assert from "node:assert/strict";
import { Agent as AgentService } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Code, RpcChannel, RpcError } from "../../proto/grpc.ts";
import { Egress } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { startCluster } from "../support/cluster.ts";

Deno.test("the agent refuses a sandbox id that is not 32 lowercase hex before making any path of it", async () => {
  const cluster = await startCluster();
  const agent = [...cluster.agents.values()][0];
  // With the controller's credential: the id check comes after the caller is known.
  const credential = (await Deno.readTextFile(`${agent.dataDir}/credential`)).trim();
  const channel = new RpcChannel(agent.server.address, {
    timeoutMs: 5_000,
    metadata: { authorization: `Bearer ${credential}` },
  });
  try {
    const client = channel.client(AgentService);
    for (const id of ["../../escape", "A".repeat(32), "ab"]) {
      await assert.rejects(
        client.createSandbox({
          spec: {
            sandboxId: id,
            name: "x",
            namespace: "default",
            image: "busybox",
            command: ["true"],
          },
        }),
        (err: unknown) =>
          err instanceof RpcError && err.code === Code.INVALID_ARGUMENT &&
          err.message.includes("spec.sandbox_id: must be 32 lowercase hex characters"),
      );
      await assert.rejects(
        client.deleteSandbox({ sandboxId: id, graceMs: 0 }),
        (err: unknown) => err instanceof RpcError && err.code === Code.INVALID_ARGUMENT,
      );
    }
    const made = [...Deno.readDirSync(`${agent.dataDir}/logs`)].map((e) => e.name);
    assert.deepEqual(made, []);
    await assert.rejects(Deno.stat(`${agent.dataDir}/../escape.log`), Deno.errors.NotFound);
  } finally {
    channel.close();
    await cluster.close();
  }
});

Deno.test("the process runtime refuses limits and egress rules it cannot enforce, and says it isolates nothing", async () => {
  const cluster = await startCluster();
  try {
    for (
      const [extra, field] of [
        [{ resources: { memoryBytes: 64n * 1024n * 1024n } }, "resources.memory_bytes"],
        [{ network: { egress: Egress.DENY } }, "network.egress"],
      ] as const
    ) {
      await assert.rejects(
        cluster.client.createSandbox({
          name: "p",
          image: "busybox",
          command: ["sleep", "5"],
          ...extra,
        }),
        (err: unknown) =>
          err instanceof RpcError && err.code === Code.FAILED_PRECONDITION &&
          err.message.includes(`with ${field} as the process runtime cannot enforce it`),
      );
    }
    assert.deepEqual((await cluster.client.listSandboxes({})).sandboxes, []);
    const info = await cluster.client.createSandbox({
      name: "p",
      image: "busybox",
      command: ["sleep", "5"],
    });
    assert.equal(info.runtime, "process");
    assert.match(info.message, /isolates nothing/);
  } finally {
    await cluster.close();
  }
});
