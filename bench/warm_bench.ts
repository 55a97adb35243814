/**
 * Warm pools end to end (issue 9's targets), in one run per OCI runtime on one
 * containerd (started by the test fixture, busybox built from the host's
 * busybox-static and imported; `prepbox`, a `ctr images tag` of it; and
 * `coldbox`, built with a layer of its own on top and imported): a real
 * `fsb controller serve` and `fsb agent run --runtime containerd --warm
 * busybox=N --capacity 100`, each its own process, a private network per
 * sandbox on a bridge and /24 of the bench's own. The agent keeps N warm
 * busybox containers and N snapshots of busybox's layer chain prepared ahead;
 * those serve any image of that chain, so `prepbox` gets them and `coldbox`,
 * of another chain, does not.
 *
 * Interleaved series (the order rotates each iteration), each sandbox running
 * `sh -c 'echo up; exec sleep 600'`, deleted after (untimed), and the pool
 * back to N (the agent's `/metrics`) before the next step, so that every warm
 * create meets a full pool:
 * - `warm`: SDK `sandboxes.create` of busybox through an already-connected
 *   client (must say `path: warm`; a miss is counted and left out), then
 *   `logs(name, { follow: true })` until the first line: the create call
 *   alone, and time to interactive;
 * - `prepared`: the same for `prepbox`, which no pool keeps, so the pool
 *   misses and a prepared snapshot serves it (the path a warm miss takes;
 *   must say `path: prepared`; one that comes back `cold`, the stock empty,
 *   is counted as a miss and left out);
 * - `cold`: the same for `coldbox`, for which nothing was made ahead (must
 *   say `path: cold`);
 * - `ctr run -d --log-uri file://LOG`: the whole `ctr` process, and until the
 *   first line is in its log (polled every millisecond);
 * - `fsb sandbox create` (whole process, this Deno binary) on a warm hit;
 * - `fsb version` and `fsb sandbox create --help` (whole processes): what
 *   any `fsb` process costs before it does anything, and with the CLI's
 *   modules loaded, to tell the CLI's start from its create.
 * Then bursts of N concurrent SDK creates against the full pool of N (each
 * burst deleted, and the pool full again, before the next).
 * Stage breakdowns come from the controller's `-v 2` timing log, which
 * carries the agent's stages too; rows starting with `=` are derived: the
 * agent's time outside its runtime's stages, the controller-agent round trip
 * (`agent_rpc - agent_total`), and the client's (its time - `total`).
 * bench/_warm_e2e_report.ts prints the table and the stages; the prepared
 * series' rows, which it does not know of, follow in a table of their own.
 *
 * Run: `deno task bench:warm-e2e [--iterations N] [--burst N] [--bursts N]
 * [--oci-runtime runc|runsc|runc,runsc] [--json]` (root, with containerd,
 * runc, runsc for its rows, ctr, busybox-static, iproute2, nftables).
 * Everything it starts is stopped and removed at the end.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { connect, type FsbClient, type SandboxInfo } from "../cli/client.ts";
import { ContainerdClient, importImage } from "../agent/containerd/mod.ts";
import { writeRunscWrapper } from "../agent/containerd/runsc.ts";
import { BridgeNetwork } from "../agent/network/mod.ts";
import { startContainerd } from "../tests/support/containerd.ts";
import { buildBusyboxImage } from "../tests/support/busybox_image.ts";
import {
  benchBridge,
  IMAGE,
  newId,
  removeCtrContainer,
  removeCtrFifos,
} from "./containerd_bench.ts";
import {
  type ControllerProc,
  type CreateTiming,
  freePort,
  MAX_AGENT_CAPACITY,
  readTokens,
  spawnController,
  stop,
  summary,
  table,
  timeFsb,
} from "./_support.ts";
import {
  type AgentProc,
  ctrRun,
  firstLogLine,
  spawnWarmAgent,
  version,
  waitWarm,
} from "./_warm_e2e.ts";
import { reportWarm, type WarmResults } from "./_warm_e2e_report.ts";

const COMMAND = ["sh", "-c", "echo up; exec sleep 600"];
/** Layers of its own: nothing is made ahead for it. */
const COLD_IMAGE = "docker.io/library/coldbox:latest";
/** A tag of busybox: busybox's chain, so its snapshots prepared ahead serve it; no pool keeps it. */
const PREPARED_IMAGE = "docker.io/library/prepbox:latest";
const WARMUP = 3;
/** The 1, 5 and 15 minute load averages: how busy the machine was besides this bench. */
async function loadAverage(): Promise<string> {
  return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
}

