/**
 * The in-memory registry of agents and the placement of sandboxes on them
 * (shared/DESIGN.md section 6).
 *
 * Placement rule, in order:
 * 1. Candidates are the agents of the request's pool and namespace that are
 *    ready, have `allocated < capacity`, and hold none of the requested ports.
 * 2. An agent that has the (normalized) image beats one that does not.
 * 3. Then the least allocated agent wins.
 * 4. Ties go to the agent whose placement state changed least recently
 *    (first in, first out). An agent's placement state changes when it is
 *    first registered, whenever its `allocated` count changes (allocate,
 *    restore, or a release that frees a slot), and when a registerOrUpdate
 *    changes its pool, namespace, capacity, ready flag or (normalized) image
 *    set. A heartbeat that changes only the address, advertised host or
 *    heartbeat time, and a release of ports alone, leave it in place. So
 *    among equally loaded agents, sandboxes go round the agents in turn.
 *
 * How: each (pool, namespace) group has an index of its placeable agents by
 * load level, and so has each (group, image) pair that a request has asked
 * for (built on the first such request, so images nobody asks for cost
 * nothing). A level is a FIFO queue of (agent number, stamp) entries. Every
 * placement change gives the agent a new stamp and appends one entry to each
 * index it is in; entries carrying an older stamp are dead, skipped at the
 * head of a queue and compacted away when its buffer fills. So a change never
 * touches other agents' records (no list neighbours to relink), and the
 * stamps to check sit in one dense array: the memory an operation touches,
 * and so its cost, stays the same at 10,000 agents as at 100.
 *
 * Cost: allocate, release and restore do work in proportion to the number of
 * requested images the agent concerned has (one queue entry each), never to
 * the number of agents, except that allocate steps past agents holding a
 * requested port, so asking for a port that most agents of the pool hold
 * costs in proportion to those agents. registerOrUpdate with a changed image
 * set costs in proportion to the agent's images; a plain heartbeat, a few
 * comparisons. The first request for an image in a group scans the group once.
 *
 * @module
 */
import type { AgentInfo, AgentRegistration, AllocationRequest } from "./agent_info.ts";
import { InvalidArgumentError, NoCapacityError } from "./errors.ts";
import { normalizeImage } from "./normalize_image.ts";
import { validatePorts } from "./validate_ports.ts";

/** The internal, writable shape behind each exposed {@linkcode AgentInfo}. */
interface Info {
  id: string;
  address: string;
  advertiseHost: string;
  pool: string;
  namespace: string;
  capacity: number;
  allocated: number;
  images: Set<string>;
  ports: Set<number>;
  ready: boolean;
  lastHeartbeat: number;
}

/**
 * One load level of an index: a FIFO queue of entries in two parallel
 * growable buffers. Entries `head..end-1` may be live; an entry is live while
 * its stamp equals its agent's current stamp.
 */
interface Queue {
  nums: Int32Array;
  stamps: Float64Array;
  head: number;
  end: number;
  /** Live entries (agents filed at this level). */
  live: number;
}

/** Placeable agents by load: one per group, and one per (group, image). */
interface Index {
  /** `levels[k]` queues the agents with `allocated === k`. */
  readonly levels: Queue[];
  /** No level below this one has live entries; lets a search skip emptied levels. */
  low: number;
  /** Live entries across all levels: the agents able to take a sandbox now. */
  count: number;
  /** The image of a (group, image) index; empty for a group's own index. */
  readonly image: string;
}

/** The agents of one (pool, namespace). */
interface Group {
  readonly pool: string;
  readonly namespace: string;
  readonly members: Set<Slot>;
  /** Ready members. */
  ready: number;
  readonly all: Index;
  /** How many members have each image. */
  readonly holders: Map<string, number>;
  /**
   * Indexes of the images that requests have asked for, built on the first
   * such request: an agent is filed only under those, so hosts caching many
   * images that nobody asks for pay nothing for them per allocation.
   */
  readonly byImage: Map<string, Index>;
}

