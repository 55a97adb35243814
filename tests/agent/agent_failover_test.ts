// An agent given several controllers (`--controller A,B`) talks to one that
// answers: past one it cannot reach, and to the leader a controller names in
// its UNAVAILABLE answer (shared/DESIGN.md section 15). Real gRPC over
// loopback, a real controller; the controller that names a leader is a small
// fake, as no real one does yet (leader election is not wired in).
import assert from "node:assert/strict";
import client from "prom-client";
import { AgentServer } from "../../agent/mod.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import { AgentRegistry } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Code, RpcError, RpcServer } from "../../proto/grpc.ts";
import { silentLogger, startCluster, waitFor } from "../support/cluster.ts";

async function withAgent(
  controller: string,
  joinToken: string,
  fn: (agent: AgentServer) => Promise<void>,
): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-failover-" });
  const agent = new AgentServer({
    controller,
    listen: "127.0.0.1:0",
    advertise: "127.0.0.1",
    id: "roamer",
    pool: "default-pool",
    namespace: "default",
    capacity: 2,
    runtime: new ProcessRuntime({ stateDir: `${dataDir}/process`, images: ["busybox"] }),
    dataDir,
    logger: silentLogger(),
    metricsRegistry: new client.Registry(),
    heartbeatMs: 60_000,
    joinToken,
  });
  try {
    await agent.start();
    await fn(agent);
  } finally {
    await agent.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

Deno.test("an agent registers with the next controller when the first cannot be reached", async () => {
  const cluster = await startCluster({ agents: [] });
  try {
    // Port 1 on loopback: nothing listens there.
    await withAgent(`127.0.0.1:1,${cluster.controller.address}`, cluster.joinToken, async () => {
      await waitFor(() =>
        cluster.controller.controller.registry.getAgentById("roamer") !== undefined
      );
    });
  } finally {
    await cluster.close();
  }
});

Deno.test("an agent follows a controller's UNAVAILABLE answer to the leader it names", async () => {
  const cluster = await startCluster({ agents: [] });
  const follower = new RpcServer();
  let refused = 0;
  const notLeader = () => {
    refused++;
    throw new RpcError(
      Code.UNAVAILABLE,
      `This controller does not lead; the leader is at ${cluster.controller.address}`,
    );
  };
  follower.add(AgentRegistry, { register: notLeader, heartbeat: notLeader });
  const address = await follower.listen("127.0.0.1:0");
  try {
    await withAgent(address, cluster.joinToken, async () => {
      await waitFor(() =>
        cluster.controller.controller.registry.getAgentById("roamer") !== undefined
      );
      assert.equal(refused, 1);
    });
  } finally {
    await follower.close();
    await cluster.close();
  }
});
