/**
 * The controller's state machine: the sandbox table, its placement in the
 * registry, and the transitions that move a sandbox between phases. The API
 * handlers, reconciliation with agents and the lifecycle loop act through it.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { type AgentInfo, NotFoundError, Registry, UnavailableError } from "../registry/mod.ts";
import { type SandboxSpec, SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import type { SandboxInfo } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcError } from "../proto/grpc.ts";
import type { ControllerMetrics } from "./metrics.ts";
import { type AuthRecord, type Principal, requireNamespace, TokenAuth } from "./auth.ts";
import type { Store } from "./store/mod.ts";
import { AgentChannels, type AgentClient } from "./_agent_channels.ts";
import { newSandboxId, validateName } from "./_validate.ts";
import {
  type Entry,
  infoOf,
  keyOf,
  occupiesSlot,
  type Phase,
  type SandboxRecord,
} from "./_entry.ts";
import { Persistence } from "./_persistence.ts";
import { type TombstoneRecord, Tombstones } from "./_tombstones.ts";
import { SpecPush } from "./_spec_push.ts";
import type { Clock, ControllerOptions } from "./controller.ts";

/** Where auth.ts keeps agent credentials: every agent that ever registered has one. */
const AGENT_CREDENTIAL_PREFIX = "agent-credentials/";

/** Milliseconds since `start` (performance.now()). */
export function ms(start: number): number {
  return performance.now() - start;
}

/** Throws, when the caller of a create has gone, the error that undoes the create. */
export function checkCaller(spec: SandboxSpec, signal: AbortSignal | undefined): void {
  if (signal === undefined || !signal.aborted) return;
  const reason: unknown = signal.reason;
  throw new RpcError(
    reason instanceof RpcError ? reason.code : Code.CANCELLED,
    `Cannot create sandbox "${spec.namespace}/${spec.name}" as its caller has gone (${
      reason instanceof Error ? reason.message : String(reason)
    }); it was undone`,
  );
}

/**
 * The sandbox table and its transitions. Its fields are shared with the
 * controller's other parts in this folder (handlers, reconciliation,
 * lifecycle), which act on the table only through it.
 */
export class Sandboxes {
  readonly registry = new Registry();
  readonly entries = new Map<string, Entry>();
  readonly byAgent = new Map<string, Set<Entry>>();
  readonly channels: AgentChannels;
  /** Ids of sandboxes the controller gave up on; an agent reporting one is told to delete it. */
  readonly tombstones: Tombstones;
  readonly persistence: Persistence;
  /** Sends updated specs to the agents' records of them. */
  readonly specPush: SpecPush;
  readonly log: Logger<"timing">;
  readonly metrics: ControllerMetrics;
  readonly clock: Clock;
  readonly defaultMode: "fast" | "strong";
  readonly agentTimeoutMs: number;
  readonly graceMs: number;
  readonly createTimeoutMs: number;
  readonly heartbeatMs: number;
  readonly auth: TokenAuth;
  readonly startedAt: number;
  closed = false;
  readonly #store: Store<SandboxRecord>;
  /** Agents whose reports a (re)started controller awaits before it vouches for absences. */
  readonly #awaited = new Set<string>();
  #recovering = false;

  /** Creates the table with the controller's options. */
  constructor(opts: ControllerOptions) {
    this.log = opts.logger;
    this.metrics = opts.metrics;
    this.clock = opts.clock ?? Date;
    this.defaultMode = opts.defaultMode ?? "fast";
    this.agentTimeoutMs = opts.agentTimeoutMs ?? 10_000;
    this.graceMs = opts.deleteGraceMs ?? 10_000;
    this.createTimeoutMs = opts.agentCreateTimeoutMs ?? 30_000;
    this.heartbeatMs = opts.heartbeatIntervalMs ?? 2_000;
    this.channels = new AgentChannels({ tls: opts.agentTls });
    this.auth = opts.auth ??
      new TokenAuth({ store: opts.store as unknown as Store<AuthRecord>, enabled: false });
    this.persistence = new Persistence({
      store: opts.store,
      logger: opts.logger,
      entries: this.entries,
    });
    this.tombstones = new Tombstones({
      store: opts.store as unknown as Store<TombstoneRecord>,
      logger: opts.logger,
    });
    this.specPush = new SpecPush(this);
    this.#store = opts.store;
    this.startedAt = this.clock.now();
  }

