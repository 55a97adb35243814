/**
 * The agent: serves the controller's sandbox calls through a runtime, and
 * registers and heartbeats with the controller.
 *
 * @module
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import client from "prom-client";
import {
  Agent as AgentService,
  AgentRegistry,
  type AgentReport,
  type SandboxSpec,
  type SandboxStatus,
} from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { RpcChannel, RpcServer, type ServiceClient } from "../proto/grpc.ts";
import { timingSafeEqual } from "node:crypto";
import { InvalidArgumentError, UnauthenticatedError, UnavailableError } from "../registry/mod.ts";
import { Code, RpcError } from "../proto/grpc.ts";
import type { Runtime } from "./runtime.ts";
import { DEFAULT_LOG_MAX_BYTES, LogCap } from "./log_cap.ts";
import { execService, sandboxIdOf } from "./_exec_service.ts";
import { hostPortProblem, parseHostPort } from "../proto/host_port.ts";
import { Health, healthService } from "../proto/health.ts";
import { SandboxFiles } from "./files.ts";
import { SpecUpdater } from "./_spec_update.ts";
import { deltaReport } from "./_delta_report.ts";

/** Options for {@linkcode AgentServer}. */
export interface AgentOptions {
  /**
   * Controller address, `HOST:PORT`, or several, comma-separated: the agent
   * talks to one and moves to the next when it cannot reach it (or to the
   * address a controller names as its leader).
   */
  controller: string;
  /** This agent's gRPC listen address, `HOST:PORT`. */
  listen: string;
  /** Host the controller dials and endpoints are published on; default: a local address. */
  advertise?: string;
  id: string;
  pool: string;
  namespace: string;
  capacity: number;
  runtime: Runtime;
  /** Holds the sandboxes' log files. */
  dataDir: string;
  logger: Logger<"timing">;
  metricsRegistry: client.Registry;
  /** Default 2 s; the controller's Register reply may change it. */
  heartbeatMs?: number;
  /**
   * How long a connection with no call in flight may stay silent before it
   * is dropped; 5 minutes unless told (tests make it short).
   */
  idleSocketMs?: number;
  /** Each sandbox's log file is kept to at most about this many bytes, the newest kept; 10 MiB unless told. */
  logMaxBytes?: number;
  /**
   * The cluster's join token (the controller's `join-token` file), for the
   * first Register; afterwards the agent uses the credential the controller
   * gave it, saved as `dataDir/credential`. Not needed with `--auth none`.
   */
  joinToken?: string;
  /**
   * TLS: this agent's port presents `cert` and `key`; with `ca`, it dials
   * the controller over TLS and checks its certificate by it.
   */
  tls?: { cert?: string; key?: string; ca?: string };
  /**
   * Takes a profile of this process for the controller's Profile call (the
   * wiring hands in the controller's profiler); refused when absent.
   */
  profile?: (
    opts: { kind: "cpu" | "heap"; seconds: number; signal?: AbortSignal },
  ) => AsyncIterable<Uint8Array>;
}

/**
 * The most sandboxes one agent may hold: its Register (and a heartbeat to an
 * older controller) carries every sandbox's spec, and this many at their
 * size bound still fit the controller's message limit (32 MiB against
 * 100 x 292 KiB).
 */
export const MAX_AGENT_CAPACITY = 100;

/** The most one call may carry to an agent: a create with a spec at its bounds, with room. */
const MAX_AGENT_MESSAGE_BYTES = 1024 * 1024;

const SANDBOX_ID = /^[0-9a-f]{32}$/;

/**
 * Refuses a sandbox id that is not 32 lowercase hex characters: ids become
 * paths (log files, state), so anything else could point outside them.
 */
function checkSandboxId(field: string, id: string): void {
  if (!SANDBOX_ID.test(id)) {
    throw new InvalidArgumentError(
      field,
      `must be 32 lowercase hex characters, got "${id.length > 40 ? id.slice(0, 40) + "..." : id}"`,
    );
  }
}

