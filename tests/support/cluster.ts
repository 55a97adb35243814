/**
 * A real controller and real agents in this process, talking real gRPC over
 * loopback, with process-runtime sandboxes. Time is a manual clock that tests
 * advance; the lifecycle loop runs when a test calls `tick()`.
 *
 * @module
 */
import { pino } from "pino";
import client from "prom-client";
import { captureProfile, type ControllerHandle, startController } from "../../controller/mod.ts";
import { AgentServer, type Runtime } from "../../agent/mod.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { RpcChannel, type ServiceClient } from "../../proto/grpc.ts";

/** A clock that moves only when told to. */
export class ManualClock {
  #now: number;

  /** Starts at `start` milliseconds (default: the real time now). */
  constructor(start = Date.now()) {
    this.#now = start;
  }

  /** The current time in milliseconds. */
  now(): number {
    return this.#now;
  }

  /** Moves time forward by `ms`. */
  advance(ms: number): void {
    this.#now += ms;
  }
}

/** What an agent in the cluster is made of. */
export interface AgentSpec {
  id: string;
  pool?: string;
  namespace?: string;
  capacity?: number;
  /** Images the process runtime claims to have. */
  images?: string[];
  /** Use this runtime instead of a ProcessRuntime. */
  runtime?: Runtime;
  /** The agent's cap on each sandbox's log file. */
  logMaxBytes?: number;
}

/** A running agent in the cluster. */
export interface TestAgent {
  readonly id: string;
  readonly server: AgentServer;
  readonly runtime: Runtime;
  readonly dataDir: string;
}

/** Options for {@linkcode startCluster}. */
export interface ClusterOptions {
  agents?: AgentSpec[];
  mode?: "fast" | "strong";
  agentTimeoutMs?: number;
  deleteGraceMs?: number;
  /** Deadline for an agent's create. */
  agentCreateTimeoutMs?: number;
  /** The controller's logger; silent unless given. */
  logger?: ReturnType<typeof silentLogger>;
  /** Reuse a data directory (restart tests). */
  dataDir?: string;
  /** The controller's and agents' idle-connection timeout (see RpcServerOptions.idleSocketMs). */
  idleSocketMs?: number;
  /** The controller's store (`--store`); default `sqlite:` in the data dir. */
  store?: string;
}

/** A controller, its agents and a FastPath client. */
export class Cluster {
  readonly clock: ManualClock;
  readonly dataDir: string;
  readonly controller: ControllerHandle;
  /** A FastPath client holding the admin token. */
  readonly client: ServiceClient<typeof FastPath.method>;
  /** The controller's admin token secret. */
  readonly adminToken: string;
  /** The cluster's join token secret, which the agents use. */
  readonly joinToken: string;
  readonly agents = new Map<string, TestAgent>();
  readonly #channel: RpcChannel;
  readonly #opts: ClusterOptions;
  readonly #stopped: TestAgent[] = [];
  readonly #extraChannels: RpcChannel[] = [];

