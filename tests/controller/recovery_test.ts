/**
 * Regression tests for faults 3 and 6 of issue 11 (shared/DESIGN.md section
 * 15): a controller restarted on its store waits for its agents' reports
 * before it vouches for an absence, and deletes leave tombstones in the store
 * so that no restart adopts a deleted sandbox. A real controller and real
 * agents over gRPC on loopback, process runtimes, the sqlite and etcd stores;
 * each restart closes the controller and its store and opens new ones on the
 * same store and address.
 *
 * @module
 */
import assert from "node:assert/strict";
import client from "prom-client";
import { Controller, createControllerMetrics, type SandboxRecord } from "../../controller/mod.ts";
import { addControllerServices } from "../../controller/_services.ts";
import { type AuthRecord, TokenAuth } from "../../controller/auth.ts";
import { openStore, type Store } from "../../controller/store/mod.ts";
import { AgentServer } from "../../agent/mod.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import type { CreateOptions, CreateResult } from "../../agent/runtime.ts";
import type { SandboxSpec } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import {
  Code,
  codeName,
  RpcChannel,
  RpcError,
  RpcServer,
  type ServiceClient,
} from "../../proto/grpc.ts";
import { UnavailableError } from "../../registry/errors.ts";
import { startEtcd } from "../support/etcd.ts";
import { ignoreWithout } from "../support/real_parts.ts";
import { ManualClock, silentLogger, waitFor } from "../support/cluster.ts";

/** Awaits `p`, which must fail with `code` and a message matching `message`. */
async function rejects(p: Promise<unknown>, code: number, message: RegExp): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RpcError, `expected RpcError, got ${err}`);
    assert.equal(err.codeName, codeName(code), err.message);
    assert.match(err.message, message);
    return;
  }
  assert.fail(`expected ${codeName(code)}`);
}

const RECOVERING = /: the controller is recovering its state; retry$/;

/** One controller "process": its store, the controller and its gRPC server. */
interface Running {
  readonly controller: Controller;
  readonly clock: ManualClock;
  readonly real: Store<SandboxRecord>;
  readonly server: RpcServer;
  /** Where it serves. */
  readonly address: string;
}

/**
 * A controller on the store at `url` that can be restarted on the same store
 * and address, and agents that can be stopped (their sandboxes keep running)
 * and started again with the same id, data dir and runtime state.
 */
class RestartableCluster {
  readonly dir: string;
  readonly url: string;
  address = "127.0.0.1:0";
  /**
   * While set, the store loses every sandbox record write. Not real: it
   * stands for a controller killed between a fast create's reply and its
   * write-behind, which no test can time with a real kill.
   */
  dropSandboxWrites = false;
  current!: Running;
  readonly runtimes = new Map<string, ProcessRuntime>();
  readonly agents = new Map<string, AgentServer>();
  readonly fastpath: ServiceClient<typeof FastPath.method>;
  readonly #channel: RpcChannel;

  private constructor(dir: string, url: string, channel: RpcChannel) {
    this.dir = dir;
    this.url = url;
    this.#channel = channel;
    this.fastpath = channel.client(FastPath);
  }

  /** Starts a controller on `url` (sqlite in a fresh dir, or an etcd prefix). */
  static async start(url: string): Promise<RestartableCluster> {
    const dir = await Deno.makeTempDir({ prefix: "fsb-recovery-" });
    const drop = { cluster: undefined as RestartableCluster | undefined };
    const first = await startControllerOn(
      url,
      dir,
      "127.0.0.1:0",
      () => drop.cluster?.dropSandboxWrites ?? false,
    );
    const channel = new RpcChannel(first.address, { timeoutMs: 30_000 });
    const cluster = drop.cluster = new RestartableCluster(dir, url, channel);
    cluster.address = first.address;
    cluster.current = first;
    return cluster;
  }

  /** Closes the controller and its store (flushing what it can), then starts a new one. */
  async restartController(): Promise<void> {
    await this.stopController();
    this.current = await startControllerOn(
      this.url,
      this.dir,
      this.address,
      () => this.dropSandboxWrites,
    );
    // The client's connection to the old server may still look open; the
    // first call on it then fails in the transport (EPIPE, RST_STREAM), which
    // is not what these tests are about: wait until calls reach the new one.
    await waitFor(async () => {
      try {
        await this.fastpath.getSandbox({ name: "connection-probe" });
        return true;
      } catch (err) {
        return !(err instanceof RpcError) ||
          !/RST_STREAM|EPIPE|ECONNRESET|Connection dropped|No connection/.test(err.message);
      }
    });
  }

