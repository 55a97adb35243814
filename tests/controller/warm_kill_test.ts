/**
 * An agent SIGKILLed while it holds warm containers and sandboxes, one of
 * them a claimed warm container (issue 9, shared/DESIGN.md section 13): all
 * real processes. A containerd of the test's own with busybox imported, a
 * `fsb controller serve` process and a `fsb agent run --runtime containerd
 * --warm busybox=2` process on a bridge and /24 of the test's own. A new agent
 * process on the same data dir must list the sandboxes running, keep its pool
 * at 2 (re-adopted or replaced), and leave nothing behind in containerd, the
 * network or its run directories.
 */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { connect, type FsbClient } from "../../cli/client.ts";
import { ContainerdClient, importImage, LABELS } from "../../agent/containerd/mod.ts";
import { BridgeNetwork } from "../../agent/network/mod.ts";
import { NetworkMode } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Kind } from "../../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Status } from "../../proto/gen/containerd/types/task_pb.ts";
import { type ServerProcess, spawnServer, startAgentProcess } from "../support/agent_process.ts";
import { buildBusyboxImage } from "../support/busybox_image.ts";
import { waitFor } from "../support/cluster.ts";
import { type ContainerdServer, startContainerd } from "../support/containerd.ts";
import { ignoreWithout } from "../support/real_parts.ts";
import { freePort } from "../support/registry.ts";

const ignore = ignoreWithout("containerd", "root");
const BUSYBOX = "docker.io/library/busybox:latest";
/** `--warm busybox=POOL`; the agent keeps as many snapshots of busybox prepared ahead. */
const POOL = 2;
/**
 * Namespaces the agent's bridge network keeps ready for creates (the
 * BridgeNetwork default, which `fsb agent run` does not change): they belong
 * to no container, and are counted apart from leaks.
 */
const READY_NETNS = 4;
/** Labels and keys of the warm machinery (agent/containerd/_warm_container.ts, _prepared_snapshots.ts). */
const WARM_LABEL = "fsb.io/warm";
const CLAIMED_LABEL = "fsb.io/warm-claimed";
const PREPARED_PREFIX = "fsb-prep-";
const SETTLE_MS = 90_000;
const decoder = new TextDecoder();

function hex4(): string {
  return crypto.getRandomValues(new Uint16Array(1))[0].toString(16).padStart(4, "0");
}

function byte(min: number, max: number): number {
  return min + (crypto.getRandomValues(new Uint8Array(1))[0] % (max - min + 1));
}

/** Everything the test started, and where the agent keeps its state. */
interface Scene {
  readonly containerd: ContainerdServer;
  readonly ctr: ContainerdClient;
  readonly bridge: string;
  /** The agent's `--data-dir`. */
  readonly agentDir: string;
  /** The agent's metrics address. */
  readonly metrics: string;
  readonly controller: ServerProcess;
  readonly fsb: FsbClient;
  /** Starts an agent process with the scene's flags (each time the same). */
  startAgent(): Promise<ServerProcess>;
  agent: ServerProcess | undefined;
}

/** One container as containerd holds it. */
interface ContainerState {
  readonly id: string;
  /** The sandbox's name (`fsb.io/name`); undefined for a warm container. */
  readonly name: string | undefined;
  readonly warm: boolean;
  readonly snapshotKey: string;
  /** Its network namespace's name (under /run/netns), or undefined for none of the bridge's. */
  readonly netns: string | undefined;
  readonly running: boolean;
  readonly pid: number;
}

/** What is on the host for the agent: containerd, the bridge's namespaces and ports, its dirs. */
interface HostState {
  readonly containers: ContainerState[];
  /** The bridge's namespaces in /run/netns (what `ip netns list` lists). */
  readonly netns: string[];
  /** Ports (veths) on the bridge. */
  readonly ports: string[];
  /** The network's records: one per address, with the container it serves (none when ready). */
  readonly records: { netns: string; sandboxId?: string }[];
  /** The warm run directory (`DATA/containerd/warm`): names, and whether each is a FIFO. */
  readonly runDir: { name: string; fifo: boolean }[];
  /** Logs of unclaimed warm containers (`DATA/containerd/warm-logs`). */
  readonly warmLogs: string[];
  /** Active (writable) snapshots. */
  readonly snapshots: string[];
}

