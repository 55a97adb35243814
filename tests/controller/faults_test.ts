/**
 * Regression tests for faults of issue 11 (shared/DESIGN.md section 15): a
 * real controller and real agents over gRPC on loopback, process runtimes.
 *
 * @module
 */
import assert from "node:assert/strict";
import client from "prom-client";
import { toJson } from "@bufbuild/protobuf";
import { Controller, createControllerMetrics, type SandboxRecord } from "../../controller/mod.ts";
import { addControllerServices } from "../../controller/_services.ts";
import { type AuthRecord, TokenAuth } from "../../controller/auth.ts";
import { openStore, type Store } from "../../controller/store/mod.ts";
import { AgentServer } from "../../agent/mod.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import type { CreateOptions, CreateResult } from "../../agent/runtime.ts";
import { AgentRegistry, type SandboxSpec } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { FastPath, SandboxInfoSchema } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, codeName, RpcChannel, RpcError, RpcServer } from "../../proto/grpc.ts";
import { UnavailableError } from "../../registry/errors.ts";
import { startEtcd } from "../support/etcd.ts";
import { ignoreWithout } from "../support/real_parts.ts";
import {
  type Cluster,
  ManualClock,
  silentLogger,
  startCluster,
  waitFor,
} from "../support/cluster.ts";

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

/** Each agent's slots and ports as the controller's registry holds them. */
function slots(cluster: Cluster): Record<string, { allocated: number; ports: number[] }> {
  const out: Record<string, { allocated: number; ports: number[] }> = {};
  for (const a of cluster.controller.controller.registry.getAllAgents()) {
    out[a.id] = { allocated: a.allocated, ports: [...a.ports].sort((x, y) => x - y) };
  }
  return out;
}

/** How many creates the create-latency histogram counted, by its `success` label. */
async function createCounts(cluster: Cluster): Promise<{ ok: number; failed: number }> {
  const { createDuration } = await cluster.controller.controller.dashboard();
  const out = { ok: 0, failed: 0 };
  for (const v of createDuration.values) {
    if (!v.metricName?.endsWith("_count")) continue;
    if (v.labels.success === "true") out.ok += v.value;
    else out.failed += v.value;
  }
  return out;
}

/**
 * A fake in part, because no real runtime holds a create or a delete on
 * demand: a real ProcessRuntime, except that while `holdCreates` (or
 * `holdDeletes`) is set each create (delete) waits until `release()`, or for
 * a create, until its signal aborts, which is how a real runtime is told to
 * undo a create whose caller has gone.
 */
class HeldRuntime extends ProcessRuntime {
  holdCreates = false;
  holdDeletes = false;
  /** How each held create ended. */
  readonly ended: ("signal" | "release")[] = [];
  readonly #held = new Set<() => void>();

  /** Creates and deletes waiting now. */
  get held(): number {
    return this.#held.size;
  }