  /** Loads persisted sandboxes; their agents restore the registry as they register. */
  async load(): Promise<number> {
    const tombstones = await this.tombstones.load();
    for (const entry of await this.persistence.load()) {
      this.entries.set(entry.key, entry);
      // A record still naming a tombstoned id is a delete (or reset) that never finished: the
      // record, durable and never deleted, wins.
      if (this.tombstones.has(entry.spec.sandboxId)) this.tombstones.revoke(entry.spec.sandboxId);
      if (entry.agentId !== "" && occupiesSlot(entry.phase)) {
        this.index(entry);
        this.#awaited.add(entry.agentId);
      }
    }
    // Any agent that ever registered may hold a sandbox whose write-behind record never reached
    // the store: wait for its report too.
    for (const { key } of await this.#store.list(AGENT_CREDENTIAL_PREFIX)) {
      this.#awaited.add(key.slice(AGENT_CREDENTIAL_PREFIX.length));
    }
    this.#recovering = this.#awaited.size > 0;
    this.log.info(
      { sandboxes: this.entries.size, tombstones, awaitedAgents: this.#awaited.size },
      "loaded sandboxes from the store",
    );
    return this.entries.size;
  }

  /**
   * Whether the controller, (re)started on a store, still waits for the
   * reports of agents that may hold sandboxes it has no record of: until
   * each has registered, or an agent timeout has passed since the start.
   * Meanwhile it cannot vouch for a name's absence (shared/DESIGN.md section 15).
   */
  recovering(): boolean {
    if (!this.#recovering) return false;
    if (this.#awaited.size > 0 && this.clock.now() - this.startedAt < this.agentTimeoutMs) {
      return true;
    }
    this.#recovering = false;
    this.log.info({ awaitedAgents: [...this.#awaited] }, "recovery over");
    return false;
  }

  /** Agent `agentId` reported its whole inventory: recovery no longer waits for it. */
  reported(agentId: string): void {
    this.#awaited.delete(agentId);
  }

  /** Throws UNAVAILABLE while {@linkcode Sandboxes.recovering}, saying what cannot be done. */
  requireRecovered(what: string): void {
    if (this.recovering()) {
      throw new UnavailableError(`${what}: the controller is recovering its state; retry`);
    }
  }

  /** Schedules a write-behind of the key's latest state. */
  markDirty(key: string): void {
    this.persistence.markDirty(key);
  }

  /**
   * Makes `spec`, a newer generation of the entry's, the entry's once the
   * store has it (a failed write changes nothing), then sends it to the
   * sandbox's agent in the background: an agent that misses it is sent it
   * again when it next reports the older generation.
   */
  async updateSpec(entry: Entry, spec: SandboxSpec): Promise<void> {
    await this.persistence.writeSpec(entry, spec);
    this.specPush.push(entry);
  }

  /**
   * Allocates an agent, asks it to create the sandbox and marks the entry
   * Running. On failure nothing stays reserved and the agent is told to
   * remove whatever it may have made.
   */
  async place(entry: Entry, signal?: AbortSignal): Promise<Record<string, number>> {
    const spec = entry.spec;
    const tAlloc = performance.now();
    const agent = this.registry.allocate({
      pool: spec.pool,
      namespace: spec.namespace,
      image: spec.image,
      ports: spec.exposedPorts,
    });
    const allocateMs = ms(tAlloc);
    entry.agentId = agent.id;
    entry.placed = true;
    this.index(entry);
    if (entry.phase !== "Pending") entry.phase = "Creating";
    const tRpc = performance.now();
    try {
      const client = this.client(agent);
      // The caller's signal aborts the agent's create, and its runtime undoes what it did.
      const res = await client.createSandbox({ spec }, {
        timeoutMs: this.createTimeoutMs,
        signal,
      });
      const stages: Record<string, number> = { allocate: allocateMs, agent_rpc: ms(tRpc) };
      for (const [stage, value] of Object.entries(res.stageMs)) stages[stage] = value;
      entry.phase = "Running";
      entry.message = res.status?.message ?? "";
      entry.ip = res.status?.ip ?? "";
      entry.runtime = res.status?.runtime ?? "";
      entry.path = res.path;
      entry.endpoints = spec.exposedPorts.map((p) => `${agent.advertiseHost}:${p}`);
      return stages;
    } catch (err) {
      this.unplace(entry);
      this.forget(agent.id, spec.sandboxId);
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

  /** Marks a sandbox lost; AUTO_RECREATE ones are recreated by the next tick. */
  lose(entry: Entry, why: string): void {
    this.unplace(entry);
    entry.phase = "Lost";
    entry.message = why;
    entry.endpoints = [];
    entry.ip = "";
    this.markDirty(entry.key);
    this.log.warn({ sandbox: entry.key, why }, "sandbox lost");
  }

  /** Deletes the running container (if any) and creates the sandbox again with a new id. */
  async recreate(entry: Entry, why: string): Promise<void> {
    await this.stop(entry, "Terminating");
    const spec = create(SandboxSpecSchema, entry.spec);
    spec.sandboxId = newSandboxId();
    spec.createdAt = BigInt(Math.floor(this.clock.now() / 1000));
    entry.spec = spec;
    entry.phase = "Creating";
    try {
      await this.place(entry);
      this.log.info({ sandbox: entry.key, agent: entry.agentId, why }, "sandbox recreated");
    } catch (err) {
      entry.phase = why === "reset" ? "Failed" : "Lost";
      entry.message = `${why} failed: ${err instanceof Error ? err.message : String(err)}`;
      throw err;
    } finally {
      this.markDirty(entry.key);
    }
  }

  /** Stops the container on its agent and frees its slot. */
  async stop(entry: Entry, phase: Phase): Promise<void> {
    const id = entry.spec.sandboxId;
    if (!entry.placed) {
      // On no agent (Lost, or not yet reported since a restart), its container may still run on
      // one that comes back: a tombstone in the store makes that agent remove it, even after a
      // restart, rather than the record be revived.
      if (entry.agentId !== "" && (entry.phase === "Lost" || occupiesSlot(entry.phase))) {
        await this.tombstones.add(id, entry.agentId);
      }
      return;
    }
    const agent = this.registry.getAgentById(entry.agentId);
    const before = entry.phase;
    if (agent === undefined) {
      await this.tombstones.add(id, entry.agentId);
    } else {
      entry.phase = phase;
      try {
        await this.client(agent).deleteSandbox(
          { sandboxId: id, graceMs: this.graceMs },
          { timeoutMs: this.graceMs + 15_000 },
        );
        this.tombstones.gone(id);
      } catch (err) {
        if (
          err instanceof RpcError &&
          (err.code === Code.UNAVAILABLE || err.code === Code.DEADLINE_EXCEEDED)
        ) {
          // The agent cannot be reached now (restarting, say): the delete stands, and a
          // tombstone in the store makes the agent remove the container once it is back.
          await this.tombstones.add(id, entry.agentId);
          this.log.warn(
            { sandbox: entry.key, agent: agent.id, err: err.message },
            "delete left to a tombstone",
          );
          this.unplace(entry);
          return;
        }
        entry.phase = before;
        throw new RpcError(
          err instanceof RpcError ? err.code : Code.UNAVAILABLE,
          `Cannot delete sandbox "${entry.spec.namespace}/${entry.spec.name}" on agent "${agent.id}": ${
            err instanceof Error ? err.message : String(err)
          }`,
        );
      }
    }
    this.unplace(entry);
  }

  /** Runs `fn` with `entry` busy: others wait for it. */
  async exclusive<T>(entry: Entry, fn: () => Promise<T>): Promise<T> {
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

  /** The entry of sandbox `req`, which `caller` may see; NOT_FOUND otherwise. */
  mustGet(req: { name: string; namespace: string }, caller?: Principal): Entry {
    const { name, namespace } = validateName(req);
    // Before the lookup, so a caller learns nothing of other namespaces.
    if (caller !== undefined) requireNamespace(caller, namespace);
    const entry = this.entries.get(keyOf(namespace, name));
    if (entry === undefined) {
      // An agent not yet heard from since a restart may hold it: not known is not absent.
      this.requireRecovered(`Sandbox "${namespace}/${name}" is not known yet`);
      throw new NotFoundError(`Sandbox "${namespace}/${name}" not found`);
    }
    return entry;
  }

  /** Adds `entry` to its agent's set in {@linkcode Sandboxes.byAgent}. */
  index(entry: Entry): void {
    let set = this.byAgent.get(entry.agentId);
    if (set === undefined) this.byAgent.set(entry.agentId, set = new Set());
    set.add(entry);
  }

  /** Removes `entry` from its agent's set. */
  unindex(entry: Entry): void {
    const set = this.byAgent.get(entry.agentId);
    if (set === undefined) return;
    set.delete(entry);
    if (set.size === 0) this.byAgent.delete(entry.agentId);
  }

  /** Frees the entry's slot and ports, if it holds them. */
  unplace(entry: Entry): void {
    if (entry.placed) this.registry.release(entry.agentId, entry.spec.exposedPorts);
    entry.placed = false;
    this.unindex(entry);
  }

  /**
   * Tombstones `id` in the store and asks its agent, in the background, to
   * remove it; the tombstone goes once the agent has answered.
   */
  forget(agentId: string, id: string): void {
    // A failed write is logged and retried by the tombstones themselves.
    this.tombstones.add(id, agentId).catch(() => {});
    const agent = this.registry.getAgentById(agentId);
    if (agent === undefined || this.closed) return;
    this.client(agent).deleteSandbox({ sandboxId: id, graceMs: this.graceMs }, {
      timeoutMs: this.graceMs + 15_000,
    }).then(
      () => this.tombstones.gone(id),
      (err) => this.log.warn({ err: String(err), agent: agentId, id }, "background delete failed"),
    );
  }

  /** The channel's client to `agent`; UNAVAILABLE once closed. */
  client(agent: AgentInfo): AgentClient {
    if (this.closed) throw new UnavailableError("The controller is shutting down");
    return this.channels.client(agent.id, this.target(agent));
  }

  /** Where and as whom to reach `agent`. */
  target(agent: AgentInfo): { address: string; credential: string } {
    return { address: agent.address, credential: this.auth.agentCredential(agent.id) ?? "" };
  }

  /** What clients are told of `entry`. */
  info(entry: Entry): SandboxInfo {
    return infoOf(entry);
  }
}