const encoder = new TextEncoder();

function isUnauthenticated(err: unknown): boolean {
  return err instanceof RpcError && err.code === Code.UNAUTHENTICATED;
}

/** How often the runtime is asked to remove what it cannot account for. */
const ORPHAN_SWEEP_MS = 60_000;

function ms(start: number): number {
  return performance.now() - start;
}

/** The first non-internal IPv4 address, else loopback. */
function defaultAdvertiseHost(listenHost: string): string {
  if (
    listenHost !== "" && listenHost !== "0.0.0.0" && listenHost !== "::" && listenHost !== "[::]"
  ) {
    return listenHost;
  }
  try {
    for (const ni of Deno.networkInterfaces()) {
      if (ni.family === "IPv4" && !ni.address.startsWith("127.")) return ni.address;
    }
  } catch {
    // No permission or no interfaces: loopback still works on one host.
  }
  return "127.0.0.1";
}

/** A running agent. */
export class AgentServer {
  readonly #opts: AgentOptions;
  readonly #runtime: Runtime;
  readonly #server: RpcServer;
  /** The controllers' addresses, in the order tried. */
  readonly #controllers: string[];
  /** Which of them the agent talks to now. */
  #current = 0;
  /**
   * One channel per controller address, made on first use and kept until the
   * agent closes: closing a channel may send a GOAWAY, which Deno's
   * node:http2 cannot take on an idle session (see proto/_grpc_channel.ts).
   */
  readonly #channels = new Map<string, RpcChannel>();
  /** What calls to the controller carry: the credential, else the join token. */
  #bearer = "";
  #callMetadata: Record<string, string> = {};
  /** The credential the controller gave; calls to this agent must carry it. */
  #credential: string | undefined;
  /** The runtime's readiness as last asked (start, then every report): what Health says. */
  #runtimeReady = false;
  readonly #log: Logger<"timing">;
  readonly #stage: client.Histogram<"stage" | "path">;
  readonly #logCap: LogCap;
  #address = "";
  readonly #credentialPath: string;
  #advertiseHost = "";
  #heartbeatMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #registered = false;
  #closed = false;
  #lastError = "";
  /** Failovers in a row since the last call a controller answered. */
  #moves = 0;
  #nextOrphanSweep = 0;
  /**
   * How many sandboxes the runtime held at the last report, plus creates
   * since: the agent refuses to pass MAX_AGENT_CAPACITY, so its heartbeat
   * always fits the controller's limit, leftovers included.
   */
  #held = 0;
  /** The last registration went out without the runtime's inventory. */
  #partial = false;
  /** The controller takes delta heartbeats (its Register reply said so). */
  #deltas = false;
  /** Sandboxes whose full status the controller asked for: the next heartbeat carries them. */
  #sendSpecs: ReadonlySet<string> = new Set();
  readonly #specs: SpecUpdater;