async function listDir(path: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  try {
    for await (const e of Deno.readDir(path)) out.push(e);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out;
}

/** The network namespace path in a container's OCI spec, as a name under /run/netns. */
function netnsOf(spec: Uint8Array | undefined): string | undefined {
  if (spec === undefined) return undefined;
  const oci = JSON.parse(decoder.decode(spec)) as {
    linux?: { namespaces?: { type?: string; path?: string }[] };
  };
  const path = oci.linux?.namespaces?.find((n) => n.type === "network")?.path;
  return path === undefined || path === "" ? undefined : basename(path);
}

async function hostState(scene: Scene): Promise<HostState> {
  const { containers: list } = await scene.ctr.containers.list({});
  const containers: ContainerState[] = [];
  for (const c of list) {
    const task = await scene.ctr.tasks.get({ containerId: c.id }).then(
      (r) => r.process,
      () => undefined,
    );
    containers.push({
      id: c.id,
      name: c.labels[LABELS.name],
      warm: c.labels[WARM_LABEL] !== undefined,
      snapshotKey: c.snapshotKey,
      netns: netnsOf(c.spec?.value),
      running: task?.status === Status.RUNNING,
      pid: task?.pid ?? 0,
    });
  }
  const netns = (await listDir("/run/netns")).map((e) => e.name)
    .filter((n) => n.startsWith(`${scene.bridge}-`)).sort();
  const ports = (await listDir(`/sys/class/net/${scene.bridge}/brif`)).map((e) => e.name).sort();
  const records: { netns: string; sandboxId?: string }[] = [];
  const ips = join(scene.agentDir, "network", "ips");
  for (const e of await listDir(ips)) {
    if (!e.name.endsWith(".json")) continue;
    const text = await Deno.readTextFile(join(ips, e.name)).catch(() => undefined);
    // Written atomically (a rename); one that went meanwhile is no longer a record.
    if (text !== undefined) records.push(JSON.parse(text));
  }
  const warmDir = join(scene.agentDir, "containerd", "warm");
  const runDir: { name: string; fifo: boolean }[] = [];
  for (const e of await listDir(warmDir)) {
    const info = await Deno.lstat(join(warmDir, e.name)).catch(() => undefined);
    if (info !== undefined) runDir.push({ name: e.name, fifo: info.isFifo === true });
  }
  const warmLogs = (await listDir(join(scene.agentDir, "containerd", "warm-logs")))
    .map((e) => e.name);
  const snapshots: string[] = [];
  for await (const res of scene.ctr.snapshots.list({ snapshotter: "overlayfs" })) {
    for (const info of res.info) if (info.kind === Kind.ACTIVE) snapshots.push(info.name);
  }
  return { containers, netns, ports, records, runDir, warmLogs, snapshots };
}

/** What the host must hold once the agent has settled. */
interface Want {
  /** Names of the sandboxes containerd must hold. */
  readonly sandboxes: readonly string[];
  readonly warm: number;
  /** Prepared snapshots waiting, not used by any container. */
  readonly prepared: number;
  /** Exactly this many namespaces the network keeps ready. */
  readonly readyNetns: number;
}

/** Everything in `state` that differs from `want`: leaks, and what is missing. */
function problems(state: HostState, want: Want): string[] {
  const out: string[] = [];
  const warm = state.containers.filter((c) => c.warm);
  const sandboxes = state.containers.filter((c) => !c.warm && c.name !== undefined);
  const others = state.containers.filter((c) => !c.warm && c.name === undefined);
  if (warm.length !== want.warm) {
    out.push(`containerd holds ${warm.length} warm containers, not ${want.warm}: ${ids(warm)}`);
  }
  const names = sandboxes.map((c) => c.name!).sort();
  if (JSON.stringify(names) !== JSON.stringify([...want.sandboxes].sort())) {
    out.push(`containerd holds sandboxes [${names}], not [${want.sandboxes}]`);
  }
  if (others.length > 0) out.push(`containers neither sandbox nor warm: ${ids(others)}`);
  const stopped = state.containers.filter((c) => !c.running);
  if (stopped.length > 0) out.push(`containers whose task is not running: ${ids(stopped)}`);

  // The network: each namespace of the bridge serves a container or is ready; nothing else.
  const hostNetns = new Set(state.netns);
  const used = new Map<string, string>();
  for (const c of state.containers) {
    if (c.netns === undefined) continue;
    used.set(c.netns, c.id);
    if (!hostNetns.has(c.netns)) out.push(`container ${c.id}'s namespace ${c.netns} is gone`);
  }
  const ready = state.records.filter((r) => r.sandboxId === undefined);
  const readyNames = new Set(ready.map((r) => r.netns));
  const leaked = state.netns.filter((n) => !used.has(n) && !readyNames.has(n));
  if (leaked.length > 0) out.push(`namespaces of the bridge nothing uses: ${leaked.join(", ")}`);
  if (ready.length !== want.readyNetns) {
    out.push(`${ready.length} namespaces ready, not ${want.readyNetns}`);
  }
  const containerIds = new Set(state.containers.map((c) => c.id));
  for (const r of state.records) {
    if (r.sandboxId !== undefined && !containerIds.has(r.sandboxId)) {
      out.push(`network record of ${r.netns} for ${r.sandboxId}, which containerd does not hold`);
    }
    if (!hostNetns.has(r.netns)) out.push(`network record of ${r.netns}, which is not on the host`);
  }
  const recorded = new Set(state.records.map((r) => r.sandboxId).filter((s) => s !== undefined));
  for (const c of state.containers) {
    if (c.netns !== undefined && !recorded.has(c.id)) {
      out.push(`container ${c.id} has a namespace but no network record`);
    }
  }
  if (state.ports.length !== state.netns.length) {
    out.push(
      `${state.ports.length} ports on the bridge for ${state.netns.length} namespaces: ${state.ports}`,
    );
  }

  // The run directories: a FIFO and a log per unclaimed warm container, nothing else.
  const fifos = state.runDir.map((e) => `${e.name}${e.fifo ? "" : " (not a FIFO)"}`).sort();
  const wantFifos = warm.map((c) => `${c.id}.in`).sort();
  if (JSON.stringify(fifos) !== JSON.stringify(wantFifos)) {
    out.push(`warm run dir holds [${fifos}], not [${wantFifos}]`);
  }
  const logs = [...state.warmLogs].sort();
  const wantLogs = warm.map((c) => `${c.id}.log`).sort();
  if (JSON.stringify(logs) !== JSON.stringify(wantLogs)) {
    out.push(`warm log dir holds [${logs}], not [${wantLogs}]`);
  }

  // Snapshots: each container's, plus the prepared ones waiting; nothing else.
  const keys = new Set(state.containers.map((c) => c.snapshotKey));
  const active = new Set(state.snapshots);
  for (const c of state.containers) {
    if (!active.has(c.snapshotKey)) {
      out.push(`container ${c.id}'s snapshot ${c.snapshotKey} is gone`);
    }
  }
  const spare = state.snapshots.filter((s) => !keys.has(s));
  const waiting = spare.filter((s) => s.startsWith(PREPARED_PREFIX));
  const stray = spare.filter((s) => !s.startsWith(PREPARED_PREFIX));
  if (stray.length > 0) out.push(`snapshots no container uses: ${stray.join(", ")}`);
  if (waiting.length !== want.prepared) {
    out.push(`${waiting.length} prepared snapshots waiting, not ${want.prepared}: ${waiting}`);
  }
  return out;
}

function ids(list: readonly ContainerState[]): string {
  return `[${list.map((c) => c.name === undefined ? c.id : `${c.id} (${c.name})`).join(", ")}]`;
}

/** The agent's `fsb_agent_warm_containers` for busybox; -1 when it does not answer. */
function warmMetric(scene: Scene): Promise<number> {
  return agentMetric(scene, "fsb_agent_warm_containers");
}

/** The agent's gauge `name` for busybox; -1 when the agent does not answer. */
async function agentMetric(scene: Scene, name: string): Promise<number> {
  let text: string;
  try {
    text = await (await fetch(`http://${scene.metrics}/metrics`)).text();
  } catch {
    return -1;
  }
  const prefix = `${name}{image="${BUSYBOX}"} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  return line === undefined ? 0 : Number(line.slice(prefix.length));
}

/**
 * Polls until the host holds exactly `want` and the agent's metrics say its
 * pool is full; fails, naming what still differs, after SETTLE_MS.
 */
async function settle(scene: Scene, want: Want): Promise<HostState> {
  let state: HostState | undefined;
  let last: string[] = [];
  try {
    await waitFor(async () => {
      const metric = await warmMetric(scene);
      state = await hostState(scene);
      last = problems(state, want);
      if (metric !== want.warm) {
        last.push(`the agent's metrics say ${metric} warm, not ${want.warm}`);
      }
      const prepared = await agentMetric(scene, "fsb_agent_prepared_snapshots");
      if (prepared !== want.prepared) {
        last.push(`the agent's metrics say ${prepared} prepared snapshots, not ${want.prepared}`);
      }
      return last.length === 0;
    }, SETTLE_MS);
  } catch {
    throw new Error(
      `the host did not settle within ${SETTLE_MS} ms:\n  ${last.join("\n  ")}\n` +
        `last seen: ${JSON.stringify(state)}`,
    );
  }
  return state!;
}

