/**
 * The in-memory registry of agents and the placement of sandboxes on them
 * (shared/DESIGN.md section 6).
 *
 * Placement rule, in order:
 * 1. Candidates are the agents of the request's pool and namespace that are
 *    ready, have `allocated < capacity`, and hold none of the requested ports.
 * 2. An agent with a warm container of the (normalized) image beats one
 *    without; then an agent that has the image beats one that does not.
 * 3. Then the least allocated agent wins.
 * 4. Ties go to the agent whose placement state changed least recently
 *    (first in, first out). An agent's placement state changes when it is
 *    first registered, whenever its `allocated` count changes (allocate,
 *    restore, or a release that frees a slot), and when a registerOrUpdate
 *    changes its pool, namespace, capacity, ready flag or (normalized) image
 *    set. A heartbeat that changes only the address, advertised host or
 *    heartbeat time, and a release of ports alone, leave it in place. So
 *    among equally loaded agents, sandboxes go round the agents in turn.
 *    Among agents with a warm container, one more event counts: a change of
 *    its warm image set (the images with a count above 0), e.g. a drained
 *    pool refilled, files it last among them, and only among them.
 *
 * Warm containers: a heartbeat's counts replace the held ones. Choosing an
 * agent for a warm container counts one down, so concurrent requests never
 * count on one container twice; the agent's next heartbeat says what is
 * really left. A heartbeat that changes counts but not the warm image set
 * moves nobody. One whose warm image set changes moves the agent only in
 * its warm indexes (it leaves those it no longer qualifies for and goes last
 * in those it joins), not in the pool's or the image indexes: a pool
 * refilling says nothing about how recently the agent got a sandbox.
 *
 * How: _filing.ts describes the load indexes that make each step cheap and
 * the stamps that order them; _group.ts keeps who is in each (pool,
 * namespace) and which images and warm images they have.
 *
 * Cost: allocate, release and restore do work in proportion to the number of
 * requested images (cached or warm) the agent concerned has (one queue entry
 * each), never to the number of agents, except that allocate steps past
 * agents holding a requested port, so asking for a port that most agents of
 * the pool hold costs in proportion to those agents. registerOrUpdate with a
 * changed image set or warm report costs in proportion to the agent's images
 * and warm images; a plain heartbeat, a few comparisons. The first request
 * for an image in a group scans the group once, and so does the first
 * request for it while some agent of the group reports it warm. A warm index
 * lives while some agent of the group lists the image in its report, with 0
 * while drained too, so a pool that empties and refills is not scanned again.
 *
 * @module
 */
import type { AgentInfo, AgentRegistration, AllocationRequest, Placement } from "./agent_info.ts";
import { NoCapacityError } from "./errors.ts";
import { validatePorts } from "./validate_ports.ts";
import { Filing } from "./_filing.ts";
import {
  applyWarm,
  attachImages,
  detachImages,
  detachWarm,
  groupOf,
  type Groups,
  joinGroup,
  leaveGroup,
  linkWarm,
  noCapacity,
} from "./_group.ts";
import { HeartbeatOrder } from "./_heartbeat_order.ts";
import { normalizeAll, normalizeCached, sameSet, sameStrings } from "./_image_names.ts";
import { advertiseHostOf, checkRegistration, requireText } from "./_input.ts";
import { dequeue } from "./_load_index.ts";
import { newSlot, type Slot } from "./_slot.ts";
import { rawWarmOf, readWarm, sameRawWarm, warmChange } from "./_warm_report.ts";

