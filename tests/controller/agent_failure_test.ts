import assert from "node:assert/strict";
import { Agent as AgentService, type SandboxSpec } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Code, codeName, RpcChannel, RpcError } from "../../proto/grpc.ts";
import { openStore } from "../../controller/store/mod.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import type {
  CreateOptions,
  CreateResult,
  ExecProcess,
  ExecRecord,
  ExecSpec,
  LogsOptions,
  Runtime,
  RuntimeSandbox,
} from "../../agent/runtime.ts";
import { type Cluster, processAlive, startCluster, waitFor } from "../support/cluster.ts";

/** Awaits `p`, which must fail with `code` and a message matching `message`. */
async function rejects(p: Promise<unknown>, code: number, message: RegExp): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RpcError, `expected RpcError, got ${err}`);
    assert.equal(err.codeName, codeName(code), err.message);
    assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected ${codeName(code)}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Keys of the sandbox records in the store file, once the write-behind queue is flushed. */
async function storedKeys(cluster: Cluster): Promise<string[]> {
  await cluster.controller.controller.flush();
  const store = await openStore("sqlite:", { dataDir: `${cluster.dataDir}/controller` });
  try {
    return (await store.list("sandboxes/")).map((e) => e.key);
  } finally {
    await store.close();
  }
}

/** Each agent's slots and ports as the controller's registry holds them. */
function slots(cluster: Cluster): Record<string, { allocated: number; ports: number[] }> {
  const out: Record<string, { allocated: number; ports: number[] }> = {};
  for (const a of cluster.controller.controller.registry.getAllAgents()) {
    out[a.id] = { allocated: a.allocated, ports: [...a.ports].sort((x, y) => x - y) };
  }
  return out;
}

/** Asserts that the controller holds nothing of `name`: not listed, not gettable, not stored. */
async function assertGone(cluster: Cluster, name: string): Promise<void> {
  await rejects(
    cluster.client.getSandbox({ name }),
    Code.NOT_FOUND,
    new RegExp(`^Sandbox "default/${name}" not found$`),
  );
  assert.deepEqual((await cluster.client.listSandboxes({})).sandboxes, []);
  assert.deepEqual(await storedKeys(cluster), []);
}

for (const mode of ["fast", "strong"] as const) {
  Deno.test(`a create the runtime fails is FAILED_PRECONDITION and leaves nothing behind (${mode})`, async () => {
    const cluster = await startCluster({ mode });
    try {
      const agent = cluster.agents.get("agent-1")!;
      const err = await rejects(
        cluster.client.createSandbox({
          name: "bad-cmd",
          image: "busybox",
          command: ["fsb-no-such-command", "--flag"],
          exposedPorts: [8080],
        }),
        Code.FAILED_PRECONDITION,
        /^Cannot start sandbox [0-9a-f]{32} as command "fsb-no-such-command" was not found$/,
      );
      const id = /[0-9a-f]{32}/.exec(err.message)![0];
      assert.deepEqual(slots(cluster), { "agent-1": { allocated: 0, ports: [] } });
      await assertGone(cluster, "bad-cmd");
      assert.deepEqual(await agent.runtime.list(), []);
      assert.equal(await exists(`${agent.dataDir}/process/${id}`), false, "state dir");
      assert.equal(await exists(`${agent.dataDir}/logs/${id}.log`), false, "log file");

      const good = await cluster.client.createSandbox({
        name: "bad-cmd",
        image: "busybox",
        command: ["sleep", "60"],
        exposedPorts: [8080],
      });
      assert.equal(good.phase, "Running");
      assert.notEqual(good.sandboxId, id);
      assert.deepEqual(slots(cluster), { "agent-1": { allocated: 1, ports: [8080] } });
    } finally {
      await cluster.close();
    }
  });
}

Deno.test("a create whose working dir is missing on the host is FAILED_PRECONDITION naming it", async () => {
  const cluster = await startCluster();
  try {
    await rejects(
      cluster.client.createSandbox({
        name: "bad-dir",
        image: "busybox",
        command: ["sleep", "60"],
        workingDir: "/fsb-no-such-dir/work",
      }),
      Code.FAILED_PRECONDITION,
      /^Cannot start sandbox [0-9a-f]{32} as working directory "\/fsb-no-such-dir\/work" does not exist$/,
    );
    assert.deepEqual(slots(cluster), { "agent-1": { allocated: 0, ports: [] } });
    await assertGone(cluster, "bad-dir");
    assert.deepEqual(await cluster.agents.get("agent-1")!.runtime.list(), []);
  } finally {
    await cluster.close();
  }
});

