import assert from "node:assert/strict";
import { pino } from "pino";
import { ConsistencyMode, FailurePolicy } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcError } from "../../proto/grpc.ts";
import { type Cluster, processAlive, startCluster, waitFor } from "../support/cluster.ts";

const decoder = new TextDecoder();

async function logsOf(cluster: Cluster, name: string, follow = false): Promise<string> {
  let out = "";
  for await (const chunk of cluster.client.streamLogs({ name, follow })) {
    out += decoder.decode(chunk.data);
  }
  return out;
}

/** Waits until the sandbox printed `pid=N` and returns N. */
async function pidOf(cluster: Cluster, name: string): Promise<number> {
  let pid = 0;
  await waitFor(async () => {
    const m = /pid=(\d+)/.exec(await logsOf(cluster, name));
    if (m) pid = Number(m[1]);
    return m !== null;
  });
  return pid;
}

async function rejects(
  p: Promise<unknown>,
  code: number,
  message?: string | RegExp,
): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RpcError, `expected RpcError, got ${err}`);
    assert.equal(err.codeName, new RpcError(code, "").codeName, err.message);
    if (typeof message === "string") assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail("expected the call to fail");
}

const SLEEPER = ["sh", "-c", "echo pid=$$; echo hello; exec sleep 60"];

for (const mode of ["fast", "strong"] as const) {
  Deno.test(`create, get, list, logs and delete work end to end in ${mode} mode`, async () => {
    const cluster = await startCluster({ mode });
    try {
      const created = await cluster.client.createSandbox({
        name: "demo",
        image: "busybox",
        command: SLEEPER,
        exposedPorts: [8080],
        labels: { team: "a" },
      });
      assert.equal(created.phase, "Running");
      assert.equal(created.name, "demo");
      assert.equal(created.namespace, "default");
      assert.equal(created.pool, "default-pool");
      assert.equal(created.agent, "agent-1");
      assert.match(created.sandboxId, /^[0-9a-f]{32}$/);
      assert.deepEqual(created.endpoints, ["127.0.0.1:8080"]);
      const agent = cluster.controller.controller.registry.getAgentById("agent-1")!;
      assert.equal(agent.allocated, 1);
      assert.ok(agent.ports.has(8080));

      const got = await cluster.client.getSandbox({ name: "demo" });
      assert.equal(got.sandboxId, created.sandboxId);
      assert.deepEqual(got.labels, { team: "a" });
      const list = await cluster.client.listSandboxes({});
      assert.deepEqual(list.sandboxes.map((s) => s.name), ["demo"]);

      const pid = await pidOf(cluster, "demo");
      assert.ok(processAlive(pid));
      assert.match(await logsOf(cluster, "demo"), /hello\n/);

      await cluster.controller.controller.flush();
      const deleted = await cluster.client.deleteSandbox({ name: "demo" });
      assert.equal(deleted.sandboxId, created.sandboxId);
      assert.equal(processAlive(pid), false);
      assert.equal(agent.allocated, 0);
      assert.equal(agent.ports.size, 0);
      await rejects(
        cluster.client.getSandbox({ name: "demo" }),
        Code.NOT_FOUND,
        'Sandbox "default/demo" not found',
      );
      assert.deepEqual((await cluster.client.listSandboxes({})).sandboxes, []);
      assert.deepEqual(await cluster.agents.get("agent-1")!.runtime.list(), []);
    } finally {
      await cluster.close();
    }
  });
}

Deno.test("a strong create is in the store before it is acknowledged", async () => {
  const cluster = await startCluster({ mode: "fast" });
  try {
    await cluster.client.createSandbox({
      name: "durable",
      image: "busybox",
      command: ["sleep", "60"],
      consistencyMode: ConsistencyMode.STRONG,
    });
    // Reopen the same store file from a second controller: the record is there without any flush.
    const { openStore } = await import("../../controller/store/mod.ts");
    const store = await openStore(`sqlite:`, { dataDir: `${cluster.dataDir}/controller` });
    try {
      const entry = await store.get("sandboxes/default/durable");
      assert.equal((entry?.value as { phase: string }).phase, "Running");
    } finally {
      await store.close();
    }
  } finally {
    await cluster.close();
  }
});