  /** Closes the controller's server, the controller and its store. */
  async stopController(): Promise<void> {
    await this.current.server.close();
    await this.current.controller.close();
    await this.current.real.close();
  }

  /** Starts agent `id` (again), on `runtime` if given: it registers with the controller at once. */
  async startAgent(id: string, runtime?: ProcessRuntime): Promise<ProcessRuntime> {
    runtime ??= this.runtimes.get(id) ??
      new ProcessRuntime({ stateDir: `${this.dir}/${id}/process`, images: ["busybox"] });
    this.runtimes.set(id, runtime);
    const agent = new AgentServer({
      controller: this.address,
      listen: "127.0.0.1:0",
      advertise: "127.0.0.1",
      id,
      pool: "default-pool",
      namespace: "default",
      capacity: 5,
      runtime,
      dataDir: `${this.dir}/${id}`,
      logger: silentLogger(),
      metricsRegistry: new client.Registry(),
      // Slow on purpose: the tests say when an agent reports to a restarted controller.
      heartbeatMs: 60_000,
    });
    await agent.start();
    this.agents.set(id, agent);
    await waitFor(() => this.current.controller.registry.getAgentById(id) !== undefined);
    return runtime;
  }

  /** Stops agent `id`'s server; its sandboxes keep running, as on a host cut off. */
  async stopAgent(id: string): Promise<void> {
    await this.agents.get(id)!.close();
    this.agents.delete(id);
  }

  /** Agent `id` registers with the (restarted) controller, reporting all it holds. */
  async register(id: string): Promise<void> {
    await this.current.controller.register(await this.agents.get(id)!.report());
  }