  /** Use {@linkcode startCluster}. */
  constructor(
    opts: ClusterOptions,
    parts: { clock: ManualClock; dataDir: string; controller: ControllerHandle },
  ) {
    this.#opts = opts;
    this.clock = parts.clock;
    this.dataDir = parts.dataDir;
    this.controller = parts.controller;
    this.adminToken = Deno.readTextFileSync(`${parts.dataDir}/controller/admin-token`).trim();
    this.joinToken = Deno.readTextFileSync(`${parts.dataDir}/controller/join-token`).trim();
    this.#channel = new RpcChannel(parts.controller.address, {
      timeoutMs: 30_000,
      metadata: { authorization: `Bearer ${this.adminToken}` },
    });
    this.client = this.#channel.client(FastPath);
  }

  /** Starts an agent and waits until the controller has registered it. */
  async addAgent(spec: AgentSpec): Promise<TestAgent> {
    const dataDir = `${this.dataDir}/agents/${spec.id}`;
    const runtime = spec.runtime ??
      new ProcessRuntime({ stateDir: `${dataDir}/process`, images: spec.images ?? ["busybox"] });
    const server = new AgentServer({
      controller: this.controller.address,
      listen: "127.0.0.1:0",
      advertise: "127.0.0.1",
      id: spec.id,
      pool: spec.pool ?? "default-pool",
      namespace: spec.namespace ?? "default",
      capacity: spec.capacity ?? 5,
      runtime,
      dataDir,
      logger: silentLogger(),
      metricsRegistry: new client.Registry(),
      heartbeatMs: 60_000,
      logMaxBytes: spec.logMaxBytes,
      joinToken: this.joinToken,
      profile: captureProfile,
      idleSocketMs: this.#opts.idleSocketMs,
    });
    await server.start();
    const agent = { id: spec.id, server, runtime, dataDir };
    this.agents.set(spec.id, agent);
    await waitFor(() =>
      server.registered &&
      this.controller.controller.registry.getAgentById(spec.id)?.address === server.address
    );
    return agent;
  }

  /** A FastPath client for `token` (closed with the cluster). */
  clientFor(token: string | undefined): ServiceClient<typeof FastPath.method> {
    const channel = new RpcChannel(this.controller.address, {
      timeoutMs: 30_000,
      metadata: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });
    this.#extraChannels.push(channel);
    return channel.client(FastPath);
  }

  /** Sends one heartbeat for each running agent now (the agents' own timers are slow on purpose). */
  async heartbeatAll(): Promise<void> {
    for (const agent of this.agents.values()) {
      this.controller.controller.heartbeat(await agent.server.report());
    }
  }

  /** Stops an agent's server (its sandboxes keep running) and forgets it. */
  async stopAgent(id: string): Promise<TestAgent> {
    const agent = this.agents.get(id)!;
    await agent.server.close();
    this.agents.delete(id);
    this.#stopped.push(agent);
    return agent;
  }

  /** Runs one lifecycle pass on the controller. */
  tick(): Promise<void> {
    return this.controller.controller.tick();
  }

  /** Stops everything: agents, the controller, and every sandbox process. */
  async close(opts: { keepSandboxes?: boolean } = {}): Promise<void> {
    this.#channel.close();
    for (const ch of this.#extraChannels) ch.close();
    for (const agent of this.agents.values()) {
      if (!opts.keepSandboxes) await removeAll(agent.runtime);
      await agent.server.close();
    }
    this.agents.clear();
    if (!opts.keepSandboxes) {
      for (const agent of this.#stopped) await removeAll(agent.runtime);
    }
    await this.controller.close();
    if (this.#opts.dataDir === undefined) await Deno.remove(this.dataDir, { recursive: true });
  }
}

/**
 * Deletes every sandbox a runtime holds. A runtime that cannot answer (closed,
 * or its containerd is gone) has nothing this harness can still remove.
 */
async function removeAll(runtime: Runtime): Promise<void> {
  let list;
  try {
    list = await runtime.list();
  } catch {
    return;
  }
  for (const s of list) await runtime.delete(s.spec.sandboxId, 0);
}

/** A pino logger that writes nothing. */
export function silentLogger(): ReturnType<typeof pino<"timing">> {
  return pino<"timing">({ level: "silent", customLevels: { timing: 25 } });
}

/** Polls `cond` every 10 ms until it holds, or fails after `timeoutMs`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Starts a controller on a free port with a fresh (or given) data dir, then its agents. */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const clock = new ManualClock();
  const dataDir = opts.dataDir ?? await Deno.makeTempDir({ prefix: "fsb-cluster-" });
  const controller = await startController({
    listen: "127.0.0.1:0",
    metricsListen: "127.0.0.1:0",
    store: opts.store ?? "sqlite:",
    dataDir: `${dataDir}/controller`,
    mode: opts.mode ?? "fast",
    agentTimeoutMs: opts.agentTimeoutMs ?? 10_000,
    deleteGraceMs: opts.deleteGraceMs ?? 2_000,
    agentCreateTimeoutMs: opts.agentCreateTimeoutMs,
    logger: opts.logger ?? silentLogger(),
    metricsRegistry: new client.Registry(),
    tickMs: 3_600_000,
    clock,
    idleSocketMs: opts.idleSocketMs,
  });
  const cluster = new Cluster(opts, { clock, dataDir, controller });
  for (const spec of opts.agents ?? [{ id: "agent-1" }]) await cluster.addAgent(spec);
  return cluster;
}

/** Whether a process with this pid exists. */
export function processAlive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}