Deno.test("create is idempotent by name, and a different spec is ALREADY_EXISTS", async () => {
  const cluster = await startCluster();
  try {
    const req = { name: "same", image: "busybox", command: ["sleep", "60"] };
    const a = await cluster.client.createSandbox(req);
    const b = await cluster.client.createSandbox(req);
    assert.equal(b.sandboxId, a.sandboxId);
    assert.equal(cluster.controller.controller.registry.getAgentById("agent-1")!.allocated, 1);
    await rejects(
      cluster.client.createSandbox({ ...req, command: ["sleep", "61"] }),
      Code.ALREADY_EXISTS,
      'Cannot create sandbox "default/same" as one with that name and a different spec exists',
    );
  } finally {
    await cluster.close();
  }
});

Deno.test("concurrent identical creates make one sandbox", async () => {
  const cluster = await startCluster();
  try {
    const req = { name: "racy", image: "busybox", command: ["sleep", "60"] };
    const results = await Promise.all(
      Array.from({ length: 10 }, () => cluster.client.createSandbox(req)),
    );
    assert.equal(new Set(results.map((r) => r.sandboxId)).size, 1);
    assert.equal((await cluster.agents.get("agent-1")!.runtime.list()).length, 1);
  } finally {
    await cluster.close();
  }
});

Deno.test("allocate prefers the agent that reports the image", async () => {
  const cluster = await startCluster({
    agents: [
      { id: "plain", images: [] },
      { id: "cached", images: ["docker.io/library/python:3.12"] },
    ],
  });
  try {
    const info = await cluster.client.createSandbox({
      name: "py",
      image: "python:3.12",
      command: ["sleep", "60"],
    });
    assert.equal(info.agent, "cached");
    const other = await cluster.client.createSandbox({
      name: "bb",
      image: "alpine",
      command: ["sleep", "60"],
    });
    assert.equal(other.agent, "plain", "without an image match the least allocated agent wins");
  } finally {
    await cluster.close();
  }
});

Deno.test("a port in use moves the sandbox to another agent, then fails with RESOURCE_EXHAUSTED", async () => {
  const cluster = await startCluster({ agents: [{ id: "a" }, { id: "b" }] });
  try {
    const first = await cluster.client.createSandbox({
      name: "p1",
      image: "busybox",
      command: ["sleep", "60"],
      exposedPorts: [9000],
    });
    const second = await cluster.client.createSandbox({
      name: "p2",
      image: "busybox",
      command: ["sleep", "60"],
      exposedPorts: [9000],
    });
    assert.notEqual(second.agent, first.agent);
    const err = await rejects(
      cluster.client.createSandbox({
        name: "p3",
        image: "busybox",
        command: ["sleep", "60"],
        exposedPorts: [9000],
      }),
      Code.RESOURCE_EXHAUSTED,
    );
    assert.match(err.message, /pool "default-pool"/);
    await rejects(cluster.client.getSandbox({ name: "p3" }), Code.NOT_FOUND);
  } finally {
    await cluster.close();
  }
});

Deno.test("capacity is never exceeded under 200 concurrent creates", async () => {
  const cluster = await startCluster({
    agents: [{ id: "a", capacity: 7 }, { id: "b", capacity: 5 }, { id: "c", capacity: 8 }],
  });
  try {
    const results = await Promise.allSettled(
      Array.from(
        { length: 200 },
        (_, i) =>
          cluster.client.createSandbox({
            name: `c${i}`,
            image: "busybox",
            command: ["sleep", "60"],
          }),
      ),
    );
    const ok = results.filter((r) => r.status === "fulfilled");
    const failed = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    assert.equal(ok.length, 20);
    assert.equal(failed.length, 180);
    for (const f of failed) assert.equal((f.reason as RpcError).code, Code.RESOURCE_EXHAUSTED);
    for (const [id, cap] of [["a", 7], ["b", 5], ["c", 8]] as const) {
      const agent = cluster.controller.controller.registry.getAgentById(id)!;
      assert.equal(agent.allocated, cap);
      assert.equal((await cluster.agents.get(id)!.runtime.list()).length, cap);
    }
  } finally {
    await cluster.close();
  }
});

