/**
 * What token auth and TLS cost a FastPath create, end to end over loopback.
 *
 * One run starts four setups side by side, each its own `fsb controller
 * serve` and two `fsb agent run --runtime process` processes (as deployed,
 * and so that no setup's event loop is shared with another's):
 *
 * 1. `none`: `--auth none`, plaintext;
 * 2. `token`: `--auth token`, plaintext; agents join with the join token;
 * 3. `token+tls`: `--auth token`, and the controller and the agents serve
 *    TLS with a test CA's certificate; every channel verifies it by that CA;
 * 4. `none again`: a second copy of `none`, the noise floor: how far apart
 *    two identical setups come out on this machine in the same run, against
 *    which the 3% target of token/none has to be read (`--no-control` drops it).
 *
 * This process is the client. It measures, per setup, CreateSandbox latency
 * at concurrency 1 through the SDK path (`RpcChannel`, grpc-js, protobuf-es)
 * and through the CLI's path (`FetchChannel` with the lite codec), each over
 * one already-connected channel holding the admin token (no token against
 * `none`, as a client of such a controller has none); and creates/s at
 * concurrency 32 through the SDK path.
 *
 * The setups are measured round-robin, not one after another, so that
 * whatever else the machine is doing hits all of them alike: at concurrency 1
 * consecutive creates go to setup after setup (and path after path, the order
 * rotating), and the concurrency-32 blocks are spread over the whole run.
 * Deletes happen between rounds, outside the timed parts, which keeps every
 * agent under its capacity (at most 100).
 *
 * Run: `deno run -A bench/auth_bench.ts [--n 1000] [--json] [--no-control]`.
 * `--n` is the number of creates per setup at concurrency 1 on each path; the
 * creates per setup at concurrency 32 are the same number, rounded up to whole
 * blocks.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { FastPath } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { RpcChannel, type ServiceClient } from "../proto/grpc.ts";
import { FetchChannel } from "../proto/fetch_client.ts";
import { FastPathLite, type FastPathLiteClient } from "../proto/fastpath_lite.ts";
import { makeTestCerts } from "../tests/support/certs.ts";
import { freePort, spawnFsb, stop, summary, table } from "./_support.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "1000" },
    json: { type: "boolean", default: false },
    control: { type: "boolean", default: true },
  },
  allowNegative: true,
});
const N = Number(values.n);
if (!Number.isInteger(N) || N < 1) throw new Error(`--n must be a positive whole number`);

/** Agents per setup, and each one's capacity (the agent's maximum). */
const AGENTS = 2;
const CAPACITY = 100;
/**
 * Creates per setup and path in one round at concurrency 1: both paths' creates
 * live at once until the round's deletes, 2 x 50 of the setup's 200 slots.
 */
const ROUND = 50;
/**
 * Creates in one timed block at concurrency 32: three full waves. Longer
 * blocks would weigh the ramp-up and the tail (fewer than 32 in flight) less,
 * but shorter ones mean more of them, interleaved more finely between the
 * setups, and on a shared machine that noise is the larger error. The ramp and
 * tail are the same for every setup, so the ratios do not carry them.
 */
const BLOCK = 96;
const COMMAND = ["sleep", "600"];

/** The setups, in the order the tables list them. */
interface SetupSpec {
  readonly name: string;
  readonly auth: "none" | "token";
  readonly tls: boolean;
}

const SPECS: SetupSpec[] = [
  { name: "none", auth: "none", tls: false },
  { name: "token", auth: "token", tls: false },
  { name: "token+tls", auth: "token", tls: true },
  ...(values.control ? [{ name: "none again", auth: "none", tls: false } as const] : []),
];

type PathName = "sdk" | "cli";

/** One running setup: its processes, its two clients, and what was measured on it. */
interface Setup {
  readonly spec: SetupSpec;
  readonly endpoint: string;
  readonly controller: Proc;
  readonly agents: Proc[];
  readonly sdkChannel: RpcChannel;
  readonly sdk: ServiceClient<typeof FastPath.method>;
  readonly cliChannel: FetchChannel;
  readonly cli: FastPathLiteClient;
  /** Sandboxes created and not yet deleted, by name. */
  readonly live: Set<string>;
  /** Concurrency-1 latencies (ms), one array per round, per path. */
  readonly c1: Record<PathName, number[][]>;
  /** Concurrency-32 latencies (ms), one array per block. */
  readonly c32: number[][];
  /** Wall seconds of each concurrency-32 block. */
  readonly c32Seconds: number[];
}

