// The controller's health: grpc.health.v1.Health on its gRPC port and
// /readyz on its metrics port say whether it can serve (its store answers),
// while /healthz only says the process lives. On a real etcd, stopped.
import assert from "node:assert/strict";
import client from "prom-client";
import { startController } from "../../controller/mod.ts";
import { Health } from "../../proto/health.ts";
import { HealthCheckResponse_ServingStatus as S } from "../../proto/gen/grpc/health/v1/health_pb.ts";
import { RpcChannel } from "../../proto/grpc.ts";
import { silentLogger, waitFor } from "../support/cluster.ts";
import { startEtcd } from "../support/etcd.ts";
import { ignoreWithout } from "../support/real_parts.ts";

Deno.test({
  name:
    "the controller reports SERVING and ready while its store answers, NOT_SERVING and 503 after",
  ignore: ignoreWithout("etcd"),
}, async () => {
  const etcd = await startEtcd();
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-health-" });
  let etcdUp = true;
  const handle = await startController({
    listen: "127.0.0.1:0",
    metricsListen: "127.0.0.1:0",
    store: `etcd://${etcd.endpoint}`,
    dataDir,
    mode: "fast",
    agentTimeoutMs: 10_000,
    logger: silentLogger(),
    metricsRegistry: new client.Registry(),
    tickMs: 3_600_000,
  });
  const channel = new RpcChannel(handle.address, { timeoutMs: 5000 });
  try {
    const health = channel.client(Health);
    assert.equal((await health.check({})).status, S.SERVING);
    assert.equal((await health.check({ service: "fsb.fastpath.v1.FastPath" })).status, S.SERVING);
    const readyz = await fetch(`http://${handle.metricsAddress}/readyz`);
    assert.deepEqual([readyz.status, await readyz.text()], [200, "ready\n"]);

    await etcd.stop();
    etcdUp = false;
    await waitFor(async () => (await health.check({})).status === S.NOT_SERVING);
    const down = await fetch(`http://${handle.metricsAddress}/readyz`);
    assert.equal(down.status, 503);
    // Whichever is noticed first: the store probe failing, or the election's lease running out.
    assert.match(
      await down.text(),
      /^not ready: (the store \(etcd:\/\/.*\) does not answer|no controller leads yet)\n$/,
    );
    const healthz = await fetch(`http://${handle.metricsAddress}/healthz`);
    assert.deepEqual([healthz.status, await healthz.text()], [200, "ok\n"]);
  } finally {
    channel.close();
    await handle.close().catch(() => {});
    if (etcdUp) await etcd.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
