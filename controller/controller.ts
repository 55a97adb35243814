/**
 * The controller: its public API over the sandbox state machine
 * (_sandboxes.ts), with the create path (_create_sandbox.ts), reconciliation
 * with agents (_reconcile.ts), the lifecycle loop (_lifecycle.ts),
 * write-behind persistence (_persistence.ts) and tombstones (_tombstones.ts)
 * each in their own file.
 *
 * @module
 */
import { clone } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { type AgentInfo, NotFoundError, type Registry } from "../registry/mod.ts";
import { type AgentReport, SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import type {
  CreateSandboxRequest,
  SandboxInfo,
  UpdateSandboxRequest,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcError } from "../proto/grpc.ts";
import type { Store } from "./store/mod.ts";
import type { ControllerMetrics } from "./metrics.ts";
import { type Principal, requireNamespace, type TokenAuth } from "./auth.ts";
import type { AgentClient } from "./_agent_channels.ts";
import { checkDnsLabel, checkMergedLabels, validateCreate, validateUpdate } from "./_validate.ts";
import { type Entry, SANDBOX_PREFIX, type SandboxRecord } from "./_entry.ts";
import { ms, Sandboxes } from "./_sandboxes.ts";
import { checkQuota, createSandbox } from "./_create_sandbox.ts";
import { type HeartbeatReply, Reconciler, type RegisterReply } from "./_reconcile.ts";
import { tick } from "./_lifecycle.ts";
import { followAcrossRestarts } from "./_follow_logs.ts";

export type { Phase, SandboxRecord } from "./_entry.ts";

/** A source of wall-clock time in milliseconds; tests inject their own. */
export interface Clock {
  now(): number;
}

/** Options for {@linkcode Controller}. */
export interface ControllerOptions {
  store: Store<SandboxRecord>;
  logger: Logger<"timing">;
  metrics: ControllerMetrics;
  clock?: Clock;
  /** Consistency mode for requests that leave it unset. */
  defaultMode?: "fast" | "strong";
  /** An agent silent this long is removed and its sandboxes handled as lost. Default 10 s. */
  agentTimeoutMs?: number;
  /** SIGTERM-to-SIGKILL grace for deletes. Default 10 s. */
  deleteGraceMs?: number;
  /** Deadline for an agent's create. Default 30 s. */
  agentCreateTimeoutMs?: number;
  /** Heartbeat interval told to agents. Default 2 s. */
  heartbeatIntervalMs?: number;
  /** Tokens and agent credentials; without it nothing is checked (in-process use). */
  auth?: TokenAuth;
  /** Dial agents over TLS, checking their certificates against `ca` (else the system's roots). */
  agentTls?: { ca?: string };
}

/** The call metadata that names the sandbox on the controller's exec and file calls to an agent. */
export const SANDBOX_ID_METADATA = "fsb-sandbox-id";

export type { AgentClient } from "./_agent_channels.ts";

/** Where exec and file calls for one sandbox go: see {@linkcode Controller.sandboxAgent}. */
export interface SandboxAgent {
  readonly client: AgentClient;
  readonly sandboxId: string;
  /** Metadata for each call to the agent, naming the sandbox. */
  readonly metadata: Readonly<Record<string, string>>;
}

/** The controller: owns the registry, the sandbox table and the agent channels. */
export class Controller {
  /** The state machine: the sandbox table, the registry and the transitions. */
  readonly #s: Sandboxes;
  readonly #reconciler: Reconciler;

  /** Creates a controller; call {@linkcode Controller.load} before serving. */
  constructor(opts: ControllerOptions) {
    this.#s = new Sandboxes(opts);
    this.#reconciler = new Reconciler(this.#s);
  }

  /** The registry, read-only for callers (metrics, tests). */
  get registry(): Pick<Registry, "getAllAgents" | "getAgentById" | "size"> {
    return this.#s.registry;
  }

  /** Loads persisted sandboxes; their agents restore the registry as they register. */
  load(): Promise<number> {
    return this.#s.load();
  }

  /**
   * Whether, (re)started on a store, it still waits for the reports of agents
   * that may hold sandboxes it has no record of (for readiness checks):
   * meanwhile calls about names it has not seen answer UNAVAILABLE.
   */
  get recovering(): boolean {
    return this.#s.recovering();
  }

  // ---------------------------------------------------------------- FastPath

  /**
   * CreateSandbox: idempotent by (namespace, name). When `opts.signal` aborts
   * (the caller's deadline passed, or it cancelled) before the create is
   * done, the create is undone and counted as failed; so is a done create of
   * a generated name, which the caller never learnt (shared/DESIGN.md
   * section 15).
   */
  async createSandbox(
    req: CreateSandboxRequest,
    caller?: Principal,
    opts: { signal?: AbortSignal } = {},
  ): Promise<SandboxInfo> {
    const t0 = performance.now();
    let mode: "fast" | "strong" = this.#s.defaultMode;
    let ok = false;
    let path = "none";
    try {
      const valid = validateCreate(req, {
        nowMs: this.#s.clock.now(),
        defaultMode: this.#s.defaultMode,
      });
      mode = valid.mode;
      if (caller !== undefined) requireNamespace(caller, valid.spec.namespace);
      checkQuota(this.#s, valid.spec);
      const info = await createSandbox(this.#s, valid.spec, {
        mode: valid.mode,
        call: { t0, signal: opts.signal, findable: req.name !== "" },
      });
      ok = true;
      path = info.path || "cold";
      return info;
    } finally {
      this.#s.metrics.createDuration.observe(
        { mode, success: ok ? "true" : "false", path },
        ms(t0) / 1000,
      );
    }
  }

  /** GetSandbox. */
  getSandbox(req: { name: string; namespace: string }, caller?: Principal): SandboxInfo {
    return this.#s.info(this.#s.mustGet(req, caller));
  }

  /** ListSandboxes, sorted by namespace then name. */
  listSandboxes(
    req: { namespace: string; allNamespaces: boolean },
    caller?: Principal,
  ): SandboxInfo[] {
    let prefix = SANDBOX_PREFIX;
    if (!req.allNamespaces) {
      const ns = req.namespace === "" ? "default" : req.namespace;
      checkDnsLabel("namespace", ns);
      if (caller !== undefined) requireNamespace(caller, ns);
      prefix = `${SANDBOX_PREFIX}${ns}/`;
    }
    // Until the agents have reported, sandboxes whose records never reached the store are missing.
    this.#s.requireRecovered("Cannot list sandboxes");
    // Every namespace means every namespace the caller may see.
    const only = caller === undefined || caller.admin ? undefined : caller.namespaces;
    const out: Entry[] = [];
    for (const entry of this.#s.entries.values()) {
      if (!entry.key.startsWith(prefix)) continue;
      if (only !== undefined && !only.has(entry.spec.namespace)) continue;
      out.push(entry);
    }
    out.sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    return out.map((e) => this.#s.info(e));
  }

  /** DeleteSandbox: stops and removes it, then frees its slot and ports. Returns its last state. */
  async deleteSandbox(
    req: { name: string; namespace: string },
    caller?: Principal,
  ): Promise<SandboxInfo> {
    for (;;) {
      const entry = this.#s.mustGet(req, caller);
      if (entry.busy) {
        await entry.busy.catch(() => {});
        continue;
      }
      return await this.#s.exclusive(entry, async () => {
        const info = this.#s.info(entry);
        // A sandbox on no agent (Lost, or not yet reported since a restart) may still run on one
        // that comes back: stop leaves a tombstone in the store, so that its report removes the
        // container rather than revive the record, even after a restart.
        await this.#s.stop(entry, "Terminating");
        this.#s.entries.delete(entry.key);
        this.#s.unindex(entry);
        // Durable before the reply: a delete must not come back as Lost after a restart.
        // If the write fails the caller hears so, and the write is retried in the background.
        await this.#s.persistence.persist(entry.key).catch((err: unknown) => {
          this.#s.markDirty(entry.key);
          throw err;
        });
        info.phase = "Terminating";
        return info;
      });
    }
  }

  /** UpdateSandbox: expiry, failure policy, labels; `reset` recreates it on a fresh placement. */
  async updateSandbox(req: UpdateSandboxRequest, caller?: Principal): Promise<SandboxInfo> {
    const valid = validateUpdate(req, { nowMs: this.#s.clock.now() });
    for (;;) {
      const entry = this.#s.mustGet(valid, caller);
      if (entry.busy) {
        await entry.busy.catch(() => {});
        continue;
      }
      checkMergedLabels(entry.spec.labels, valid.labels);
      // A copy: the change becomes live only once the store has it.
      const spec = clone(SandboxSpecSchema, entry.spec);
      spec.generation = entry.spec.generation + 1;
      if (valid.expireTime !== undefined) spec.expireTime = BigInt(valid.expireTime);
      if (valid.failurePolicy !== undefined) spec.failurePolicy = valid.failurePolicy;
      for (const [k, v] of Object.entries(valid.labels)) spec.labels[k] = v;
      if (!valid.reset) {
        return await this.#s.exclusive(entry, async () => {
          await this.#s.updateSpec(entry, spec);
          return this.#s.info(entry);
        });
      }
      return await this.#s.exclusive(entry, async () => {
        entry.spec = spec;
        await this.#s.recreate(entry, "reset");
        return this.#s.info(entry);
      });
    }
  }

  /**
   * StreamLogs: the sandbox's output through its agent. A followed stream
   * survives its agent restarting: it is opened again once the agent answers
   * and goes on after the bytes already sent.
   */
  async *streamLogs(
    req: { name: string; namespace: string; follow: boolean },
    signal: AbortSignal,
    caller?: Principal,
  ): AsyncGenerator<{ data: Uint8Array }> {
    const entry = this.#s.mustGet(req, caller);
    if (entry.busy) await entry.busy.catch(() => {});
    const agent = entry.placed ? this.#s.registry.getAgentById(entry.agentId) : undefined;
    if (agent === undefined) {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `Cannot stream logs of sandbox "${entry.spec.namespace}/${entry.spec.name}" as it is ${entry.phase} and on no agent`,
      );
    }
    yield* followAcrossRestarts({
      open: () => {
        // The agent of the sandbox as the registry knows it now (it may have registered anew).
        const now = entry.placed ? this.#s.registry.getAgentById(entry.agentId) : undefined;
        if (now === undefined || this.#s.entries.get(entry.key) !== entry) return undefined;
        return this.#s.client(now).streamLogs(
          { sandboxId: entry.spec.sandboxId, follow: req.follow },
          { signal },
        );
      },
      follow: req.follow,
      signal,
      giveUpAfterMs: this.#s.agentTimeoutMs,
    });
  }

  /**
   * Where to reach sandbox `req` for exec and file calls (shared/DESIGN.md
   * section 14): its agent's client, its id, and call options carrying that
   * id as `fsb-sandbox-id`. `running` demands a Running sandbox (exec and
   * files), else any sandbox placed on an agent (Wait, ExecList, ...);
   * FAILED_PRECONDITION names the phase otherwise, with `action` as in
   * `Cannot exec in sandbox "ns/x" as it is Exited`.
   */
  async sandboxAgent(
    req: { name: string; namespace: string },
    opts: { caller?: Principal; action: string; running: boolean },
  ): Promise<SandboxAgent> {
    const entry = this.#s.mustGet(req, opts.caller);
    if (entry.busy) await entry.busy.catch(() => {});
    const agent = entry.placed ? this.#s.registry.getAgentById(entry.agentId) : undefined;
    const where = `sandbox "${entry.spec.namespace}/${entry.spec.name}"`;
    if (agent === undefined || (opts.running && entry.phase !== "Running")) {
      const on = agent === undefined && entry.phase === "Running" ? " on no agent" : "";
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `Cannot ${opts.action} ${where} as it is ${entry.phase}${on}`,
      );
    }
    return {
      client: this.#s.client(agent),
      sandboxId: entry.spec.sandboxId,
      metadata: { [SANDBOX_ID_METADATA]: entry.spec.sandboxId },
    };
  }

  /** A profile of agent `agentId`, streamed through the controller. */
  async *profileAgent(
    agentId: string,
    opts: { kind: "cpu" | "heap"; seconds: number },
    signal: AbortSignal,
  ): AsyncGenerator<{ data: Uint8Array }> {
    const agent = this.#s.registry.getAgentById(agentId);
    if (agent === undefined) throw new NotFoundError(`Agent "${agentId}" not found`);
    const stream = this.#s.client(agent).profile({ kind: opts.kind, seconds: opts.seconds }, {
      signal,
      timeoutMs: (opts.seconds + 60) * 1000,
    });
    for await (const chunk of stream) yield { data: chunk.data };
  }

  // ------------------------------------------------------------ agents

  /**
   * Register: an agent (re)starting, or one the controller forgot. Its
   * registry slots are rebuilt from scratch from what it reports plus creates
   * in flight to it; sandboxes it no longer has are lost.
   */
  register(
    report: AgentReport,
    metadata?: Readonly<Record<string, string>>,
  ): Promise<RegisterReply> {
    return this.#reconciler.register(report, metadata);
  }

  /**
   * Heartbeat: liveness, capacity and images; phase changes, sandboxes to
   * adopt, and the ids whose specs the controller lacks.
   */
  heartbeat(
    report: AgentReport,
    metadata?: Readonly<Record<string, string>>,
  ): HeartbeatReply {
    return this.#reconciler.heartbeat(report, metadata);
  }

  // ------------------------------------------------------------ lifecycle

  /**
   * One pass of the lifecycle loop: stale agents, lost sandboxes to recreate,
   * expiry, and records whose agent never came back after a restart.
   */
  tick(): Promise<void> {
    return tick(this.#s);
  }

  /** Waits until every pending store write (records and tombstones) is done. */
  async flush(): Promise<void> {
    await this.#s.persistence.flush();
    await this.#s.tombstones.flush();
  }

  /** Agent totals for the /metrics gauges. */
  agentTotals(): { ready: number; total: number; capacity: number; allocated: number } {
    let ready = 0, capacity = 0, allocated = 0;
    const all = this.#s.registry.getAllAgents();
    for (const a of all) {
      if (a.ready) ready++;
      capacity += a.capacity;
      allocated += a.allocated;
    }
    return { ready, total: all.length, capacity, allocated };
  }

  /** Sandbox counts by phase for the /metrics gauges. */
  sandboxesByPhase(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const e of this.#s.entries.values()) out[e.phase] = (out[e.phase] ?? 0) + 1;
    return out;
  }

  /**
   * A read-only snapshot for the dashboard: the agents, sandbox counts by
   * namespace then phase, and the create-latency histogram as prom-client
   * reports it. Agents and counts are read in one turn, so they agree.
   */
  async dashboard(): Promise<{
    now: number;
    agents: AgentInfo[];
    sandboxes: Record<string, Record<string, number>>;
    createDuration: Awaited<ReturnType<ControllerMetrics["createDuration"]["get"]>>;
  }> {
    const createDuration = await this.#s.metrics.createDuration.get();
    const sandboxes: Record<string, Record<string, number>> = {};
    for (const e of this.#s.entries.values()) {
      const byPhase = sandboxes[e.spec.namespace] ??= {};
      byPhase[e.phase] = (byPhase[e.phase] ?? 0) + 1;
    }
    return {
      now: this.#s.clock.now(),
      agents: this.#s.registry.getAllAgents(),
      sandboxes,
      createDuration,
    };
  }

  /** Flushes the store and closes agent channels. */
  async close(): Promise<void> {
    await this.flush();
    this.#s.closed = true;
    this.#s.persistence.close();
    this.#s.tombstones.close();
    this.#s.channels.close();
  }
}
