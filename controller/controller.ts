/**
 * The controller's state machine: sandboxes by name, their placement in the
 * registry, persistence, agent reconciliation and the lifecycle loop.
 *
 * @module
 */
import { clone, create, fromJson, type JsonValue, toBinary, toJson } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import {
  type AgentInfo,
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  Registry,
  UnauthenticatedError,
  UnavailableError,
} from "../registry/mod.ts";
import {
  type AgentReport,
  type SandboxSpec,
  SandboxSpecSchema,
  type SandboxStatus,
} from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import {
  type CreateSandboxRequest,
  FailurePolicy,
  type SandboxInfo,
  SandboxInfoSchema,
  type UpdateSandboxRequest,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcError } from "../proto/grpc.ts";
import { hostPortProblem } from "../proto/host_port.ts";
import type { Store } from "./store/mod.ts";
import type { ControllerMetrics } from "./metrics.ts";
import { type AuthRecord, bearerOf, type Principal, requireNamespace, TokenAuth } from "./auth.ts";
import { AgentChannels, type AgentClient } from "./_agent_channels.ts";
import {
  checkDnsLabel,
  checkMergedLabels,
  MAX_SPEC_BYTES,
  newSandboxId,
  sameRequest,
  validateCreate,
  validateName,
  validateUpdate,
} from "./_validate.ts";

/** Sandbox phases (shared/DESIGN.md section 5). */
export type Phase =
  | "Pending"
  | "Creating"
  | "Running"
  | "Exited"
  | "Failed"
  | "Terminating"
  | "Expired"
  | "Lost";

/** What the store keeps per sandbox, as JSON. */
export interface SandboxRecord {
  /** The spec in protobuf JSON form. */
  spec: JsonValue;
  phase: Phase;
  agentId: string;
  endpoints: string[];
  message: string;
  /** The sandbox's address on its agent's bridge ("" or absent without one). */
  ip?: string;
  /** What ran it: runc, runsc or process (absent in records of older versions). */
  runtime?: string;
}

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

interface Entry {
  readonly key: string;
  spec: SandboxSpec;
  phase: Phase;
  /** The agent it runs on (or last ran on), "" when never placed. */
  agentId: string;
  endpoints: string[];
  message: string;
  ip: string;
  runtime: string;
  /** Holds a registry slot on agentId; such entries are in #byAgent. */
  placed: boolean;
  /** A create, delete or reset in progress; others wait for it. */
  busy: Promise<void> | undefined;
  /** Clock time before which a failed auto-recreate is not tried again. */
  retryAt: number;
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

const TOMBSTONE_LIMIT = 10_000;
/** How long a failed auto-recreate waits before the next try. */
const RECREATE_BACKOFF_MS = 5_000;
const SANDBOX_PREFIX = "sandboxes/";

function keyOf(namespace: string, name: string): string {
  return `${SANDBOX_PREFIX}${namespace}/${name}`;
}

function failurePolicyEnum(name: string): FailurePolicy {
  return name === "AUTO_RECREATE" ? FailurePolicy.AUTO_RECREATE : FailurePolicy.MANUAL;
}

/** What a create call brings besides its spec. */
interface CreateCall {
  /** When the call started (performance.now()). */
  readonly t0: number;
  /** Aborts when the caller has gone. */
  readonly signal: AbortSignal | undefined;
  /** Whether the caller named the sandbox, and so can find it after a reply it never saw. */
  readonly findable: boolean;
}

/** Throws, when the caller of a create has gone, the error that undoes the create. */
function checkCaller(spec: SandboxSpec, signal: AbortSignal | undefined): void {
  if (signal === undefined || !signal.aborted) return;
  const reason: unknown = signal.reason;
  throw new RpcError(
    reason instanceof RpcError ? reason.code : Code.CANCELLED,
    `Cannot create sandbox "${spec.namespace}/${spec.name}" as its caller has gone (${
      reason instanceof Error ? reason.message : String(reason)
    }); it was undone`,
  );
}

function ms(start: number): number {
  return performance.now() - start;
}

/** The controller: owns the registry, the sandbox table and the agent channels. */
export class Controller {
  readonly #registry = new Registry();
  readonly #entries = new Map<string, Entry>();
  readonly #byAgent = new Map<string, Set<Entry>>();
  readonly #channels: AgentChannels;
  /** Ids of sandboxes the controller gave up on; an agent reporting one is told to delete it. */
  readonly #tombstones = new Set<string>();
  /** Keys whose latest state is not yet written (write-behind). */
  readonly #dirty = new Set<string>();
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #retryTimers = new Set<ReturnType<typeof setTimeout>>();
  /** The last store write queued per key: writes of one key never overtake each other. */
  readonly #writes = new Map<string, Promise<void>>();
  readonly #store: Store<SandboxRecord>;
  readonly #log: Logger<"timing">;
  readonly #metrics: ControllerMetrics;
  readonly #clock: Clock;
  readonly #defaultMode: "fast" | "strong";
  readonly #agentTimeoutMs: number;
  readonly #graceMs: number;
  readonly #createTimeoutMs: number;
  readonly #heartbeatMs: number;
  readonly #auth: TokenAuth;
  /** Agent ids being issued a credential now: one join per id at a time. */
  readonly #joining = new Set<string>();
  readonly #startedAt: number;
  #closed = false;