/**
 * The agents a controller knows, indexed for placement. Synchronous and free
 * of I/O: a choice and its reservation happen in one call, so concurrent
 * requests can never double-book a slot or a port.
 *
 * The {@linkcode AgentInfo} objects it hands out are its live records: they
 * reflect later changes, and callers must not modify them.
 *
 * @example
 * ```ts
 * const registry = new Registry();
 * registry.registerOrUpdate({
 *   id: "a1", address: "10.0.0.1:5758", pool: "default-pool",
 *   namespace: "default", capacity: 5, images: ["busybox"],
 * }, Date.now());
 * const agent = registry.allocate({
 *   pool: "default-pool", namespace: "default", image: "busybox", ports: [8080],
 * });
 * registry.release(agent.id, [8080]);
 *
 * // An agent keeping two warm busybox containers; place() says a warm one was chosen.
 * registry.registerOrUpdate({
 *   id: "a2", address: "10.0.0.2:5758", pool: "default-pool",
 *   namespace: "default", capacity: 5, images: ["busybox"], warm: { busybox: 2 },
 * }, Date.now());
 * const placement = registry.place({ pool: "default-pool", namespace: "default", image: "busybox" });
 * // placement.agent.id === "a2", placement.warm === true, placement.agent.warm: busybox -> 1
 * ```
 */
export class Registry {
  readonly #byId = new Map<string, Slot>();
  readonly #groups: Groups = new Map();
  /** Agent numbers, stamps, and each slot's place in its group's indexes. */
  readonly #filing = new Filing();
  /** Agents oldest heartbeat first, so cleanupStaleAgents reads only the stale ones. */
  readonly #heartbeats = new HeartbeatOrder();
  /** Raw image reference -> normalized, bounded (_image_names.ts). */
  readonly #imageCache = new Map<string, string>();
  /** getAllAgents' answer in registration order; null after a removal until rebuilt. */
  #list: AgentInfo[] | null = [];
  /** What the last #allocate chose by, read right after it by place(): a warm container? */
  #lastWarm = false;
  /** ...for this normalized image. */
  #lastImage = "";

  /** Number of agents registered. */
  get size(): number {
    return this.#byId.size;
  }

