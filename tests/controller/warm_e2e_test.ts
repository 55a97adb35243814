/**
 * Warm pools through the whole FastPath (shared/DESIGN.md section 13): a
 * controller and one agent on real containerd whose runtime keeps warm
 * busybox containers, on runc and on gVisor.
 */
import assert from "node:assert/strict";
import type { Cluster } from "../support/cluster.ts";
import { waitFor } from "../support/cluster.ts";
import { OCI_RUNTIMES, withContainerdCluster } from "../support/containerd_cluster.ts";
import { ignoreWithout } from "../support/real_parts.ts";
import { join } from "node:path";
import { NetworkMode } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { ContainerdRuntime } from "../../agent/containerd/mod.ts";
import { BridgeNetwork } from "../../agent/network/mod.ts";

const decoder = new TextDecoder();
const realParts = ignoreWithout("containerd", "root");

async function logsOf(cluster: Cluster, name: string): Promise<string> {
  let out = "";
  for await (const chunk of cluster.client.streamLogs({ name })) out += decoder.decode(chunk.data);
  return out;
}

/** The agent's warm count of busybox, as it reports it. */
function warmBusybox(cluster: Cluster): number {
  const runtime = cluster.agents.get("ctrd")!.runtime;
  return runtime.warmCounts?.()["docker.io/library/busybox:latest"] ?? 0;
}

// Arguments and env values that a shell would mangle if the claim quoted them wrong.
const TRICKY_ARGS = ["a b", `it's "q"`, "$HOME `id` \\n", "line1\nline2", "ünï©ødé ✓", ""];
const TRICKY_ENV = { Q: `it's`, D: `"x"`, EQ: "a=b=c", NL: "1\n2", DOLLAR: "$PATH" };
// Prints its pid, each argument, each env value and its working dir, each on a line of its own.
const PRINT = 'echo "$$"; for a in "$@"; do printf "<%s>\\n" "$a"; done; ' +
  'printf "[%s]\\n" "$Q" "$D" "$EQ" "$NL" "$DOLLAR"; pwd';

function expected(): string {
  return [
    "1",
    ...TRICKY_ARGS.map((a) => `<${a}>`),
    ...Object.values(TRICKY_ENV).map((v) => `[${v}]`),
    "/tmp",
    "",
  ].join("\n");
}

for (const oci of OCI_RUNTIMES) {
  Deno.test({
    name:
      `a create answers from the warm pool as PID 1 with argv, env and dir byte-exact, and the pool refills (${oci})`,
    ignore: realParts,
  }, async () => {
    await withContainerdCluster(oci, async ({ cluster }) => {
      await waitFor(() => warmBusybox(cluster) === 2, 60_000);
      const made = await cluster.client.createSandbox({
        name: "w1",
        image: "busybox",
        command: ["sh", "-c", PRINT, "sh", ...TRICKY_ARGS],
        envs: TRICKY_ENV,
        workingDir: "/tmp",
      });
      assert.equal(made.phase, "Running");
      assert.equal(made.path, "warm");
      assert.equal((await cluster.client.getSandbox({ name: "w1" })).path, "warm");
      await waitFor(async () => (await logsOf(cluster, "w1")).endsWith("/tmp\n"), 20_000);
      assert.equal(await logsOf(cluster, "w1"), expected());
      // The same request missing the pool prints the same.
      const missed = await cluster.client.createSandbox({
        name: "c1",
        image: "busybox",
        command: ["sh", "-c", PRINT, "sh", ...TRICKY_ARGS],
        envs: TRICKY_ENV,
        workingDir: "/tmp",
        // No network at all, which no warm container has: a miss, served by a prepared snapshot.
        network: { mode: NetworkMode.NONE },
      });
      assert.equal(missed.path, "prepared");
      await waitFor(async () => (await logsOf(cluster, "c1")).endsWith("/tmp\n"), 20_000);
      assert.equal(await logsOf(cluster, "c1"), expected());
      // Deleted, the claimed container is gone, and the pool is back to its size.
      await cluster.client.deleteSandbox({ name: "w1" });
      await cluster.client.deleteSandbox({ name: "c1" });
      const runtime = cluster.agents.get("ctrd")!.runtime;
      assert.deepEqual(await runtime.list(), []);
      await waitFor(() => warmBusybox(cluster) === 2, 60_000);
    }, { warm: { busybox: 2 } });
  });
}

