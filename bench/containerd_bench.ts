/**
 * containerd create latency, in one run on one containerd (started by the
 * test fixture, busybox built from the host's busybox-static and imported),
 * interleaved so that every series sees the same machine load. Each series is
 * N creates of `sleep 60`, all kept running until the end, as an agent keeps
 * its sandboxes.
 *
 * Series:
 * - `ctr run -d`: wall time of the whole `ctr` process, its own start included.
 * - `FastPath (SDK)`: CreateSandbox from an already-connected client to
 *   `fsb controller serve` and `fsb agent run --runtime containerd`, each its
 *   own process, as deployed: a private network per sandbox, on a bridge and
 *   /24 of the bench's own (never the host's `fsb0`), removed at the end. The
 *   client holds the controller's admin token; the agent joins with its join
 *   token.
 * - `fsb sandbox create`: wall time of the whole client process against the
 *   same controller, its start included (the shell path), with the admin
 *   token in `FSB_TOKEN` and an empty HOME of the bench's own (so no user
 *   config is read).
 * - `runtime alone`: ContainerdRuntime.create in this process, no gRPC, on
 *   the host network (bench/isolation_bench.ts compares the networks).
 * Then the FastPath stage breakdown from the controller's `-v 2` timing log.
 *
 * Run: `deno run -A bench/containerd_bench.ts [--creates N] [--json]` (root,
 * with containerd, runc and busybox-static installed). The FastPath and shell
 * series keep all their sandboxes on one agent, which holds at most 100, so N
 * is at most {@linkcode MAX_CREATES} (46). A script rather than Deno.bench:
 * it reports p50/p99 of a fixed number of creates and their ratios, and each
 * create leaves a container that must be cleaned up.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { fromJson } from "@bufbuild/protobuf";
import { SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { FastPath } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { RpcChannel } from "../proto/grpc.ts";
import { ContainerdClient, ContainerdRuntime, importImage } from "../agent/containerd/mod.ts";
import { BridgeNetwork } from "../agent/network/mod.ts";
import { startContainerd } from "../tests/support/containerd.ts";
import { buildBusyboxImage } from "../tests/support/busybox_image.ts";
import {
  bearer,
  type ControllerProc,
  type CreateTiming,
  freePort,
  MAX_AGENT_CAPACITY,
  readTokens,
  spawnAgent,
  spawnController,
  stop,
  summary,
  table,
  timeFsb,
} from "./_support.ts";

/** The busybox image's name as `ctr` spells it. */
export const IMAGE = "docker.io/library/busybox:latest";
const WARMUP = 3;
/**
 * The most `--creates`: the agent keeps the probe and, per create and
 * warm-up, one FastPath and one shell sandbox, within its capacity.
 */
export const MAX_CREATES = Math.floor((MAX_AGENT_CAPACITY - 1) / 2) - WARMUP;

/** A fresh 32-hex container id. */
export function newId(): string {
  return crypto.randomUUID().replaceAll("-", "");
}

function randomByte(min: number, max: number): number {
  return min + (crypto.getRandomValues(new Uint8Array(1))[0] % (max - min + 1));
}

/**
 * A sandbox bridge name and /24 for a benchmark: `fsbb` + 4 random hex
 * digits, and a /24 in 10.210.0.0-10.239.255.0 that no interface or route
 * of this host uses yet (checked, so that a test's or another bench's
 * network running meanwhile is not shadowed). fsb's defaults (`fsb0`,
 * 10.209.0.0/16) are left to real agents. `taken` holds /24s this process
 * already picked and has not set up yet.
 */
