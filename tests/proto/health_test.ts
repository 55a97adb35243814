import assert from "node:assert/strict";
import { Health, healthService } from "../../proto/health.ts";
import { HealthCheckResponse_ServingStatus as S } from "../../proto/gen/grpc/health/v1/health_pb.ts";
import { Code, RpcChannel, RpcError, RpcServer } from "../../proto/grpc.ts";

Deno.test("Health answers SERVING or NOT_SERVING as its check says, NOT_FOUND for other services", async () => {
  let up = true;
  const server = new RpcServer();
  server.add(Health, healthService({ check: () => up, services: ["fsb.fastpath.v1.FastPath"] }));
  const address = await server.listen("127.0.0.1:0");
  const channel = new RpcChannel(address, { timeoutMs: 5000 });
  try {
    const health = channel.client(Health);
    assert.equal((await health.check({ service: "" })).status, S.SERVING);
    assert.equal((await health.check({ service: "fsb.fastpath.v1.FastPath" })).status, S.SERVING);
    up = false;
    assert.equal((await health.check({})).status, S.NOT_SERVING);
    await assert.rejects(health.check({ service: "nope" }), (err) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, Code.NOT_FOUND);
      assert.equal(err.message, 'Service "nope" is not served here');
      return true;
    });
  } finally {
    channel.close();
    await server.close();
  }
});

Deno.test("Health Watch sends the status, then each change", async () => {
  let up = false;
  const server = new RpcServer();
  server.add(Health, healthService({ check: () => up, services: [], watchIntervalMs: 10 }));
  const address = await server.listen("127.0.0.1:0");
  const channel = new RpcChannel(address);
  const ctl = new AbortController();
  try {
    const seen: number[] = [];
    for await (const res of channel.client(Health).watch({}, { signal: ctl.signal })) {
      seen.push(res.status);
      if (seen.length === 1) up = true;
      if (seen.length === 2) break;
    }
    assert.deepEqual(seen, [S.NOT_SERVING, S.SERVING]);
    const unknown = channel.client(Health).watch({ service: "x" })[Symbol.asyncIterator]();
    assert.equal((await unknown.next()).value?.status, S.SERVICE_UNKNOWN);
    await unknown.return?.();
  } finally {
    ctl.abort();
    channel.close();
    await server.close();
  }
});
