/**
 * Heartbeat cost (issue 11): N simulated agents, S sandboxes each, every
 * agent heartbeating every 2 s (spread evenly) to a real `fsb controller
 * serve` process, with every sandbox's spec at its bounds
 * (controller/_validate.ts, about MAX_SPEC_BYTES each) or small.
 *
 * `--report` says what each agent sends every 2 s:
 * - `delta` (default): the heartbeat an agent sends today, each sandbox as a
 *   SandboxBeat (id, phase, message, address, spec generation) and no spec,
 *   built by the agent's own `deltaReport`. Its size does not depend on the
 *   specs', so `--spec small` measures it as well as `max` does, and lets
 *   1,000 agents register on this machine (at the bounds their Registers
 *   would hold 50,000 x 297 KB in the controller).
 * - `full`: every SandboxStatus with its whole spec, as heartbeats were
 *   before deltas (and as an agent of that version still sends).
 * - `register`: the same full report as a Register call: what each agent
 *   costs the controller once per (re)start (the table's "heartbeat" rows
 *   then count Registers).
 *
 * Reports heartbeats/s, the controller's CPU (user+sys from /proc/PID/stat
 * over the measured period, as a fraction of one core), p50/p99 heartbeat
 * latency, bytes per heartbeat, and the controller's CPU per heartbeat and
 * per MiB, for scaling to sizes this machine cannot drive.
 *
 * Setup: each simulated agent registers with the join token and reports its
 * S sandboxes in that Register; the controller adopts them (the path of a
 * create acknowledged before the store had it), so that every later
 * heartbeat takes the controller's steady-state path for sandboxes it has
 * placed. One fake Agent gRPC server answers for all simulated agents (they
 * advertise its address); it counts the calls the controller makes to it,
 * which stay zero in a clean run.
 *
 * Run: `deno run -A bench/heartbeat_bench.ts [--agents N] [--sandboxes N]
 * [--seconds N] [--spec max|small] [--report delta|full|register]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { deltaReport } from "../agent/_delta_report.ts";
import {
  Agent as AgentService,
  AgentRegistry,
  type AgentReport,
  AgentReportSchema,
  type SandboxSpec,
  SandboxSpecSchema,
  type SandboxStatus,
  SandboxStatusSchema,
} from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Egress } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcChannel, RpcError, RpcServer, type ServiceClient } from "../proto/grpc.ts";
import {
  bearer,
  type CreateTiming,
  freePort,
  readTokens,
  spawnController,
  stop,
  summary,
  table,
} from "./_support.ts";

const INTERVAL_MS = 2_000;
const KIB = 1024;
const NAMESPACE = "s".repeat(63);
const POOL = "p".repeat(63);

/** The simulated agents' sandbox inventory, by credential, for the fake Agent service. */
type Inventories = Map<string, SandboxStatus[]>;

interface SimAgent {
  id: string;
  /** The full report: what Register carries. */
  report: AgentReport;
  /** What this agent sends every 2 s. */
  beat: AgentReport;
  channel: RpcChannel;
  client: ServiceClient<typeof AgentRegistry.method>;
  credential: string;
  busy: boolean;
}