  /** Creates an agent; {@linkcode AgentServer.start} serves and registers. */
  constructor(opts: AgentOptions) {
    this.#opts = opts;
    this.#runtime = opts.runtime;
    this.#log = opts.logger;
    this.#heartbeatMs = opts.heartbeatMs ?? 2_000;
    if (
      !Number.isInteger(opts.capacity) || opts.capacity < 0 || opts.capacity > MAX_AGENT_CAPACITY
    ) {
      throw new InvalidArgumentError(
        "capacity",
        `must be a whole number from 0 to ${MAX_AGENT_CAPACITY}, got ${opts.capacity}`,
      );
    }
    this.#server = new RpcServer({
      maxReceiveBytes: MAX_AGENT_MESSAGE_BYTES,
      idleSocketMs: opts.idleSocketMs,
      tls: opts.tls?.cert !== undefined && opts.tls.key !== undefined
        ? { cert: opts.tls.cert, key: opts.tls.key }
        : undefined,
      onInternalError: (err, method) => this.#log.error({ err, method }, "internal error"),
    });
    this.#specs = new SpecUpdater(opts.runtime, opts.id);
    this.#controllers = opts.controller.split(",").map((a) => a.trim()).filter((a) => a !== "");
    if (this.#controllers.length === 0) {
      throw new InvalidArgumentError("controller", "must name at least one HOST:PORT");
    }
    for (const address of this.#controllers) parseHostPort(address, { what: "--controller" });
    this.#credentialPath = join(opts.dataDir, "credential");
    this.#logCap = new LogCap({
      maxBytes: opts.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES,
      logger: opts.logger,
    });
    this.#stage = new client.Histogram({
      name: "fsb_agent_create_stage_duration_seconds",
      help: "Agent-side sandbox create latency by stage.",
      labelNames: ["stage", "path"] as const,
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [opts.metricsRegistry],
    });
    const runtime = opts.runtime;
    if (runtime.warmCounts !== undefined) {
      new client.Gauge({
        name: "fsb_agent_warm_containers",
        help: "Warm containers ready per image (shared/DESIGN.md section 13).",
        labelNames: ["image"] as const,
        registers: [opts.metricsRegistry],
        collect() {
          this.reset();
          for (const [image, n] of Object.entries(runtime.warmCounts!())) this.set({ image }, n);
        },
      });
    }
    if (runtime.preparedCounts !== undefined) {
      new client.Gauge({
        name: "fsb_agent_prepared_snapshots",
        help:
          "Root snapshots prepared ahead and ready per image, for creates the warm pool misses.",
        labelNames: ["image"] as const,
        registers: [opts.metricsRegistry],
        collect() {
          this.reset();
          for (const [image, n] of Object.entries(runtime.preparedCounts!())) {
            this.set({ image }, n);
          }
        },
      });
    }
  }

  /** The bound agent address (`advertiseHost:port`). */
  get address(): string {
    return this.#address;
  }

  /** Whether the controller has accepted this agent's registration. */
  get registered(): boolean {
    return this.#registered;
  }

  /** Binds the listener, then registers with the controller in the background. */
  async start(): Promise<void> {
    await mkdir(join(this.#opts.dataDir, "logs"), { recursive: true });
    this.#credential = await Deno.readTextFile(this.#credentialPath).then(
      (t) => t.trim() || undefined,
      () => undefined,
    );
    this.#useBearer(this.#credential ?? this.#opts.joinToken ?? "");
    // Health needs no credential: it tells nothing but whether the runtime can create.
    this.#server.add(
      Health,
      healthService({ check: () => this.#runtimeReady, services: [AgentService.typeName] }),
    );
    const execs = execService(this.#runtime, { trackLog: (path) => this.#logCap.track(path) });
    const files = new SandboxFiles(this.#runtime);
    this.#server.add(AgentService, {
      createSandbox: (req, ctx) => {
        this.#admit(ctx.metadata);
        return this.#create(req.spec, ctx.signal);
      },
      deleteSandbox: async (req, ctx) => {
        this.#admit(ctx.metadata);
        return { existed: await this.#delete(req.sandboxId, req.graceMs) };
      },
      listSandboxes: async (_req, ctx) => {
        this.#admit(ctx.metadata);
        return { sandboxes: await this.#list() };
      },
      updateSandbox: async (req, ctx) => {
        this.#admit(ctx.metadata);
        if (req.spec === undefined) throw new InvalidArgumentError("spec", "is required");
        checkSandboxId("spec.sandbox_id", req.spec.sandboxId);
        return { generation: await this.#specs.update(req.spec) };
      },
      streamLogs: (req, ctx) => {
        this.#admit(ctx.metadata);
        return this.#logs(req.sandboxId, req.follow, ctx.signal);
      },
      profile: (req, ctx) => {
        this.#admit(ctx.metadata);
        return this.#profile(req.kind, req.seconds, ctx.signal);
      },
      exec: (reqs, ctx) => {
        this.#admit(ctx.metadata);
        return execs.exec(reqs, ctx);
      },
      execAttach: (req, ctx) => {
        this.#admit(ctx.metadata);
        return execs.execAttach(req, ctx);
      },
      execList: (req, ctx) => {
        this.#admit(ctx.metadata);
        return execs.execList(req, ctx);
      },
      execKill: (req, ctx) => {
        this.#admit(ctx.metadata);
        return execs.execKill(req, ctx);
      },
      wait: (req, ctx) => {
        this.#admit(ctx.metadata);
        return execs.wait(req, ctx);
      },
      writeFile: (reqs, ctx) => {
        this.#admit(ctx.metadata);
        return files.writeFile(sandboxIdOf(ctx), reqs, ctx);
      },
      readFile: (req, ctx) => {
        this.#admit(ctx.metadata);
        return files.readFile(sandboxIdOf(ctx), req, ctx);
      },
      listDir: (req, ctx) => {
        this.#admit(ctx.metadata);
        return files.listDir(sandboxIdOf(ctx), req, ctx);
      },
      stat: (req, ctx) => {
        this.#admit(ctx.metadata);
        return files.stat(sandboxIdOf(ctx), req, ctx);
      },
      makeDir: (req, ctx) => {
        this.#admit(ctx.metadata);
        return files.makeDir(sandboxIdOf(ctx), req, ctx);
      },
      remove: (req, ctx) => {
        this.#admit(ctx.metadata);
        return files.remove(sandboxIdOf(ctx), req, ctx);
      },
    });
    const bound = await this.#server.listen(this.#opts.listen);
    // Sandboxes from before a restart keep their logs capped too.
    for (const s of await this.#runtime.list().catch(() => [])) {
      this.#logCap.track(this.#logPath(s.spec.sandboxId));
      // Detached execs' output too; in the background, as it asks the runtime per sandbox.
      this.#runtime.execList(s.spec.sandboxId).then((execs) => {
        for (const e of execs) for (const path of e.logFiles ?? []) this.#logCap.track(path);
      }, () => {});
    }
    this.#logCap.start();
    const { port } = parseHostPort(bound, { listen: true });
    const listenHost = parseHostPort(this.#opts.listen, { listen: true, what: "--listen" }).host;
    // Kept as HOST for `HOST:PORT` endpoints: an IPv6 host in its brackets.
    this.#advertiseHost = this.#opts.advertise ??
      defaultAdvertiseHost(listenHost.includes(":") ? `[${listenHost}]` : listenHost);
    this.#address = `${this.#advertiseHost}:${port}`;
    const ready = await this.#runtime.ready();
    this.#runtimeReady = ready;
    if (!ready) {
      this.#log.warn(
        { runtime: this.#runtime.name },
        "runtime is not ready; reporting this agent as not ready",
      );
    }
    this.#log.info(
      { id: this.#opts.id, address: this.#address, runtime: this.#runtime.name, ready },
      "agent serving",
    );
    // Warm pools fill in the background, within the slots this agent has free (see #held).
    this.#runtime.startWarm?.({ freeSlots: () => Math.max(0, this.#opts.capacity - this.#held) })
      .catch((err) => this.#log.warn({ err }, "cannot start the warm pools; creates go cold"));
    this.#schedule(0);
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => this.#beat(), delayMs);
  }

  /** One registration or heartbeat round; failures are retried at the next beat. */
  async #beat(): Promise<void> {
    this.#sweepOrphans();
    try {
      const report = await this.report();
      // A registration made without the inventory is redone, in full, once the runtime can list.
      if (this.#registered && this.#partial && !report.inventoryUnknown) this.#registered = false;
      if (!this.#registered) {
        let res;
        try {
          res = await this.#registry().register(report, { metadata: this.#callMetadata });
        } catch (err) {
          // A saved credential the controller no longer knows: join again with the join token.
          if (isUnauthenticated(err) && this.#bearer === this.#credential && this.#opts.joinToken) {
            this.#useBearer(this.#opts.joinToken);
          }
          throw err;
        }
        if (res.heartbeatIntervalMs > 0) this.#heartbeatMs = res.heartbeatIntervalMs;
        if (res.credential !== "" && res.credential !== this.#credential) {
          await this.#saveCredential(res.credential);
        }
        this.#registered = true;
        this.#partial = report.inventoryUnknown;
        this.#deltas = res.deltaHeartbeats;
        this.#sendSpecs = new Set();
        this.#lastError = "";
        this.#log.info(
          {
            controller: this.#controllers[this.#current],
            inventoryUnknown: report.inventoryUnknown,
          },
          "registered with controller",
        );
      } else {
        let res;
        try {
          // Only what changes, and the specs asked for; an older controller takes full reports.
          const sent = this.#deltas ? deltaReport(report, this.#sendSpecs) : report;
          res = await this.#registry().heartbeat(sent, { metadata: this.#callMetadata });
        } catch (err) {
          if (isUnauthenticated(err)) this.#registered = false;
          throw err;
        }
        this.#lastError = "";
        this.#sendSpecs = new Set(res.sendSpecs);
        if (res.reregister) {
          this.#registered = false;
          this.#schedule(0);
          return;
        }
      }
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const moved = this.#failOver(err, msg);
      if (msg !== this.#lastError) {
        this.#log.warn(
          { controller: this.#controllers[this.#current], err: msg },
          "cannot reach controller; retrying",
        );
        this.#lastError = msg;
      }
      // Another controller is tried soon, as a failover lasts as long as the agent stays away:
      // 50 ms, doubling each time the whole list has failed in a row, up to 250 ms (an election
      // takes about a lease's TTL, 2 s), with jitter so that many agents do not move in step.
      this.#moves = moved ? this.#moves + 1 : 0;
      const round = Math.floor(this.#moves / this.#controllers.length);
      const backoff = Math.min(this.#heartbeatMs, 1_000);
      this.#schedule(
        moved ? Math.min(backoff, 250, 50 * 2 ** round) * (0.5 + Math.random() / 2) : backoff,
      );
      return;
    }
    this.#moves = 0;
    this.#schedule(this.#heartbeatMs);
  }

  /** The AgentRegistry client of the controller the agent talks to now. */
  #registry(): ServiceClient<typeof AgentRegistry.method> {
    const address = this.#controllers[this.#current];
    let channel = this.#channels.get(address);
    if (channel === undefined) {
      channel = new RpcChannel(address, { timeoutMs: 5_000, tls: this.#controllerTls() });
      this.#channels.set(address, channel);
    }
    return channel.client(AgentRegistry);
  }

  /**
   * After a failed call: a controller that answers UNAVAILABLE naming its
   * leader (`... leader is at HOST:PORT`, shared/DESIGN.md section 15) sends
   * the agent there; one that cannot be reached or does not answer in time, to
   * the next address. Either way the agent registers anew with the controller
   * it moves to. Returns whether it moved.
   */
  #failOver(err: unknown, message: string): boolean {
    // A controller that does not answer within the call's deadline (stopped, or cut off) is
    // as good as unreachable: staying with it would leave the agent with no controller at all.
    if (
      !(err instanceof RpcError) ||
      (err.code !== Code.UNAVAILABLE && err.code !== Code.DEADLINE_EXCEEDED)
    ) return false;
    const leader = /leader is at (\S+:\d+)/.exec(message)?.[1];
    let next: number;
    if (leader !== undefined && hostPortProblem(leader) === undefined) {
      next = this.#controllers.indexOf(leader);
      if (next < 0) next = this.#controllers.push(leader) - 1;
    } else {
      if (this.#controllers.length === 1) return false;
      next = (this.#current + 1) % this.#controllers.length;
    }
    if (next === this.#current) return false;
    this.#current = next;
    this.#registered = false;
    return true;
  }

  /** TLS to the controller whenever this agent has any TLS setting: a cluster speaks it on every hop. */
  #controllerTls(): { ca?: string } | undefined {
    const tls = this.#opts.tls;
    return tls === undefined || (tls.ca === undefined && tls.cert === undefined)
      ? undefined
      : { ca: tls.ca };
  }

  /**
   * Calls to the controller carry `bearer` from now on. It travels per call,
   * on the one channel: closing a channel to swap its metadata would send a
   * GOAWAY, which Deno's node:http2 can crash on (see proto/grpc.ts).
   */
  #useBearer(bearer: string): void {
    this.#bearer = bearer;
    this.#callMetadata = bearer === "" ? {} : { authorization: `Bearer ${bearer}` };
  }

  /** Keeps the controller's credential for calls both ways, and on disk for a restart. */
  async #saveCredential(credential: string): Promise<void> {
    this.#credential = credential;
    await Deno.writeTextFile(`${this.#credentialPath}.tmp`, `${credential}\n`, { mode: 0o600 });
    await Deno.chmod(`${this.#credentialPath}.tmp`, 0o600);
    await Deno.rename(`${this.#credentialPath}.tmp`, this.#credentialPath);
    this.#useBearer(credential);
  }

  /** Throws unless `headers` carry the controller's credential for this agent (its metrics port's debug endpoints). */
  admit(headers: Readonly<Record<string, string>>): void {
    this.#admit(headers);
  }

  /** Refuses a call that does not carry this agent's credential: only the controller has it. */
  #admit(metadata: Readonly<Record<string, string>>): void {
    if (this.#credential === undefined) {
      throw new UnavailableError(
        `Agent "${this.#opts.id}" has not registered with a controller yet`,
      );
    }
    const presented = metadata.authorization ?? "";
    const expected = `Bearer ${this.#credential}`;
    if (
      presented.length !== expected.length ||
      !timingSafeEqual(encoder.encode(presented), encoder.encode(expected))
    ) {
      throw new UnauthenticatedError("Calls to an agent must carry the controller's credential");
    }
  }

  #sweepOrphans(): void {
    const sweep = this.#runtime.removeOrphans;
    if (sweep === undefined || Date.now() < this.#nextOrphanSweep) return;
    this.#nextOrphanSweep = Date.now() + ORPHAN_SWEEP_MS;
    sweep.call(this.#runtime).then(
      (ids) =>
        ids.length > 0 && this.#log.warn({ ids }, "removed containers fsb cannot account for"),
      (err) => this.#log.warn({ err: String(err) }, "orphan sweep failed"),
    );
  }

  /**
   * The full report, as Register sends it: every sandbox's status with its
   * spec. A heartbeat to a controller that takes deltas sends its
   * `deltaReport` form.
   */
  async report(): Promise<AgentReport> {
    const [ready, images, sandboxes] = await Promise.all([
      this.#runtime.ready(),
      this.#runtime.images().catch(() => [] as string[]),
      this.#list().catch(() => undefined),
    ]);
    if (sandboxes !== undefined) this.#held = sandboxes.length;
    this.#runtimeReady = ready;
    return {
      $typeName: "fsb.agent.v1.AgentReport",
      agentId: this.#opts.id,
      address: this.#address,
      advertiseHost: this.#advertiseHost,
      pool: this.#opts.pool,
      namespace: this.#opts.namespace,
      capacity: this.#opts.capacity,
      allocated: sandboxes?.length ?? 0,
      images,
      sandboxes: sandboxes ?? [],
      beats: [],
      warm: this.#runtime.warmCounts?.() ?? {},
      inventoryUnknown: sandboxes === undefined,
      ready,
      runtime: this.#runtime.name,
    };
  }

  async #list(): Promise<SandboxStatus[]> {
    const list = await this.#runtime.list();
    const runtime = this.#runtime.sandboxRuntime;
    return list.map((s) => ({
      $typeName: "fsb.agent.v1.SandboxStatus",
      spec: s.spec,
      phase: s.phase,
      message: s.message,
      ip: s.ip ?? "",
      runtime,
    }));
  }

  async #create(spec: SandboxSpec | undefined, signal: AbortSignal) {
    const t0 = performance.now();
    if (spec === undefined) throw new InvalidArgumentError("spec", "is required");
    checkSandboxId("spec.sandbox_id", spec.sandboxId);
    if (this.#held >= MAX_AGENT_CAPACITY) {
      throw new RpcError(
        Code.RESOURCE_EXHAUSTED,
        `Agent "${this.#opts.id}" holds ${this.#held} sandboxes, the most an agent may hold`,
      );
    }
    const logPath = this.#logPath(spec.sandboxId);
    let result;
    try {
      result = await this.#runtime.create(spec, { logPath, signal });
    } catch (err) {
      if (!(err instanceof Error && "status" in err) && !(await this.#runtime.ready())) {
        throw new UnavailableError(
          `Runtime ${this.#runtime.name} on agent "${this.#opts.id}" is not ready: ${err}`,
        );
      }
      throw err;
    }
    this.#logCap.track(logPath);
    this.#held++;
    const stageMs: Record<string, number> = { ...result.stageMs, agent_total: ms(t0) };
    const path = result.path ?? "cold";
    for (const [stage, value] of Object.entries(stageMs)) {
      this.#stage.observe({ stage, path }, value / 1000);
    }
    if (this.#log.isLevelEnabled("timing")) {
      this.#log.timing({ sandbox: spec.sandboxId, ms: stageMs }, "agent create timing");
    }
    return {
      // The controller has the spec; echoing it back would only cost encoding on both ends.
      status: {
        phase: "Running",
        message: result.message ?? "",
        ip: result.ip ?? "",
        runtime: this.#runtime.sandboxRuntime,
      },
      stageMs,
      path,
    };
  }

  async *#profile(
    kind: string,
    seconds: number,
    signal: AbortSignal,
  ): AsyncGenerator<{ data: Uint8Array }> {
    const profile = this.#opts.profile;
    if (profile === undefined) {
      throw new RpcError(Code.UNIMPLEMENTED, `Agent "${this.#opts.id}" cannot take profiles`);
    }
    if ((kind !== "cpu" && kind !== "heap") || seconds < 0 || seconds > 300) {
      throw new InvalidArgumentError("kind", `must be cpu or heap with seconds up to 300`);
    }
    for await (const data of profile({ kind, seconds: seconds || 30, signal })) yield { data };
  }

  #logPath(id: string): string {
    return join(this.#opts.dataDir, "logs", `${id}.log`);
  }

  async #delete(id: string, graceMs: number): Promise<boolean> {
    checkSandboxId("sandbox_id", id);
    const existed = await this.#runtime.delete(id, graceMs);
    if (existed && this.#held > 0) this.#held--;
    // The runtime removed the log; this also removes what capping kept beside it.
    await this.#logCap.remove(this.#logPath(id)).catch(() => {});
    if (existed) this.#log.info({ sandbox: id }, "sandbox deleted");
    return existed;
  }

  async *#logs(
    id: string,
    follow: boolean,
    signal: AbortSignal,
  ): AsyncGenerator<{ data: Uint8Array }> {
    checkSandboxId("sandbox_id", id);
    for await (const data of this.#runtime.logs(id, { follow, signal })) yield { data };
  }

  /** Stops heartbeating and serving; sandboxes keep running. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#logCap.close();
    await this.#server.close(500);
    for (const channel of this.#channels.values()) channel.close();
    await this.#runtime.close();
  }
}