/** A child process and the tail of its stderr, shown if it dies or the setup fails. */
interface Proc {
  readonly child: Deno.ChildProcess;
  readonly label: string;
  tail: string;
  drained: Promise<void>;
}

function spawnProc(label: string, args: string[]): Proc {
  const child = spawnFsb(args, "piped");
  const proc = { child, label, tail: "", drained: Promise.resolve() };
  // The pipe must be read or a chatty process blocks on it; only the end matters for diagnosis.
  proc.drained = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      proc.tail = (proc.tail + decoder.decode(chunk, { stream: true })).slice(-4000);
    }
  })().catch(() => {});
  return proc;
}

async function stopProc(proc: Proc): Promise<void> {
  await stop(proc.child);
  await proc.drained;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `path` exists; fails if `proc` exits first or after `timeoutMs`. */
async function waitForFile(path: string, proc: Proc, timeoutMs: number): Promise<void> {
  let exited = false;
  proc.child.status.then(() => exited = true);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await Deno.stat(path);
      return;
    } catch {
      // Not written yet.
    }
    if (exited || Date.now() > deadline) {
      throw new Error(`${proc.label} did not write ${path}:\n${proc.tail}`);
    }
    await sleep(50);
  }
}

/** What the TLS setup's processes and clients are given: file names and the CA's text. */
interface CertFiles {
  cert: string;
  key: string;
  ca: string;
  caPem: string;
}

async function startSetup(
  spec: SetupSpec,
  dir: string,
  certs: CertFiles | undefined,
): Promise<Setup> {
  const endpoint = `127.0.0.1:${await freePort()}`;
  const tlsFlags = spec.tls && certs !== undefined
    ? ["--tls-cert", certs.cert, "--tls-key", certs.key, "--tls-ca", certs.ca]
    : [];
  const controllerDir = `${dir}/controller`;
  const controller = spawnProc(`controller ${spec.name}`, [
    "controller",
    "serve",
    "--listen",
    endpoint,
    "--metrics-listen",
    "127.0.0.1:0",
    "--data-dir",
    controllerDir,
    "--auth",
    spec.auth,
    ...tlsFlags,
  ]);
  const agents: Proc[] = [];
  let sdkChannel: RpcChannel | undefined;
  let cliChannel: FetchChannel | undefined;
  try {
    // Both token files are written before the controller listens, in either auth mode.
    await waitForFile(`${controllerDir}/join-token`, controller, 60_000);
    for (let i = 0; i < AGENTS; i++) {
      const id = `${spec.name.replace(/[^a-z0-9]+/g, "-")}-${i}`;
      agents.push(spawnProc(`agent ${id}`, [
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
        String(CAPACITY),
        "--runtime",
        "process",
        "--data-dir",
        `${dir}/${id}`,
        ...(spec.auth === "token" ? ["--join-token-file", `${controllerDir}/join-token`] : []),
        ...tlsFlags,
      ]));
    }
    const token = spec.auth === "token"
      ? (await Deno.readTextFile(`${controllerDir}/admin-token`)).trim()
      : undefined;
    const metadata: Record<string, string> = token === undefined
      ? {}
      : { authorization: `Bearer ${token}` };
    const caPem = spec.tls ? certs?.caPem : undefined;
    sdkChannel = new RpcChannel(endpoint, {
      timeoutMs: 30_000,
      metadata,
      ...(caPem === undefined ? {} : { tls: { ca: caPem } }),
    });
    cliChannel = new FetchChannel(endpoint, {
      timeoutMs: 30_000,
      metadata,
      ...(caPem === undefined ? {} : { tlsCa: caPem }),
    });
    const setup: Setup = {
      spec,
      endpoint,
      controller,
      agents,
      sdkChannel,
      sdk: sdkChannel.client(FastPath),
      cliChannel,
      cli: cliChannel.client(FastPathLite),
      live: new Set(),
      c1: { sdk: [], cli: [] },
      c32: [],
      c32Seconds: [],
    };
    await waitForAgents(setup);
    return setup;
  } catch (err) {
    sdkChannel?.close();
    cliChannel?.close();
    for (const a of agents) await stopProc(a);
    await stopProc(controller);
    const tails = [controller, ...agents].map((p) => `--- ${p.label}:\n${p.tail}`).join("\n");
    throw new Error(`setup ${spec.name} did not start: ${(err as Error).message}\n${tails}`);
  }
}