async function logsOf(fsb: FsbClient, name: string): Promise<string> {
  let out = "";
  for await (const chunk of fsb.logs(name)) out += decoder.decode(chunk, { stream: true });
  return out;
}

async function registered(agent: ServerProcess): Promise<void> {
  await waitFor(() => {
    if (agent.exited) throw new Error(`the agent exited:\n${agent.stderr().slice(-8000)}`);
    return agent.stderr().includes('"registered with controller"');
  }, 60_000);
}

/** A containerd, busybox, a controller and an agent with `--warm busybox=POOL`, all started. */
async function startScene(dir: string, cleanup: (() => Promise<void>)[]): Promise<Scene> {
  const bridge = `fsbk${hex4()}`;
  const cidr = `10.${byte(210, 239)}.${byte(0, 255)}.0/24`;
  const agentDir = join(dir, "agent");
  // Whatever happens, last (cleanup runs last first): the bridge, its rules, namespaces, records.
  cleanup.push(() => removeNetwork(agentDir, bridge, cidr));
  // Its stop kills every task, then every shim it left.
  const containerd = await startContainerd();
  cleanup.push(() => containerd.stop());
  await importImage(await buildBusyboxImage(dir), { socket: containerd.socket });
  const ctr = new ContainerdClient(containerd.socket);
  cleanup.push(() => Promise.resolve(ctr.close()));
  const home = join(dir, "home");
  await Deno.mkdir(home);
  const endpoint = `127.0.0.1:${await freePort()}`;
  const controllerDir = join(dir, "controller");
  const controller = await spawnServer([
    "controller",
    "serve",
    "--listen",
    endpoint,
    "--metrics-listen",
    "127.0.0.1:0",
    "--data-dir",
    controllerDir,
    // Long enough that the controller never declares the agent lost while it restarts:
    // what is checked here is what the agent finds, not how the controller waits.
    "--agent-timeout",
    "60s",
    "--log-format",
    "json",
  ], { home, marker: "fsb controller listening on" });
  cleanup.push(async () => void await controller.stop());
  const admin = (await Deno.readTextFile(join(controllerDir, "admin-token"))).trim();
  const fsb = connect({ endpoint, token: admin });
  cleanup.push(() => Promise.resolve(fsb.close()));
  const metrics = `127.0.0.1:${await freePort()}`;
  const opts = {
    controller: endpoint,
    id: "warm-kill",
    dataDir: agentDir,
    joinTokenFile: join(controllerDir, "join-token"),
    metrics,
    capacity: 5,
    home,
    args: [
      "--runtime",
      "containerd",
      "--containerd-socket",
      containerd.socket,
      "--bridge",
      bridge,
      "--sandbox-cidr",
      cidr,
      "--warm",
      `busybox=${POOL}`,
    ],
  };
  const scene: Scene = {
    containerd,
    ctr,
    bridge,
    agentDir,
    metrics,
    controller,
    fsb,
    agent: undefined,
    startAgent: async () => {
      scene.agent = await startAgentProcess(opts);
      return scene.agent;
    },
  };
  // Runs before containerd stops (cleanup runs last first): a live agent would refill.
  cleanup.push(async () => void await scene.agent?.stop());
  return scene;
}

