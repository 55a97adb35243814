import assert from "node:assert/strict";
import { Health } from "../../proto/health.ts";
import { HealthCheckResponse_ServingStatus as S } from "../../proto/gen/grpc/health/v1/health_pb.ts";
import { RpcChannel } from "../../proto/grpc.ts";
import { startCluster } from "../support/cluster.ts";

Deno.test("an agent's port serves grpc.health.v1.Health without a credential", async () => {
  const cluster = await startCluster();
  const agent = cluster.agents.get("agent-1")!;
  const channel = new RpcChannel(agent.server.address, { timeoutMs: 5000 });
  try {
    const health = channel.client(Health);
    assert.equal((await health.check({})).status, S.SERVING);
    assert.equal((await health.check({ service: "fsb.agent.v1.Agent" })).status, S.SERVING);
  } finally {
    channel.close();
    await cluster.close();
  }
});
