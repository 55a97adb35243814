/**
 * Runs seeded random operations against the indexed Registry and against a
 * plain linear-scan model written here from the placement rule, and checks
 * after every step that both made the same decision and hold the same state.
 */
import assert from "node:assert/strict";
import {
  type AgentRegistration,
  type AllocationRequest,
  InvalidArgumentError,
  NoCapacityError,
  normalizeImage,
  Registry,
} from "../../registry/mod.ts";

/** mulberry32: small, deterministic, good enough to drive a test. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface ModelAgent {
  id: string;
  address: string;
  advertiseHost: string;
  pool: string;
  namespace: string;
  capacity: number;
  allocated: number;
  images: Set<string>;
  /** A list, not a set, so that a port held twice would show. */
  ports: number[];
  ready: boolean;
  /** Warm containers by normalized image, zero counts kept. */
  warm: Map<string, number>;
  lastHeartbeat: number;
  /** When its placement state last changed; the lowest wins a tie. */
  stamp: number;
  /** The same, or later when only its warm image set changed since; breaks ties among warm agents. */
  warmStamp: number;
}

/** The images with a warm container (count above 0), sorted. */
function warmSet(warm: ReadonlyMap<string, number>): string {
  return [...warm].filter(([, n]) => n > 0).map(([image]) => image).sort().join("\n");
}

/** The warm report's rules, applied one entry at a time in the record's own order. */
function readWarm(raw: Readonly<Record<string, number>> | undefined): Map<string, number> {
  const warm = new Map<string, number>();
  for (const [ref, count] of Object.entries(raw ?? {})) {
    if (ref === "") throw new InvalidArgumentError("warm", "image name must not be empty");
    if (/[\s\p{Cc}]/u.test(ref)) {
      throw new InvalidArgumentError(
        "warm",
        `image name must not contain whitespace or control characters, got ${JSON.stringify(ref)}`,
      );
    }
    if (!Number.isInteger(count) || count < 0) {
      throw new InvalidArgumentError(
        `warm[${ref}]`,
        `must be a non-negative integer, got ${count}`,
      );
    }
    const image = normalizeImage(ref);
    warm.set(image, (warm.get(image) ?? 0) + count);
  }
  return warm;
}

function hostOf(address: string): string {
  const colon = address.lastIndexOf(":");
  return colon < 0 ? address : address.slice(0, colon);
}

function sameSet<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}

/** The placement rule by brute force: filter every agent, then take the best by a full sort. */
class Model {
  readonly agents = new Map<string, ModelAgent>();
  #clock = 0;

  register(reg: AgentRegistration, now: number): ModelAgent {
    for (
      const [field, value] of [["agent_id", reg.id], ["pool", reg.pool], [
        "namespace",
        reg.namespace,
      ]]
    ) {
      if (value === "") throw new InvalidArgumentError(field, "must not be empty");
    }
    if (!Number.isInteger(reg.capacity) || reg.capacity < 0) {
      throw new InvalidArgumentError(
        "capacity",
        `must be a non-negative integer, got ${reg.capacity}`,
      );
    }
    const warm = readWarm(reg.warm);
    const images = new Set(reg.images.filter((i) => i !== "").map(normalizeImage));
    const ready = reg.ready ?? true;
    const known = this.agents.get(reg.id);
    const fields = {
      address: reg.address,
      advertiseHost: reg.advertiseHost || hostOf(reg.address),
      pool: reg.pool,
      namespace: reg.namespace,
      capacity: reg.capacity,
      images,
      ready,
      warm,
      lastHeartbeat: now,
    };
    if (known === undefined) {
      const stamp = ++this.#clock;
      const created = { id: reg.id, allocated: 0, ports: [], stamp, warmStamp: stamp, ...fields };
      this.agents.set(reg.id, created);
      return created;
    }
    const placementChanged = known.pool !== reg.pool || known.namespace !== reg.namespace ||
      known.capacity !== reg.capacity || known.ready !== ready || !sameSet(known.images, images);
    const warmSetChanged = warmSet(known.warm) !== warmSet(warm);
    Object.assign(known, fields);
    if (placementChanged) known.stamp = known.warmStamp = ++this.#clock;
    else if (warmSetChanged) known.warmStamp = ++this.#clock;
    return known;
  }