function hex32(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** `text` padded with `x` to `length` characters (a DNS label stays one). */
function pad(text: string, length: number): string {
  return text + "x".repeat(Math.max(0, length - text.length));
}

// The big parts of a spec at its bounds, shared by every spec (only names, ids and ports differ).
const LABEL_PREFIX = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
const MAX_LABELS_MAP = Object.fromEntries(
  Array.from({ length: 64 }, (_, i) => [`${LABEL_PREFIX}/${pad(`k${i}`, 63)}`, "v".repeat(63)]),
);
// 256 entries of a 4-byte name and 254 two-byte characters: 128 KiB of UTF-8.
const MAX_ENVS = Object.fromEntries(
  Array.from({ length: 256 }, (_, i) => [`E${String(i).padStart(3, "0")}`, "é".repeat(254)]),
);
// 128 KiB of argv in 256 entries: 8 of 16 KiB and 248 empty.
const MAX_COMMAND = Array(8).fill("L".repeat(16 * KIB));
const MAX_ARGS = Array(248).fill("");
const MAX_WORKING_DIR = `/${"é".repeat(2047)}w`;
const cidrs = (o: number) =>
  Array.from({ length: 64 }, (_, i) => `${100 + i}.${200 + o}.255.255/32`);

/** Sandbox `i` of agent `a`: at every bound (`max`), or a typical small one. */
function specFor(a: number, i: number, kind: "max" | "small"): SandboxSpec {
  const name = `b${a}-${i}`;
  const common = {
    sandboxId: hex32(),
    createdAt: BigInt(Date.now()),
    generation: 1,
    // Distinct on the agent, so that no two of its sandboxes claim one port.
    exposedPorts: kind === "max" ? Array.from({ length: 64 }, (_, k) => 2_000 + i * 64 + k) : [],
  };
  if (kind === "small") {
    return create(SandboxSpecSchema, {
      ...common,
      name,
      namespace: NAMESPACE,
      pool: POOL,
      image: "busybox",
      command: ["sleep", "3600"],
      labels: { app: "bench", agent: `a${a}` },
      envs: { HOME: "/root" },
      failurePolicy: "MANUAL",
    });
  }
  return create(SandboxSpecSchema, {
    ...common,
    name: pad(name + "-", 63),
    namespace: NAMESPACE,
    pool: POOL,
    image: "i".repeat(512),
    command: MAX_COMMAND,
    args: MAX_ARGS,
    envs: MAX_ENVS,
    workingDir: MAX_WORKING_DIR,
    expireTime: BigInt(Number.MAX_SAFE_INTEGER),
    failurePolicy: "AUTO_RECREATE",
    labels: MAX_LABELS_MAP,
    network: { egress: Egress.DENY, allowCidrs: cidrs(0), denyCidrs: cidrs(1) },
    resources: { cpuMillis: 2n ** 63n - 1n, memoryBytes: 2n ** 63n - 1n, pids: 4_194_304n },
  });
}

/** user+sys CPU seconds of process `pid` so far (Linux /proc/PID/stat, 100 ticks a second). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name (which may hold spaces) in its parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** One Agent service for every simulated agent: inventories by credential, nothing else. */
function fakeAgentServer(inventories: Inventories, calls: Map<string, number>): RpcServer {
  const server = new RpcServer();
  const count = (what: string) => calls.set(what, (calls.get(what) ?? 0) + 1);
  const unimplemented = (what: string) => {
    count(what);
    return new RpcError(Code.UNIMPLEMENTED, `The simulated agent does not serve ${what}`);
  };
  const inventoryOf = (metadata: Readonly<Record<string, string>>) =>
    inventories.get((metadata.authorization ?? "").replace(/^Bearer /, "")) ?? [];
  server.add(AgentService, {
    createSandbox: (req) => {
      count("CreateSandbox");
      return {
        status: { spec: req.spec, phase: "Running", message: "", ip: "", runtime: "process" },
      };
    },
    deleteSandbox: () => {
      count("DeleteSandbox");
      return { existed: true };
    },
    listSandboxes: (_req, ctx) => {
      count("ListSandboxes");
      return { sandboxes: inventoryOf(ctx.metadata) };
    },
    updateSandbox: (req) => {
      count("UpdateSandbox");
      return { generation: req.spec?.generation ?? 0 };
    },
    // deno-lint-ignore require-yield
    streamLogs: async function* () {
      throw unimplemented("StreamLogs");
    },
    // deno-lint-ignore require-yield
    profile: async function* () {
      throw unimplemented("Profile");
    },
    // deno-lint-ignore require-yield
    exec: async function* () {
      throw unimplemented("Exec");
    },
    // deno-lint-ignore require-yield
    execAttach: async function* () {
      throw unimplemented("ExecAttach");
    },
    execList: () => {
      throw unimplemented("ExecList");
    },
    execKill: () => {
      throw unimplemented("ExecKill");
    },
    writeFile: () => {
      throw unimplemented("WriteFile");
    },
    // deno-lint-ignore require-yield
    readFile: async function* () {
      throw unimplemented("ReadFile");
    },
    listDir: () => {
      throw unimplemented("ListDir");
    },
    stat: () => {
      throw unimplemented("Stat");
    },
    makeDir: () => {
      throw unimplemented("MakeDir");
    },
    remove: () => {
      throw unimplemented("Remove");
    },
    wait: () => {
      throw unimplemented("Wait");
    },
  });
  return server;
}

/** Runs `fn` over `items`, `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    args: Deno.args,
    options: {
      agents: { type: "string", default: "1000" },
      sandboxes: { type: "string", default: "50" },
      seconds: { type: "string", default: "30" },
      spec: { type: "string", default: "max" },
      report: { type: "string", default: "delta" },
    },
  });
  const agents = Number(args.agents);
  const perAgent = Number(args.sandboxes);
  const seconds = Number(args.seconds);
  const kind = args.spec === "small" ? "small" : "max";
  const mode = args.report;
  if (mode !== "delta" && mode !== "full" && mode !== "register") {
    throw new Error(`--report must be delta, full or register, got "${mode}"`);
  }
  if (![agents, perAgent, seconds].every((n) => Number.isInteger(n) && n > 0)) {
    throw new Error("--agents, --sandboxes and --seconds must be positive whole numbers");
  }

  const dataDir = await Deno.makeTempDir({ prefix: "fsb-bench-heartbeat-" });
  const endpoint = `127.0.0.1:${await freePort()}`;
  const timings = new Map<string, CreateTiming>();
  const controller = spawnController(endpoint, dataDir, timings);
  const inventories: Inventories = new Map();
  const agentCalls = new Map<string, number>();
  const agentServer = fakeAgentServer(inventories, agentCalls);
  const sims: SimAgent[] = [];
  try {
    const tokens = await readTokens(dataDir, controller);
    const agentAddress = await agentServer.listen("127.0.0.1:0");
    const setupStart = performance.now();
    for (let a = 0; a < agents; a++) {
      const sandboxes = Array.from({ length: perAgent }, (_, i) =>
        create(SandboxStatusSchema, {
          spec: specFor(a, i, kind),
          phase: "Running",
          message: "",
          ip: `10.${a >> 8 & 255}.${a & 255}.${i + 2}`,
          runtime: "process",
        }));
      const report = create(AgentReportSchema, {
        agentId: `sim-${a}`,
        address: agentAddress,
        advertiseHost: "127.0.0.1",
        pool: POOL,
        namespace: NAMESPACE,
        capacity: perAgent,
        allocated: perAgent,
        images: ["busybox"],
        sandboxes,
        ready: true,
        runtime: "process",
      });
      const channel = new RpcChannel(endpoint, { timeoutMs: 60_000 });
      sims.push({
        id: report.agentId,
        report,
        beat: mode === "delta" ? deltaReport(report, new Set()) : report,
        channel,
        client: channel.client(AgentRegistry),
        credential: "",
        busy: false,
      });
    }
    await sims[0].channel.ready(30_000);
    // Agents registered early heartbeat while the rest register, or the controller times them out.
    const keepalive = setInterval(() => {
      for (const sim of sims) {
        if (sim.credential === "" || sim.busy) continue;
        sim.busy = true;
        sim.client.heartbeat(sim.beat, { metadata: bearer(sim.credential) })
          .catch(() => {}).finally(() => sim.busy = false);
      }
    }, INTERVAL_MS);
    // Register with the join token, as agent/agent.ts does; the controller adopts the inventory.
    await eachLimited(sims, 4, async (sim) => {
      const res = await sim.client.register(sim.report, { metadata: bearer(tokens.join) });
      if (mode === "delta" && !res.deltaHeartbeats) {
        throw new Error("The controller does not take delta heartbeats");
      }
      sim.credential = res.credential;
      inventories.set(res.credential, sim.report.sandboxes);
    });
    const setupS = (performance.now() - setupStart) / 1000;
    const bytes = toBinary(AgentReportSchema, sims[0].beat).byteLength;
    const specBytes = toBinary(SandboxSpecSchema, sims[0].report.sandboxes[0].spec!).byteLength;
    console.log(
      `setup: ${agents} agents × ${perAgent} sandboxes (${kind} specs of ${specBytes} B) ` +
        `registered in ${setupS.toFixed(1)} s; ${mode} report ${bytes} B`,
    );
    // Let the controller's persistence of the adopted sandboxes settle before measuring.
    await new Promise((r) => setTimeout(r, 3_000));
    clearInterval(keepalive);
    while (sims.some((s) => s.busy)) await new Promise((r) => setTimeout(r, 5));

    // Heartbeats: agent i at i/N of the interval, every interval, one in flight per agent.
    const latencies: number[] = [];
    let sent = 0, failed = 0, skipped = 0, reregister = 0, specsAsked = 0;
    let lastError = "";
    const cpu0 = await cpuSeconds(controller.child.pid);
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    const beat = async (sim: SimAgent) => {
      if (sim.busy) {
        skipped++;
        return;
      }
      sim.busy = true;
      const start = performance.now();
      try {
        const metadata = bearer(sim.credential);
        if (mode === "register") {
          await sim.client.register(sim.beat, { metadata });
        } else {
          const res = await sim.client.heartbeat(sim.beat, { metadata });
          if (res.reregister) reregister++;
          specsAsked += res.sendSpecs.length;
        }
        latencies.push(performance.now() - start);
        sent++;
      } catch (err) {
        failed++;
        lastError = String(err);
      } finally {
        sim.busy = false;
      }
    };
    const loops = sims.map((sim, i) =>
      new Promise<void>((resolve) => {
        let due = t0 + (i / agents) * INTERVAL_MS;
        const tick = () => {
          if (due >= end) return resolve();
          beat(sim);
          due += INTERVAL_MS;
          // The last beat started: wait for no more (its reply is awaited below).
          if (due >= end) return resolve();
          setTimeout(tick, Math.max(0, due - performance.now()));
        };
        setTimeout(tick, Math.max(0, due - performance.now()));
      })
    );
    await Promise.all(loops);
    // The period ends when the last heartbeat's reply is in.
    while (sims.some((s) => s.busy)) await new Promise((r) => setTimeout(r, 5));
    const wall = (performance.now() - t0) / 1000;
    const cpu = (await cpuSeconds(controller.child.pid)) - cpu0;

    const lat = summary(latencies);
    const perSecond = sent / wall;
    const cores = cpu / wall;
    table(["metric", "value"], [
      ["agents × sandboxes", `${agents} × ${perAgent}`],
      ["spec", `${kind} (${specBytes} B each)`],
      ["report every 2 s", mode],
      ["bytes per heartbeat", String(bytes)],
      ["target heartbeats/s", (agents / (INTERVAL_MS / 1000)).toFixed(1)],
      ["heartbeats/s done", perSecond.toFixed(1)],
      ["MiB/s received by the controller", ((perSecond * bytes) / (1024 * 1024)).toFixed(1)],
      ["controller CPU (cores)", cores.toFixed(3)],
      ["controller CPU per heartbeat (ms)", ((cpu * 1000) / sent).toFixed(3)],
      [
        "controller CPU per MiB of heartbeat (ms)",
        ((cpu * 1000) / (sent * bytes / 2 ** 20)).toFixed(2),
      ],
      ["heartbeat latency p50 (ms)", lat.p50.toFixed(2)],
      ["heartbeat latency p99 (ms)", lat.p99.toFixed(2)],
      ["skipped (previous still in flight)", String(skipped)],
      ["failed", String(failed)],
      ["reregister answers", String(reregister)],
      ["specs the controller asked for", String(specsAsked)],
      ["controller calls to the agents", JSON.stringify(Object.fromEntries(agentCalls))],
      ["measured seconds", wall.toFixed(1)],
    ]);
    if (failed > 0) console.log(`last heartbeat error: ${lastError}`);
    const need = (agents / (INTERVAL_MS / 1000)) * (cpu * 1000) / sent / 1000;
    console.log(
      `\nAt this cost per heartbeat, ${agents} agents every 2 s need ${
        need.toFixed(3)
      } cores of the controller.`,
    );
  } finally {
    for (const sim of sims) sim.channel.close();
    await agentServer.close();
    await stop(controller.child);
    await controller.logDone.catch(() => {});
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