/** Waits until every agent of `setup` takes sandboxes: probes land on distinct agents. */
async function waitForAgents(setup: Setup): Promise<void> {
  const deadline = Date.now() + 60_000;
  let lastError = "";
  for (;;) {
    const seen = new Set<string>();
    try {
      for (let i = 0; i < AGENTS; i++) {
        const info = await create(setup, "sdk", `probe-${i}`);
        seen.add(info.agent);
      }
    } catch (err) {
      lastError = (err as Error).message;
    }
    await deleteLive(setup);
    if (seen.size === AGENTS) return;
    if (Date.now() > deadline) throw new Error(`agents did not register: ${lastError}`);
    await sleep(200);
  }
}

async function create(setup: Setup, path: PathName, name: string): Promise<{ agent: string }> {
  setup.live.add(name);
  const req = { name, image: "busybox", command: COMMAND };
  return path === "sdk" ? await setup.sdk.createSandbox(req) : await setup.cli.createSandbox(req);
}

/** Deletes every live sandbox of `setup`, 16 at a time (untimed). */
async function deleteLive(setup: Setup): Promise<void> {
  const names = [...setup.live];
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < names.length) {
      const name = names[next++];
      try {
        await setup.sdk.deleteSandbox({ name });
      } catch (err) {
        // A create that failed may have left nothing to delete.
        if (!/not found/i.test((err as Error).message)) throw err;
      }
      setup.live.delete(name);
    }
  }));
}

/** Deletes every setup's live sandboxes, then lets the exits settle before the next timed part. */
async function deleteAll(setups: Setup[]): Promise<void> {
  const t = performance.now();
  await Promise.all(setups.map(deleteLive));
  await sleep(50);
  phases.deletes += (performance.now() - t) / 1000;
}

/** `count` creates at concurrency 32 through the SDK path; returns latencies and wall seconds. */
async function block32(
  setup: Setup,
  count: number,
  prefix: string,
): Promise<{ latencies: number[]; seconds: number }> {
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < count) {
      const name = `${prefix}-${next++}`;
      const t = performance.now();
      await create(setup, "sdk", name);
      latencies.push(performance.now() - t);
    }
  }));
  return { latencies, seconds: (performance.now() - t0) / 1000 };
}