  allocate(req: AllocationRequest): { agent: ModelAgent; warm: boolean; image: string } {
    if (req.image === "") throw new InvalidArgumentError("image", "must not be empty");
    if (req.pool === "") throw new InvalidArgumentError("pool", "must not be empty");
    if (req.namespace === "") throw new InvalidArgumentError("namespace", "must not be empty");
    const ports = req.ports ?? [];
    ports.forEach((p, i) => {
      if (!Number.isInteger(p)) {
        throw new InvalidArgumentError(`exposed_ports[${i}]`, `must be an integer, got ${p}`);
      }
      if (p < 1 || p > 65535) {
        throw new InvalidArgumentError(`exposed_ports[${i}]`, `must be within 1..65535, got ${p}`);
      }
    });
    ports.forEach((p, i) => {
      if (ports.indexOf(p) < i) {
        throw new InvalidArgumentError(`exposed_ports[${i}]`, `repeats port ${p}`);
      }
    });
    const group = [...this.agents.values()].filter((a) =>
      a.pool === req.pool && a.namespace === req.namespace
    );
    const placeable = group.filter((a) => a.ready && a.allocated < a.capacity);
    const candidates = placeable.filter((a) => !ports.some((p) => a.ports.includes(p)));
    if (candidates.length === 0) {
      let detail: string | undefined;
      if (group.length === 0) detail = "has no agents";
      else if (!group.some((a) => a.ready)) detail = "has no ready agents";
      else if (placeable.length > 0 && ports.length > 0) {
        detail = `has no agent with a free slot and ports ${ports.join(", ")} free`;
      }
      throw new NoCapacityError(req.pool, req.namespace, detail);
    }
    const image = normalizeImage(req.image);
    const hasWarm = (a: ModelAgent) => (a.warm.get(image) ?? 0) > 0;
    const rank = (a: ModelAgent): [number, number, number] => [
      hasWarm(a) ? 0 : a.images.has(image) ? 1 : 2,
      a.allocated,
      hasWarm(a) ? a.warmStamp : a.stamp,
    ];
    candidates.sort((x, y) => {
      const [rx, ry] = [rank(x), rank(y)];
      return rx[0] - ry[0] || rx[1] - ry[1] || rx[2] - ry[2];
    });
    const chosen = candidates[0];
    const warm = hasWarm(chosen);
    if (warm) chosen.warm.set(image, chosen.warm.get(image)! - 1);
    chosen.allocated++;
    chosen.ports.push(...ports);
    chosen.stamp = chosen.warmStamp = ++this.#clock;
    return { agent: chosen, warm, image };
  }

  release(id: string, ports: readonly number[]): boolean {
    const a = this.agents.get(id);
    if (a === undefined) return false;
    a.ports = a.ports.filter((p) => !ports.includes(p));
    if (a.allocated > 0) {
      a.allocated--;
      a.stamp = a.warmStamp = ++this.#clock;
    }
    return true;
  }

  restore(id: string, ports: readonly number[]): boolean {
    const a = this.agents.get(id);
    if (a === undefined) return false;
    for (const p of ports) if (!a.ports.includes(p)) a.ports.push(p);
    a.allocated++;
    a.stamp = a.warmStamp = ++this.#clock;
    return true;
  }

  remove(id: string): ModelAgent | undefined {
    const a = this.agents.get(id);
    this.agents.delete(id);
    return a;
  }

  cleanup(now: number, timeoutMs: number): ModelAgent[] {
    const stale = [...this.agents.values()].filter((a) => a.lastHeartbeat < now - timeoutMs);
    for (const a of stale) this.agents.delete(a.id);
    return stale;
  }
}

/** The agents, pools and namespaces a run draws from. */
interface World {
  readonly ids: readonly string[];
  readonly pools: readonly string[];
  readonly namespaces: readonly string[];
}