  /** Lets every held create and delete go on. */
  release(): void {
    for (const go of [...this.#held]) go();
  }

  override async create(spec: SandboxSpec, opts: CreateOptions): Promise<CreateResult> {
    if (this.holdCreates) {
      const how = await this.#hold(opts.signal);
      this.ended.push(how);
      if (how === "signal") throw new Error(`create of ${spec.sandboxId} stopped by its signal`);
    }
    return await super.create(spec, opts);
  }

  override async delete(id: string, graceMs: number): Promise<boolean> {
    if (this.holdDeletes) await this.#hold(undefined);
    return await super.delete(id, graceMs);
  }

  #hold(signal: AbortSignal | undefined): Promise<"signal" | "release"> {
    return new Promise((resolve) => {
      const end = (how: "signal" | "release") => {
        this.#held.delete(go);
        resolve(how);
      };
      const go = () => end("release");
      this.#held.add(go);
      signal?.addEventListener("abort", () => end("signal"), { once: true });
    });
  }
}

/** A cluster whose one agent, "held", runs a HeldRuntime; the agent's create deadline is 30 s. */
async function heldCluster(store?: string): Promise<{ cluster: Cluster; runtime: HeldRuntime }> {
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-faults-" });
  const runtime = new HeldRuntime({
    stateDir: `${dataDir}/agents/held/process`,
    images: ["busybox"],
  });
  const cluster = await startCluster({ dataDir, store, agents: [{ id: "held", runtime }] });
  return { cluster, runtime };
}

async function closeHeld(cluster: Cluster, runtime: HeldRuntime): Promise<void> {
  runtime.holdCreates = false;
  runtime.holdDeletes = false;
  runtime.release();
  await cluster.close();
  // heldCluster() made the data dir, so the cluster leaves it to us.
  await Deno.remove(cluster.dataDir, { recursive: true });
}

/**
 * Registers `name` twice: against SQLite, and against a real etcd of its own
 * (where etcd is installed), whose controller then leads through the election.
 */
function storeTest(name: string, fn: (store: string | undefined) => Promise<void>): void {
  Deno.test(`${name} (sqlite)`, () => fn(undefined));
  Deno.test({ name: `${name} (etcd)`, ignore: ignoreWithout("etcd") }, async () => {
    const etcd = await startEtcd();
    try {
      await fn(`etcd://${etcd.endpoint}/fsb-faults/`);
    } finally {
      await etcd.stop();
    }
  });
}

// ------------------------------------------------------------------ fault 1

storeTest(
  "a create whose caller's deadline passes is undone and counted as failed",
  async (store) => {
    const { cluster, runtime } = await heldCluster(store);
    try {
      runtime.holdCreates = true;
      // Unnamed: the caller never learns the generated name, so nothing may stay under it.
      await rejects(
        cluster.client.createSandbox(
          { image: "busybox", command: ["sleep", "60"], exposedPorts: [8080] },
          { timeoutMs: 300 },
        ),
        Code.DEADLINE_EXCEEDED,
        /Deadline exceeded/,
      );
      // The controller aborts its call to the agent, whose runtime is told to undo: the agent's own
      // create deadline (30 s) is far off, so nothing else ends the held create.
      await waitFor(() => runtime.ended.length === 1);
      assert.deepEqual(runtime.ended, ["signal"]);
      await waitFor(() => slots(cluster).held.allocated === 0);
      assert.deepEqual(slots(cluster), { held: { allocated: 0, ports: [] } });
      assert.deepEqual((await cluster.client.listSandboxes({})).sandboxes, []);
      assert.deepEqual(await runtime.list(), []);
      assert.deepEqual(await createCounts(cluster), { ok: 0, failed: 1 });
      // A heartbeat after it changes nothing: no sandbox comes back.
      await cluster.heartbeatAll();
      assert.deepEqual((await cluster.client.listSandboxes({})).sandboxes, []);
    } finally {
      await closeHeld(cluster, runtime);
    }
  },
);

storeTest(
  "a named create whose caller cancels before it is done is undone, and the name is free",
  async (store) => {
    const { cluster, runtime } = await heldCluster(store);
    try {
      runtime.holdCreates = true;
      const abort = new AbortController();
      const creating = cluster.client.createSandbox(
        { name: "x", image: "busybox", command: ["sleep", "60"], exposedPorts: [8080] },
        { signal: abort.signal },
      );
      await waitFor(() => runtime.held === 1);
      abort.abort();
      await rejects(creating, Code.CANCELLED, /Cancelled/);
      await waitFor(() => runtime.ended.length === 1);
      assert.deepEqual(runtime.ended, ["signal"]);
      await waitFor(async () => (await cluster.client.listSandboxes({})).sandboxes.length === 0);
      assert.deepEqual(slots(cluster), { held: { allocated: 0, ports: [] } });
      assert.deepEqual(await createCounts(cluster), { ok: 0, failed: 1 });

      runtime.holdCreates = false;
      const x = await cluster.client.createSandbox({
        name: "x",
        image: "busybox",
        command: ["sleep", "60"],
        exposedPorts: [8080],
      });
      assert.equal(x.phase, "Running");
      assert.deepEqual(slots(cluster), { held: { allocated: 1, ports: [8080] } });
      assert.deepEqual(await createCounts(cluster), { ok: 1, failed: 1 });
    } finally {
      await closeHeld(cluster, runtime);
    }
  },
);

// ------------------------------------------------------------------ fault 2

/** Creates `name` on agent-1, stops the agent and lets the controller judge its sandbox Lost. */
async function loseSandbox(cluster: Cluster, name: string): Promise<void> {
  await cluster.client.createSandbox({
    name,
    image: "busybox",
    command: ["sleep", "60"],
    exposedPorts: [8080],
  });
  // Its sandboxes keep running, as when an agent's host is cut off.
  await cluster.stopAgent("agent-1");
  cluster.clock.advance(10_001);
  await cluster.tick();
  assert.equal((await cluster.client.getSandbox({ name })).phase, "Lost");
}

storeTest(
  "a deleted Lost sandbox is removed, not revived, when its agent returns",
  async (store) => {
    const cluster = await startCluster({ store });
    try {
      await loseSandbox(cluster, "gone");
      const deleted = await cluster.client.deleteSandbox({ name: "gone" });
      assert.equal(deleted.name, "gone");

      // The same agent comes back (same id, data dir and credential) still running the sandbox.
      const agent = await cluster.addAgent({ id: "agent-1" });
      await waitFor(async () => (await agent.runtime.list()).length === 0);
      await rejects(
        cluster.client.getSandbox({ name: "gone" }),
        Code.NOT_FOUND,
        /^Sandbox "default\/gone" not found$/,
      );
      assert.deepEqual((await cluster.client.listSandboxes({})).sandboxes, []);
      assert.deepEqual(slots(cluster), { "agent-1": { allocated: 0, ports: [] } });
      await cluster.heartbeatAll();
      assert.deepEqual((await cluster.client.listSandboxes({})).sandboxes, []);
      assert.deepEqual(slots(cluster), { "agent-1": { allocated: 0, ports: [] } });
    } finally {
      await cluster.close();
    }
  },
);

// ------------------------------------------------------------------ fault 4

/** Reads `stream` until the text read so far includes `want`; returns that text. */
async function readUntil(
  stream: AsyncIterator<{ data: Uint8Array }>,
  want: string,
  seen = "",
): Promise<string> {
  const decoder = new TextDecoder();
  while (!seen.includes(want)) {
    const next = await stream.next();
    if (next.done) assert.fail(`the log stream ended before "${want}"; read ${seen}`);
    seen += decoder.decode(next.value.data);
  }
  return seen;
}

storeTest(
  "an agent that registers again keeps its channel: creates, deletes and log streams in flight go on",
  async (store) => {
    const { cluster, runtime } = await heldCluster(store);
    const agent = cluster.agents.get("held")!;
    const credential = (await Deno.readTextFile(`${agent.dataDir}/credential`)).trim();
    // The agent's own Register call, as it sends one when it restarts its session.
    const registry = new RpcChannel(cluster.controller.address, {
      metadata: { authorization: `Bearer ${credential}` },
    });
    try {
      const go = `${cluster.dataDir}/go`;
      await cluster.client.createSandbox({
        name: "talker",
        image: "busybox",
        // The sandbox (not the test) polls for the file that lets it say its second line.
        command: [
          "sh",
          "-c",
          `echo first; while [ ! -e ${go} ]; do sleep 0.02; done; echo second; exec sleep 60`,
        ],
      });
      await cluster.client.createSandbox({
        name: "doomed",
        image: "busybox",
        command: ["sleep", "60"],
      });
      const logs = cluster.client.streamLogs({ name: "talker", follow: true })
        [Symbol.asyncIterator]();
      const seen = await readUntil(logs, "first\n");

      runtime.holdCreates = true;
      runtime.holdDeletes = true;
      const creating = cluster.client.createSandbox({
        name: "held",
        image: "busybox",
        command: ["sleep", "60"],
      });
      const deleting = cluster.client.deleteSandbox({ name: "doomed" });
      await waitFor(() => runtime.held === 2);

      await registry.client(AgentRegistry).register(await agent.server.report());

      runtime.holdCreates = false;
      runtime.holdDeletes = false;
      runtime.release();
      assert.equal((await creating).phase, "Running");
      assert.equal((await deleting).name, "doomed");
      await Deno.writeTextFile(go, "");
      assert.match(await readUntil(logs, "second\n", seen), /^first\nsecond\n$/);
      await logs.return?.();
      assert.deepEqual(
        (await cluster.client.listSandboxes({})).sandboxes.map((s) => [s.name, s.phase]),
        [["held", "Running"], ["talker", "Running"]],
      );
      assert.deepEqual(runtime.ended, ["release"]);
    } finally {
      registry.close();
      await closeHeld(cluster, runtime);
    }
  },
);

/**
 * A TCP proxy to `target` that holds each connection it accepts until
 * `open()`: a slow network, so that a call waits in its channel for the
 * connection (grpc-js queues it), the state a closed channel fails its calls in.
 */
function gatedProxy(target: string) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let open!: () => void;
  const opened = new Promise<void>((resolve) => open = resolve);
  const conns: Deno.Conn[] = [];
  let accepted = 0;
  const pipe = (from: Deno.Conn, to: Deno.Conn) =>
    from.readable.pipeTo(to.writable).catch(() => {});
  const serving = (async () => {
    for await (const conn of listener) {
      accepted++;
      conns.push(conn);
      (async () => {
        await opened;
        const [hostname, port] = [
          target.slice(0, target.lastIndexOf(":")),
          target.slice(target.lastIndexOf(":") + 1),
        ];
        const upstream = await Deno.connect({ hostname, port: Number(port) });
        conns.push(upstream);
        await Promise.all([pipe(conn, upstream), pipe(upstream, conn)]);
      })().catch(() => {});
    }
  })();
  return {
    address: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    /** Connections accepted so far. */
    get accepted(): number {
      return accepted;
    },
    open,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Closed already by its pipe.
        }
      }
      await serving;
    },
  };
}