Deno.test({
  name: "warm containers are never reported as sandboxes, and the controller hears the warm counts",
  ignore: realParts,
}, async () => {
  await withContainerdCluster("runc", async ({ cluster }) => {
    await waitFor(() => warmBusybox(cluster) === 1, 60_000);
    const runtime = cluster.agents.get("ctrd")!.runtime;
    assert.deepEqual(await runtime.list(), []);
    await cluster.heartbeatAll();
    const agent = cluster.controller.controller.registry.getAgentById("ctrd")!;
    assert.equal(agent.warm.get("docker.io/library/busybox:latest"), 1);
    assert.deepEqual(
      (await cluster.client.listSandboxes({ namespace: "", allNamespaces: true })).sandboxes,
      [],
    );
  }, { warm: { busybox: 1 } });
});

Deno.test({
  name:
    "50 concurrent creates against a pool of 8: 8 warm, the rest prepared or cold, all correct, none over capacity, and the pool refills",
  ignore: realParts,
}, async () => {
  await withContainerdCluster("runc", async ({ cluster }) => {
    const runtime = cluster.agents.get("ctrd")!.runtime as ContainerdRuntime;
    await waitFor(() => warmBusybox(cluster) === 8, 60_000);
    // As many snapshots are prepared ahead as the pool keeps warm containers.
    await waitFor(() => runtime.preparedCounts()["docker.io/library/busybox:latest"] === 8, 60_000);
    const made = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        cluster.client.createSandbox({
          name: `b${i}`,
          image: "busybox",
          command: ["sh", "-c", `echo "b${i} $$"; exec sleep 600`],
        })),
    );
    const paths = made.map((m) => m.path);
    assert.equal(paths.filter((p) => p === "warm").length, 8, `paths: ${paths}`);
    // The 8 prepared snapshots go to misses (more if the stock refills during the burst).
    const prepared = paths.filter((p) => p === "prepared").length;
    assert.ok(prepared >= 8, `paths: ${paths}`);
    assert.equal(paths.filter((p) => p === "cold").length, 42 - prepared);
    for (const [i, m] of made.entries()) {
      assert.equal(m.phase, "Running");
      await waitFor(async () => (await logsOf(cluster, `b${i}`)) === `b${i} 1\n`, 20_000);
    }
    // Capacity 50 + pool 8: while 50 sandboxes run, the pool may not grow back past that.
    assert.equal((await runtime.list()).length, 50);
    assert.ok(warmBusybox(cluster) <= 8);
    for (let i = 0; i < 50; i++) await cluster.client.deleteSandbox({ name: `b${i}` });
    await waitFor(() => warmBusybox(cluster) === 8, 60_000);
  }, { warm: { busybox: 8 }, capacity: 50 });
});

Deno.test({
  name:
    "after an agent restart, claimed sandboxes are listed and running, warm ones re-adopted, nothing left behind",
  ignore: realParts,
}, async () => {
  await withContainerdCluster("runc", async ({ cluster, containerd, dir, network }) => {
    await waitFor(() => warmBusybox(cluster) === 2, 60_000);
    const made = await cluster.client.createSandbox({
      name: "kept",
      image: "busybox",
      command: ["sh", "-c", "echo kept; exec sleep 600"],
    });
    assert.equal(made.path, "warm");
    await waitFor(() => warmBusybox(cluster) === 2, 60_000);
    // The agent goes away (server, pool, runtime and network objects); containers keep running.
    await cluster.stopAgent("ctrd");
    // A new agent process starts from nothing but containerd and its state; so does this one.
    const reborn = new BridgeNetwork({
      stateDir: join(dir, "net"),
      bridge: network.bridge,
      cidr: `${network.gateway.replace(/\.1$/, ".0")}/24`,
    });
    await reborn.start();
    const runtime = new ContainerdRuntime({
      socket: containerd.socket,
      stateDir: join(dir, "state"),
      network: reborn,
      warm: { busybox: 2 },
    });
    await cluster.addAgent({ id: "ctrd", runtime });
    await waitFor(() => warmBusybox(cluster) === 2, 60_000);
    const listed = await runtime.list();
    assert.deepEqual(listed.map((s) => [s.spec.name, s.phase]), [["kept", "Running"]]);
    assert.equal((await cluster.client.getSandbox({ name: "kept" })).phase, "Running");
    assert.equal(await logsOf(cluster, "kept"), "kept\n");
    // Deleting the re-adopted claimed sandbox removes its container.
    await cluster.client.deleteSandbox({ name: "kept" });
    const { containers } = await runtime.client.containers.list({});
    assert.equal(containers.filter((c) => c.labels["fsb.io/warm"] === undefined).length, 0);
    assert.equal(containers.length, 2, "only the two warm containers remain");
    // Those are this pool's (re-adopted or made anew): removed with it, namespaces and all.
    await runtime.closeWarm();
    assert.deepEqual((await runtime.client.containers.list({})).containers, []);
  }, { warm: { busybox: 2 } });
});