/** Everything the registry keeps about one agent. */
interface Slot {
  readonly info: Info;
  /** The agent's position in the registry's dense per-agent arrays. */
  readonly num: number;
  group: Group;
  /** `indexes[0]` is the group's own index; the rest are its image indexes. */
  readonly indexes: Index[];
  /** The level it is filed at in all of `indexes`, or -1 when not placeable. */
  filed: number;
  /** The images array as last sent, so an unchanged heartbeat skips normalization. */
  rawImages: string[];
  /** Neighbours in the heartbeat-ordered list. */
  hbPrev: Slot | null;
  hbNext: Slot | null;
}

/** Normalized image references kept at most; beyond it the oldest entry goes. */
const IMAGE_CACHE_LIMIT = 1024;
/** How far a heartbeat that arrives out of order is walked back to keep the list sorted. */
const HEARTBEAT_WALK_LIMIT = 8;
/** First buffer size of a queue, in entries. */
const QUEUE_START = 8;

function newIndex(image: string): Index {
  return { levels: [], low: 0, count: 0, image };
}

function newQueue(): Queue {
  return {
    nums: new Int32Array(QUEUE_START),
    stamps: new Float64Array(QUEUE_START),
    head: 0,
    end: 0,
    live: 0,
  };
}

/**
 * Makes room at the end of a full queue: drops dead entries, and doubles the
 * buffers only if that frees less than half, so each compaction's cost is
 * covered by the appends that filled the space it frees.
 */
function makeRoom(q: Queue, stampOf: Float64Array): void {
  const nums = q.nums;
  const stamps = q.stamps;
  let to = 0;
  for (let i = q.head; i < q.end; i++) {
    const num = nums[i];
    if (stampOf[num] === stamps[i]) {
      nums[to] = num;
      stamps[to] = stamps[i];
      to++;
    }
  }
  q.head = 0;
  q.end = to;
  if (to * 2 > nums.length) {
    const grownNums = new Int32Array(nums.length * 2);
    const grownStamps = new Float64Array(nums.length * 2);
    grownNums.set(nums.subarray(0, to));
    grownStamps.set(stamps.subarray(0, to));
    q.nums = grownNums;
    q.stamps = grownStamps;
  }
}

/** Appends a live entry for agent `num` at level `k` of `index`. */
function enqueue(index: Index, k: number, num: number, stamp: number, stampOf: Float64Array): void {
  const levels = index.levels;
  while (levels.length <= k) levels.push(newQueue());
  const q = levels[k];
  if (q.end === q.nums.length) makeRoom(q, stampOf);
  q.nums[q.end] = num;
  q.stamps[q.end] = stamp;
  q.end++;
  q.live++;
  index.count++;
  if (k < index.low) index.low = k;
}

/** Counts one live entry at level `k` of `index` as dead (the stamp change made it so). */
function dequeue(index: Index, k: number): void {
  const q = index.levels[k];
  if (--q.live === 0) {
    q.head = 0;
    q.end = 0;
  }
  index.count--;
}

function holdsAny(held: Set<number>, ports: readonly number[]): boolean {
  if (held.size === 0) return false;
  for (let i = 0; i < ports.length; i++) {
    if (held.has(ports[i])) return true;
  }
  return false;
}

function requireText(value: unknown, field: string): void {
  if (typeof value !== "string" || value === "") {
    throw new InvalidArgumentError(field, "must not be empty");
  }
}