for (const mode of ["fast", "strong"] as const) {
  Deno.test(`an agent that cannot be reached mid-create is UNAVAILABLE and releases everything (${mode})`, async () => {
    // Image affinity sends alpine to "gone", busybox to "live".
    const cluster = await startCluster({
      mode,
      agents: [{ id: "gone", images: ["alpine"] }, { id: "live", images: ["busybox"] }],
    });
    try {
      const gone = await cluster.stopAgent("gone");
      const before = slots(cluster);
      assert.deepEqual(before, {
        gone: { allocated: 0, ports: [] },
        live: { allocated: 0, ports: [] },
      });

      await rejects(
        cluster.client.createSandbox({
          name: "x",
          image: "alpine",
          command: ["sleep", "60"],
          exposedPorts: [8080],
        }),
        Code.UNAVAILABLE,
        /^Cannot create sandbox "default\/x" on agent "gone": .*ECONNREFUSED/,
      );
      assert.ok(
        cluster.controller.controller.registry.getAgentById("gone"),
        "still registered: the stale timeout has not passed",
      );
      assert.deepEqual(slots(cluster), before);
      await assertGone(cluster, "x");
      assert.deepEqual(await gone.runtime.list(), [], "no process on the unreachable agent");

      // The name is free: a create that lands on the live agent takes it.
      const x = await cluster.client.createSandbox({
        name: "x",
        image: "busybox",
        command: ["sleep", "60"],
        exposedPorts: [8080],
      });
      assert.equal(x.agent, "live");
      assert.equal(x.phase, "Running");
    } finally {
      await cluster.close();
    }
  });
}

Deno.test({
  name: "an agent that goes away with a connection open is UNAVAILABLE, never INTERNAL",
  fn: async () => {
    const cluster = await startCluster({ agents: [] });
    try {
      // The outcome is a race, so repeat it: each round opens a connection, then loses the agent.
      for (let i = 0; i < 20; i++) {
        const pool = `p${i}`;
        await cluster.addAgent({ id: `gone-${i}`, pool });
        await cluster.client.createSandbox({
          name: `warm-${i}`,
          pool,
          image: "busybox",
          command: ["sleep", "60"],
        });
        await cluster.stopAgent(`gone-${i}`);
        await rejects(
          cluster.client.createSandbox({
            name: `x-${i}`,
            pool,
            image: "busybox",
            command: ["sleep", "60"],
          }),
          Code.UNAVAILABLE,
          new RegExp(`^Cannot create sandbox "default/x-${i}" on agent "gone-${i}": `),
        );
        assert.deepEqual(slots(cluster)[`gone-${i}`], { allocated: 1, ports: [] });
      }
    } finally {
      await cluster.close();
    }
  },
});

/**
 * A fake runtime, because no real one stalls on demand: it hands everything to
 * a real ProcessRuntime, except that while `stall` is set a create does not
 * answer until its signal aborts or the sandbox is deleted. That is how a
 * wedged containerd shim or a slow image pull holds a real create, and how a
 * real runtime undoes a create it is told to drop. With `stall: "after"` the
 * process is started first, so the sandbox exists on the host while its
 * reply never comes: the same as a reply lost on the way back.
 */
class StallingRuntime implements Runtime {
  readonly name = "process";
  readonly sandboxRuntime = "process";
  stall: "no" | "before" | "after" = "no";
  /** How each stalled create ended. */
  readonly ended: ("signal" | "delete" | "close")[] = [];
  readonly #inner: ProcessRuntime;
  readonly #stalled = new Map<string, (how: "signal" | "delete" | "close") => void>();

  constructor(stateDir: string) {
    this.#inner = new ProcessRuntime({ stateDir, images: ["busybox"] });
  }

  /** Creates that have not answered yet. */
  get stalled(): number {
    return this.#stalled.size;
  }

  ready(): Promise<boolean> {
    return this.#inner.ready();
  }

  async create(spec: SandboxSpec, opts: CreateOptions): Promise<CreateResult> {
    const stall = this.stall;
    if (stall === "no") return await this.#inner.create(spec, opts);
    const id = spec.sandboxId;
    if (stall === "after") await this.#inner.create(spec, { logPath: opts.logPath });
    const how = await new Promise<"signal" | "delete" | "close">((resolve) => {
      this.#stalled.set(id, resolve);
      opts.signal?.addEventListener("abort", () => resolve("signal"), { once: true });
    });
    this.#stalled.delete(id);
    this.ended.push(how);
    if (how === "signal" && stall === "after") await this.#inner.delete(id, 0);
    throw new Error(`create of ${id} stopped by ${how}`);
  }

  delete(id: string, graceMs: number): Promise<boolean> {
    this.#stalled.get(id)?.("delete");
    return this.#inner.delete(id, graceMs);
  }

  list(): Promise<RuntimeSandbox[]> {
    return this.#inner.list();
  }

  logs(id: string, opts: LogsOptions): AsyncIterable<Uint8Array> {
    return this.#inner.logs(id, opts);
  }

  images(): Promise<string[]> {
    return this.#inner.images();
  }

  exec(id: string, spec: ExecSpec, opts?: { signal?: AbortSignal }): Promise<ExecProcess> {
    return this.#inner.exec(id, spec, opts);
  }

  execAttach(id: string, execId: string, opts?: { signal?: AbortSignal }) {
    return this.#inner.execAttach(id, execId, opts);
  }

  execList(id: string): Promise<ExecRecord[]> {
    return this.#inner.execList(id);
  }

  execKill(id: string, execId: string, signo: number): Promise<ExecRecord> {
    return this.#inner.execKill(id, execId, signo);
  }

