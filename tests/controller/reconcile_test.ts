import assert from "node:assert/strict";
import client from "prom-client";
import { create } from "@bufbuild/protobuf";
import { Controller, createControllerMetrics, type SandboxRecord } from "../../controller/mod.ts";
import { addControllerServices } from "../../controller/_services.ts";
import { type AuthRecord, TokenAuth } from "../../controller/auth.ts";
import { openStore, type Store } from "../../controller/store/mod.ts";
import { AgentServer } from "../../agent/mod.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import { RpcServer } from "../../proto/grpc.ts";
import {
  ConsistencyMode,
  CreateSandboxRequestSchema,
  FailurePolicy,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { ManualClock, silentLogger, startCluster, waitFor } from "../support/cluster.ts";

Deno.test("a strong create whose Running write fails leaves no slot, port or sandbox behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-reconcile-" });
  const real = await openStore<SandboxRecord>("sqlite:", { dataDir: dir });
  // A real store whose second write fails: the one that would record the sandbox Running.
  let puts = 0;
  const store: Store<SandboxRecord> = {
    get: (k) => real.get(k),
    put: (k, v, o) => ++puts === 2 ? Promise.reject(new Error("store down")) : real.put(k, v, o),
    delete: (k, o) => real.delete(k, o),
    list: (p) => real.list(p),
    watch: (p, fn, o) => real.watch(p, fn, o),
    close: () => real.close(),
  };
  const controller = new Controller({
    store,
    logger: silentLogger(),
    clock: new ManualClock(),
    metrics: createControllerMetrics(new client.Registry(), {
      agents: () => ({ ready: 0, total: 0, capacity: 0, allocated: 0 }),
      sandboxesByPhase: () => ({}),
    }),
  });
  const server = new RpcServer();
  // Checks off, as the controller's own default: this test is about reconciliation.
  const auth = new TokenAuth({ store: store as unknown as Store<AuthRecord>, enabled: false });
  addControllerServices(server, () => ({ controller, auth }));
  const address = await server.listen("127.0.0.1:0");
  const runtime = new ProcessRuntime({ stateDir: `${dir}/p`, images: ["busybox"] });
  const agent = new AgentServer({
    controller: address,
    listen: "127.0.0.1:0",
    advertise: "127.0.0.1",
    id: "a1",
    pool: "default-pool",
    namespace: "default",
    capacity: 5,
    runtime,
    dataDir: `${dir}/a`,
    logger: silentLogger(),
    metricsRegistry: new client.Registry(),
  });
  await agent.start();
  await waitFor(() => controller.registry.getAgentById("a1") !== undefined);
  try {
    await assert.rejects(
      controller.createSandbox(create(CreateSandboxRequestSchema, {
        name: "s1",
        image: "busybox",
        command: ["sleep", "30"],
        exposedPorts: [8080],
        consistencyMode: ConsistencyMode.STRONG,
      })),
      /store down/,
    );
    const a1 = controller.registry.getAgentById("a1")!;
    assert.equal(a1.allocated, 0);
    assert.equal(a1.ports.size, 0);
    await waitFor(async () => (await runtime.list()).length === 0);
    // A heartbeat from before the cleanup must not bring it back.
    controller.heartbeat(await agent.report());
    assert.equal(a1.allocated, 0);
    assert.deepEqual(controller.listSandboxes({ namespace: "", allNamespaces: true }), []);
  } finally {
    for (const s of await runtime.list()) await runtime.delete(s.spec.sandboxId, 0);
    await agent.close();
    await server.close();
    await controller.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a lost sandbox that its agent reports again keeps the updates made since its create", async () => {
  const cluster = await startCluster();
  try {
    await cluster.client.createSandbox({
      name: "s2",
      image: "busybox",
      command: ["sleep", "30"],
      labels: { a: "1" },
    });
    const expireTime = BigInt(Math.floor(cluster.clock.now() / 1000) + 9999);
    await cluster.client.updateSandbox({ name: "s2", labels: { a: "2" }, expireTime });
    cluster.clock.advance(11_000);
    await cluster.tick();
    assert.equal((await cluster.client.getSandbox({ name: "s2" })).phase, "Lost");
    const agent = cluster.agents.get("agent-1")!;
    await cluster.controller.controller.register(await agent.server.report());
    const back = await cluster.client.getSandbox({ name: "s2" });
    assert.equal(back.phase, "Running");
    assert.deepEqual(back.labels, { a: "2" });
    assert.equal(back.expireTime, expireTime);
  } finally {
    await cluster.close();
  }
});

Deno.test("an agent that registers without its inventory loses none of its sandboxes", async () => {
  const cluster = await startCluster();
  try {
    await cluster.client.createSandbox({
      name: "s3",
      image: "busybox",
      command: ["sleep", "30"],
      failurePolicy: FailurePolicy.AUTO_RECREATE,
    });
    const agent = cluster.agents.get("agent-1")!;
    const runtime = agent.runtime as ProcessRuntime;
    const list = runtime.list.bind(runtime);
    runtime.list = () => Promise.reject(new Error("the runtime is restarting"));
    const report = await agent.server.report();
    runtime.list = list;
    assert.equal(report.inventoryUnknown, true);
    await cluster.controller.controller.register(report);
    await cluster.tick();
    const s3 = await cluster.client.getSandbox({ name: "s3" });
    assert.equal(s3.phase, "Running");
    assert.equal(cluster.controller.controller.registry.getAgentById("agent-1")!.allocated, 1);
  } finally {
    await cluster.close();
  }
});

Deno.test("a sandbox busy while its agent goes stale is Lost once the operation ends", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-reconcile-" });
  const runtime = new ProcessRuntime({ stateDir: `${dir}/p`, images: ["busybox"] });
  // Hold the delete until the agent has been declared stale, then fail it.
  const gate = Promise.withResolvers<void>();
  const entered = Promise.withResolvers<void>();
  let block = true;
  const del = runtime.delete.bind(runtime);
  runtime.delete = async (id, grace) => {
    if (block) {
      entered.resolve();
      await gate.promise;
      throw new Error("disk busy");
    }
    return del(id, grace);
  };
  const cluster = await startCluster({ agents: [{ id: "a1", runtime }] });
  try {
    await cluster.client.createSandbox({ name: "s4", image: "busybox", command: ["sleep", "30"] });
    const pending = cluster.client.deleteSandbox({ name: "s4" }).catch((err) => err);
    await waitFor(() =>
      cluster.controller.controller.listSandboxes({ namespace: "", allNamespaces: false })[0]
        ?.phase === "Terminating"
    );
    // The delete has reached the runtime (Terminating is set before the call goes out).
    await entered.promise;
    cluster.clock.advance(11_000);
    await cluster.tick();
    assert.equal(cluster.controller.controller.registry.getAgentById("a1"), undefined);
    block = false;
    gate.resolve();
    assert.ok((await pending) instanceof Error);
    await cluster.tick();
    const s4 = await cluster.client.getSandbox({ name: "s4" });
    assert.equal(s4.phase, "Lost");
    assert.equal(s4.message, 'agent "a1" stopped sending heartbeats');
  } finally {
    block = false;
    gate.resolve();
    await cluster.close();
    await Deno.remove(dir, { recursive: true });
  }
});
