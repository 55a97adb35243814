/**
 * Reconciliation with agents: Register, Heartbeat, and adoption of the
 * sandboxes agents report. Register carries every sandbox's full status;
 * heartbeats carry per sandbox its id, phase and spec generation (a
 * SandboxBeat), and full statuses only for the ids the controller asked for
 * (shared/DESIGN.md section 15), so a heartbeat's cost does not grow with
 * spec sizes.
 *
 * @module
 */
import { toBinary } from "@bufbuild/protobuf";
import {
  type AgentInfo,
  InvalidArgumentError,
  PermissionDeniedError,
  UnauthenticatedError,
} from "../registry/mod.ts";
import {
  type AgentReport,
  type SandboxBeat,
  type SandboxSpec,
  SandboxSpecSchema,
  type SandboxStatus,
} from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { hostPortProblem } from "../proto/host_port.ts";
import { bearerOf } from "./auth.ts";
import { checkDnsLabel, MAX_SPEC_BYTES } from "./_validate.ts";
import { type Entry, keyOf, newEntry, type Phase } from "./_entry.ts";
import type { Sandboxes } from "./_sandboxes.ts";

/** What Register answers (a RegisterResponse). */
export interface RegisterReply {
  heartbeatIntervalMs: number;
  credential: string;
  /** Always true: this controller takes delta heartbeats. */
  deltaHeartbeats: boolean;
}

/** What Heartbeat answers (a HeartbeatResponse). */
export interface HeartbeatReply {
  reregister: boolean;
  /** Ids reported as beats that the controller lacks: the next heartbeat carries their specs. */
  sendSpecs: string[];
}

/** Takes agents' reports into the sandbox table. */
export class Reconciler {
  readonly #s: Sandboxes;
  /** Agent ids being issued a credential now: one join per id at a time. */
  readonly #joining = new Set<string>();

  /** Creates the reconciler of `sandboxes`. */
  constructor(sandboxes: Sandboxes) {
    this.#s = sandboxes;
  }