/** `list` rotated left by `by`, so that each round starts with another setup. */
function rotate<T>(list: readonly T[], by: number): T[] {
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/** Wall seconds by part of the run, to see where a run's time goes when picking `--n`. */
const phases = { startup: 0, warmup: 0, c1: 0, c32: 0, deletes: 0 };

let aborted = false;
function checkAbort(): void {
  if (aborted) throw new Error("interrupted");
}

async function measure(setups: Setup[]): Promise<void> {
  // Warm-up, untimed: JIT in every process, connections (and TLS sessions) up, caches filled.
  const t0 = performance.now();
  for (const s of setups) {
    for (let i = 0; i < 40; i++) {
      await create(s, "sdk", `warm-sdk-${i}`);
      await create(s, "cli", `warm-cli-${i}`);
    }
  }
  await deleteAll(setups);
  for (const s of setups) await block32(s, BLOCK / 2, "warm-c32");
  await deleteAll(setups);
  phases.warmup = (performance.now() - t0) / 1000;
  // The warm-up's own deletes count as warm-up.
  phases.deletes = 0;

  const rounds = Math.ceil(N / ROUND);
  const blocks = Math.ceil(N / BLOCK);
  for (let r = 0; r < rounds; r++) {
    checkAbort();
    const order = rotate(setups, r);
    const count = Math.min(ROUND, N - r * ROUND);
    for (const s of order) {
      s.c1.sdk.push([]);
      s.c1.cli.push([]);
    }
    const t1 = performance.now();
    for (let i = 0; i < count; i++) {
      for (const s of order) {
        const paths: PathName[] = (i + r) % 2 === 0 ? ["sdk", "cli"] : ["cli", "sdk"];
        for (const path of paths) {
          const t = performance.now();
          await create(s, path, `c1-${r}-${i}-${path}`);
          s.c1[path][r].push(performance.now() - t);
        }
      }
    }
    phases.c1 += (performance.now() - t1) / 1000;
    await deleteAll(setups);
    // Blocks at concurrency 32 spread evenly over the rounds.
    if (Math.floor(((r + 1) * blocks) / rounds) > Math.floor((r * blocks) / rounds)) {
      for (const s of order) {
        checkAbort();
        const b = s.c32.length;
        const { latencies, seconds } = await block32(s, BLOCK, `c32-${b}`);
        s.c32.push(latencies);
        s.c32Seconds.push(seconds);
        phases.c32 += seconds;
        await deleteAll([s]);
      }
    }
  }
}

/** Median of `xs` (a copy is sorted). */
function median(xs: readonly number[]): number {
  return summary(xs).p50;
}

/** 25th and 75th percentile of `xs`. */
function quartiles(xs: readonly number[]): [number, number] {
  const sorted = [...xs].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  return [at(0.25), at(0.75)];
}

interface SetupResult {
  setup: string;
  sdk: { p50: number; p99: number; mean: number; n: number };
  cli: { p50: number; p99: number; mean: number; n: number };
  c32: { p50: number; p99: number; creates: number; seconds: number; perSecond: number };
}

function resultOf(s: Setup): SetupResult {
  const c1 = (path: PathName) => {
    const all = s.c1[path].flat();
    return { ...summary(all), n: all.length };
  };
  const all32 = s.c32.flat();
  const seconds = s.c32Seconds.reduce((a, b) => a + b, 0);
  const { p50, p99 } = summary(all32);
  return {
    setup: s.spec.name,
    sdk: c1("sdk"),
    cli: c1("cli"),
    c32: { p50, p99, creates: all32.length, seconds, perSecond: all32.length / seconds },
  };
}

/**
 * `a / b` of the p50 over the whole run, with the spread of the same ratio
 * taken round by round (its interquartile range): the run-wide figure says
 * what the cost is, the per-round spread how far it can be trusted.
 */
interface Ratio {
  whole: number;
  rounds: [number, number];
}

function p50Ratio(a: Setup, b: Setup, path: PathName): Ratio {
  const whole = median(a.c1[path].flat()) / median(b.c1[path].flat());
  const per = a.c1[path].map((xs, r) => median(xs) / median(b.c1[path][r]));
  return { whole, rounds: quartiles(per) };
}

function rateRatio(a: Setup, b: Setup): Ratio {
  const rate = (s: Setup) => s.c32.flat().length / s.c32Seconds.reduce((x, y) => x + y, 0);
  const per = a.c32Seconds.map((sec, i) => (BLOCK / sec) / (BLOCK / b.c32Seconds[i]));
  return { whole: rate(a) / rate(b), rounds: quartiles(per) };
}

const fmtRatio = (r: Ratio) =>
  `${r.whole.toFixed(3)} (${r.rounds[0].toFixed(2)}-${r.rounds[1].toFixed(2)})`;

function report(setups: Setup[], seconds: number): void {
  const results = setups.map(resultOf);
  const byName = new Map(setups.map((s) => [s.spec.name, s]));
  const none = byName.get("none")!;
  const token = byName.get("token")!;
  const tls = byName.get("token+tls")!;
  const again = byName.get("none again");

  console.log(
    `\nFastPath CreateSandbox, process runtime, ${AGENTS} agents per setup, loopback; ` +
      `${N} creates per setup and path at concurrency 1, ` +
      `${results[0].c32.creates} at 32 (SDK path)`,
  );
  const part = (name: string, sec: number) => `${name} ${sec.toFixed(0)} s`;
  console.log(
    `run took ${seconds.toFixed(0)} s: ` + [
      part("start-up", phases.startup),
      part("warm-up", phases.warmup),
      part("timed at 1", phases.c1),
      part("timed at 32", phases.c32),
      part("deletes", phases.deletes),
    ].join(", "),
  );
  table(
    [
      "setup",
      "SDK p50 ms",
      "SDK p99 ms",
      "CLI path p50 ms",
      "CLI path p99 ms",
      "creates/s at 32",
      "p50 at 32 ms",
      "p99 at 32 ms",
    ],
    results.map((r) => [
      r.setup,
      r.sdk.p50,
      r.sdk.p99,
      r.cli.p50,
      r.cli.p99,
      r.c32.perSecond.toFixed(0),
      r.c32.p50,
      r.c32.p99,
    ]),
  );

  const ratios: { name: string; sdk: Ratio; cli: Ratio; rate: Ratio; target: string }[] = [
    {
      name: "token / none",
      sdk: p50Ratio(token, none, "sdk"),
      cli: p50Ratio(token, none, "cli"),
      rate: rateRatio(token, none),
      target: "p50 <= 1.03",
    },
    {
      name: "token+tls / token (TLS / plain)",
      sdk: p50Ratio(tls, token, "sdk"),
      cli: p50Ratio(tls, token, "cli"),
      rate: rateRatio(tls, token),
      target: "-",
    },
  ];
  if (again !== undefined) {
    ratios.push({
      name: "none again / none (noise floor)",
      sdk: p50Ratio(again, none, "sdk"),
      cli: p50Ratio(again, none, "cli"),
      rate: rateRatio(again, none),
      target: "-",
    });
  }
  console.log("\nRatios: whole run (interquartile range of the same ratio round by round)");
  table(
    ["ratio", "SDK p50", "CLI path p50", "creates/s at 32", "target"],
    ratios.map((r) => [r.name, fmtRatio(r.sdk), fmtRatio(r.cli), fmtRatio(r.rate), r.target]),
  );
  const met = (r: Ratio) => r.whole <= 1.03 ? "met" : "missed";
  console.log(
    `\ntoken / none at p50 within 3%: SDK ${met(ratios[0].sdk)}, CLI path ${met(ratios[0].cli)}`,
  );

  if (values.json) {
    console.log(JSON.stringify({
      n: N,
      seconds,
      results,
      ratios: ratios.map((r) => ({
        name: r.name,
        sdkP50: r.sdk,
        cliP50: r.cli,
        createsPerS: r.rate,
      })),
    }));
  }
}

/**
 * Kills any sandbox process an agent left behind (a delete that failed, or an
 * interrupted run): each state record names a pid and its start time, which
 * together tell the sandbox from a later process that reused the pid.
 */
async function killLeftovers(setupDirs: string[]): Promise<number> {
  let killed = 0;
  const recordDirs: string[] = [];
  for (const setupDir of setupDirs) {
    try {
      for await (const d of Deno.readDir(setupDir)) {
        recordDirs.push(`${setupDir}/${d.name}/process/_records`);
      }
    } catch {
      // The setup never got as far as making its directory.
    }
  }
  for (const records of recordDirs) {
    let entries;
    try {
      entries = await Array.fromAsync(Deno.readDir(records));
    } catch {
      continue;
    }
    for (const e of entries) {
      if (!e.name.endsWith(".json")) continue;
      try {
        const rec = JSON.parse(await Deno.readTextFile(`${records}/${e.name}`)) as {
          pid: number;
          startTime: string;
        };
        const stat = await Deno.readTextFile(`/proc/${rec.pid}/stat`);
        const startTime = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
        if (rec.pid > 0 && startTime === rec.startTime) {
          // The sandbox leads its own process group: kill the whole group.
          Deno.kill(-rec.pid, "SIGKILL");
          killed++;
        }
      } catch {
        // Gone already, or not a record.
      }
    }
  }
  return killed;
}

async function main(): Promise<void> {
  const started = performance.now();
  const dir = await Deno.makeTempDir({ prefix: "fsb-auth-bench-" });
  const onSignal = () => aborted = true;
  Deno.addSignalListener("SIGINT", onSignal);
  const setups: Setup[] = [];
  const setupDirs = SPECS.map((_, i) => `${dir}/setup-${i}`);
  try {
    let certs: CertFiles | undefined;
    if (SPECS.some((s) => s.tls)) {
      await Deno.mkdir(`${dir}/certs`);
      const pems = await makeTestCerts(`${dir}/certs`);
      certs = {
        cert: `${dir}/certs/server.pem`,
        key: `${dir}/certs/server.key`,
        ca: `${dir}/certs/ca.pem`,
        caPem: pems.caPem,
      };
    }
    // Started together: the start-up is untimed, and a dozen Deno processes take a while.
    const starts = await Promise.allSettled(
      SPECS.map((spec, i) => startSetup(spec, setupDirs[i], certs)),
    );
    for (const s of starts) if (s.status === "fulfilled") setups.push(s.value);
    const failed = starts.find((s) => s.status === "rejected");
    if (failed !== undefined) throw failed.reason;
    phases.startup = (performance.now() - started) / 1000;
    checkAbort();
    await measure(setups);
    report(setups, (performance.now() - started) / 1000);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    for (const s of setups) await deleteLive(s).catch(() => {});
    for (const s of setups) {
      s.sdkChannel.close();
      s.cliChannel.close();
      for (const a of s.agents) await stopProc(a);
      await stopProc(s.controller);
    }
    const leftovers = await killLeftovers(setupDirs).catch(() => 0);
    if (leftovers > 0) console.error(`killed ${leftovers} sandbox processes left behind`);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