  wait(id: string, opts?: { signal?: AbortSignal }): Promise<number> {
    return this.#inner.wait(id, opts);
  }

  helper(id: string): Promise<readonly string[] | undefined> {
    return this.#inner.helper(id);
  }

  close(): Promise<void> {
    for (const end of this.#stalled.values()) end("close");
    return this.#inner.close();
  }
}

async function stallingCluster(): Promise<{ cluster: Cluster; runtime: StallingRuntime }> {
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-cluster-" });
  const runtime = new StallingRuntime(`${dataDir}/agents/slow/process`);
  const cluster = await startCluster({
    dataDir,
    agentCreateTimeoutMs: 600,
    agents: [{ id: "slow", runtime }],
  });
  return { cluster, runtime };
}

Deno.test("a runtime that hangs is DEADLINE_EXCEEDED, releases everything and is told to stop", async () => {
  const { cluster, runtime } = await stallingCluster();
  try {
    runtime.stall = "before";
    await rejects(
      cluster.client.createSandbox({
        name: "h",
        image: "busybox",
        command: ["sleep", "60"],
        exposedPorts: [8080],
      }),
      Code.DEADLINE_EXCEEDED,
      /^Cannot create sandbox "default\/h" on agent "slow": Deadline exceeded/,
    );
    assert.deepEqual(slots(cluster), { slow: { allocated: 0, ports: [] } });
    await assertGone(cluster, "h");
    // The controller asks the agent to delete what it may have made, which ends the stalled create.
    await waitFor(() => runtime.stalled === 0);
    assert.deepEqual(await runtime.list(), []);

    runtime.stall = "no";
    const h = await cluster.client.createSandbox({
      name: "h",
      image: "busybox",
      command: ["sleep", "60"],
      exposedPorts: [8080],
    });
    assert.equal(h.phase, "Running");
    assert.deepEqual(slots(cluster), { slow: { allocated: 1, ports: [8080] } });
  } finally {
    await cluster.close();
    // stallingCluster() made the data dir, so the cluster leaves it to us.
    await Deno.remove(cluster.dataDir, { recursive: true });
  }
});

Deno.test("a sandbox created on the agent whose reply never arrives is removed, not adopted", async () => {
  const { cluster, runtime } = await stallingCluster();
  try {
    runtime.stall = "after";
    const pidFile = `${cluster.dataDir}/lost.pid`;
    const creating = cluster.client.createSandbox({
      name: "lost",
      image: "busybox",
      command: ["sh", "-c", `echo $$ > ${pidFile}; exec sleep 60`],
    });
    let pid = 0;
    await waitFor(async () => {
      pid = Number((await Deno.readTextFile(pidFile).catch(() => "")).trim());
      return pid > 0;
    });
    assert.ok(processAlive(pid));
    await rejects(
      creating,
      Code.DEADLINE_EXCEEDED,
      /^Cannot create sandbox "default\/lost" on agent "slow": Deadline exceeded/,
    );
    // A heartbeat may report the sandbox before the cleanup is done: it must not come back.
    await cluster.heartbeatAll();
    assert.deepEqual(slots(cluster), { slow: { allocated: 0, ports: [] } });
    await assertGone(cluster, "lost");
    await waitFor(() => !processAlive(pid));
    await waitFor(async () => (await runtime.list()).length === 0);
    await cluster.heartbeatAll();
    await assertGone(cluster, "lost");

    runtime.stall = "no";
    const again = await cluster.client.createSandbox({
      name: "lost",
      image: "busybox",
      command: ["sleep", "60"],
    });
    assert.equal(again.phase, "Running");
    assert.deepEqual(slots(cluster), { slow: { allocated: 1, ports: [] } });
  } finally {
    await cluster.close();
    // stallingCluster() made the data dir, so the cluster leaves it to us.
    await Deno.remove(cluster.dataDir, { recursive: true });
  }
});

Deno.test({
  name: "an agent aborts the runtime's create when the caller's deadline passes",
  fn: async () => {
    const { cluster, runtime } = await stallingCluster();
    const slow = cluster.agents.get("slow")!;
    const credential = (await Deno.readTextFile(`${slow.dataDir}/credential`)).trim();
    const channel = new RpcChannel(slow.server.address, {
      metadata: { authorization: `Bearer ${credential}` },
    });
    try {
      runtime.stall = "before";
      await rejects(
        channel.client(AgentService).createSandbox(
          {
            spec: {
              sandboxId: "0123456789abcdef0123456789abcdef",
              name: "direct",
              namespace: "default",
              pool: "default-pool",
              image: "busybox",
              command: ["sleep", "60"],
            },
          },
          { timeoutMs: 200 },
        ),
        Code.DEADLINE_EXCEEDED,
        /Deadline exceeded/,
      );
      // Nobody deletes it here: only the call's own signal can end the stalled create.
      await waitFor(() => runtime.stalled === 0, 2_000);
      assert.deepEqual(runtime.ended, ["signal"]);
    } finally {
      channel.close();
      await cluster.close();
      // stallingCluster() made the data dir, so the cluster leaves it to us.
      await Deno.remove(cluster.dataDir, { recursive: true });
    }
  },
});
