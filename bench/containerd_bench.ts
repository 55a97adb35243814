/**
 * containerd create latency: `ctr run -d` of busybox against
 * `ContainerdRuntime.create` of the same image, on one containerd (started
 * by the test fixture, busybox built from the host's busybox-static and
 * imported), in one run, interleaved so that both see the same machine load.
 *
 * Series (each N creates of `sleep 60`, all kept running until the end, as
 * an agent keeps its sandboxes):
 * - `ctr run -d`: wall time of the whole `ctr` process, its own start included.
 * - `runtime (shared shim)`: ContainerdRuntime.create with its default shim group.
 * - `runtime (shim each)`: ContainerdRuntime.create with `shimGroup: false`.
 * Then each runtime's stage breakdown, p50 and p99.
 *
 * Run: `deno run -A bench/containerd_bench.ts [--creates N] [--json]` (root,
 * with containerd, runc and busybox-static installed). A script rather than
 * Deno.bench: it reports p50/p99 of a fixed number of creates and their
 * ratio, which Deno.bench does not, and each create leaves a container that
 * must be cleaned up. Under `deno bench` this module does nothing.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { fromJson } from "@bufbuild/protobuf";
import { SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { ContainerdClient, ContainerdRuntime, importImage } from "../agent/containerd/mod.ts";
import { startContainerd } from "../tests/support/containerd.ts";
import { buildBusyboxImage } from "../tests/support/busybox_image.ts";

const IMAGE = "docker.io/library/busybox:latest";
const WARMUP = 3;

/** Nearest-rank percentile of ascending `sorted`. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function summary(samples: readonly number[]): { p50: number; p99: number; mean: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean };
}

function newId(): string {
  return crypto.randomUUID().replaceAll("-", "");
}

async function version(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output();
  return new TextDecoder().decode(out.stdout).split("\n")[0].trim();
}

async function ctrRun(socket: string, id: string): Promise<number> {
  const start = performance.now();
  const out = await new Deno.Command("ctr", {
    args: ["-a", socket, "-n", "fsb", "run", "-d", IMAGE, id, "sleep", "60"],
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - start;
  if (!out.success) throw new Error(`ctr run failed: ${new TextDecoder().decode(out.stderr)}`);
  return ms;
}

async function runtimeCreate(
  runtime: ContainerdRuntime,
  logDir: string,
): Promise<{ id: string; ms: number; stageMs: Record<string, number> }> {
  const id = newId();
  const spec = fromJson(SandboxSpecSchema, {
    sandboxId: id,
    name: `bench-${id.slice(0, 8)}`,
    namespace: "default",
    pool: "default-pool",
    image: "busybox",
    command: ["sleep", "60"],
  });
  const start = performance.now();
  const { stageMs } = await runtime.create(spec, { logPath: join(logDir, `${id}.log`) });
  return { id, ms: performance.now() - start, stageMs };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      creates: { type: "string", default: "30" },
      json: { type: "boolean", default: false },
    },
  });
  const creates = Number(values.creates);
  const dir = await Deno.makeTempDir({ prefix: "fsb_containerd_bench_" });
  const server = await startContainerd();
  const shared = new ContainerdRuntime({ socket: server.socket, stateDir: join(dir, "state") });
  const single = new ContainerdRuntime({
    socket: server.socket,
    stateDir: join(dir, "state"),
    shimGroup: false,
  });
  const client = new ContainerdClient(server.socket);
  const ctrIds: string[] = [];
  const ourIds: [ContainerdRuntime, string][] = [];
  try {
    await importImage(await buildBusyboxImage(dir), { socket: server.socket });
    const logDir = join(dir, "logs");
    const series = { ctr: [] as number[], shared: [] as number[], single: [] as number[] };
    const stages = {
      shared: {} as Record<string, number[]>,
      single: {} as Record<string, number[]>,
    };
    for (let i = 0; i < WARMUP + creates; i++) {
      const measured = i >= WARMUP;
      const ctrId = `ctr-${newId()}`;
      const ctrMs = await ctrRun(server.socket, ctrId);
      ctrIds.push(ctrId);
      for (const [key, runtime] of [["shared", shared], ["single", single]] as const) {
        const r = await runtimeCreate(runtime, logDir);
        ourIds.push([runtime, r.id]);
        if (!measured) continue;
        series[key].push(r.ms);
        for (const [stage, ms] of Object.entries(r.stageMs)) (stages[key][stage] ??= []).push(ms);
      }
      if (measured) series.ctr.push(ctrMs);
    }

    const ctr = summary(series.ctr);
    const rows = [
      { series: "ctr run -d", ...ctr },
      { series: "runtime (shared shim)", ...summary(series.shared) },
      { series: "runtime (shim each)", ...summary(series.single) },
    ];
    const stageRows = Object.entries(stages).flatMap(([key, byStage]) =>
      Object.entries(byStage).map(([stage, samples]) => ({
        runtime: key,
        stage,
        ...summary(samples),
      }))
    );
    const versions = {
      containerd: await version("containerd", ["--version"]),
      runc: await version("runc", ["--version"]),
      creates,
    };
    if (values.json) {
      console.log(JSON.stringify({ versions, rows, stageRows }, null, 2));
      return;
    }
    const f = (n: number) => n.toFixed(1).padStart(7);
    console.log(
      `${versions.containerd}\n${versions.runc}\n${creates} creates per series (after ${WARMUP} warm-up)\n`,
    );
    console.log("series                    p50 ms  p99 ms  mean ms  p50/ctr  p99/ctr");
    for (const r of rows) {
      console.log(
        `${r.series.padEnd(24)}${f(r.p50)} ${f(r.p99)} ${f(r.mean)}  ${
          (r.p50 / ctr.p50).toFixed(2).padStart(7)
        }  ${(r.p99 / ctr.p99).toFixed(2).padStart(7)}`,
      );
    }
    console.log("\nstage breakdown           p50 ms  p99 ms  mean ms");
    for (const r of stageRows) {
      console.log(`${`${r.runtime} ${r.stage}`.padEnd(24)}${f(r.p50)} ${f(r.p99)} ${f(r.mean)}`);
    }
  } finally {
    for (const [runtime, id] of ourIds) await runtime.delete(id, 0).catch(() => {});
    for (const id of ctrIds) {
      await client.tasks.kill({ containerId: id, signal: 9 }).catch(() => {});
      await client.tasks.wait({ containerId: id }).catch(() => {});
      await client.tasks.delete({ containerId: id }).catch(() => {});
      await client.containers.delete({ id }).catch(() => {});
      await client.snapshots.remove({ snapshotter: "overlayfs", key: id }).catch(() => {});
    }
    client.close();
    await removeCtrFifos(ctrIds);
    await shared.close();
    await single.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * `ctr run` keeps its tasks' stdio FIFOs in /run/containerd/fifo (whatever
 * containerd's own state dir) and removes them only when ctr deletes the
 * task; ours were deleted through the API, so their directories go here.
 */
async function removeCtrFifos(ids: readonly string[]): Promise<void> {
  const fifoRoot = "/run/containerd/fifo";
  const ours = new Set(ids);
  try {
    for await (const dir of Deno.readDir(fifoRoot)) {
      for await (const fifo of Deno.readDir(join(fifoRoot, dir.name))) {
        if (ours.has(fifo.name.replace(/-std(in|out|err)$/, ""))) {
          await Deno.remove(join(fifoRoot, dir.name), { recursive: true });
          break;
        }
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

if (import.meta.main) await main();