export async function benchBridge(
  taken: ReadonlySet<string> = new Set(),
): Promise<{ bridge: string; cidr: string }> {
  const ip = (args: string[]) =>
    new Deno.Command("ip", { args, stdout: "piped", stderr: "null" }).output()
      .then((o) => new TextDecoder().decode(o.stdout));
  const used = (await ip(["-o", "-4", "addr", "show"])) + (await ip(["-4", "route", "show"]));
  for (let attempt = 0; attempt < 100; attempt++) {
    const hex = crypto.getRandomValues(new Uint16Array(1))[0].toString(16).padStart(4, "0");
    const bridge = `fsbb${hex}`;
    const prefix = `10.${randomByte(210, 239)}.${randomByte(0, 255)}.`;
    const cidr = `${prefix}0/24`;
    const bridgeExists = await Deno.stat(`/sys/class/net/${bridge}`).then(() => true, () => false);
    if (bridgeExists || taken.has(cidr) || used.includes(prefix)) continue;
    return { bridge, cidr };
  }
  throw new Error("Cannot find a free bridge name and /24 for the benchmark");
}

async function version(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output();
  return new TextDecoder().decode(out.stdout).split("\n")[0].trim();
}

/** Wall time of `ctr run -d IMAGE ID sleep 60` (the whole process), in ms; throws if it fails. */
export async function ctrRun(socket: string, id: string): Promise<number> {
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

export async function runtimeCreate(
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
  if (!Number.isInteger(creates) || creates < 1 || creates > MAX_CREATES) {
    throw new Error(
      `--creates must be a whole number from 1 to ${MAX_CREATES} ` +
        `(one agent holds at most ${MAX_AGENT_CAPACITY} sandboxes)`,
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "fsb_containerd_bench_" });
  const server = await startContainerd();
  const runtime = new ContainerdRuntime({ socket: server.socket, stateDir: join(dir, "state") });
  const client = new ContainerdClient(server.socket);
  const agentNet = await benchBridge();
  const endpoint = `127.0.0.1:${await freePort()}`;
  const timings = new Map<string, CreateTiming>();
  const ctrIds: string[] = [];
  const ourIds: string[] = [];
  const names: string[] = [];
  let controller: ControllerProc | undefined;
  let agent: Deno.ChildProcess | undefined;
  let channel: RpcChannel | undefined;
  try {
    await importImage(await buildBusyboxImage(dir), { socket: server.socket });
    controller = spawnController(endpoint, join(dir, "controller"), timings);
    const tokens = await readTokens(join(dir, "controller"), controller);
    // The shell path's HOME: empty, so the CLI reads no user config.
    const home = join(dir, "home");
    await Deno.mkdir(home);
    agent = spawnAgent(endpoint, {
      id: "bench",
      dataDir: join(dir, "agent"),
      runtime: [
        "containerd",
        "--containerd-socket",
        server.socket,
        "--bridge",
        agentNet.bridge,
        "--sandbox-cidr",
        agentNet.cidr,
      ],
      capacity: MAX_AGENT_CAPACITY,
      joinTokenFile: tokens.joinFile,
    });
    channel = new RpcChannel(endpoint, { timeoutMs: 60_000, metadata: bearer(tokens.admin) });
    const fastpath = channel.client(FastPath);
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await fastpath.createSandbox({ name: "probe", image: "busybox", command: ["sleep", "60"] });
        names.push("probe");
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }

    const logDir = join(dir, "logs");
    const series = {
      ctr: [] as number[],
      sdk: [] as number[],
      shell: [] as number[],
      runtime: [] as number[],
    };
    const sdkNames: string[] = [];
    for (let i = 0; i < WARMUP + creates; i++) {
      const measured = i >= WARMUP;
      const ctrId = `ctr-${newId()}`;
      const ctrMs = await ctrRun(server.socket, ctrId);
      ctrIds.push(ctrId);

      const sdkName = `sdk-${i}`;
      const t = performance.now();
      await fastpath.createSandbox({ name: sdkName, image: "busybox", command: ["sleep", "60"] });
      const sdkMs = performance.now() - t;
      names.push(sdkName);

      const shellName = `shell-${i}`;
      const shellMs = await timeFsb([
        "sandbox",
        "create",
        shellName,
        "--image",
        "busybox",
        "--endpoint",
        endpoint,
        "--",
        "sleep",
        "60",
      ], { token: tokens.admin, home });
      names.push(shellName);

      const r = await runtimeCreate(runtime, logDir);
      ourIds.push(r.id);
      if (!measured) continue;
      series.ctr.push(ctrMs);
      series.sdk.push(sdkMs);
      series.shell.push(shellMs);
      series.runtime.push(r.ms);
      sdkNames.push(sdkName);
    }
    await new Promise((r) => setTimeout(r, 300));
    const stages: Record<string, number[]> = {};
    for (const [i, name] of sdkNames.entries()) {
      const timing = timings.get(`sandboxes/default/${name}`);
      if (timing === undefined) continue;
      for (const [stage, ms] of Object.entries(timing.ms)) (stages[stage] ??= []).push(ms);
      (stages["client to controller and back"] ??= []).push(series.sdk[i] - timing.ms.total);
    }

    const ctr = summary(series.ctr);
    const rows = [
      { series: "ctr run -d", ...ctr },
      { series: "FastPath CreateSandbox (SDK, connected)", ...summary(series.sdk) },
      { series: "fsb sandbox create (whole process)", ...summary(series.shell) },
      { series: "ContainerdRuntime.create alone", ...summary(series.runtime) },
    ];
    const stageRows = Object.entries(stages).map(([stage, samples]) => ({
      stage,
      ...summary(samples),
    }));
    const versions = {
      containerd: await version("containerd", ["--version"]),
      runc: await version("runc", ["--version"]),
      creates,
    };
    if (values.json) {
      console.log(JSON.stringify({ versions, rows, stageRows }, null, 2));
      return;
    }
    console.log(
      `${versions.containerd}\n${versions.runc}\n${creates} creates per series (after ${WARMUP} warm-up)\n`,
    );
    table(
      ["series", "p50 ms", "p99 ms", "mean ms", "p50 / ctr", "p99 / ctr"],
      rows.map((r) => [r.series, r.p50, r.p99, r.mean, r.p50 / ctr.p50, r.p99 / ctr.p99]),
    );
    console.log("\nFastPath stage breakdown (ms)");
    table(["stage", "p50", "p99", "mean"], stageRows.map((r) => [r.stage, r.p50, r.p99, r.mean]));
  } finally {
    if (channel !== undefined) {
      const fastpath = channel.client(FastPath);
      await Promise.all(names.map((name) => fastpath.deleteSandbox({ name }).catch(() => {})));
      channel.close();
    }
    if (agent) await stop(agent);
    if (controller) {
      await stop(controller.child);
      await controller.logDone.catch(() => {});
    }
    for (const id of ourIds) await runtime.delete(id, 0).catch(() => {});
    for (const id of ctrIds) await removeCtrContainer(client, id);
    client.close();
    await removeCtrFifos(ctrIds);
    await runtime.close();
    // The agent has stopped: its network's records load into a network of
    // our own (no pool), which removes the namespaces, rules and bridge.
    const leftover = new BridgeNetwork({
      stateDir: join(dir, "agent", "network"),
      ...agentNet,
      poolSize: 0,
    });
    await leftover.start().then(() => leftover.teardown()).catch((err) =>
      console.error(`removing bridge ${agentNet.bridge} failed: ${err}`)
    );
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Removes a `ctr run` container through the API: task (killed), container, snapshot. */
export async function removeCtrContainer(client: ContainerdClient, id: string): Promise<void> {
  await client.tasks.kill({ containerId: id, signal: 9 }).catch(() => {});
  await client.tasks.wait({ containerId: id }).catch(() => {});
  await client.tasks.delete({ containerId: id }).catch(() => {});
  await client.containers.delete({ id }).catch(() => {});
  await client.snapshots.remove({ snapshotter: "overlayfs", key: id }).catch(() => {});
}

/**
 * `ctr run` keeps its tasks' stdio FIFOs in /run/containerd/fifo (whatever
 * containerd's own state dir) and removes them only when ctr deletes the
 * task; ours were deleted through the API, so their directories go here.
 */
export async function removeCtrFifos(ids: readonly string[]): Promise<void> {
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