/** Several small groups: agents move between them, groups empty and refill. */
const SPREAD: World = {
  ids: Array.from({ length: 14 }, (_, i) => `agent-${i}`),
  pools: ["default-pool", "gpu"],
  namespaces: ["default", "team-b"],
};

/** One crowded group, so that load levels hold many agents and their queues fill and grow. */
const CROWDED: World = {
  ids: Array.from({ length: 60 }, (_, i) => `agent-${i}`),
  pools: ["default-pool"],
  namespaces: ["default"],
};
const IMAGES = [
  "busybox",
  "busybox:latest",
  "docker.io/library/busybox:latest",
  "python:3.12",
  "ghcr.io/acme/tool:1",
  "alpine",
  "localhost:5000/app@sha256:ab",
];
/** Other spellings of the same normalized images. */
const ALIASES: Record<string, string> = {
  "busybox": "busybox:latest",
  "busybox:latest": "docker.io/library/busybox:latest",
  "docker.io/library/busybox:latest": "busybox",
  "alpine": "docker.io/library/alpine",
};
const PORTS = [8080, 8081, 8082, 8083, 9090];
const BAD_WARM: Record<string, number>[] = [
  { busybox: -1 },
  { alpine: 1.5 },
  { "": 1 },
  { "bad name": 1 },
  { "python:3.12": 2, "tab\there": 1 },
];
const BAD_PORTS = [0, 70000, 80.5, -1];

/** One outstanding sandbox as the test remembers it, to release it later. */
interface Placed {
  agent: string;
  ports: number[];
}

function outcome(fn: () => unknown): unknown {
  try {
    return { ok: fn() };
  } catch (err) {
    if (err instanceof InvalidArgumentError || err instanceof NoCapacityError) {
      return { error: err.constructor.name, message: err.message };
    }
    throw err;
  }
}

function assertSameState(registry: Registry, model: Model): void {
  assert.equal(registry.size, model.agents.size);
  assert.deepEqual(registry.getAllAgents().map((a) => a.id), [...model.agents.keys()]);
  for (const m of model.agents.values()) {
    const r = registry.getAgentById(m.id);
    assert.ok(r !== undefined, `registry lost ${m.id}`);
    assert.equal(new Set(m.ports).size, m.ports.length, `${m.id} holds a port twice`);
    assert.deepEqual(
      {
        address: r.address,
        advertiseHost: r.advertiseHost,
        pool: r.pool,
        namespace: r.namespace,
        capacity: r.capacity,
        allocated: r.allocated,
        ready: r.ready,
        lastHeartbeat: r.lastHeartbeat,
        images: [...r.images].sort(),
        ports: [...r.ports].sort(),
        warm: [...r.warm].sort(),
      },
      {
        address: m.address,
        advertiseHost: m.advertiseHost,
        pool: m.pool,
        namespace: m.namespace,
        capacity: m.capacity,
        allocated: m.allocated,
        ready: m.ready,
        lastHeartbeat: m.lastHeartbeat,
        images: [...m.images].sort(),
        ports: [...m.ports].sort(),
        warm: [...m.warm].sort(),
      },
      `agent ${m.id} differs`,
    );
  }
}

/** How often a run took the paths the warm rules add, so a test can tell it exercised them. */
interface Tally {
  /** Allocations that chose a warm container. */
  warmHits: number;
  /** Allocations of an image some agent of the pool had warm that still went elsewhere. */
  warmMisses: number;
  /** Heartbeats that changed an agent's warm image set and nothing else placement-relevant. */
  warmSetChanges: number;
}