/**
 * Removes the agent's network, whatever state it is in: its records load into
 * a network of our own (which also removes namespaces of the bridge no record
 * names), whose teardown removes namespaces, rules table and bridge.
 */
async function removeNetwork(agentDir: string, bridge: string, cidr: string): Promise<void> {
  const network = new BridgeNetwork({
    stateDir: join(agentDir, "network"),
    bridge,
    cidr,
    poolSize: 0,
  });
  await network.start().catch(() => {});
  await network.teardown();
}

/** What the agent's network left on the host: namespaces, the bridge, the rules table. */
async function networkLeftovers(bridge: string): Promise<string[]> {
  const left = (await listDir("/run/netns")).map((e) => e.name)
    .filter((n) => n.startsWith(`${bridge}-`)).map((n) => `netns ${n}`);
  if ((await listDir(`/sys/class/net/${bridge}`)).length > 0) left.push(`bridge ${bridge}`);
  const tables = await new Deno.Command("nft", { args: ["list", "tables"], stdout: "piped" })
    .output();
  const table = new BridgeNetwork({ stateDir: "/nonexistent", bridge }).table;
  if (decoder.decode(tables.stdout).includes(`inet ${table}\n`)) left.push(`nft table ${table}`);
  return left;
}

/** What the host holds with both sandboxes running and the pool and stock full. */
const WANT: Want = {
  sandboxes: ["missed", "warmed"],
  warm: POOL,
  prepared: POOL,
  readyNetns: READY_NETNS,
};