  /** Creates a controller; call {@linkcode Controller.load} before serving. */
  constructor(opts: ControllerOptions) {
    this.#store = opts.store;
    this.#log = opts.logger;
    this.#metrics = opts.metrics;
    this.#clock = opts.clock ?? Date;
    this.#defaultMode = opts.defaultMode ?? "fast";
    this.#agentTimeoutMs = opts.agentTimeoutMs ?? 10_000;
    this.#graceMs = opts.deleteGraceMs ?? 10_000;
    this.#createTimeoutMs = opts.agentCreateTimeoutMs ?? 30_000;
    this.#heartbeatMs = opts.heartbeatIntervalMs ?? 2_000;
    this.#channels = new AgentChannels({ tls: opts.agentTls });
    this.#auth = opts.auth ??
      new TokenAuth({ store: opts.store as unknown as Store<AuthRecord>, enabled: false });
    this.#startedAt = this.#clock.now();
  }

  /** The registry, read-only for callers (metrics, tests). */
  get registry(): Pick<Registry, "getAllAgents" | "getAgentById" | "size"> {
    return this.#registry;
  }

  /** Loads persisted sandboxes; their agents restore the registry as they register. */
  async load(): Promise<number> {
    const entries = await this.#store.list(SANDBOX_PREFIX);
    for (const { key, value } of entries) {
      let spec: SandboxSpec;
      try {
        spec = fromJson(SandboxSpecSchema, value.spec);
      } catch (err) {
        this.#log.warn({ key, err }, "skipping unreadable sandbox record");
        continue;
      }
      const entry: Entry = {
        key,
        spec,
        phase: value.phase,
        agentId: value.agentId,
        endpoints: value.endpoints,
        message: value.message,
        ip: value.ip ?? "",
        runtime: value.runtime ?? "",
        placed: false,
        busy: undefined,
        retryAt: 0,
      };
      this.#entries.set(key, entry);
      if (entry.agentId !== "" && occupiesSlot(entry.phase)) this.#index(entry);
    }
    this.#log.info({ sandboxes: this.#entries.size }, "loaded sandboxes from the store");
    return this.#entries.size;
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
    let mode: "fast" | "strong" = this.#defaultMode;
    let ok = false;
    try {
      const valid = validateCreate(req, {
        nowMs: this.#clock.now(),
        defaultMode: this.#defaultMode,
      });
      mode = valid.mode;
      if (caller !== undefined) requireNamespace(caller, valid.spec.namespace);
      this.#checkQuota(valid.spec);
      const info = await this.#create(valid.spec, valid.mode, {
        t0,
        signal: opts.signal,
        findable: req.name !== "",
      });
      ok = true;
      return info;
    } finally {
      this.#metrics.createDuration.observe({ mode, success: ok ? "true" : "false" }, ms(t0) / 1000);
    }
  }

  async #create(
    spec: SandboxSpec,
    mode: "fast" | "strong",
    call: CreateCall,
  ): Promise<SandboxInfo> {
    const key = keyOf(spec.namespace, spec.name);
    for (;;) {
      const existing = this.#entries.get(key);
      if (existing === undefined) break;
      if (existing.busy) {
        await existing.busy.catch(() => {});
        checkCaller(spec, call.signal);
        continue;
      }
      if (sameRequest(existing.spec, spec)) {
        // An idempotent repeat answers for a sandbox that is there; these have no container.
        if (existing.phase === "Lost" || existing.phase === "Expired") {
          throw new FailedPreconditionError(
            `Cannot create sandbox "${spec.namespace}/${spec.name}" as it exists and is ${existing.phase}; delete it first`,
          );
        }
        return this.#info(existing);
      }
      throw new AlreadyExistsError(
        `Cannot create sandbox "${spec.namespace}/${spec.name}" as one with that name and a different spec exists`,
      );
    }
    const entry: Entry = {
      key,
      spec,
      phase: mode === "strong" ? "Pending" : "Creating",
      agentId: "",
      endpoints: [],
      message: "",
      ip: "",
      runtime: "",
      placed: false,
      busy: undefined,
      retryAt: 0,
    };
    this.#entries.set(key, entry);
    // Made busy before the first await, so a concurrent create of the name waits for this one.
    return await this.#exclusive(entry, () => this.#createEntry(entry, mode, call));
  }

  async #createEntry(
    entry: Entry,
    mode: "fast" | "strong",
    call: CreateCall,
  ): Promise<SandboxInfo> {
    const key = entry.key;
    const t0 = call.t0;
    let persisted = false;
    try {
      checkCaller(entry.spec, call.signal);
      if (mode === "strong") {
        await this.#persist(key);
        persisted = true;
      }
      checkCaller(entry.spec, call.signal);
      const stages = await this.#place(entry, call.signal);
      if (mode === "strong") {
        const tStore = performance.now();
        await this.#persist(key);
        stages.store = ms(tStore);
      }
      // Done, but a caller that has gone cannot find a name it never learnt: undone below.
      if (!call.findable) checkCaller(entry.spec, call.signal);
      if (mode === "fast") this.#markDirty(key);
      for (const [stage, value] of Object.entries(stages)) {
        this.#metrics.createStage.observe({ stage }, value / 1000);
      }
      if (this.#log.isLevelEnabled("timing")) {
        stages.total = ms(t0);
        this.#log.timing({ sandbox: key, agent: entry.agentId, mode, ms: stages }, "create timing");
      }
      return this.#info(entry);
    } catch (err) {
      if (entry.placed) {
        // Placed but not acknowledged (the Running write failed): undo the placement too.
        const agentId = entry.agentId;
        this.#unplace(entry);
        this.#forget(agentId, entry.spec.sandboxId);
      }
      this.#entries.delete(key);
      if (persisted) {
        await this.#persist(key).catch((e: unknown) => {
          this.#log.error({ err: e, key }, "store delete failed; will retry");
          this.#markDirty(key);
        });
      }
      throw err;
    }
  }

  /**
   * Allocates an agent, asks it to create the sandbox and marks the entry
   * Running. On failure nothing stays reserved and the agent is told to
   * remove whatever it may have made.
   */
  async #place(entry: Entry, signal?: AbortSignal): Promise<Record<string, number>> {
    const spec = entry.spec;
    const tAlloc = performance.now();
    const agent = this.#registry.allocate({
      pool: spec.pool,
      namespace: spec.namespace,
      image: spec.image,
      ports: spec.exposedPorts,
    });
    const allocateMs = ms(tAlloc);
    entry.agentId = agent.id;
    entry.placed = true;
    this.#index(entry);
    if (entry.phase !== "Pending") entry.phase = "Creating";
    const tRpc = performance.now();
    try {
      const client = this.#client(agent);
      // The caller's signal aborts the agent's create, and its runtime undoes what it did.
      const res = await client.createSandbox({ spec }, {
        timeoutMs: this.#createTimeoutMs,
        signal,
      });
      const stages: Record<string, number> = { allocate: allocateMs, agent_rpc: ms(tRpc) };
      for (const [stage, value] of Object.entries(res.stageMs)) stages[stage] = value;
      entry.phase = "Running";
      entry.message = res.status?.message ?? "";
      entry.ip = res.status?.ip ?? "";
      entry.runtime = res.status?.runtime ?? "";
      entry.endpoints = spec.exposedPorts.map((p) => `${agent.advertiseHost}:${p}`);
      return stages;
    } catch (err) {
      this.#unplace(entry);
      this.#forget(agent.id, spec.sandboxId);
      checkCaller(spec, signal);
      if (
        err instanceof RpcError &&
        (err.code === Code.UNAVAILABLE || err.code === Code.DEADLINE_EXCEEDED)
      ) {
        throw new RpcError(
          err.code,
          `Cannot create sandbox "${spec.namespace}/${spec.name}" on agent "${agent.id}": ${err.message}`,
        );
      }
      throw err;
    }
  }

  /**
   * Throws RESOURCE_EXHAUSTED when the spec's namespace has a quota and as
   * many sandboxes as it allows (an idempotent repeat of an existing name
   * passes). Counting walks the sandboxes, so only namespaces with a quota pay.
   */
  #checkQuota(spec: SandboxSpec): void {
    const quota = this.#auth.quota(spec.namespace);
    if (quota === undefined || this.#entries.has(keyOf(spec.namespace, spec.name))) return;
    const prefix = `${SANDBOX_PREFIX}${spec.namespace}/`;
    let count = 0;
    for (const entry of this.#entries.values()) {
      if (entry.key.startsWith(prefix) && entry.phase !== "Expired") count++;
    }
    if (count >= quota) {
      throw new RpcError(
        Code.RESOURCE_EXHAUSTED,
        `Cannot create sandbox "${spec.namespace}/${spec.name}" as namespace "${spec.namespace}" has reached its quota of ${quota} sandboxes`,
      );
    }
  }

  /** GetSandbox. */
  getSandbox(req: { name: string; namespace: string }, caller?: Principal): SandboxInfo {
    return this.#info(this.#mustGet(req, caller));
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
    // Every namespace means every namespace the caller may see.
    const only = caller === undefined || caller.admin ? undefined : caller.namespaces;
    const out: Entry[] = [];
    for (const entry of this.#entries.values()) {
      if (!entry.key.startsWith(prefix)) continue;
      if (only !== undefined && !only.has(entry.spec.namespace)) continue;
      out.push(entry);
    }
    out.sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    return out.map((e) => this.#info(e));
  }

  /** DeleteSandbox: stops and removes it, then frees its slot and ports. Returns its last state. */
  async deleteSandbox(
    req: { name: string; namespace: string },
    caller?: Principal,
  ): Promise<SandboxInfo> {
    for (;;) {
      const entry = this.#mustGet(req, caller);
      if (entry.busy) {
        await entry.busy.catch(() => {});
        continue;
      }
      return await this.#exclusive(entry, async () => {
        const info = this.#info(entry);
        await this.#stop(entry, "Terminating");
        // A sandbox on no agent (Lost, or not yet reported since a restart) may still run on one
        // that comes back: its report must then remove the container, not revive the record.
        if (entry.agentId !== "") this.#tombstone(entry.spec.sandboxId);
        this.#entries.delete(entry.key);
        this.#unindex(entry);
        // Durable before the reply: a delete must not come back as Lost after a restart.
        // If the write fails the caller hears so, and the write is retried in the background.
        await this.#persist(entry.key).catch((err: unknown) => {
          this.#markDirty(entry.key);
          throw err;
        });
        info.phase = "Terminating";
        return info;
      });
    }
  }

  /** UpdateSandbox: expiry, failure policy, labels; `reset` recreates it on a fresh placement. */
  async updateSandbox(req: UpdateSandboxRequest, caller?: Principal): Promise<SandboxInfo> {
    const valid = validateUpdate(req, { nowMs: this.#clock.now() });
    for (;;) {
      const entry = this.#mustGet(valid, caller);
      if (entry.busy) {
        await entry.busy.catch(() => {});
        continue;
      }
      checkMergedLabels(entry.spec.labels, valid.labels);
      // A copy: the change becomes live only once the store has it.
      const spec = clone(SandboxSpecSchema, entry.spec);
      if (valid.expireTime !== undefined) spec.expireTime = BigInt(valid.expireTime);
      if (valid.failurePolicy !== undefined) spec.failurePolicy = valid.failurePolicy;
      for (const [k, v] of Object.entries(valid.labels)) spec.labels[k] = v;
      if (!valid.reset) {
        return await this.#exclusive(entry, async () => {
          await this.#writeSpec(entry, spec);
          return this.#info(entry);
        });
      }
      return await this.#exclusive(entry, async () => {
        entry.spec = spec;
        await this.#recreate(entry, "reset");
        return this.#info(entry);
      });
    }
  }

  /** StreamLogs: the sandbox's output through its agent. */
  async *streamLogs(
    req: { name: string; namespace: string; follow: boolean },
    signal: AbortSignal,
    caller?: Principal,
  ): AsyncGenerator<{ data: Uint8Array }> {
    const entry = this.#mustGet(req, caller);
    if (entry.busy) await entry.busy.catch(() => {});
    const agent = entry.placed ? this.#registry.getAgentById(entry.agentId) : undefined;
    if (agent === undefined) {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `Cannot stream logs of sandbox "${entry.spec.namespace}/${entry.spec.name}" as it is ${entry.phase} and on no agent`,
      );
    }
    const stream = this.#client(agent).streamLogs(
      { sandboxId: entry.spec.sandboxId, follow: req.follow },
      { signal },
    );
    for await (const chunk of stream) yield { data: chunk.data };
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
    const entry = this.#mustGet(req, opts.caller);
    if (entry.busy) await entry.busy.catch(() => {});
    const agent = entry.placed ? this.#registry.getAgentById(entry.agentId) : undefined;
    const where = `sandbox "${entry.spec.namespace}/${entry.spec.name}"`;
    if (agent === undefined || (opts.running && entry.phase !== "Running")) {
      const on = agent === undefined && entry.phase === "Running" ? " on no agent" : "";
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `Cannot ${opts.action} ${where} as it is ${entry.phase}${on}`,
      );
    }
    return {
      client: this.#client(agent),
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
    const agent = this.#registry.getAgentById(agentId);
    if (agent === undefined) throw new NotFoundError(`Agent "${agentId}" not found`);
    const stream = this.#client(agent).profile({ kind: opts.kind, seconds: opts.seconds }, {
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
  async register(
    report: AgentReport,
    metadata?: Readonly<Record<string, string>>,
  ): Promise<{ heartbeatIntervalMs: number; credential: string }> {
    const credential = await this.#admitAgent(report.agentId, metadata);
    return { heartbeatIntervalMs: this.#registerNow(report), credential };
  }

  /**
   * The credential agent `id` is to use: the one it presents, if it is its
   * own; else, for a caller with the join token, a new one, unless a live
   * agent already holds the id (nobody may take over a live agent). Calls
   * made in process (no metadata) are trusted.
   */
  async #admitAgent(
    id: string,
    metadata: Readonly<Record<string, string>> | undefined,
  ): Promise<string> {
    if (id === "") throw new InvalidArgumentError("agent_id", "is required");
    const presented = metadata === undefined ? undefined : bearerOf(metadata);
    if (this.#auth.isAgentCredential(id, presented)) return presented!;
    const known = this.#auth.agentCredential(id);
    if (metadata === undefined || !this.#auth.enabled) {
      return known ?? await this.#auth.issueAgentCredential(id);
    }
    if (!this.#auth.isJoinToken(presented)) {
      throw new UnauthenticatedError(
        `Cannot register agent "${id}": it needs the cluster's join token (--join-token-file) or its own credential`,
      );
    }
    // An id with a credential is given a new one only once its agent is surely gone: not
    // while it is live, nor while a restarted controller still waits for agents to report.
    const recovering = this.#clock.now() - this.#startedAt < this.#agentTimeoutMs;
    if (
      this.#joining.has(id) ||
      (known !== undefined && (recovering || this.#registry.getAgentById(id) !== undefined))
    ) {
      throw new PermissionDeniedError(
        `Cannot register agent "${id}" as another agent holds that id (a restarted agent presents its saved credential)`,
      );
    }
    this.#joining.add(id);
    try {
      return await this.#auth.issueAgentCredential(id);
    } finally {
      this.#joining.delete(id);
    }
  }

  /** The synchronous part of Register; resolves to the heartbeat interval. */
  #registerNow(report: AgentReport): number {
    // The channel to the agent stays unless its address or credential changed (#upsertAgent):
    // dropping it would cut off creates, deletes and log streams in flight on it.
    const agent = this.#upsertAgent(report, true);
    const reported = new Map<string, SandboxStatus>();
    for (const s of report.sandboxes) if (s.spec) reported.set(s.spec.sandboxId, s);
    // The registry forgot this agent's slots in #upsertAgent; every entry earns its slot back below.
    const mine = [...(this.#byAgent.get(agent.id) ?? [])];
    if (report.inventoryUnknown) {
      // The agent cannot list its sandboxes right now: keep what the controller placed there and
      // judge nothing lost; the agent registers again once it can list.
      for (const entry of mine) {
        this.#registry.restore(agent.id, entry.spec.exposedPorts);
        entry.placed = true;
      }
      this.#log.warn({ agent: agent.id }, "agent registered without its inventory");
      return this.#heartbeatMs;
    }
    for (const entry of mine) entry.placed = false;
    for (const entry of mine) {
      const status = reported.get(entry.spec.sandboxId);
      if (status !== undefined) {
        reported.delete(entry.spec.sandboxId);
        this.#registry.restore(agent.id, entry.spec.exposedPorts);
        entry.placed = true;
        this.#applyStatus(entry, status);
      } else if (entry.busy && (entry.phase === "Creating" || entry.phase === "Pending")) {
        this.#registry.restore(agent.id, entry.spec.exposedPorts);
        entry.placed = true;
      } else if (entry.phase !== "Terminating") {
        this.#lose(entry, `agent "${agent.id}" re-registered without it`);
      }
    }
    for (const status of reported.values()) this.#foreign(agent, status);
    this.#log.info(
      {
        agent: agent.id,
        address: agent.address,
        sandboxes: report.sandboxes.length,
        ready: agent.ready,
      },
      "agent registered",
    );
    return this.#heartbeatMs;
  }

  /** Heartbeat: liveness, capacity and images; phase changes and sandboxes to adopt. */
  heartbeat(
    report: AgentReport,
    metadata?: Readonly<Record<string, string>>,
  ): { reregister: boolean } {
    if (
      metadata !== undefined && this.#auth.enabled &&
      !this.#auth.isAgentCredential(report.agentId, bearerOf(metadata))
    ) {
      throw new UnauthenticatedError(
        `Heartbeat of agent "${report.agentId}" carries no valid credential: register again`,
      );
    }
    if (this.#registry.getAgentById(report.agentId) === undefined) return { reregister: true };
    const agent = this.#upsertAgent(report, false);
    for (const status of report.sandboxes) {
      const spec = status.spec;
      if (spec === undefined) continue;
      const entry = this.#entries.get(keyOf(spec.namespace, spec.name));
      if (
        entry !== undefined && entry.spec.sandboxId === spec.sandboxId &&
        entry.agentId === agent.id && entry.placed
      ) {
        if (!entry.busy) this.#applyStatus(entry, status);
      } else {
        this.#foreign(agent, status);
      }
    }
    return { reregister: false };
  }

  #upsertAgent(report: AgentReport, fresh: boolean): AgentInfo {
    if (report.agentId === "") throw new InvalidArgumentError("agent_id", "is required");
    if (report.address === "") throw new InvalidArgumentError("address", "is required");
    const problem = hostPortProblem(report.address);
    if (problem !== undefined) throw new InvalidArgumentError("address", problem);
    const reg = {
      id: report.agentId,
      address: report.address,
      // The host as endpoints spell it: an IPv6 one keeps its brackets.
      advertiseHost: report.advertiseHost ||
        report.address.slice(0, report.address.lastIndexOf(":")),
      pool: report.pool,
      namespace: report.namespace,
      capacity: report.capacity,
      images: report.images,
      ready: report.ready,
    };
    if (fresh) this.#registry.remove(report.agentId);
    const agent = this.#registry.registerOrUpdate(reg, this.#clock.now());
    this.#channels.refresh(agent.id, this.#target(agent));
    return agent;
  }

  /** Takes an agent's view of a sandbox the controller has it placed on. */
  #applyStatus(entry: Entry, status: SandboxStatus): void {
    const phase = status.phase as Phase;
    if (
      phase !== entry.phase && (phase === "Running" || phase === "Exited" || phase === "Failed")
    ) {
      entry.phase = phase;
      entry.message = status.message;
      this.#markDirty(entry.key);
    }
    if (status.ip !== entry.ip || (status.runtime !== "" && status.runtime !== entry.runtime)) {
      entry.ip = status.ip;
      if (status.runtime !== "") entry.runtime = status.runtime;
      this.#markDirty(entry.key);
    }
  }

  /** A sandbox an agent reports that is not (or no longer) placed there. */
  #foreign(agent: AgentInfo, status: SandboxStatus): void {
    const spec = status.spec!;
    const id = spec.sandboxId;
    if (this.#tombstones.has(id)) {
      this.#forget(agent.id, id);
      return;
    }
    const why = this.#unadoptable(agent, spec);
    if (why !== undefined) {
      this.#log.warn({ agent: agent.id, id, why }, "removing a sandbox an agent may not hold");
      this.#forget(agent.id, id);
      return;
    }
    const key = keyOf(spec.namespace, spec.name);
    const entry = this.#entries.get(key);
    if (entry !== undefined && entry.busy) return;
    // Another sandbox under the name: a leftover (e.g. of a reset) unless the name's own agent
    // reports it (an acknowledged reset that never reached the store); another agent's report
    // never replaces a sandbox.
    if (
      entry !== undefined && entry.spec.sandboxId !== id &&
      (entry.placed || entry.agentId !== agent.id)
    ) {
      this.#log.warn(
        { agent: agent.id, sandbox: key, id },
        "removing a superseded sandbox from its agent",
      );
      this.#forget(agent.id, id);
      return;
    }
    // Adopt: a create acknowledged before the store had it, or a lost sandbox coming back.
    const adopted: Entry = entry ?? {
      key,
      spec,
      phase: "Running",
      agentId: agent.id,
      endpoints: [],
      message: "",
      ip: "",
      runtime: "",
      placed: false,
      busy: undefined,
      retryAt: 0,
    };
    if (entry !== undefined) {
      // Still placed elsewhere (an agent that came back under a new id): free that slot first.
      this.#unplace(entry);
      // The same sandbox coming back keeps the controller's spec, which has any updates since.
      if (entry.spec.sandboxId !== id) entry.spec = spec;
    }
    adopted.agentId = agent.id;
    adopted.placed = true;
    adopted.endpoints = spec.exposedPorts.map((p) => `${agent.advertiseHost}:${p}`);
    adopted.phase = (status.phase as Phase) || "Running";
    adopted.message = status.message;
    adopted.ip = status.ip;
    adopted.runtime = status.runtime;
    this.#entries.set(key, adopted);
    this.#index(adopted);
    this.#registry.restore(agent.id, spec.exposedPorts);
    this.#markDirty(key);
    this.#log.info({ agent: agent.id, sandbox: key, id }, "adopted sandbox reported by agent");
  }

  /**
   * Why an agent's report of `spec` cannot be taken, or undefined when it
   * can: an agent holds only sandboxes of its own pool and namespace, with
   * specs a client could have sent. An agent's word is not a client's.
   */
  #unadoptable(agent: AgentInfo, spec: SandboxSpec): string | undefined {
    if (spec.pool !== agent.pool || spec.namespace !== agent.namespace) {
      return `its pool and namespace ${spec.pool}/${spec.namespace} are not the agent's`;
    }
    try {
      checkDnsLabel("name", spec.name);
      if (!/^[0-9a-f]{32}$/.test(spec.sandboxId)) return "its id is not 32 hex characters";
      if (toBinary(SandboxSpecSchema, spec).byteLength > MAX_SPEC_BYTES) {
        return "its spec is larger than any a client may send";
      }
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
    return undefined;
  }

  // ------------------------------------------------------------ lifecycle

  /**
   * One pass of the lifecycle loop: stale agents, lost sandboxes to recreate,
   * expiry, and records whose agent never came back after a restart.
   */
  async tick(): Promise<void> {
    const now = this.#clock.now();
    for (const agent of this.#registry.cleanupStaleAgents(now, this.#agentTimeoutMs)) {
      this.#log.warn({ agent: agent.id }, "agent missed its heartbeats; removing it");
      this.#channels.drop(agent.id);
      for (const entry of [...(this.#byAgent.get(agent.id) ?? [])]) {
        if (!entry.busy) this.#lose(entry, `agent "${agent.id}" stopped sending heartbeats`);
      }
    }
    const recovering = now - this.#startedAt < this.#agentTimeoutMs;
    const nowSec = Math.floor(now / 1000);
    const work: Promise<unknown>[] = [];
    for (const entry of this.#entries.values()) {
      if (entry.busy) continue;
      if (entry.placed && this.#registry.getAgentById(entry.agentId) === undefined) {
        // Its agent was removed while an operation held the entry (a delete in flight, a create
        // answered just after): the stale sweep skipped it, so it is lost now.
        this.#lose(entry, `agent "${entry.agentId}" stopped sending heartbeats`);
        continue;
      }
      if (
        entry.spec.expireTime > 0n && Number(entry.spec.expireTime) <= nowSec &&
        entry.phase !== "Expired"
      ) {
        work.push(
          this.#exclusive(entry, () => this.#expire(entry)).catch((err) => {
            this.#log.error({ err, sandbox: entry.key }, "expiry failed; will retry");
          }),
        );
        continue;
      }
      if (recovering) continue;
      if (entry.phase === "Pending" && !entry.placed) {
        // A strong create that never got its reply before a restart: no agent has it.
        this.#entries.delete(entry.key);
        this.#unindex(entry);
        this.#markDirty(entry.key);
      } else if (entry.agentId !== "" && !entry.placed && occupiesSlot(entry.phase)) {
        this.#lose(entry, `agent "${entry.agentId}" did not come back after a controller restart`);
      } else if (
        entry.phase === "Lost" && entry.spec.failurePolicy === "AUTO_RECREATE" &&
        now >= entry.retryAt
      ) {
        work.push(
          this.#exclusive(entry, () => this.#recreate(entry, "auto-recreate")).catch((err) => {
            entry.retryAt = now + RECREATE_BACKOFF_MS;
            this.#log.warn({ err: String(err), sandbox: entry.key }, "recreate failed; will retry");
          }),
        );
      }
    }
    await Promise.all(work);
  }

  async #expire(entry: Entry): Promise<void> {
    await this.#stop(entry, "Terminating");
    entry.phase = "Expired";
    entry.message = `expired at ${new Date(Number(entry.spec.expireTime) * 1000).toISOString()}`;
    entry.endpoints = [];
    entry.ip = "";
    this.#markDirty(entry.key);
    this.#log.info({ sandbox: entry.key }, "sandbox expired");
  }

  /** Marks a sandbox lost; AUTO_RECREATE ones are recreated by the next tick. */
  #lose(entry: Entry, why: string): void {
    this.#unplace(entry);
    entry.phase = "Lost";
    entry.message = why;
    entry.endpoints = [];
    entry.ip = "";
    this.#markDirty(entry.key);
    this.#log.warn({ sandbox: entry.key, why }, "sandbox lost");
  }

  /** Deletes the running container (if any) and creates the sandbox again with a new id. */
  async #recreate(entry: Entry, why: string): Promise<void> {
    await this.#stop(entry, "Terminating");
    const spec = create(SandboxSpecSchema, entry.spec);
    spec.sandboxId = newSandboxId();
    spec.createdAt = BigInt(Math.floor(this.#clock.now() / 1000));
    entry.spec = spec;
    entry.phase = "Creating";
    try {
      await this.#place(entry);
      this.#log.info({ sandbox: entry.key, agent: entry.agentId, why }, "sandbox recreated");
    } catch (err) {
      entry.phase = why === "reset" ? "Failed" : "Lost";
      entry.message = `${why} failed: ${err instanceof Error ? err.message : String(err)}`;
      throw err;
    } finally {
      this.#markDirty(entry.key);
    }
  }

  /** Stops the container on its agent and frees its slot. */
  async #stop(entry: Entry, phase: Phase): Promise<void> {
    if (!entry.placed) return;
    const agent = this.#registry.getAgentById(entry.agentId);
    const before = entry.phase;
    if (agent !== undefined) {
      entry.phase = phase;
      try {
        await this.#client(agent).deleteSandbox(
          { sandboxId: entry.spec.sandboxId, graceMs: this.#graceMs },
          { timeoutMs: this.#graceMs + 15_000 },
        );
      } catch (err) {
        entry.phase = before;
        throw new RpcError(
          err instanceof RpcError ? err.code : Code.UNAVAILABLE,
          `Cannot delete sandbox "${entry.spec.namespace}/${entry.spec.name}" on agent "${agent.id}": ${
            err instanceof Error ? err.message : String(err)
          }`,
        );
      }
    }
    this.#tombstone(entry.spec.sandboxId);
    this.#unplace(entry);
  }

  async #exclusive<T>(entry: Entry, fn: () => Promise<T>): Promise<T> {
    let done!: () => void;
    entry.busy = new Promise<void>((resolve) => done = resolve);
    try {
      return await fn();
    } finally {
      entry.busy = undefined;
      done();
    }
  }

  // ------------------------------------------------------------ helpers

  #mustGet(req: { name: string; namespace: string }, caller?: Principal): Entry {
    const { name, namespace } = validateName(req);
    // Before the lookup, so a caller learns nothing of other namespaces.
    if (caller !== undefined) requireNamespace(caller, namespace);
    const entry = this.#entries.get(keyOf(namespace, name));
    if (entry === undefined) throw new NotFoundError(`Sandbox "${namespace}/${name}" not found`);
    return entry;
  }

  #index(entry: Entry): void {
    let set = this.#byAgent.get(entry.agentId);
    if (set === undefined) this.#byAgent.set(entry.agentId, set = new Set());
    set.add(entry);
  }

  #unindex(entry: Entry): void {
    const set = this.#byAgent.get(entry.agentId);
    if (set === undefined) return;
    set.delete(entry);
    if (set.size === 0) this.#byAgent.delete(entry.agentId);
  }

  #unplace(entry: Entry): void {
    if (entry.placed) this.#registry.release(entry.agentId, entry.spec.exposedPorts);
    entry.placed = false;
    this.#unindex(entry);
  }

  #tombstone(id: string): void {
    if (this.#tombstones.has(id)) return;
    if (this.#tombstones.size >= TOMBSTONE_LIMIT) {
      const oldest = this.#tombstones.values().next().value;
      if (oldest !== undefined) this.#tombstones.delete(oldest);
    }
    this.#tombstones.add(id);
  }

  /** Tombstones `id` and asks its agent, in the background, to remove it. */
  #forget(agentId: string, id: string): void {
    this.#tombstone(id);
    const agent = this.#registry.getAgentById(agentId);
    if (agent === undefined || this.#closed) return;
    this.#client(agent).deleteSandbox({ sandboxId: id, graceMs: this.#graceMs }, {
      timeoutMs: this.#graceMs + 15_000,
    }).catch((err) =>
      this.#log.warn({ err: String(err), agent: agentId, id }, "background delete failed")
    );
  }

  #client(agent: AgentInfo): AgentClient {
    if (this.#closed) throw new UnavailableError("The controller is shutting down");
    return this.#channels.client(agent.id, this.#target(agent));
  }

  #target(agent: AgentInfo): { address: string; credential: string } {
    return { address: agent.address, credential: this.#auth.agentCredential(agent.id) ?? "" };
  }

  #record(entry: Entry, spec: SandboxSpec = entry.spec): SandboxRecord {
    return {
      spec: toJson(SandboxSpecSchema, spec),
      phase: entry.phase,
      agentId: entry.agentId,
      endpoints: entry.endpoints,
      message: entry.message,
      ip: entry.ip,
      runtime: entry.runtime,
    };
  }

  #info(entry: Entry): SandboxInfo {
    const s = entry.spec;
    return create(SandboxInfoSchema, {
      sandboxId: s.sandboxId,
      name: s.name,
      namespace: s.namespace,
      phase: entry.phase,
      agent: entry.agentId,
      endpoints: entry.endpoints,
      image: s.image,
      pool: s.pool,
      command: s.command,
      args: s.args,
      createdAt: s.createdAt,
      expireTime: s.expireTime,
      failurePolicy: failurePolicyEnum(s.failurePolicy),
      labels: s.labels,
      message: entry.message,
      envs: s.envs,
      workingDir: s.workingDir,
      exposedPorts: s.exposedPorts,
      ip: entry.ip,
      runtime: entry.runtime,
      network: s.network,
      resources: s.resources,
    });
  }

  /**
   * Write-behind: the key's latest state is written on a later turn of the
   * event loop, after the reply has gone out. Writes that fail are retried.
   */
  #markDirty(key: string): void {
    this.#dirty.add(key);
    if (this.#flushTimer === undefined && !this.#closed) {
      this.#flushTimer = setTimeout(() => {
        this.#flushTimer = undefined;
        this.#writeDirty();
      }, 0);
    }
  }

  #writeDirty(): void {
    for (const key of this.#dirty) {
      this.#write(key).catch((err) => {
        this.#log.error({ err, key }, "store write failed; will retry");
        if (this.#closed) return;
        const timer = setTimeout(() => {
          this.#retryTimers.delete(timer);
          this.#markDirty(key);
        }, 1_000);
        this.#retryTimers.add(timer);
      });
    }
    this.#dirty.clear();
  }

  /** Writes the key's current state now and waits for it (write-through). */
  #persist(key: string): Promise<void> {
    this.#dirty.delete(key);
    return this.#write(key);
  }

  /**
   * Writes `entry` with `spec` in place of its own and, once the store has
   * it, makes `spec` the entry's: a failed write changes nothing.
   */
  #writeSpec(entry: Entry, spec: SandboxSpec): Promise<void> {
    return this.#write(entry.key, { entry, spec });
  }

  /**
   * Queues a write of whatever the key holds when the write runs (the record,
   * or its absence), behind earlier writes of the same key; with `change`,
   * the entry with the changed spec, which it takes once written.
   */
  #write(key: string, change?: { entry: Entry; spec: SandboxSpec }): Promise<void> {
    const prev = this.#writes.get(key);
    const run = async () => {
      if (change !== undefined) {
        await this.#store.put(key, this.#record(change.entry, change.spec));
        // Swapped in before the next queued write of the key runs, so none writes the old spec.
        change.entry.spec = change.spec;
        return;
      }
      const entry = this.#entries.get(key);
      if (entry === undefined) await this.#store.delete(key);
      else await this.#store.put(key, this.#record(entry));
    };
    const next = prev === undefined ? run() : prev.then(run, run);
    this.#writes.set(key, next);
    const forget = () => {
      if (this.#writes.get(key) === next) this.#writes.delete(key);
    };
    next.then(forget, forget);
    return next;
  }

  /** Waits until every pending store write is done. */
  async flush(): Promise<void> {
    if (this.#flushTimer !== undefined) {
      clearTimeout(this.#flushTimer);
      this.#flushTimer = undefined;
    }
    this.#writeDirty();
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes.values()]);
  }

  /** Agent totals for the /metrics gauges. */
  agentTotals(): { ready: number; total: number; capacity: number; allocated: number } {
    let ready = 0, capacity = 0, allocated = 0;
    const all = this.#registry.getAllAgents();
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
    for (const e of this.#entries.values()) out[e.phase] = (out[e.phase] ?? 0) + 1;
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
    const createDuration = await this.#metrics.createDuration.get();
    const sandboxes: Record<string, Record<string, number>> = {};
    for (const e of this.#entries.values()) {
      const byPhase = sandboxes[e.spec.namespace] ??= {};
      byPhase[e.phase] = (byPhase[e.phase] ?? 0) + 1;
    }
    return {
      now: this.#clock.now(),
      agents: this.#registry.getAllAgents(),
      sandboxes,
      createDuration,
    };
  }

  /** Flushes the store and closes agent channels. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
    for (const timer of this.#retryTimers) clearTimeout(timer);
    this.#retryTimers.clear();
    this.#channels.close();
  }
}

/** Whether a sandbox in this phase has a container on its agent (and so holds a slot). */
function occupiesSlot(phase: Phase): boolean {
  return phase === "Creating" || phase === "Running" || phase === "Exited" ||
    phase === "Terminating";
}