function runSeed(seed: number, steps: number, world: World, tally: Tally): void {
  const { ids: IDS, pools: POOLS, namespaces: NAMESPACES } = world;
  const rand = prng(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const pickOf = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const registry = new Registry();
  const model = new Model();
  const placed: Placed[] = [];
  /** The last registration each agent sent, for heartbeats that repeat it. */
  const sent = new Map<string, AgentRegistration>();
  let now = 1_000_000;
  let op = "";

  const somePorts = (): number[] => {
    const n = int(3);
    const ports: number[] = [];
    while (ports.length < n) {
      const p = pickOf(PORTS);
      if (!ports.includes(p)) ports.push(p);
    }
    return ports;
  };

  /** Warm counts for a few of the images, in their various spellings; a zero count now and then. */
  const someWarm = (): Record<string, number> => {
    const warm: Record<string, number> = {};
    for (let n = int(4); n > 0; n--) warm[pickOf(IMAGES)] = int(4);
    return warm;
  };

  try {
    for (let step = 0; step < steps; step++) {
      // Mostly forward, sometimes backwards (a clock step), sometimes far.
      const r = rand();
      now += r < 0.05 ? -int(4000) : r < 0.07 ? 20_000 : int(400);
      const roll = rand();
      if (roll < 0.12 && sent.size > 0) {
        // A plain heartbeat: the agent's last registration again, perhaps from a new address.
        const last = pickOf([...sent.values()]);
        let reg = rand() < 0.3 ? { ...last, address: `10.0.1.${int(4)}:5758` } : last;
        if (rand() < 0.3) {
          // The same image set, reordered and spelled differently.
          reg = { ...reg, images: reg.images.map((i) => ALIASES[i] ?? i).reverse() };
        }
        const w = rand();
        if (w < 0.25) {
          // New warm counts, nothing else: a pool drained or refilled.
          reg = { ...reg, warm: someWarm() };
          sent.set(reg.id, reg);
        } else if (w < 0.35 && reg.warm !== undefined) {
          // The same counts respelled and reordered: nothing changes.
          const respelled = Object.entries(reg.warm).map(([i, n]) => [ALIASES[i] ?? i, n]);
          if (new Set(respelled.map(([i]) => i)).size === respelled.length) {
            reg = { ...reg, warm: Object.fromEntries(respelled.reverse()) };
          }
        }
        op = `heartbeat(${JSON.stringify(reg)}, ${now})`;
        const prior = model.agents.get(reg.id);
        const priorWarm = prior === undefined ? "" : warmSet(prior.warm);
        const priorStamp = prior?.stamp;
        assert.equal(registry.registerOrUpdate(reg, now).id, model.register(reg, now).id);
        const after = model.agents.get(reg.id)!;
        if (after.stamp === priorStamp && warmSet(after.warm) !== priorWarm) tally.warmSetChanges++;
      } else if (roll < 0.25) {
        const images = Array.from({ length: int(4) }, () => pickOf(IMAGES));
        const reg: AgentRegistration = {
          id: rand() < 0.01 ? "" : pickOf(IDS),
          address: `10.0.0.${int(4)}:5758`,
          advertiseHost: rand() < 0.2 ? "public.example" : undefined,
          pool: rand() < 0.01 ? "" : pickOf(POOLS),
          namespace: pickOf(NAMESPACES),
          capacity: rand() < 0.01 ? -1 : rand() < 0.05 ? 0 : 1 + int(4),
          images,
          ready: rand() < 0.9,
          warm: rand() < 0.02 ? pickOf(BAD_WARM) : rand() < 0.6 ? someWarm() : undefined,
        };
        op = `registerOrUpdate(${JSON.stringify(reg)}, ${now})`;
        const got = outcome(() => registry.registerOrUpdate(reg, now).id);
        const want = outcome(() => model.register(reg, now).id);
        assert.deepEqual(got, want);
        if (typeof got === "object" && got !== null && "ok" in got) sent.set(reg.id, reg);
      } else if (roll < 0.60) {
        const ports = rand() < 0.05 ? [pickOf(BAD_PORTS)] : somePorts();
        if (rand() < 0.03 && ports.length > 0) ports.push(ports[0]);
        const req: AllocationRequest = {
          pool: rand() < 0.01 ? "" : pickOf(POOLS),
          namespace: pickOf(NAMESPACES),
          image: rand() < 0.01 ? "" : rand() < 0.15 ? "nginx" : pickOf(IMAGES),
          ports: ports.length === 0 && rand() < 0.5 ? undefined : ports,
        };
        op = `allocate(${JSON.stringify(req)})`;
        const before = new Map(
          [...model.agents.values()].map((
            a,
          ) => [a.id, { ...a, ports: [...a.ports], warm: new Map(a.warm) }]),
        );
        const got = outcome(() => {
          const { agent, warm, image } = registry.place(req);
          return { id: agent.id, warm, image };
        });
        const want = outcome(() => {
          const { agent, warm, image } = model.allocate(req);
          return { id: agent.id, warm, image };
        });
        assert.deepEqual(got, want);
        if (typeof got === "object" && got !== null && "ok" in got) {
          const placement = got.ok as { id: string; warm: boolean; image: string };
          const chosen = before.get(placement.id)!;
          if (placement.warm) {
            assert.ok(chosen.warm.get(placement.image)! > 0, "a warm container counted twice");
            tally.warmHits++;
          } else if (
            [...before.values()].some((a) =>
              a.pool === req.pool && a.namespace === req.namespace &&
              (a.warm.get(placement.image) ?? 0) > 0
            )
          ) {
            tally.warmMisses++;
          }
          assert.ok(chosen.allocated < chosen.capacity, "allocate went past capacity");
          assert.ok(chosen.ready, "allocate chose an agent that is not ready");
          for (const p of req.ports ?? []) {
            assert.ok(!chosen.ports.includes(p), `port ${p} booked twice on ${chosen.id}`);
          }
          placed.push({ agent: placement.id, ports: [...(req.ports ?? [])] });
        }
      } else if (roll < 0.84) {
        // Release a remembered sandbox, or something stray (unknown agent, idle agent).
        const stray = rand() < 0.1 || placed.length === 0;
        const target: Placed = stray
          ? { agent: rand() < 0.5 ? "ghost" : pickOf(IDS), ports: somePorts() }
          : placed.splice(int(placed.length), 1)[0];
        op = `release(${JSON.stringify(target)})`;
        assert.equal(
          registry.release(target.agent, target.ports),
          model.release(target.agent, target.ports),
        );
      } else if (roll < 0.90) {
        const id = rand() < 0.1 ? "ghost" : pickOf(IDS);
        const held = model.agents.get(id)?.ports ?? [];
        const ports = somePorts().filter((p) => !held.includes(p));
        op = `restore(${id}, ${JSON.stringify(ports)})`;
        assert.equal(registry.restore(id, ports), model.restore(id, ports));
        placed.push({ agent: id, ports });
      } else if (roll < 0.94) {
        const id = pickOf(IDS);
        op = `remove(${id})`;
        assert.equal(registry.remove(id)?.id, model.remove(id)?.id);
      } else {
        const timeout = 1000 + int(8000);
        op = `cleanupStaleAgents(${now}, ${timeout})`;
        assert.deepEqual(
          registry.cleanupStaleAgents(now, timeout).map((a) => a.id).sort(),
          model.cleanup(now, timeout).map((a) => a.id).sort(),
        );
      }
      assertSameState(registry, model);
    }
  } catch (err) {
    throw new Error(
      `seed ${seed}: after ${op}: ${err instanceof Error ? err.message : err}`,
      { cause: err },
    );
  }
}

/** The runs took each warm path often enough for agreement to mean something. */
function assertExercised(tally: Tally): void {
  assert.ok(tally.warmHits >= 500, `only ${tally.warmHits} warm hits`);
  assert.ok(tally.warmMisses >= 50, `only ${tally.warmMisses} warm misses`);
  assert.ok(tally.warmSetChanges >= 50, `only ${tally.warmSetChanges} warm-set-only heartbeats`);
}

Deno.test("Registry agrees with a linear-scan model over thousands of random operations", () => {
  const tally = { warmHits: 0, warmMisses: 0, warmSetChanges: 0 };
  for (const seed of [1, 2, 3, 42, 20261128, 0xdecaf]) runSeed(seed, 4000, SPREAD, tally);
  assertExercised(tally);
});

Deno.test("Registry agrees with a linear-scan model in one crowded pool", () => {
  const tally = { warmHits: 0, warmMisses: 0, warmSetChanges: 0 };
  for (const seed of [7, 99, 31337]) runSeed(seed, 4000, CROWDED, tally);
  assertExercised(tally);
});