Deno.test("a stopped agent's MANUAL sandboxes become Lost after the stale timeout", async () => {
  const cluster = await startCluster({
    agents: [{ id: "a" }, { id: "b" }],
    agentTimeoutMs: 10_000,
  });
  try {
    const info = await cluster.client.createSandbox({
      name: "m",
      image: "busybox",
      command: ["sleep", "60"],
    });
    await cluster.stopAgent(info.agent);
    cluster.clock.advance(5_000);
    await cluster.heartbeatAll();
    await cluster.tick();
    assert.equal(
      (await cluster.client.getSandbox({ name: "m" })).phase,
      "Running",
      "not yet stale",
    );
    cluster.clock.advance(6_000);
    await cluster.heartbeatAll();
    await cluster.tick();
    const lost = await cluster.client.getSandbox({ name: "m" });
    assert.equal(lost.phase, "Lost");
    assert.equal(lost.message, `agent "${info.agent}" stopped sending heartbeats`);
    assert.equal(cluster.controller.controller.registry.getAgentById(info.agent), undefined);
  } finally {
    await cluster.close();
  }
});

Deno.test("a stopped agent's AUTO_RECREATE sandboxes are recreated on another agent", async () => {
  const cluster = await startCluster({
    agents: [{ id: "a" }, { id: "b" }],
    agentTimeoutMs: 10_000,
  });
  try {
    const info = await cluster.client.createSandbox({
      name: "r",
      image: "busybox",
      command: ["sleep", "60"],
      failurePolicy: FailurePolicy.AUTO_RECREATE,
    });
    await cluster.stopAgent(info.agent);
    cluster.clock.advance(10_001);
    await cluster.heartbeatAll();
    await cluster.tick(); // the agent is removed and the sandbox lost
    await cluster.tick(); // the lost sandbox is recreated
    const moved = await cluster.client.getSandbox({ name: "r" });
    assert.equal(moved.phase, "Running");
    assert.notEqual(moved.agent, info.agent);
    assert.notEqual(moved.sandboxId, info.sandboxId);
    const survivor = cluster.agents.values().next().value!;
    assert.deepEqual((await survivor.runtime.list()).map((s) => s.spec.sandboxId), [
      moved.sandboxId,
    ]);
  } finally {
    await cluster.close();
  }
});

Deno.test("expiry deletes the sandbox at its time and keeps it as Expired", async () => {
  const cluster = await startCluster();
  try {
    const expireAt = Math.floor(cluster.clock.now() / 1000) + 30;
    await cluster.client.createSandbox({
      name: "e",
      image: "busybox",
      command: SLEEPER,
      expireTime: BigInt(expireAt),
    });
    const pid = await pidOf(cluster, "e");
    cluster.clock.advance(29_000);
    await cluster.heartbeatAll();
    await cluster.tick();
    assert.equal((await cluster.client.getSandbox({ name: "e" })).phase, "Running");
    cluster.clock.advance(1_000);
    await cluster.heartbeatAll();
    await cluster.tick();
    const expired = await cluster.client.getSandbox({ name: "e" });
    assert.equal(expired.phase, "Expired");
    assert.equal(processAlive(pid), false);
    assert.equal(cluster.controller.controller.registry.getAgentById("agent-1")!.allocated, 0);
    await cluster.client.deleteSandbox({ name: "e" });
    await rejects(cluster.client.getSandbox({ name: "e" }), Code.NOT_FOUND);
  } finally {
    await cluster.close();
  }
});