/**
 * Runs `fn` in a fresh scene with its first agent registered and its pool
 * and stock full; prints every process's log if it fails; then removes all
 * of it, and checks that the host holds nothing of it any more.
 */
async function withScene(
  fn: (scene: Scene, first: ServerProcess, start: HostState) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_warm_kill_" });
  const cleanup: (() => Promise<void>)[] = [];
  let scene: Scene | undefined;
  let failed = false;
  try {
    scene = await startScene(dir, cleanup);
    const first = await scene.startAgent();
    await registered(first);
    const start = await settle(scene, { ...WANT, sandboxes: [] });
    await fn(scene, first, start);
  } catch (err) {
    failed = true;
    if (scene !== undefined) {
      console.error(`----- controller\n${scene.controller.stderr().slice(-16_000)}`);
      console.error(`----- agent\n${scene.agent?.stderr().slice(-32_000) ?? ""}`);
      console.error(`----- containerd\n${(await scene.containerd.log()).slice(-8000)}`);
    }
    throw err;
  } finally {
    for (const step of cleanup.reverse()) {
      await step().catch((err) => console.error(`cleanup: ${err}`));
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  // Only once it passed: cleaning up after a failure must not hide the failure.
  if (!failed) {
    assert.deepEqual(await networkLeftovers(scene.bridge), [], "the host is as before the test");
  }
}

const COMMANDS = {
  warmed: ["sh", "-c", "echo warmed up; exec sleep 600"],
  missed: ["sh", "-c", "echo missed up; exec sleep 600"],
};

/** `warmed` from the pool and `missed` (no network, which no warm container has) prepared. */
async function createBoth(fsb: FsbClient): Promise<void> {
  const warmed = await fsb.sandboxes.create({
    name: "warmed",
    image: "busybox",
    command: COMMANDS.warmed,
  });
  assert.deepEqual([warmed.path, warmed.phase], ["warm", "Running"]);
  const missed = await fsb.sandboxes.create({
    name: "missed",
    image: "busybox",
    command: COMMANDS.missed,
    network: { mode: NetworkMode.NONE },
  });
  assert.deepEqual([missed.path, missed.phase], ["prepared", "Running"]);
}

/** Both sandboxes served by the agent now: listed running, their logs, a command run in each. */
async function assertServed(fsb: FsbClient): Promise<void> {
  const listed = await fsb.sandboxes.list();
  assert.deepEqual(
    listed.map((s) => [s.name, s.phase, s.path]).sort(),
    [["missed", "Running", "prepared"], ["warmed", "Running", "warm"]],
  );
  for (const name of ["warmed", "missed"]) {
    await waitFor(async () => (await logsOf(fsb, name)) === `${name} up\n`, 20_000);
    const res = await fsb.run(name, ["echo", `${name} alive`]);
    assert.deepEqual([res.exitCode, decoder.decode(res.stdout)], [0, `${name} alive\n`], name);
  }
}

function byName(state: HostState, name: string): ContainerState {
  const found = state.containers.find((c) => c.name === name);
  assert.ok(found !== undefined, `containerd holds no container of sandbox ${name}`);
  return found;
}

/** Deletes both sandboxes through the API, then checks what is left: only the pool and stock. */
async function deleteBoth(scene: Scene): Promise<void> {
  await scene.fsb.sandboxes.delete("warmed");
  await scene.fsb.sandboxes.delete("missed");
  await settle(scene, { ...WANT, sandboxes: [] });
  assert.deepEqual(await scene.fsb.sandboxes.list(), []);
}

Deno.test({
  name:
    "an agent SIGKILLed with warm and claimed containers comes back listing its sandboxes running, its pool full, and nothing left behind",
  ignore,
}, async () => {
  await withScene(async (scene, first, start) => {
    await createBoth(scene.fsb);
    // The pool and the stock refilled: 2 sandboxes, 2 warm, 2 prepared waiting (+1 in use).
    const before = await settle(scene, WANT);
    const claimed = byName(before, "warmed");
    const warmAtStart = start.containers.filter((c) => c.warm).map((c) => c.id);
    assert.ok(warmAtStart.includes(claimed.id), `${claimed.id} was not warm: ${warmAtStart}`);
    assert.ok(claimed.netns !== undefined, "the claimed warm container has a private network");
    const { containers } = await scene.ctr.containers.list({});
    assert.ok(containers.find((c) => c.id === claimed.id)!.labels[CLAIMED_LABEL] !== undefined);
    const prepared = byName(before, "missed");
    assert.ok(prepared.snapshotKey.startsWith(PREPARED_PREFIX), prepared.snapshotKey);
    assert.equal(prepared.netns, undefined, "a NONE sandbox has no namespace of the bridge");

    // No shutdown of any kind: whatever it held in memory is gone.
    assert.equal((await first.kill()).signal, "SIGKILL");
    const second = await scene.startAgent();
    await registered(second);
    const after = await settle(scene, WANT);

    // The same containers and processes: re-adopted, never made again.
    for (const name of ["warmed", "missed"]) {
      const [was, is] = [byName(before, name), byName(after, name)];
      assert.deepEqual([is.id, is.pid, is.running], [was.id, was.pid, true], name);
    }
    await assertServed(scene.fsb);
    const warmBefore = before.containers.filter((c) => c.warm).map((c) => c.id);
    const kept = after.containers.filter((c) => c.warm && warmBefore.includes(c.id)).length;
    console.log(`warm containers after the restart: ${kept} re-adopted, ${POOL - kept} replaced`);

    await deleteBoth(scene);
    // A graceful stop leaves the warm containers (their namespaces, FIFOs and logs with them)
    // for the next run, by design; the namespaces ready and the snapshots prepared ahead go.
    const stopped = await second.stop();
    assert.equal(stopped.code, 0, second.stderr().slice(-8000));
    const left = await hostState(scene);
    assert.deepEqual(problems(left, { sandboxes: [], warm: POOL, prepared: 0, readyNetns: 0 }), []);
    assert.equal(left.netns.length, POOL);
  });
});

Deno.test({
  name:
    "an agent SIGKILLed while it makes a warm container comes back with its pool full and nothing of the half-made one left behind",
  ignore,
}, async () => {
  await withScene(async (scene, first) => {
    const runDir = join(scene.agentDir, "containerd", "warm");
    const fifos = async () => (await listDir(runDir)).map((e) => e.name);
    const before = new Set(await fifos());
    await createBoth(scene.fsb);
    // The refill's first step is the new container's FIFO: the agent dies right after it,
    // before the container's task (most likely) exists.
    await waitFor(async () => (await fifos()).some((n) => !before.has(n)), 20_000);
    assert.equal((await first.kill()).signal, "SIGKILL");
    const dead = await hostState(scene);
    const made = dead.containers.filter((c) => c.warm && !before.has(`${c.id}.in`));
    console.log(
      `killed with ${made.length} new warm container(s) in containerd, ` +
        `${made.filter((c) => c.running).length} of them running`,
    );

    const second = await scene.startAgent();
    await registered(second);
    await settle(scene, WANT);
    await assertServed(scene.fsb);
    await deleteBoth(scene);
  });
});