for (const change of ["same address", "new address"] as const) {
  storeTest(
    `a create waiting for its agent's connection survives the agent registering again (${change})`,
    async (store) => {
      const cluster = await startCluster({ store });
      const agent = cluster.agents.get("agent-1")!;
      const proxy = gatedProxy(agent.server.address);
      const credential = (await Deno.readTextFile(`${agent.dataDir}/credential`)).trim();
      const channel = new RpcChannel(cluster.controller.address, {
        metadata: { authorization: `Bearer ${credential}` },
      });
      const registry = channel.client(AgentRegistry);
      try {
        // The agent as reached through the proxy: the controller's next call waits for it.
        const report = await agent.server.report();
        report.address = proxy.address;
        await registry.register(report);
        const creating = cluster.client.createSandbox({
          name: "q",
          image: "busybox",
          command: ["sleep", "60"],
        });
        await waitFor(() => proxy.accepted === 1);

        const again = await agent.server.report();
        if (change === "same address") again.address = proxy.address;
        await registry.register(again);
        proxy.open();
        const q = await creating;
        assert.equal(q.phase, "Running");
        assert.deepEqual((await agent.runtime.list()).map((s) => s.spec.name), ["q"]);
        // The agent's own address again: calls reach it directly.
        await registry.register(await agent.server.report());
        assert.equal((await cluster.client.deleteSandbox({ name: "q" })).name, "q");
        assert.deepEqual(await agent.runtime.list(), []);
      } finally {
        channel.close();
        await cluster.close();
        await proxy.close();
      }
    },
  );
}