  /**
   * Adds an agent, or refreshes one already known (a heartbeat). A known
   * agent keeps its `allocated` count and held ports; everything else is
   * taken from `reg`. Images are normalized. `now` (milliseconds) becomes its
   * `lastHeartbeat`. The warm counts replace the held ones, including those
   * allocate counted down since the last call.
   *
   * @throws {InvalidArgumentError} `agent_id`, `pool` or `namespace` is empty;
   *   `capacity` is not a non-negative integer; a `warm` image name is empty
   *   or holds whitespace or control characters (field `warm`), or a warm
   *   count is not a non-negative integer (field `warm[IMAGE]`). Nothing
   *   changes when it throws.
   */
  registerOrUpdate(reg: AgentRegistration, now: number): AgentInfo {
    checkRegistration(reg);
    const capacity = reg.capacity;
    const slot = this.#byId.get(reg.id);
    const warmReport = slot !== undefined && sameRawWarm(reg.warm, slot.rawWarm)
      ? slot.reportedWarm
      : readWarm(reg.warm, (ref) => normalizeCached(this.#imageCache, ref));
    const ready = reg.ready ?? true;
    const advertiseHost = advertiseHostOf(reg);
    if (slot === undefined) return this.#add(reg, now, { ready, advertiseHost, warmReport });

    const info = slot.info;
    let warm: "none" | "counts" | "set" = "none";
    if (warmReport !== slot.reportedWarm) {
      slot.rawWarm = rawWarmOf(reg.warm);
      slot.reportedWarm = warmReport;
      warm = warmChange(warmReport, info.warm);
    } else if (slot.warmTaken) {
      warm = warmChange(warmReport, info.warm);
    }
    slot.warmTaken = false;
    info.address = reg.address;
    info.advertiseHost = advertiseHost;
    let images: Set<string> | null = null;
    if (!sameStrings(reg.images, slot.rawImages)) {
      slot.rawImages = reg.images.slice();
      const normalized = normalizeAll(this.#imageCache, reg.images);
      if (!sameSet(normalized, info.images)) images = normalized;
    }
    const moved = reg.pool !== info.pool || reg.namespace !== info.namespace;
    if (images !== null || moved || ready !== info.ready || capacity !== info.capacity) {
      this.#filing.unfile(slot);
      if (images !== null || moved) detachImages(slot);
      if (moved) {
        detachWarm(slot);
        leaveGroup(this.#groups, slot);
        info.pool = reg.pool;
        info.namespace = reg.namespace;
        info.ready = ready;
        joinGroup(this.#groups, slot);
        applyWarm(slot, warmReport);
      } else {
        if (ready !== info.ready) {
          slot.group.ready += ready ? 1 : -1;
          info.ready = ready;
        }
        if (warm !== "none") applyWarm(slot, warmReport);
      }
      if (images !== null) info.images = images;
      if (images !== null || moved) attachImages(slot);
      if (moved || warm === "set") linkWarm(slot);
      info.capacity = capacity;
      this.#filing.file(slot);
    } else if (warm === "set") {
      this.#filing.rewarm(slot, warmReport);
    } else if (warm === "counts") {
      applyWarm(slot, warmReport);
    }
    this.#heartbeats.touch(slot, now);
    return info;
  }

  /** Every agent, in registration order. The array is the caller's to keep. */
  getAllAgents(): AgentInfo[] {
    let list = this.#list;
    if (list === null) {
      list = [];
      for (const slot of this.#byId.values()) list.push(slot.info);
      this.#list = list;
    }
    return list.slice();
  }

  /** The agent with `id`, if registered. */
  getAgentById(id: string): AgentInfo | undefined {
    const slot = this.#byId.get(id);
    return slot === undefined ? undefined : slot.info;
  }

  /**
   * Chooses an agent for a sandbox by the placement rule of this module and
   * reserves one slot and the requested ports on it before returning. When
   * the agent was chosen for a warm container of the image, that container
   * counts as taken; {@linkcode Registry.place} tells the caller so.
   *
   * @throws {InvalidArgumentError} empty `image`, `pool` or `namespace`; a port
   *   that is not an integer within 1..65535, or one listed twice.
   * @throws {NoCapacityError} no agent qualifies; the message says whether the
   *   pool has no agents, no ready agents, no free slot, or no free slot with
   *   those ports free.
   */
  allocate(req: AllocationRequest): AgentInfo {
    return this.#allocate(req).info;
  }

  /**
   * {@linkcode Registry.allocate}, telling also whether the agent was chosen
   * for a warm container of the image (`warm`, counted as taken until the
   * agent's next heartbeat) and the normalized image.
   *
   * @throws {InvalidArgumentError} as allocate.
   * @throws {NoCapacityError} as allocate.
   */
  place(req: AllocationRequest): Placement {
    const slot = this.#allocate(req);
    return { agent: slot.info, warm: this.#lastWarm, image: this.#lastImage };
  }

  #allocate(req: AllocationRequest): Slot {
    requireText(req.image, "image");
    requireText(req.pool, "pool");
    requireText(req.namespace, "namespace");
    const ports = req.ports;
    if (ports !== undefined) validatePorts(ports);

    const group = this.#groups.get(req.pool)?.get(req.namespace);
    if (group === undefined) throw new NoCapacityError(req.pool, req.namespace, "has no agents");
    const image = normalizeCached(this.#imageCache, req.image);
    const filing = this.#filing;
    let withWarm = group.byWarm.get(image);
    if (withWarm === undefined && group.warmHolders.has(image)) {
      withWarm = filing.materialize(group, image, true);
    }
    let slot = withWarm === undefined ? undefined : filing.pick(withWarm, ports);
    const warm = slot !== undefined;
    if (slot === undefined) {
      let withImage = group.byImage.get(image);
      if (withImage === undefined && group.holders.has(image)) {
        withImage = filing.materialize(group, image, false);
      }
      if (withImage !== undefined) slot = filing.pick(withImage, ports);
      if (slot === undefined) slot = filing.pick(group.all, ports);
      if (slot === undefined) throw noCapacity(group, ports);
    }

    const info = slot.info;
    if (ports !== undefined) {
      for (let i = 0; i < ports.length; i++) info.ports.add(ports[i]);
    }
    if (warm) {
      const left = info.warm.get(image)! - 1;
      info.warm.set(image, left);
      slot.warmTaken = true;
      if (left === 0) {
        // Out of the warm index now; the refile below makes its entry there dead.
        dequeue(withWarm!, slot.filed);
        const warmIndexes = slot.warmIndexes;
        const at = warmIndexes.indexOf(withWarm!);
        warmIndexes[at] = warmIndexes[warmIndexes.length - 1];
        warmIndexes.pop();
      }
    }
    this.#lastWarm = warm;
    this.#lastImage = image;
    info.allocated++;
    filing.refile(slot);
    return slot;
  }

  /**
   * Frees one slot (the count never drops below 0) and the given ports on an
   * agent. Returns false when the agent is unknown (e.g. already removed).
   * Warm counts stay as they are: a warm container serves one sandbox, so one
   * that was counted as taken is not given back; the agent's next heartbeat
   * says what is left.
   */
  release(agentId: string, ports?: readonly number[]): boolean {
    const slot = this.#byId.get(agentId);
    if (slot === undefined) return false;
    const info = slot.info;
    if (ports !== undefined) {
      for (let i = 0; i < ports.length; i++) info.ports.delete(ports[i]);
    }
    if (info.allocated > 0) {
      info.allocated--;
      this.#filing.refile(slot);
    }
    return true;
  }

  /**
   * Re-reserves a slot and ports for a sandbox that already runs on the
   * agent, e.g. when a restarted controller adopts it. Unlike allocate it
   * may take an agent past its capacity, since the sandbox exists either way.
   * Returns false when the agent is unknown.
   */
  restore(agentId: string, ports?: readonly number[]): boolean {
    const slot = this.#byId.get(agentId);
    if (slot === undefined) return false;
    const info = slot.info;
    if (ports !== undefined) {
      for (let i = 0; i < ports.length; i++) info.ports.add(ports[i]);
    }
    info.allocated++;
    this.#filing.refile(slot);
    return true;
  }

  /** Forgets an agent; returns it, or undefined when it was not registered. */
  remove(agentId: string): AgentInfo | undefined {
    const slot = this.#byId.get(agentId);
    if (slot === undefined) return undefined;
    this.#drop(slot);
    return slot.info;
  }

  /**
   * Removes the agents whose last heartbeat is older than `now - timeoutMs`
   * and returns them, oldest first. Costs one comparison when none is stale;
   * after heartbeats arrived out of time order (a clock that went back) the
   * next call re-sorts all agents once.
   */
  cleanupStaleAgents(now: number, timeoutMs: number): AgentInfo[] {
    const removed: AgentInfo[] = [];
    let slot = this.#heartbeats.oldest();
    const cutoff = now - timeoutMs;
    while (slot !== null && slot.info.lastHeartbeat < cutoff) {
      const next = slot.hbNext;
      this.#drop(slot);
      removed.push(slot.info);
      slot = next;
    }
    return removed;
  }

  #add(
    reg: AgentRegistration,
    now: number,
    opts: { ready: boolean; advertiseHost: string; warmReport: ReadonlyMap<string, number> },
  ): AgentInfo {
    const { ready, advertiseHost, warmReport } = opts;
    const images = normalizeAll(this.#imageCache, reg.images);
    const group = groupOf(this.#groups, reg);
    const num = this.#filing.takeNum();
    const slot = newSlot(reg, { num, group, images, ready, advertiseHost, warmReport, now });
    this.#filing.adopt(slot);
    group.members.add(slot);
    if (ready) group.ready++;
    attachImages(slot);
    applyWarm(slot, warmReport);
    linkWarm(slot);
    this.#filing.file(slot);
    this.#byId.set(slot.info.id, slot);
    this.#list?.push(slot.info);
    this.#heartbeats.touch(slot, now);
    return slot.info;
  }

  /** Takes a slot out of every structure and frees its number. */
  #drop(slot: Slot): void {
    this.#filing.unfile(slot);
    detachImages(slot);
    detachWarm(slot);
    leaveGroup(this.#groups, slot);
    this.#heartbeats.unlink(slot);
    this.#byId.delete(slot.info.id);
    this.#filing.forget(slot);
    this.#list = null;
  }
}