/** The controller's stages that are not the runtime's own work. */
const NOT_RUNTIME = new Set(["allocate", "agent_rpc", "agent_total", "store", "total"]);
const OUTPUT_TIMEOUT_MS = 20_000;

/** WarmResults with the prepared series, which bench/_warm_e2e_report.ts does not know of. */
interface Results extends WarmResults {
  preparedCreate: number[];
  preparedTti: number[];
}

interface Ctx {
  socket: string;
  dir: string;
  iterations: number;
  pool: number;
  bursts: number;
}

async function measure(oci: "runc" | "runsc", ctx: Ctx): Promise<Results> {
  const dir = join(ctx.dir, oci);
  const out: Results = {
    oci,
    warmCreate: [],
    warmTti: [],
    preparedCreate: [],
    preparedTti: [],
    coldCreate: [],
    coldTti: [],
    ctrProcess: [],
    ctrTti: [],
    shell: [],
    version: [],
    help: [],
    burst: [],
    burstWall: [],
    misses: { warm: 0, prepared: 0, shell: 0, burst: 0 },
    burstWarm: 0,
    stages: {},
    load: [await loadAverage()],
  };
  const net = await benchBridge();
  const endpoint = `127.0.0.1:${await freePort()}`;
  const metrics = `127.0.0.1:${await freePort()}`;
  const timings = new Map<string, CreateTiming>();
  const live = new Set<string>();
  const ctrIds: string[] = [];
  const containerd = new ContainerdClient(ctx.socket);
  let controller: ControllerProc | undefined;
  let agent: AgentProc | undefined;
  let fsb: FsbClient | undefined;
  try {
    // ctr's runsc: the agent's wrapper, with gVisor's own loopback (ctr makes an empty namespace).
    const ctrRuntime = oci === "runsc"
      ? ["--runc-binary", await writeRunscWrapper(join(dir, "runsc"), { network: "none" })]
      : [];
    controller = spawnController(endpoint, join(dir, "controller"), timings);
    const tokens = await readTokens(join(dir, "controller"), controller);
    const home = join(dir, "home");
    await Deno.mkdir(home, { recursive: true });
    agent = spawnWarmAgent(endpoint, {
      dataDir: join(dir, "agent"),
      joinTokenFile: tokens.joinFile,
      metrics,
      capacity: MAX_AGENT_CAPACITY,
      args: [
        "--containerd-socket",
        ctx.socket,
        "--bridge",
        net.bridge,
        "--sandbox-cidr",
        net.cidr,
        "--oci-runtime",
        oci,
        "--warm",
        `busybox=${ctx.pool}`,
      ],
    });
    const client = connect({ endpoint, token: tokens.admin });
    fsb = client;
    const full = () => waitWarm(metrics, ctx.pool, agent!, ctx.pool * 5_000);
    // The agent has registered once a create goes through; coldbox leaves the pool alone.
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        await client.sandboxes.create({ name: "probe", image: "coldbox", command: COMMAND });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`no agent: ${err}\n${agent.tail()}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    await client.sandboxes.delete("probe");
    await full();

    /** A create of `image` through the connected client, then its first line through the API. */
    const sdk = async (name: string, image: string) => {
      live.add(name);
      const t0 = performance.now();
      const info = await client.sandboxes.create({ name, image, command: COMMAND });
      const create = performance.now() - t0;
      const line = await firstLogLine(client, name, OUTPUT_TIMEOUT_MS);
      const tti = performance.now() - t0;
      if (line !== "up") throw new Error(`${name} printed "${line}", not "up"`);
      return { info, create, tti };
    };
    const done = async (name: string) => {
      await client.sandboxes.delete(name);
      live.delete(name);
      await full();
    };
    const stageOf = (series: string, info: SandboxInfo, clientMs?: number) => {
      const t = timings.get(`sandboxes/default/${info.name}`);
      if (t === undefined) return;
      const into = out.stages[series] ??= {};
      for (const [stage, ms] of Object.entries(t.ms)) (into[stage] ??= []).push(ms);
      // Derived: what no stage names on its own.
      const runtime = Object.entries(t.ms).filter(([k]) => !NOT_RUNTIME.has(k))
        .reduce((a, [, v]) => a + v, 0);
      (into["= agent, outside its runtime's stages"] ??= []).push(t.ms.agent_total - runtime);
      (into["= controller to agent and back (gRPC)"] ??= []).push(
        t.ms.agent_rpc - t.ms.agent_total,
      );
      if (clientMs !== undefined) {
        (into["= client (SDK or CLI) and back"] ??= []).push(clientMs - t.ms.total);
      }
    };

    for (let i = 0; i < WARMUP + ctx.iterations; i++) {
      const keep = i >= WARMUP;
      const steps: (() => Promise<void>)[] = [
        async () => {
          const r = await sdk(`warm-${i}`, "busybox");
          if (r.info.path !== "warm") {
            if (keep) out.misses.warm++;
          } else if (keep) {
            out.warmCreate.push(r.create);
            out.warmTti.push(r.tti);
            stageOf("warm", r.info, r.create);
          }
          await done(`warm-${i}`);
        },
        async () => {
          const r = await sdk(`prep-${i}`, "prepbox");
          if (r.info.path === "cold") {
            if (keep) out.misses.prepared++;
          } else if (r.info.path !== "prepared") {
            throw new Error(`prep-${i} was served ${r.info.path}, not prepared`);
          } else if (keep) {
            out.preparedCreate.push(r.create);
            out.preparedTti.push(r.tti);
            stageOf("prepared", r.info, r.create);
          }
          await done(`prep-${i}`);
          // The stock full again (the agent's gauge) before the next step, whichever it is.
          await waitWarm(metrics, ctx.pool, agent!, ctx.pool * 5_000, {
            gauge: "fsb_agent_prepared_snapshots",
          });
        },
        async () => {
          const r = await sdk(`cold-${i}`, "coldbox");
          if (r.info.path !== "cold") {
            throw new Error(`cold-${i} was served ${r.info.path}, not cold`);
          }
          if (keep) {
            out.coldCreate.push(r.create);
            out.coldTti.push(r.tti);
            stageOf("cold", r.info, r.create);
          }
          await done(`cold-${i}`);
        },
        async () => {
          const id = `ctr-${newId()}`;
          ctrIds.push(id);
          const r = await ctrRun(ctx.socket, id, {
            log: join(dir, `${id}.log`),
            command: COMMAND,
            extra: ctrRuntime,
            timeoutMs: OUTPUT_TIMEOUT_MS,
          });
          if (keep) {
            out.ctrProcess.push(r.process);
            out.ctrTti.push(r.tti);
          }
          await removeCtrContainer(containerd, id);
          await full();
        },
        async () => {
          const name = `shell-${i}`;
          live.add(name);
          const ms = await timeFsb([
            "sandbox",
            "create",
            name,
            "--image",
            "busybox",
            "--endpoint",
            endpoint,
            "--",
            ...COMMAND,
          ], { token: tokens.admin, home });
          const info = await client.sandboxes.get(name);
          if (info.path !== "warm") {
            if (keep) out.misses.shell++;
          } else if (keep) {
            out.shell.push(ms);
            stageOf("fsb sandbox create", info, ms);
          }
          await done(name);
        },
        async () => {
          const ms = await timeFsb(["version"], { home });
          if (keep) out.version.push(ms);
        },
        async () => {
          const ms = await timeFsb(["sandbox", "create", "--help"], { home });
          if (keep) out.help.push(ms);
        },
      ];
      for (let s = 0; s < steps.length; s++) await steps[(i + s) % steps.length]();
    }

    for (let b = 0; b < ctx.bursts; b++) {
      await full();
      const names = Array.from({ length: ctx.pool }, (_, k) => `burst-${b}-${k}`);
      for (const name of names) live.add(name);
      const t0 = performance.now();
      const made = await Promise.all(names.map(async (name) => {
        const t = performance.now();
        const info = await client.sandboxes.create({ name, image: "busybox", command: COMMAND });
        return { info, ms: performance.now() - t };
      }));
      out.burstWall.push(performance.now() - t0);
      for (const { info, ms } of made) {
        out.burst.push(ms);
        if (info.path === "warm") out.burstWarm++;
        else out.misses.burst++;
        stageOf("burst", info, ms);
      }
      await Promise.all(names.map((name) => client.sandboxes.delete(name)));
      for (const name of names) live.delete(name);
    }
    out.load.push(await loadAverage());
  } catch (err) {
    out.error = `${err instanceof Error ? err.stack : err}\n${agent?.tail() ?? ""}`;
  } finally {
    if (fsb !== undefined) {
      await Promise.all([...live].map((name) => fsb!.sandboxes.delete(name).catch(() => {})));
      fsb.close();
    }
    if (agent) {
      await stop(agent.child);
      await agent.logDone.catch(() => {});
    }
    if (controller) {
      await stop(controller.child);
      await controller.logDone.catch(() => {});
    }
    for (const id of ctrIds) await removeCtrContainer(containerd, id);
    containerd.close();
    await removeCtrFifos(ctrIds);
    // The agent has stopped, its warm containers left for a restart: containerd's
    // stop kills them; its network's records load into a network of our own,
    // which removes the namespaces, rules and bridge.
    const leftover = new BridgeNetwork({
      stateDir: join(dir, "agent", "network"),
      ...net,
      poolSize: 0,
    });
    await leftover.start().then(() => leftover.teardown()).catch((err) =>
      console.error(`removing bridge ${net.bridge} failed: ${err}`)
    );
  }
  return out;
}

/** The prepared series' rows, beside the target the seed set for it. */
function reportPrepared(results: Results[]): void {
  const rows: (string | number)[][] = [];
  for (const r of results) {
    const row = (series: string, samples: number[], rate: boolean, target = "", note = "") => {
      const s = summary(samples);
      rows.push([
        r.oci,
        series,
        String(samples.length),
        s.p50,
        s.p99,
        rate ? 1000 / s.mean : "",
        target,
        note,
      ]);
    };
    if (r.preparedCreate.length === 0) continue;
    row("time to interactive: prepared (prepbox, a warm miss)", r.preparedTti, true);
    const after = r.preparedTti.map((t, i) => t - r.preparedCreate[i]);
    row("  of which the first line after the create returned: prepared", after, false);
    const create = summary(r.preparedCreate);
    const met = create.p50 < 50 ? "met" : "MISSED";
    const verdict = `${met}; misses (served cold) ${r.misses.prepared}`;
    row("create, prepared, SDK one at a time", r.preparedCreate, true, "p50 < 50", verdict);
  }
  if (rows.length === 0) return;
  console.log("\nprepared path (same interleaved rotation as the table above):");
  table(["oci", "series", "n", "p50 ms", "p99 ms", "creates/s", "target", "result"], rows);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      iterations: { type: "string", default: "40" },
      burst: { type: "string", default: "50" },
      bursts: { type: "string", default: "3" },
      "oci-runtime": { type: "string", default: "runc" },
      json: { type: "boolean", default: false },
    },
  });
  const iterations = Number(values.iterations);
  const pool = Number(values.burst);
  const bursts = Number(values.bursts);
  if (!Number.isInteger(iterations) || iterations < 1) {
    throw new Error("--iterations must be a whole number from 1");
  }
  // The burst's sandboxes all live at once on one agent, next to the pool refilling.
  if (!Number.isInteger(pool) || pool < 1 || pool > MAX_AGENT_CAPACITY) {
    throw new Error(`--burst must be a whole number from 1 to ${MAX_AGENT_CAPACITY}`);
  }
  if (!Number.isInteger(bursts) || bursts < 0) throw new Error("--bursts must be a whole number");
  const ocis = values["oci-runtime"].split(",").map((o) => o.trim());
  for (const o of ocis) {
    if (o !== "runc" && o !== "runsc") throw new Error("--oci-runtime takes runc, runsc or both");
  }
  const started = new Date().toISOString();
  const dir = await Deno.makeTempDir({ prefix: "fsb_warm_e2e_" });
  const server = await startContainerd();
  const results: Results[] = [];
  try {
    await importImage(await buildBusyboxImage(dir), { socket: server.socket });
    // Its own directory: the builder's work files have fixed names.
    const cold = await buildBusyboxImage(join(dir, "coldbox"), {
      ref: COLD_IMAGE,
      extraLayer: { "etc/coldbox": "cold\n" },
    });
    await importImage(cold, { socket: server.socket });
    const tag = await new Deno.Command("ctr", {
      args: ["-a", server.socket, "-n", "fsb", "images", "tag", IMAGE, PREPARED_IMAGE],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!tag.success) throw new Error(`ctr images tag: ${new TextDecoder().decode(tag.stderr)}`);
    for (const oci of ocis as ("runc" | "runsc")[]) {
      results.push(
        await measure(oci, { socket: server.socket, dir, iterations, pool, bursts }),
      );
    }
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
  const machine = {
    cpu: (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1] ?? "?",
    cpus: navigator.hardwareConcurrency,
    kernel: Deno.osRelease(),
    containerd: await version("containerd", ["--version"]),
    runc: await version("runc", ["--version"]),
    runsc: ocis.includes("runsc") ? await version("runsc", ["--version"]) : "",
    date: started,
  };
  reportWarm(results, { machine, iterations, pool, bursts, warmup: WARMUP, json: values.json });
  if (!values.json) reportPrepared(results);
  if (results.some((r) => r.error !== undefined)) Deno.exitCode = 1;
}

if (import.meta.main) await main();
