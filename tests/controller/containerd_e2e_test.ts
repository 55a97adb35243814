import assert from "node:assert/strict";
import { join } from "node:path";
import client from "prom-client";
import { AgentServer } from "../../agent/mod.ts";
import { ContainerdClient, ContainerdRuntime, importImage } from "../../agent/containerd/mod.ts";
import { Code, RpcError } from "../../proto/grpc.ts";
import { Kind } from "../../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { buildBusyboxImage } from "../support/busybox_image.ts";
import { type Cluster, silentLogger, startCluster, waitFor } from "../support/cluster.ts";
import { type ContainerdServer, startContainerd } from "../support/containerd.ts";
import { ignoreWithout } from "../support/real_parts.ts";
import { startTestNetwork } from "../support/network.ts";
import { BridgeNetwork } from "../../agent/network/mod.ts";

const ignore = ignoreWithout("containerd", "root");
const decoder = new TextDecoder();

interface Scene {
  cluster: Cluster;
  containerd: ContainerdServer;
  /** containerd's own view, to check what fsb left behind. */
  ctr: ContainerdClient;
  dir: string;
  network: BridgeNetwork;
}

/** The suite runs on runc and on gVisor, each with private networks as agents have by default. */
const RUNTIMES = ["runc", "runsc"] as const;
type Oci = typeof RUNTIMES[number];

function suffix(oci: Oci): string {
  return oci === "runc" ? "" : " (runsc)";
}

