/**
 * FastPath create latency and throughput, end to end over loopback:
 * this process is the client; `fsb controller serve -v 2` and two
 * `fsb agent run --runtime process` run as their own processes, as deployed.
 * The controller's timing log gives the per-stage breakdown.
 *
 * Run: `deno run -A bench/fastpath_latency.ts [--creates N] [--json]`.
 * A script rather than Deno.bench because it reports p50/p99 and throughput
 * at fixed concurrency, which Deno.bench does not.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createServer } from "node:net";
import { FastPath } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { RpcChannel } from "../proto/grpc.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const { values } = parseArgs({
  args: Deno.args,
  options: {
    creates: { type: "string", default: "400" },
    json: { type: "boolean", default: false },
  },
});
const CREATES = Number(values.creates);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

interface Timing {
  sandbox: string;
  ms: Record<string, number>;
}

/** Collects the controller's `create timing` log lines by sandbox key. */
async function collectTimings(
  stream: ReadableStream<Uint8Array>,
  into: Map<string, Timing>,
): Promise<void> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.includes('"create timing"')) continue;
      try {
        const rec = JSON.parse(line) as Timing;
        into.set(rec.sandbox, rec);
      } catch {
        // Not a JSON log line.
      }
    }
  }
}

function spawn(args: string[], stderr: "piped" | "null" = "null"): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "null",
    stderr,
  }).spawn();
}

const dataDir = await Deno.makeTempDir({ prefix: "fsb-bench-" });
const port = await freePort();
const endpoint = `127.0.0.1:${port}`;
const timings = new Map<string, Timing>();
const controller = spawn([
  "controller",
  "serve",
  "--listen",
  endpoint,
  "--metrics-listen",
  "127.0.0.1:0",
  "--data-dir",
  `${dataDir}/controller`,
  "-v",
  "2",
], "piped");
const logDone = collectTimings(controller.stderr, timings);
const agents = ["bench-a", "bench-b"].map((id) =>
  spawn([
    "agent",
    "run",
    "--controller",
    endpoint,
    "--listen",
    "127.0.0.1:0",
    "--advertise",
    "127.0.0.1",
    "--id",
    id,
    "--capacity",
    "5000",
    "--runtime",
    "process",
    "--data-dir",
    `${dataDir}/${id}`,
  ])
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
    } catch {
      // Not up yet.
    }
    if (Date.now() > deadline) throw new Error("agents did not register");
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface RunResult {
  concurrency: number;
  creates: number;
  seconds: number;
  latencies: number[];
  stages: Record<string, number[]>;
}

async function run(concurrency: number, count: number, prefix: string): Promise<RunResult> {
  const latencies: number[] = [];
  const names: string[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const name = `${prefix}-${next++}`;
      const t = performance.now();
      await client.createSandbox({ name, image: "busybox", command });
      latencies.push(performance.now() - t);
      names.push(name);
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  // Let the last log lines arrive before reading them.
  await new Promise((r) => setTimeout(r, 300));
  const stages: Record<string, number[]> = {};
  for (const name of names) {
    const t = timings.get(`sandboxes/default/${name}`);
    if (!t) continue;
    for (const [stage, v] of Object.entries(t.ms)) (stages[stage] ??= []).push(v);
    const runtime = (t.ms.runtime_start ?? 0) + (t.ms.runtime_create ?? 0) +
      (t.ms.snapshot_prepare ?? 0) + (t.ms.container_create ?? 0) + (t.ms.task_create ?? 0) +
      (t.ms.task_start ?? 0);
    (stages.runtime ??= []).push(runtime);
    (stages.controller_overhead ??= []).push(t.ms.total - runtime);
  }
  // Client-side view: everything that is not the runtime itself.
  const byName = new Map(names.map((n, i) => [n, latencies[i]]));
  for (const name of names) {
    const t = timings.get(`sandboxes/default/${name}`);
    if (!t) continue;
    const runtime = stages.runtime ? (t.ms.runtime_start ?? 0) : 0;
    (stages.end_to_end_minus_runtime ??= []).push(byName.get(name)! - runtime);
    (stages.client_to_controller ??= []).push(byName.get(name)! - t.ms.total);
  }
  await Promise.all(names.map((name) => client.deleteSandbox({ name })));
  return { concurrency, creates: count, seconds, latencies, stages };
}

try {
  await waitForAgents();
  await run(4, 50, "warm");
  const results = [await run(1, Math.min(CREATES, 300), "c1"), await run(32, CREATES, "c32")];
  const rows: string[] = [];
  for (const r of results) {
    const sorted = [...r.latencies].sort((a, b) => a - b);
    rows.push(
      `| ${r.concurrency} | ${r.creates} | ${percentile(sorted, 50).toFixed(2)} | ${
        percentile(sorted, 99).toFixed(2)
      } | ${(r.creates / r.seconds).toFixed(0)} |`,
    );
  }
  console.log("\nFastPath CreateSandbox, process runtime, 2 agents, loopback gRPC");
  console.log("| concurrency | creates | p50 ms | p99 ms | creates/s |");
  console.log("|---|---|---|---|---|");
  for (const row of rows) console.log(row);
  for (const r of results) {
    console.log(`\nStage breakdown at concurrency ${r.concurrency} (ms)`);
    console.log("| stage | p50 | p99 |");
    console.log("|---|---|---|");
    for (const [stage, vs] of Object.entries(r.stages)) {
      const s = [...vs].sort((a, b) => a - b);
      console.log(
        `| ${stage} | ${percentile(s, 50).toFixed(3)} | ${percentile(s, 99).toFixed(3)} |`,
      );
    }
  }
  if (values.json) {
    console.log(JSON.stringify(results.map((r) => ({ ...r, latencies: undefined }))));
  }
} finally {
  await client.deleteSandbox({ name: "probe-a" }).catch(() => {});
  await client.deleteSandbox({ name: "probe-b" }).catch(() => {});
  channel.close();
  for (const a of agents) a.kill("SIGTERM");
  for (const a of agents) await a.status;
  try {
    controller.kill("SIGTERM");
  } catch {
    // Already gone.
  }
  await controller.status;
  await logDone.catch(() => {});
  await Deno.remove(dataDir, { recursive: true }).catch(() => {});
}