  async close(): Promise<void> {
    this.#channel.close();
    for (const agent of this.agents.values()) await agent.close();
    for (const runtime of this.runtimes.values()) {
      for (const s of await runtime.list()) await runtime.delete(s.spec.sandboxId, 0);
    }
    await this.stopController();
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** Opens the store, loads it into a new controller and serves it at `address`. */
async function startControllerOn(
  url: string,
  dir: string,
  address: string,
  dropSandboxWrites: () => boolean,
): Promise<Running> {
  const real = await openStore<SandboxRecord>(url, { dataDir: `${dir}/controller` });
  const store: Store<SandboxRecord> = {
    get: (k) => real.get(k),
    put: (k, v, o) =>
      dropSandboxWrites() && k.startsWith("sandboxes/")
        ? Promise.reject(new UnavailableError("Cannot write to the store: injected failure"))
        : real.put(k, v, o),
    delete: (k, o) => real.delete(k, o),
    list: (p) => real.list(p),
    watch: (p, fn, o) => real.watch(p, fn, o),
    close: () => real.close(),
  };
  const clock = new ManualClock();
  // Checks off, as in process: these tests are about recovery. Loaded, as a served controller's
  // is, so that it dials agents with the credentials they hold.
  const auth = new TokenAuth({ store: store as unknown as Store<AuthRecord>, enabled: false });
  await auth.load();
  const controller = new Controller({
    store,
    auth,
    logger: silentLogger(),
    clock,
    deleteGraceMs: 1_000,
    metrics: createControllerMetrics(new client.Registry(), {
      agents: () => ({ ready: 0, total: 0, capacity: 0, allocated: 0 }),
      sandboxesByPhase: () => ({}),
    }),
  });
  await controller.load();
  const server = new RpcServer();
  addControllerServices(server, () => ({ controller, auth }));
  const served = await server.listen(address);
  return { controller, clock, real, server, address: served };
}

// ------------------------------------------------------------------ fault 6

async function deletedStaysDeleted(url: string): Promise<void> {
  const c = await RestartableCluster.start(url);
  try {
    const runtime = await c.startAgent("a1");
    const created = await c.fastpath.createSandbox({
      name: "gone",
      image: "busybox",
      command: ["sleep", "60"],
    });
    const id = created.sandboxId;
    // The agent is cut off with its sandbox running, and judged gone; then the user deletes.
    await c.stopAgent("a1");
    c.current.clock.advance(10_001);
    await c.current.controller.tick();
    assert.equal((await c.fastpath.getSandbox({ name: "gone" })).phase, "Lost");
    await c.fastpath.deleteSandbox({ name: "gone" });
    assert.deepEqual((await c.current.real.get(`tombstones/${id}`))?.value, { agentId: "a1" });

    await c.restartController();
    // The agent that may hold it has not reported: the name's absence is not vouched for yet.
    await rejects(
      c.fastpath.getSandbox({ name: "gone" }),
      Code.UNAVAILABLE,
      /^Sandbox "default\/gone" is not known yet: the controller is recovering/,
    );
    assert.equal((await runtime.list()).length, 1, "the agent still runs the container");

    await c.startAgent("a1");
    await waitFor(async () => (await runtime.list()).length === 0);
    await rejects(
      c.fastpath.getSandbox({ name: "gone" }),
      Code.NOT_FOUND,
      /^Sandbox "default\/gone" not found$/,
    );
    assert.deepEqual((await c.fastpath.listSandboxes({})).sandboxes, []);
    assert.equal(c.current.controller.registry.getAgentById("a1")?.allocated, 0);
    // The agent confirmed the container gone: the tombstone leaves the store.
    await waitFor(async () => (await c.current.real.get(`tombstones/${id}`)) === undefined);
  } finally {
    await c.close();
  }
}

Deno.test("a deleted sandbox is removed, not adopted, when its agent returns after a controller restart (sqlite)", async () => {
  await deletedStaysDeleted("sqlite:");
});

Deno.test({
  name:
    "a deleted sandbox is removed, not adopted, when its agent returns after a controller restart (etcd)",
  ignore: ignoreWithout("etcd"),
  fn: async () => {
    const etcd = await startEtcd();
    try {
      await deletedStaysDeleted(`etcd://${etcd.endpoint}/fsb-recovery/`);
    } finally {
      await etcd.stop();
    }
  },
});

/**
 * A fake in part, because no real runtime fails on demand: a real
 * ProcessRuntime whose creates, while `failing`, make the container and then
 * fail, and whose deletes fail, as when a runtime's cleanup after a failed
 * create fails too.
 */
class LeakyRuntime extends ProcessRuntime {
  failing = true;

  override async create(spec: SandboxSpec, opts: CreateOptions): Promise<CreateResult> {
    const result = await super.create(spec, opts);
    if (this.failing) throw new Error("the runtime failed after starting the container");
    return result;
  }

  override async delete(id: string, graceMs: number): Promise<boolean> {
    if (this.failing) throw new Error("the runtime cannot delete now");
    return await super.delete(id, graceMs);
  }
}

async function failedCreateStaysGone(url: string): Promise<void> {
  const c = await RestartableCluster.start(url);
  try {
    const runtime = new LeakyRuntime({ stateDir: `${c.dir}/a1/process`, images: ["busybox"] });
    await c.startAgent("a1", runtime);
    await assert.rejects(
      c.fastpath.createSandbox({ name: "f", image: "busybox", command: ["sleep", "60"] }),
      /the runtime failed after starting the container/,
    );
    const [leaked] = await runtime.list();
    const id = leaked.spec.sandboxId;
    // The controller's cleanup failed: the tombstone stays in the store for the agent to confirm.
    await waitFor(async () => (await c.current.real.get(`tombstones/${id}`)) !== undefined);

    await c.restartController();
    runtime.failing = false;
    await c.register("a1");
    await waitFor(async () => (await runtime.list()).length === 0);
    await rejects(
      c.fastpath.getSandbox({ name: "f" }),
      Code.NOT_FOUND,
      /^Sandbox "default\/f" not found$/,
    );
    assert.equal(c.current.controller.registry.getAgentById("a1")?.allocated, 0);
    await waitFor(async () => (await c.current.real.get(`tombstones/${id}`)) === undefined);
  } finally {
    for (const r of c.runtimes.values()) (r as LeakyRuntime).failing = false;
    await c.close();
  }
}

Deno.test("a container whose create and cleanup failed is removed, not adopted, after a controller restart (sqlite)", async () => {
  await failedCreateStaysGone("sqlite:");
});

Deno.test({
  name:
    "a container whose create and cleanup failed is removed, not adopted, after a controller restart (etcd)",
  ignore: ignoreWithout("etcd"),
  fn: async () => {
    const etcd = await startEtcd();
    try {
      await failedCreateStaysGone(`etcd://${etcd.endpoint}/fsb-recovery/`);
    } finally {
      await etcd.stop();
    }
  },
});

// ------------------------------------------------------------------ fault 3

async function unrecordedCreateSurvives(url: string): Promise<void> {
  const c = await RestartableCluster.start(url);
  try {
    const runtimes = { a1: await c.startAgent("a1"), a2: await c.startAgent("a2") };
    // Acknowledged, but the controller dies before its write-behind reaches the store.
    c.dropSandboxWrites = true;
    const spec = { name: "s", image: "busybox", command: ["sleep", "60"] };
    const created = await c.fastpath.createSandbox(spec);
    const holder = created.agent as "a1" | "a2";
    const other = holder === "a1" ? "a2" : "a1";
    await c.restartController();
    c.dropSandboxWrites = false;
    assert.equal(await c.current.real.get("sandboxes/default/s"), undefined);

    await rejects(
      c.fastpath.getSandbox({ name: "s" }),
      Code.UNAVAILABLE,
      /^Sandbox "default\/s" is not known yet: the controller is recovering its state; retry$/,
    );
    await rejects(c.fastpath.listSandboxes({}), Code.UNAVAILABLE, /^Cannot list sandboxes/);
    // The retried create places nothing under a name whose record the controller has not seen.
    await rejects(
      c.fastpath.createSandbox(spec),
      Code.UNAVAILABLE,
      /^Cannot create sandbox "default\/s" yet: the controller is recovering/,
    );
    await rejects(c.fastpath.deleteSandbox({ name: "s" }), Code.UNAVAILABLE, RECOVERING);
    // One agent back is not enough: the other may hold it.
    await c.register(other);
    await rejects(c.fastpath.getSandbox({ name: "s" }), Code.UNAVAILABLE, RECOVERING);

    await c.register(holder);
    const found = await c.fastpath.getSandbox({ name: "s" });
    assert.equal(found.sandboxId, created.sandboxId);
    assert.equal(found.agent, holder);
    assert.equal(found.phase, "Running");
    assert.equal((await c.fastpath.createSandbox(spec)).sandboxId, created.sandboxId);
    await rejects(
      c.fastpath.getSandbox({ name: "never" }),
      Code.NOT_FOUND,
      /^Sandbox "default\/never" not found$/,
    );
    await c.register(holder);
    assert.deepEqual(
      (await runtimes[holder].list()).map((s) => s.spec.sandboxId),
      [created.sandboxId],
    );
    assert.deepEqual(await runtimes[other].list(), []);
    assert.deepEqual(
      (await c.fastpath.listSandboxes({})).sandboxes.map((s) => s.sandboxId),
      [created.sandboxId],
    );
    // Adopted, so now written to the store.
    await c.current.controller.flush();
    assert.ok(await c.current.real.get("sandboxes/default/s"));
  } finally {
    await c.close();
  }
}

Deno.test("after a restart, a sandbox whose record was lost is UNAVAILABLE, never NOT_FOUND or placed twice, until its agent reports (sqlite)", async () => {
  await unrecordedCreateSurvives("sqlite:");
});

Deno.test({
  name:
    "after a restart, a sandbox whose record was lost is UNAVAILABLE, never NOT_FOUND or placed twice, until its agent reports (etcd)",
  ignore: ignoreWithout("etcd"),
  fn: async () => {
    const etcd = await startEtcd();
    try {
      await unrecordedCreateSurvives(`etcd://${etcd.endpoint}/fsb-recovery/`);
    } finally {
      await etcd.stop();
    }
  },
});

Deno.test("recovery ends after an agent timeout when an agent never comes back, and unnamed creates need not wait", async () => {
  const c = await RestartableCluster.start("sqlite:");
  try {
    await c.startAgent("a1");
    await c.startAgent("a2");
    await c.stopAgent("a2");
    await c.restartController();
    await c.register("a1");
    await rejects(c.fastpath.getSandbox({ name: "x" }), Code.UNAVAILABLE, RECOVERING);
    // A generated name is one no agent can hold yet: such a create need not wait.
    const unnamed = await c.fastpath.createSandbox({ image: "busybox", command: ["sleep", "60"] });
    assert.match(unnamed.name, /^sb-/);
    assert.equal(unnamed.agent, "a1");
    c.current.clock.advance(10_000);
    await rejects(
      c.fastpath.getSandbox({ name: "x" }),
      Code.NOT_FOUND,
      /^Sandbox "default\/x" not found$/,
    );
    const created = await c.fastpath.createSandbox({
      name: "x",
      image: "busybox",
      command: ["sleep", "60"],
    });
    assert.equal(created.agent, "a1");
  } finally {
    await c.close();
  }
});