/** The host part of `host:port` or `[v6]:port`; the whole string when it carries no port. */
function hostOf(address: string): string {
  if (address.startsWith("[")) {
    const end = address.indexOf("]");
    return end < 0 ? address : address.slice(0, end + 1);
  }
  const colon = address.indexOf(":");
  if (colon < 0 || address.indexOf(":", colon + 1) >= 0) return address;
  return address.slice(0, colon);
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return false;
  }
  return true;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) {
    if (!b.has(x)) return false;
  }
  return true;
}

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
 * ```
 */
export class Registry {
  readonly #byId = new Map<string, Slot>();
  /** pool -> namespace -> group; nested so a lookup builds no key string. */
  readonly #groups = new Map<string, Map<string, Group>>();
  readonly #imageCache = new Map<string, string>();
  /** getAllAgents' answer in registration order; null after a removal until rebuilt. */
  #list: AgentInfo[] | null = [];
  /** Agents by lastHeartbeat, oldest first, unless #hbUnsorted. */
  #hbHead: Slot | null = null;
  #hbTail: Slot | null = null;
  #hbUnsorted = false;
  /** The last stamp handed out; stamps only grow, so queue order is stamp order. */
  #stamp = 0;
  /** By agent number: its current stamp, or 0 while it is not placeable or the number is free. */
  #stampOf = new Float64Array(64);
  /** By agent number: its slot. */
  readonly #slotOf: (Slot | undefined)[] = [];
  readonly #freeNums: number[] = [];

  /** Number of agents registered. */
  get size(): number {
    return this.#byId.size;
  }

  /**
   * Adds an agent, or refreshes one already known (a heartbeat). A known
   * agent keeps its `allocated` count and held ports; everything else is
   * taken from `reg`. Images are normalized. `now` (milliseconds) becomes its
   * `lastHeartbeat`.
   *
   * @throws {InvalidArgumentError} `agent_id`, `pool` or `namespace` is empty, or
   *   `capacity` is not a non-negative integer.
   */
  registerOrUpdate(reg: AgentRegistration, now: number): AgentInfo {
    requireText(reg.id, "agent_id");
    requireText(reg.pool, "pool");
    requireText(reg.namespace, "namespace");
    const capacity = reg.capacity;
    if (!Number.isInteger(capacity) || capacity < 0) {
      throw new InvalidArgumentError("capacity", `must be a non-negative integer, got ${capacity}`);
    }
    const ready = reg.ready ?? true;
    const advertiseHost = reg.advertiseHost || hostOf(reg.address);
    const slot = this.#byId.get(reg.id);
    if (slot === undefined) return this.#add(reg, now, ready, advertiseHost);

    const info = slot.info;
    info.address = reg.address;
    info.advertiseHost = advertiseHost;
    let images: Set<string> | null = null;
    if (!sameStrings(reg.images, slot.rawImages)) {
      slot.rawImages = reg.images.slice();
      const normalized = this.#normalizeAll(reg.images);
      if (!sameSet(normalized, info.images)) images = normalized;
    }
    const moved = reg.pool !== info.pool || reg.namespace !== info.namespace;
    if (images !== null || moved || ready !== info.ready || capacity !== info.capacity) {
      this.#unfile(slot);
      if (images !== null || moved) this.#detachImages(slot);
      if (moved) {
        this.#leaveGroup(slot);
        info.pool = reg.pool;
        info.namespace = reg.namespace;
        info.ready = ready;
        this.#joinGroup(slot);
      } else if (ready !== info.ready) {
        slot.group.ready += ready ? 1 : -1;
        info.ready = ready;
      }
      if (images !== null) info.images = images;
      if (images !== null || moved) this.#attachImages(slot);
      info.capacity = capacity;
      this.#file(slot);
    }
    this.#touch(slot, now);
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
   * reserves one slot and the requested ports on it before returning.
   *
   * @throws {InvalidArgumentError} empty `image`, `pool` or `namespace`; a port
   *   that is not an integer within 1..65535, or one listed twice.
   * @throws {NoCapacityError} no agent qualifies; the message says whether the
   *   pool has no agents, no ready agents, no free slot, or no free slot with
   *   those ports free.
   */
  allocate(req: AllocationRequest): AgentInfo {
    requireText(req.image, "image");
    requireText(req.pool, "pool");
    requireText(req.namespace, "namespace");
    const ports = req.ports;
    if (ports !== undefined) validatePorts(ports);

    const group = this.#groups.get(req.pool)?.get(req.namespace);
    if (group === undefined) throw new NoCapacityError(req.pool, req.namespace, "has no agents");
    const image = this.#normalize(req.image);
    let withImage = group.byImage.get(image);
    if (withImage === undefined && group.holders.has(image)) {
      withImage = this.#materialize(group, image);
    }
    let slot = withImage === undefined ? undefined : this.#pick(withImage, ports);
    if (slot === undefined) slot = this.#pick(group.all, ports);
    if (slot === undefined) throw noCapacity(group, ports);

    const info = slot.info;
    if (ports !== undefined) {
      for (let i = 0; i < ports.length; i++) info.ports.add(ports[i]);
    }
    info.allocated++;
    this.#refile(slot);
    return info;
  }

  /**
   * Frees one slot (the count never drops below 0) and the given ports on an
   * agent. Returns false when the agent is unknown (e.g. already removed).
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
      this.#refile(slot);
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
    this.#refile(slot);
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
    if (this.#hbUnsorted) this.#resortHeartbeats();
    const cutoff = now - timeoutMs;
    let slot = this.#hbHead;
    while (slot !== null && slot.info.lastHeartbeat < cutoff) {
      const next = slot.hbNext;
      this.#drop(slot);
      removed.push(slot.info);
      slot = next;
    }
    return removed;
  }

  /**
   * The first live agent of `index`, by level then FIFO, that holds none of
   * `ports`. Dead entries met at the head of a queue are dropped on the way.
   */
  #pick(index: Index, ports: readonly number[] | undefined): Slot | undefined {
    if (index.count === 0) return undefined;
    const stampOf = this.#stampOf;
    const levels = index.levels;
    for (let k = index.low; k < levels.length; k++) {
      const q = levels[k];
      if (q.live === 0) {
        if (k === index.low) index.low = k + 1;
        continue;
      }
      const nums = q.nums;
      const stamps = q.stamps;
      const end = q.end;
      let i = q.head;
      while (i < end && stampOf[nums[i]] !== stamps[i]) i++;
      q.head = i;
      if (ports === undefined || ports.length === 0) return this.#slotOf[nums[i]];
      for (; i < end; i++) {
        const num = nums[i];
        if (stampOf[num] !== stamps[i]) continue;
        const slot = this.#slotOf[num]!;
        if (!holdsAny(slot.info.ports, ports)) return slot;
      }
    }
    return undefined;
  }

  /** Takes the agent out of its indexes: its entries die, the levels' live counts drop. */
  #unfile(slot: Slot): void {
    const k = slot.filed;
    if (k < 0) return;
    const indexes = slot.indexes;
    for (let i = 0; i < indexes.length; i++) dequeue(indexes[i], k);
    slot.filed = -1;
    this.#stampOf[slot.num] = 0;
  }

  /**
   * Files the agent, if placeable, last at its load level in each of its
   * indexes under a new stamp: this is what makes it the newest of its level.
   */
  #file(slot: Slot): void {
    const info = slot.info;
    if (!info.ready || info.allocated >= info.capacity) return;
    const k = info.allocated;
    const stamp = ++this.#stamp;
    const stampOf = this.#stampOf;
    stampOf[slot.num] = stamp;
    slot.filed = k;
    const indexes = slot.indexes;
    for (let i = 0; i < indexes.length; i++) enqueue(indexes[i], k, slot.num, stamp, stampOf);
  }

  /** #unfile then #file in one pass over the indexes, for the hot paths. */
  #refile(slot: Slot): void {
    const info = slot.info;
    const from = slot.filed;
    const to = info.ready && info.allocated < info.capacity ? info.allocated : -1;
    const stampOf = this.#stampOf;
    const num = slot.num;
    const stamp = to < 0 ? 0 : ++this.#stamp;
    stampOf[num] = stamp;
    slot.filed = to;
    const indexes = slot.indexes;
    for (let i = 0; i < indexes.length; i++) {
      const index = indexes[i];
      if (from >= 0) dequeue(index, from);
      if (to >= 0) enqueue(index, to, num, stamp, stampOf);
    }
  }

  /**
   * Builds the index of `image` in `group` on its first request. Agents
   * already placeable enter it in the order of their current stamps, which is
   * the order they would have had had the index always existed.
   */
  #materialize(group: Group, image: string): Index {
    const index = newIndex(image);
    group.byImage.set(image, index);
    const placeable: Slot[] = [];
    for (const slot of group.members) {
      if (!slot.info.images.has(image)) continue;
      slot.indexes.push(index);
      if (slot.filed >= 0) placeable.push(slot);
    }
    const stampOf = this.#stampOf;
    placeable.sort((a, b) => stampOf[a.num] - stampOf[b.num]);
    for (const slot of placeable) enqueue(index, slot.filed, slot.num, stampOf[slot.num], stampOf);
    return index;
  }

  #add(reg: AgentRegistration, now: number, ready: boolean, advertiseHost: string): AgentInfo {
    const info: Info = {
      id: reg.id,
      address: reg.address,
      advertiseHost,
      pool: reg.pool,
      namespace: reg.namespace,
      capacity: reg.capacity,
      allocated: 0,
      images: this.#normalizeAll(reg.images),
      ports: new Set(),
      ready,
      lastHeartbeat: now,
    };
    const group = this.#group(reg.pool, reg.namespace);
    const slot: Slot = {
      info,
      num: this.#takeNum(),
      group,
      indexes: [group.all],
      filed: -1,
      rawImages: reg.images.slice(),
      hbPrev: null,
      hbNext: null,
    };
    this.#slotOf[slot.num] = slot;
    group.members.add(slot);
    if (ready) group.ready++;
    this.#attachImages(slot);
    this.#file(slot);
    this.#byId.set(info.id, slot);
    this.#list?.push(info);
    this.#touch(slot, now);
    return info;
  }

  /** A free agent number, growing the dense arrays when none is left. */
  #takeNum(): number {
    const reused = this.#freeNums.pop();
    if (reused !== undefined) return reused;
    const num = this.#slotOf.length;
    if (num === this.#stampOf.length) {
      const grown = new Float64Array(num * 2);
      grown.set(this.#stampOf);
      this.#stampOf = grown;
    }
    this.#slotOf.push(undefined);
    return num;
  }

  /** Takes a slot out of every structure and frees its number. */
  #drop(slot: Slot): void {
    this.#unfile(slot);
    this.#detachImages(slot);
    this.#leaveGroup(slot);
    const prev = slot.hbPrev;
    const next = slot.hbNext;
    if (prev === null) this.#hbHead = next;
    else prev.hbNext = next;
    if (next === null) this.#hbTail = prev;
    else next.hbPrev = prev;
    slot.hbPrev = null;
    slot.hbNext = null;
    this.#byId.delete(slot.info.id);
    this.#slotOf[slot.num] = undefined;
    this.#freeNums.push(slot.num);
    this.#list = null;
  }

  #group(pool: string, namespace: string): Group {
    let byNamespace = this.#groups.get(pool);
    if (byNamespace === undefined) {
      byNamespace = new Map();
      this.#groups.set(pool, byNamespace);
    }
    let group = byNamespace.get(namespace);
    if (group === undefined) {
      group = {
        pool,
        namespace,
        members: new Set(),
        ready: 0,
        all: newIndex(""),
        holders: new Map(),
        byImage: new Map(),
      };
      byNamespace.set(namespace, group);
    }
    return group;
  }

  /** Leaves the slot's group (unfiled, image indexes already detached). */
  #leaveGroup(slot: Slot): void {
    const group = slot.group;
    group.members.delete(slot);
    if (slot.info.ready) group.ready--;
    if (group.members.size === 0) {
      const byNamespace = this.#groups.get(group.pool);
      if (byNamespace !== undefined) {
        byNamespace.delete(group.namespace);
        if (byNamespace.size === 0) this.#groups.delete(group.pool);
      }
    }
  }

  /** Joins the group of the slot's (already updated) pool and namespace. */
  #joinGroup(slot: Slot): void {
    const info = slot.info;
    const group = this.#group(info.pool, info.namespace);
    slot.group = group;
    slot.indexes[0] = group.all;
    group.members.add(slot);
    if (info.ready) group.ready++;
  }

  /** Counts the slot's images in its group and joins the indexes built for them (unfiled). */
  #attachImages(slot: Slot): void {
    const group = slot.group;
    for (const image of slot.info.images) {
      group.holders.set(image, (group.holders.get(image) ?? 0) + 1);
      const index = group.byImage.get(image);
      if (index !== undefined) slot.indexes.push(index);
    }
  }

  /** Undoes #attachImages (unfiled), dropping what no member of the group has any more. */
  #detachImages(slot: Slot): void {
    const group = slot.group;
    for (const image of slot.info.images) {
      const left = (group.holders.get(image) ?? 1) - 1;
      if (left > 0) {
        group.holders.set(image, left);
      } else {
        group.holders.delete(image);
        group.byImage.delete(image);
      }
    }
    slot.indexes.length = 1;
  }

  /** Sets `lastHeartbeat` and keeps the heartbeat list ordered. */
  #touch(slot: Slot, now: number): void {
    slot.info.lastHeartbeat = now;
    const prevSlot = slot.hbPrev;
    const inList = prevSlot !== null || this.#hbHead === slot;
    if (inList && this.#hbTail === slot) {
      if (prevSlot === null || prevSlot.info.lastHeartbeat <= now) return;
    }
    if (inList) {
      const next = slot.hbNext;
      if (prevSlot === null) this.#hbHead = next;
      else prevSlot.hbNext = next;
      if (next === null) this.#hbTail = prevSlot;
      else next.hbPrev = prevSlot;
    }
    let after = this.#hbTail;
    for (let steps = 0; after !== null && after.info.lastHeartbeat > now; steps++) {
      if (steps === HEARTBEAT_WALK_LIMIT) {
        // Far out of order (the clock went back): append, and let the next
        // cleanup sort everything once instead of walking on every heartbeat.
        after = this.#hbTail;
        this.#hbUnsorted = true;
        break;
      }
      after = after.hbPrev;
    }
    slot.hbPrev = after;
    if (after === null) {
      slot.hbNext = this.#hbHead;
      this.#hbHead = slot;
    } else {
      slot.hbNext = after.hbNext;
      after.hbNext = slot;
    }
    if (slot.hbNext === null) this.#hbTail = slot;
    else slot.hbNext.hbPrev = slot;
  }

  #resortHeartbeats(): void {
    const slots: Slot[] = [];
    for (let s = this.#hbHead; s !== null; s = s.hbNext) slots.push(s);
    slots.sort((a, b) => a.info.lastHeartbeat - b.info.lastHeartbeat);
    let prev: Slot | null = null;
    for (const s of slots) {
      s.hbPrev = prev;
      s.hbNext = null;
      if (prev === null) this.#hbHead = s;
      else prev.hbNext = s;
      prev = s;
    }
    this.#hbTail = prev;
    this.#hbUnsorted = false;
  }

  #normalize(ref: string): string {
    const cache = this.#imageCache;
    let normalized = cache.get(ref);
    if (normalized === undefined) {
      normalized = normalizeImage(ref);
      if (cache.size >= IMAGE_CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
      cache.set(ref, normalized);
    }
    return normalized;
  }

  #normalizeAll(refs: readonly string[]): Set<string> {
    const images = new Set<string>();
    for (const ref of refs) {
      if (ref !== "") images.add(this.#normalize(ref));
    }
    return images;
  }
}

/** The no-capacity error, with the reason told apart by the group's counters. */
function noCapacity(group: Group, ports: readonly number[] | undefined): NoCapacityError {
  if (group.ready === 0) {
    return new NoCapacityError(group.pool, group.namespace, "has no ready agents");
  }
  if (group.all.count === 0 || ports === undefined || ports.length === 0) {
    return new NoCapacityError(group.pool, group.namespace);
  }
  return new NoCapacityError(
    group.pool,
    group.namespace,
    `has no agent with a free slot and ports ${ports.join(", ")} free`,
  );
}