// ------------------------------------------------------------------ fault 7

/**
 * A controller serving FastPath and AgentRegistry over loopback, with one real
 * agent, on the store at `url`. The store is real; only the switch that makes
 * its puts fail is not, because no real store fails a write on demand.
 */
async function storeCluster(url: string) {
  const dir = await Deno.makeTempDir({ prefix: "fsb-faults-store-" });
  const real = await openStore<SandboxRecord>(url, { dataDir: dir });
  const failing = { puts: false };
  const store: Store<SandboxRecord> = {
    get: (k) => real.get(k),
    put: (k, v, o) =>
      failing.puts
        ? Promise.reject(new UnavailableError("Cannot write to the store: injected failure"))
        : real.put(k, v, o),
    delete: (k, o) => real.delete(k, o),
    list: (p) => real.list(p),
    watch: (p, fn, o) => real.watch(p, fn, o),
    close: () => real.close(),
  };
  const clock = new ManualClock();
  const controller = new Controller({
    store,
    logger: silentLogger(),
    clock,
    metrics: createControllerMetrics(new client.Registry(), {
      agents: () => ({ ready: 0, total: 0, capacity: 0, allocated: 0 }),
      sandboxesByPhase: () => ({}),
    }),
  });
  const server = new RpcServer();
  // Checks off, as in process: these tests are about the store.
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
  const channel = new RpcChannel(address, { timeoutMs: 30_000 });
  return {
    controller,
    clock,
    failing,
    real,
    client: channel.client(FastPath),
    async close() {
      channel.close();
      for (const s of await runtime.list()) await runtime.delete(s.spec.sandboxId, 0);
      await agent.close();
      await server.close();
      await controller.close();
      await real.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function updateWriteFails(url: string): Promise<void> {
  const c = await storeCluster(url);
  try {
    await c.client.createSandbox({
      name: "u",
      image: "busybox",
      command: ["sleep", "60"],
      labels: { team: "a" },
    });
    await c.controller.flush();
    const before = await c.client.getSandbox({ name: "u" });
    const stored = async () => (await c.real.get("sandboxes/default/u"))?.value.spec;

    c.failing.puts = true;
    const expireTime = BigInt(Math.floor(c.clock.now() / 1000) + 3600);
    await rejects(
      c.client.updateSandbox({ name: "u", labels: { team: "b" }, expireTime }),
      Code.UNAVAILABLE,
      /^Cannot write to the store: injected failure$/,
    );
    const after = await c.client.getSandbox({ name: "u" });
    assert.deepEqual(toJson(SandboxInfoSchema, after), toJson(SandboxInfoSchema, before));
    assert.deepEqual((await stored() as { labels: unknown }).labels, { team: "a" });

    c.failing.puts = false;
    const updated = await c.client.updateSandbox({ name: "u", labels: { team: "b" }, expireTime });
    assert.deepEqual(updated.labels, { team: "b" });
    assert.equal(updated.expireTime, expireTime);
    assert.deepEqual((await c.client.getSandbox({ name: "u" })).labels, { team: "b" });
    assert.deepEqual((await stored() as { labels: unknown }).labels, { team: "b" });
  } finally {
    await c.close();
  }
}

Deno.test("a non-reset update whose store write fails changes nothing (sqlite)", async () => {
  await updateWriteFails("sqlite:");
});

Deno.test({
  name: "a non-reset update whose store write fails changes nothing (etcd)",
  ignore: ignoreWithout("etcd"),
  fn: async () => {
    const etcd = await startEtcd();
    try {
      await updateWriteFails(`etcd://${etcd.endpoint}/fsb-faults/`);
    } finally {
      await etcd.stop();
    }
  },
});

// ------------------------------------------------------------------ fault 8

storeTest(
  "an idempotent create of a Lost sandbox is FAILED_PRECONDITION naming the phase",
  async (store) => {
    const cluster = await startCluster({ store });
    try {
      await loseSandbox(cluster, "x");
      await rejects(
        cluster.client.createSandbox({
          name: "x",
          image: "busybox",
          command: ["sleep", "60"],
          exposedPorts: [8080],
        }),
        Code.FAILED_PRECONDITION,
        /^Cannot create sandbox "default\/x" as it exists and is Lost; delete it first$/,
      );
      assert.equal((await cluster.client.getSandbox({ name: "x" })).phase, "Lost");
    } finally {
      await cluster.close();
    }
  },
);

storeTest(
  "an idempotent create of an Expired sandbox is FAILED_PRECONDITION naming the phase",
  async (store) => {
    const cluster = await startCluster({ store });
    try {
      const nowSec = () => Math.floor(cluster.clock.now() / 1000);
      await cluster.client.createSandbox({
        name: "x",
        image: "busybox",
        command: ["sleep", "60"],
        expireTime: BigInt(nowSec() + 60),
      });
      cluster.clock.advance(61_000);
      await cluster.tick();
      assert.equal((await cluster.client.getSandbox({ name: "x" })).phase, "Expired");
      // A later expiry makes a request for the same spec valid again.
      const expireTime = BigInt(nowSec() + 3600);
      await cluster.client.updateSandbox({ name: "x", expireTime });
      await rejects(
        cluster.client.createSandbox({
          name: "x",
          image: "busybox",
          command: ["sleep", "60"],
          expireTime,
        }),
        Code.FAILED_PRECONDITION,
        /^Cannot create sandbox "default\/x" as it exists and is Expired; delete it first$/,
      );
      assert.equal((await cluster.client.getSandbox({ name: "x" })).phase, "Expired");
    } finally {
      await cluster.close();
    }
  },
);