  /**
   * Register: an agent (re)starting, or one the controller forgot. Its
   * registry slots are rebuilt from scratch from what it reports plus creates
   * in flight to it; sandboxes it no longer has are lost.
   */
  async register(
    report: AgentReport,
    metadata?: Readonly<Record<string, string>>,
  ): Promise<RegisterReply> {
    const credential = await this.#admitAgent(report.agentId, metadata);
    return { heartbeatIntervalMs: this.#registerNow(report), credential, deltaHeartbeats: true };
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
    if (this.#s.auth.isAgentCredential(id, presented)) return presented!;
    const known = this.#s.auth.agentCredential(id);
    if (metadata === undefined || !this.#s.auth.enabled) {
      return known ?? await this.#s.auth.issueAgentCredential(id);
    }
    if (!this.#s.auth.isJoinToken(presented)) {
      throw new UnauthenticatedError(
        `Cannot register agent "${id}": it needs the cluster's join token (--join-token-file) or its own credential`,
      );
    }
    // An id with a credential is given a new one only once its agent is surely gone: not
    // while it is live, nor while a restarted controller still waits for agents to report.
    const recovering = this.#s.clock.now() - this.#s.startedAt < this.#s.agentTimeoutMs;
    if (
      this.#joining.has(id) ||
      (known !== undefined && (recovering || this.#s.registry.getAgentById(id) !== undefined))
    ) {
      throw new PermissionDeniedError(
        `Cannot register agent "${id}" as another agent holds that id (a restarted agent presents its saved credential)`,
      );
    }
    this.#joining.add(id);
    try {
      return await this.#s.auth.issueAgentCredential(id);
    } finally {
      this.#joining.delete(id);
    }
  }

  /** The synchronous part of Register; resolves to the heartbeat interval. */
  #registerNow(report: AgentReport): number {
    // The channel to the agent stays unless its address or credential changed (#upsertAgent):
    // dropping it would cut off creates, deletes and log streams in flight on it.
    const agent = this.#upsertAgent(report, true);
    this.#s.specPush.registered(agent.id);
    const reported = new Map<string, SandboxStatus>();
    for (const s of report.sandboxes) if (s.spec) reported.set(s.spec.sandboxId, s);
    // The registry forgot this agent's slots in #upsertAgent; every entry earns its slot back below.
    const mine = [...(this.#s.byAgent.get(agent.id) ?? [])];
    if (report.inventoryUnknown) {
      // The agent cannot list its sandboxes right now: keep what the controller placed there and
      // judge nothing lost; the agent registers again once it can list.
      for (const entry of mine) {
        this.#s.registry.restore(agent.id, entry.spec.exposedPorts);
        entry.placed = true;
      }
      this.#s.log.warn({ agent: agent.id }, "agent registered without its inventory");
      return this.#s.heartbeatMs;
    }
    // Its whole inventory: a tombstoned container it no longer lists is confirmed gone.
    const listed = new Set(reported.keys());
    for (const id of this.#s.tombstones.pendingOn(agent.id)) {
      if (!listed.has(id)) this.#s.tombstones.gone(id);
    }
    for (const entry of mine) entry.placed = false;
    for (const entry of mine) {
      const status = reported.get(entry.spec.sandboxId);
      if (status !== undefined) {
        reported.delete(entry.spec.sandboxId);
        this.#s.registry.restore(agent.id, entry.spec.exposedPorts);
        entry.placed = true;
        this.#applyStatus(entry, status, status.spec!.generation);
      } else if (entry.busy && (entry.phase === "Creating" || entry.phase === "Pending")) {
        this.#s.registry.restore(agent.id, entry.spec.exposedPorts);
        entry.placed = true;
      } else if (entry.phase !== "Terminating") {
        this.#s.lose(entry, `agent "${agent.id}" re-registered without it`);
      }
    }
    for (const status of reported.values()) this.#foreign(agent, status);
    this.#s.reported(agent.id);
    this.#s.log.info(
      {
        agent: agent.id,
        address: agent.address,
        sandboxes: report.sandboxes.length,
        ready: agent.ready,
      },
      "agent registered",
    );
    return this.#s.heartbeatMs;
  }

  /**
   * Heartbeat: liveness, capacity and images; phase changes, sandboxes to
   * adopt, and the ids whose specs the controller lacks.
   */
  heartbeat(
    report: AgentReport,
    metadata?: Readonly<Record<string, string>>,
  ): HeartbeatReply {
    if (
      metadata !== undefined && this.#s.auth.enabled &&
      !this.#s.auth.isAgentCredential(report.agentId, bearerOf(metadata))
    ) {
      throw new UnauthenticatedError(
        `Heartbeat of agent "${report.agentId}" carries no valid credential: register again`,
      );
    }
    if (this.#s.registry.getAgentById(report.agentId) === undefined) {
      return { reregister: true, sendSpecs: [] };
    }
    const agent = this.#upsertAgent(report, false);
    const sendSpecs = report.beats.length === 0 ? [] : this.#beats(agent, report.beats);
    // Full statuses: those the controller asked for, or every sandbox of an agent that sends no beats.
    for (const status of report.sandboxes) {
      const spec = status.spec;
      if (spec === undefined) continue;
      const entry = this.#s.entries.get(keyOf(spec.namespace, spec.name));
      if (
        entry !== undefined && entry.spec.sandboxId === spec.sandboxId &&
        entry.agentId === agent.id && entry.placed
      ) {
        if (!entry.busy) this.#applyStatus(entry, status, spec.generation);
      } else {
        this.#foreign(agent, status);
      }
    }
    return { reregister: false, sendSpecs };
  }

  /**
   * Takes a delta heartbeat's beats: phase changes of the sandboxes placed on
   * `agent`; a tombstoned one is removed; the ids of any others are returned,
   * for the agent to send their full statuses next (they are then adopted,
   * removed or judged superseded as a Register's would be).
   */
  #beats(agent: AgentInfo, beats: readonly SandboxBeat[]): string[] {
    const placed = new Map<string, Entry>();
    for (const entry of this.#s.byAgent.get(agent.id) ?? []) {
      if (entry.placed && entry.agentId === agent.id) placed.set(entry.spec.sandboxId, entry);
    }
    const lacking: string[] = [];
    for (const beat of beats) {
      const entry = placed.get(beat.sandboxId);
      if (entry !== undefined && this.#s.entries.get(entry.key) === entry) {
        if (!entry.busy) this.#applyStatus(entry, beat, beat.generation);
      } else if (this.#s.tombstones.has(beat.sandboxId)) {
        this.#s.forget(agent.id, beat.sandboxId);
      } else {
        lacking.push(beat.sandboxId);
      }
    }
    return lacking;
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
      warm: report.warm,
      ready: report.ready,
    };
    if (fresh) this.#s.registry.remove(report.agentId);
    const agent = this.#s.registry.registerOrUpdate(reg, this.#s.clock.now());
    this.#s.channels.refresh(agent.id, this.#s.target(agent));
    return agent;
  }

  /**
   * Takes an agent's view of a sandbox the controller has it placed on,
   * where the agent's record of the spec is at `generation`: an older one
   * than the controller's is sent the spec again.
   */
  #applyStatus(
    entry: Entry,
    status: Pick<SandboxStatus, "phase" | "message" | "ip"> & { runtime?: string },
    generation: number,
  ): void {
    this.#s.specPush.catchUp(entry, generation);
    const phase = status.phase as Phase;
    if (
      phase !== entry.phase && (phase === "Running" || phase === "Exited" || phase === "Failed")
    ) {
      entry.phase = phase;
      entry.message = status.message;
      this.#s.markDirty(entry.key);
    }
    // A beat carries no runtime: it is the one the sandbox was created or adopted with.
    const runtime = status.runtime ?? "";
    if (status.ip !== entry.ip || (runtime !== "" && runtime !== entry.runtime)) {
      entry.ip = status.ip;
      if (runtime !== "") entry.runtime = runtime;
      this.#s.markDirty(entry.key);
    }
  }

  /** A sandbox an agent reports that is not (or no longer) placed there. */
  #foreign(agent: AgentInfo, status: SandboxStatus): void {
    const spec = status.spec!;
    const id = spec.sandboxId;
    if (this.#s.tombstones.has(id)) {
      this.#s.forget(agent.id, id);
      return;
    }
    const why = this.#unadoptable(agent, spec);
    if (why !== undefined) {
      this.#s.log.warn({ agent: agent.id, id, why }, "removing a sandbox an agent may not hold");
      this.#s.forget(agent.id, id);
      return;
    }
    const key = keyOf(spec.namespace, spec.name);
    const entry = this.#s.entries.get(key);
    if (entry !== undefined && entry.busy) return;
    // Another sandbox under the name: a leftover (e.g. of a reset) unless the name's own agent
    // reports it (an acknowledged reset that never reached the store); another agent's report
    // never replaces a sandbox.
    if (
      entry !== undefined && entry.spec.sandboxId !== id &&
      (entry.placed || entry.agentId !== agent.id)
    ) {
      this.#s.log.warn(
        { agent: agent.id, sandbox: key, id },
        "removing a superseded sandbox from its agent",
      );
      this.#s.forget(agent.id, id);
      return;
    }
    // Adopt: a create acknowledged before the store had it, or a lost sandbox coming back.
    const adopted: Entry = entry ?? newEntry(key, spec, { phase: "Running", agentId: agent.id });
    if (entry !== undefined) {
      // Still placed elsewhere (an agent that came back under a new id): free that slot first.
      this.#s.unplace(entry);
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
    this.#s.entries.set(key, adopted);
    this.#s.index(adopted);
    this.#s.registry.restore(agent.id, spec.exposedPorts);
    this.#s.markDirty(key);
    // A sandbox coming back keeps the controller's spec: its agent's record may miss updates.
    this.#s.specPush.catchUp(adopted, spec.generation);
    this.#s.log.info({ agent: agent.id, sandbox: key, id }, "adopted sandbox reported by agent");
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
}