Deno.test("reset recreates the sandbox under the same name with a new id", async () => {
  const cluster = await startCluster();
  try {
    const before = await cluster.client.createSandbox({
      name: "z",
      image: "busybox",
      command: SLEEPER,
    });
    const pid = await pidOf(cluster, "z");
    const after = await cluster.client.updateSandbox({ name: "z", reset: true });
    assert.equal(after.phase, "Running");
    assert.notEqual(after.sandboxId, before.sandboxId);
    assert.equal(processAlive(pid), false);
    const newPid = await pidOf(cluster, "z");
    assert.notEqual(newPid, pid);
    assert.equal(cluster.controller.controller.registry.getAgentById("agent-1")!.allocated, 1);
  } finally {
    await cluster.close();
  }
});

Deno.test("update changes expiry, failure policy and labels", async () => {
  const cluster = await startCluster();
  try {
    await cluster.client.createSandbox({
      name: "u",
      image: "busybox",
      command: ["sleep", "60"],
      labels: { a: "1" },
    });
    const expireAt = BigInt(Math.floor(cluster.clock.now() / 1000) + 3600);
    const updated = await cluster.client.updateSandbox({
      name: "u",
      expireTime: expireAt,
      failurePolicy: FailurePolicy.AUTO_RECREATE,
      labels: { b: "2" },
    });
    assert.equal(updated.expireTime, expireAt);
    assert.equal(updated.failurePolicy, FailurePolicy.AUTO_RECREATE);
    assert.deepEqual(updated.labels, { a: "1", b: "2" });
    const cleared = await cluster.client.updateSandbox({ name: "u", expireTime: 0n });
    assert.equal(cleared.expireTime, 0n);
    assert.equal(cleared.failurePolicy, FailurePolicy.AUTO_RECREATE);
  } finally {
    await cluster.close();
  }
});

Deno.test("an exited sandbox is reported as Exited with its exit code", async () => {
  const cluster = await startCluster();
  try {
    await cluster.client.createSandbox({
      name: "x",
      image: "busybox",
      command: ["sh", "-c", "exit 3"],
    });
    await waitFor(async () => {
      await cluster.heartbeatAll();
      return (await cluster.client.getSandbox({ name: "x" })).phase === "Exited";
    });
    assert.equal((await cluster.client.getSandbox({ name: "x" })).message, "exit code 3");
  } finally {
    await cluster.close();
  }
});

Deno.test("logs -f follows output until the sandbox ends", async () => {
  const cluster = await startCluster();
  try {
    await cluster.client.createSandbox({
      name: "f",
      image: "busybox",
      command: ["sh", "-c", "echo one; sleep 0.3; echo two"],
    });
    assert.equal(await logsOf(cluster, "f", true), "one\ntwo\n");
  } finally {
    await cluster.close();
  }
});

Deno.test("at -v 2 a create logs its timing breakdown, and /metrics has the stage histograms", async () => {
  const lines: string[] = [];
  const logger = pino<"timing">({ level: "timing", customLevels: { timing: 25 } }, {
    write: (line: string) => lines.push(line),
  });
  const cluster = await startCluster({ logger });
  try {
    await cluster.client.createSandbox({ name: "t", image: "busybox", command: ["sleep", "60"] });
    const timing = lines.map((l) => JSON.parse(l)).find((r) => r.msg === "create timing");
    assert.ok(timing, lines.join(""));
    assert.equal(timing.sandbox, "sandboxes/default/t");
    for (const stage of ["allocate", "agent_rpc", "runtime_start", "agent_total", "total"]) {
      assert.equal(typeof timing.ms[stage], "number", `stage ${stage}`);
    }
    const metrics = await (await fetch(`http://${cluster.controller.metricsAddress}/metrics`))
      .text();
    for (const stage of ["allocate", "agent_rpc", "runtime_start"]) {
      assert.match(
        metrics,
        new RegExp(
          `fastpath_create_stage_duration_seconds_count\\{stage="${stage}",path="cold"\\} 1`,
        ),
      );
    }
    assert.match(
      metrics,
      /fastpath_create_sandbox_duration_seconds_count\{mode="fast",success="true",path="cold"\} 1/,
    );
    assert.match(metrics, /fsb_sandboxes\{phase="Running"\} 1/);
  } finally {
    await cluster.close();
  }
});
