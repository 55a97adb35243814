/**
 * FastPath create latency and throughput, end to end over loopback: this
 * process is the client (an already-connected SDK channel); `fsb controller
 * serve -v 2` and two `fsb agent run --runtime process` run as their own
 * processes, as deployed. The controller's timing log gives the stages.
 *
 * Run: `deno run -A bench/fastpath_latency.ts [--creates N] [--json]`.
 * A script rather than Deno.bench because it reports p50/p99 and throughput
 * at fixed concurrency, which Deno.bench does not.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { FastPath } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { RpcChannel } from "../proto/grpc.ts";
import {
  type CreateTiming,
  freePort,
  runtimeMs,
  spawnAgent,
  spawnController,
  stop,
  summary,
  table,
} from "./_support.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    creates: { type: "string", default: "600" },
    json: { type: "boolean", default: false },
  },
});
const CREATES = Number(values.creates);

interface RunResult {
  concurrency: number;
  creates: number;
  seconds: number;
  latencies: number[];
  stages: Record<string, number[]>;
}

async function main(): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-bench-" });
  const endpoint = `127.0.0.1:${await freePort()}`;
  const timings = new Map<string, CreateTiming>();
  const { child: controller, logDone } = spawnController(
    endpoint,
    `${dataDir}/controller`,
    timings,
  );
  const agents = ["bench-a", "bench-b"].map((id) =>
    spawnAgent(endpoint, { id, dataDir: `${dataDir}/${id}`, runtime: ["process"], capacity: 5000 })
  );
  const channel = new RpcChannel(endpoint, { timeoutMs: 30_000 });
  const client = channel.client(FastPath);
  const command = ["sleep", "600"];

  async function waitForAgents(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const a = await client.createSandbox({ name: "probe-a", image: "busybox", command });
        const b = await client.createSandbox({ name: "probe-b", image: "busybox", command });
        if (a.agent !== b.agent) return;
        // Only one agent had registered: free the name and try again.
        await client.deleteSandbox({ name: "probe-b" });
      } catch {
        // Not up yet.
      }
      if (Date.now() > deadline) throw new Error("agents did not register");
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function run(concurrency: number, count: number, prefix: string): Promise<RunResult> {
    const latencies = new Map<string, number>();
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const name = `${prefix}-${next++}`;
        const t = performance.now();
        await client.createSandbox({ name, image: "busybox", command });
        latencies.set(name, performance.now() - t);
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    // The controller logs after replying; give the last lines time to arrive.
    await new Promise((r) => setTimeout(r, 300));
    const stages: Record<string, number[]> = {};
    for (const [name, latency] of latencies) {
      const t = timings.get(`sandboxes/default/${name}`);
      if (t === undefined) continue;
      for (const [stage, v] of Object.entries(t.ms)) (stages[stage] ??= []).push(v);
      const runtime = runtimeMs(t);
      (stages["runtime (the process start itself)"] ??= []).push(runtime);
      (stages["controller side minus runtime"] ??= []).push(t.ms.total - runtime);
      (stages["client to controller and back"] ??= []).push(latency - t.ms.total);
      (stages["end to end minus runtime"] ??= []).push(latency - runtime);
    }
    await Promise.all([...latencies.keys()].map((name) => client.deleteSandbox({ name })));
    return { concurrency, creates: count, seconds, latencies: [...latencies.values()], stages };
  }

  try {
    await waitForAgents();
    await run(4, 100, "warm");
    const results = [await run(1, Math.min(CREATES, 300), "c1"), await run(32, CREATES, "c32")];
    console.log("\nFastPath CreateSandbox, process runtime, 2 agents, loopback gRPC");
    table(
      ["concurrency", "creates", "p50 ms", "p99 ms", "creates/s"],
      results.map((r) => {
        const s = summary(r.latencies);
        return [r.concurrency, r.creates, s.p50, s.p99, (r.creates / r.seconds).toFixed(0)];
      }),
    );
    for (const r of results) {
      console.log(`\nStage breakdown at concurrency ${r.concurrency} (ms)`);
      table(
        ["stage", "p50", "p99"],
        Object.entries(r.stages).map(([stage, vs]) => {
          const s = summary(vs);
          return [stage, s.p50, s.p99];
        }),
      );
    }
    if (values.json) {
      console.log(JSON.stringify(results.map((r) => ({ ...r, latencies: summary(r.latencies) }))));
    }
  } finally {
    await client.deleteSandbox({ name: "probe-a" }).catch(() => {});
    await client.deleteSandbox({ name: "probe-b" }).catch(() => {});
    channel.close();
    for (const a of agents) await stop(a);
    await stop(controller);
    await logDone.catch(() => {});
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