/** A real containerd with busybox imported, and a cluster whose one agent runs on it. */
async function withScene(fn: (s: Scene) => void | Promise<void>, oci: Oci): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_ctrd_e2e_" });
  const containerd = await startContainerd();
  const ctr = new ContainerdClient(containerd.socket);
  let cluster: Cluster | undefined;
  let network: BridgeNetwork | undefined;
  try {
    await importImage(await buildBusyboxImage(dir), { socket: containerd.socket });
    network = await startTestNetwork(join(dir, "net"));
    cluster = await startCluster({
      agents: [{
        id: "ctrd",
        runtime: new ContainerdRuntime({
          socket: containerd.socket,
          stateDir: join(dir, "state"),
          network,
          ociRuntime: oci,
        }),
      }],
    });
    await fn({ cluster, containerd, ctr, dir, network });
  } finally {
    await cluster?.close();
    await network?.teardown();
    ctr.close();
    await containerd.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

async function logsOf(cluster: Cluster, name: string): Promise<string> {
  let out = "";
  for await (const chunk of cluster.client.streamLogs({ name })) out += decoder.decode(chunk.data);
  return out;
}

async function containerIds(ctr: ContainerdClient): Promise<string[]> {
  return (await ctr.containers.list({})).containers.map((c) => c.id);
}

async function snapshotExists(ctr: ContainerdClient, key: string): Promise<boolean> {
  try {
    await ctr.snapshots.stat({ snapshotter: "overlayfs", key });
    return true;
  } catch (err) {
    if (err instanceof RpcError && err.code === Code.NOT_FOUND) return false;
    throw err;
  }
}

/** Snapshots that are not committed image layers: what a sandbox would leave. */
async function activeSnapshots(ctr: ContainerdClient): Promise<string[]> {
  const names: string[] = [];
  for await (const page of ctr.snapshots.list({ snapshotter: "overlayfs" })) {
    for (const info of page.info) if (info.kind !== Kind.COMMITTED) names.push(info.name);
  }
  return names;
}

for (const oci of RUNTIMES) {
  Deno.test({
    name:
      `FastPath create, list, logs and delete run real containers, and delete leaves nothing in containerd${
        suffix(oci)
      }`,
    ignore,
  }, async () => {
    await withScene(async ({ cluster, ctr }) => {
      const info = await cluster.client.createSandbox({
        name: "web",
        image: "busybox",
        command: ["sh", "-c", "echo hello from a container; exec sleep 60"],
        exposedPorts: [18080],
      });
      assert.equal(info.phase, "Running");
      assert.equal(info.agent, "ctrd");
      assert.deepEqual(await containerIds(ctr), [info.sandboxId]);
      assert.ok(await snapshotExists(ctr, info.sandboxId));
      const { process } = await ctr.tasks.get({ containerId: info.sandboxId });
      assert.ok(process !== undefined && process.pid > 0);

      const list = await cluster.client.listSandboxes({});
      assert.deepEqual(list.sandboxes.map((s) => [s.name, s.phase]), [["web", "Running"]]);
      await waitFor(async () => (await logsOf(cluster, "web")) === "hello from a container\n");

      await cluster.client.deleteSandbox({ name: "web" });
      assert.deepEqual(await containerIds(ctr), []);
      assert.equal(await snapshotExists(ctr, info.sandboxId), false);
      assert.deepEqual(await activeSnapshots(ctr), []);
      const agent = cluster.controller.controller.registry.getAgentById("ctrd")!;
      assert.equal(agent.allocated, 0);
      assert.equal(agent.ports.size, 0);
    }, oci);
  });

  Deno.test({
    name: `the agent reports containerd's images, so affinity works on real data${suffix(oci)}`,
    ignore,
  }, async () => {
    await withScene(({ cluster }) => {
      const agent = cluster.controller.controller.registry.getAgentById("ctrd")!;
      assert.ok(agent.images.has("docker.io/library/busybox:latest"), [...agent.images].join(","));
    }, oci);
  });

  Deno.test({
    name: `a create that fails at task start leaves no container, snapshot or reservation${
      suffix(oci)
    }`,
    ignore,
  }, async () => {
    await withScene(async ({ cluster, ctr }) => {
      await assert.rejects(
        cluster.client.createSandbox({
          name: "broken",
          image: "busybox",
          command: ["/nonexistent"],
        }),
        (err: unknown) => err instanceof RpcError && err.code === Code.FAILED_PRECONDITION,
      );
      assert.deepEqual(await containerIds(ctr), []);
      assert.deepEqual(await activeSnapshots(ctr), [], "only the image's committed layers stay");
      assert.equal(cluster.controller.controller.registry.getAgentById("ctrd")!.allocated, 0);
      await assert.rejects(cluster.client.getSandbox({ name: "broken" }));
      const ok = await cluster.client.createSandbox({
        name: "broken",
        image: "busybox",
        command: ["sleep", "30"],
      });
      assert.equal(ok.phase, "Running");
    }, oci);
  });

  Deno.test({
    name: `an image the host lacks is FAILED_PRECONDITION naming it, with nothing left behind${
      suffix(oci)
    }`,
    ignore,
  }, async () => {
    await withScene(async ({ cluster, ctr }) => {
      await assert.rejects(
        cluster.client.createSandbox({
          name: "nope",
          image: "example.com/missing:1",
          command: ["true"],
        }),
        (err: unknown) =>
          err instanceof RpcError && err.code === Code.FAILED_PRECONDITION &&
          err.message.includes("example.com/missing:1"),
      );
      assert.deepEqual(await containerIds(ctr), []);
      assert.equal(cluster.controller.controller.registry.getAgentById("ctrd")!.allocated, 0);
    }, oci);
  });

  Deno.test({
    name: `a restarted agent re-adopts its containers and the controller keeps them Running${
      suffix(oci)
    }`,
    ignore,
  }, async () => {
    await withScene(async (s) => {
      const { cluster, containerd, ctr, dir } = s;
      const a = await cluster.client.createSandbox({
        name: "a",
        image: "busybox",
        command: ["sleep", "60"],
      });
      const b = await cluster.client.createSandbox({
        name: "b",
        image: "busybox",
        command: ["sleep", "60"],
      });
      const old = await cluster.stopAgent("ctrd");
      // A new agent process starts from nothing but containerd and its data dir; so does this one.
      const network = new BridgeNetwork({
        stateDir: join(dir, "net"),
        bridge: s.network.bridge,
        cidr: `${s.network.gateway.replace(/\.1$/, ".0")}/24`,
      });
      await network.start();
      const runtime = new ContainerdRuntime({
        socket: containerd.socket,
        stateDir: join(dir, "state"),
        network,
        ociRuntime: oci,
      });
      const reborn = new AgentServer({
        controller: cluster.controller.address,
        listen: "127.0.0.1:0",
        advertise: "127.0.0.1",
        id: "ctrd",
        pool: "default-pool",
        namespace: "default",
        capacity: 5,
        runtime,
        dataDir: old.dataDir,
        logger: silentLogger(),
        metricsRegistry: new client.Registry(),
      });
      await reborn.start();
      cluster.agents.set("ctrd", { id: "ctrd", server: reborn, runtime, dataDir: old.dataDir });
      await waitFor(() => reborn.registered);
      const listed = (await cluster.client.listSandboxes({})).sandboxes;
      assert.deepEqual(listed.map((s) => [s.name, s.sandboxId, s.phase]), [
        ["a", a.sandboxId, "Running"],
        ["b", b.sandboxId, "Running"],
      ]);
      assert.deepEqual(
        (await runtime.list()).map((s) => s.spec.sandboxId).sort(),
        [a.sandboxId, b.sandboxId].sort(),
      );
      assert.equal(cluster.controller.controller.registry.getAgentById("ctrd")!.allocated, 2);
      await cluster.client.deleteSandbox({ name: "a" });
      assert.deepEqual(await containerIds(ctr), [b.sandboxId]);
    }, oci);
  });
}

Deno.test({
  name: "with containerd down the agent reports itself not ready and creates are not sent to it",
  ignore,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb_ctrd_down_" });
  const cluster = await startCluster({
    agents: [{
      id: "down",
      runtime: new ContainerdRuntime({
        socket: join(dir, "no.sock"),
        stateDir: join(dir, "state"),
      }),
    }],
  });
  try {
    assert.equal(cluster.controller.controller.registry.getAgentById("down")!.ready, false);
    await assert.rejects(
      cluster.client.createSandbox({ name: "x", image: "busybox", command: ["true"] }),
      (err: unknown) =>
        err instanceof RpcError && err.code === Code.RESOURCE_EXHAUSTED &&
        /no ready agents/.test(err.message),
    );
  } finally {
    await cluster.close();
    await Deno.remove(dir, { recursive: true });
  }
});
