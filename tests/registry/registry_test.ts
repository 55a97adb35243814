import assert from "node:assert/strict";
import {
  type AgentInfo,
  type AgentRegistration,
  InvalidArgumentError,
  NoCapacityError,
  normalizeImage,
  Registry,
} from "../../registry/mod.ts";

const POOL = "default-pool";
const NS = "default";

function agent(id: string, extra: Partial<AgentRegistration> = {}): AgentRegistration {
  return {
    id,
    address: `${id}.internal:5758`,
    pool: POOL,
    namespace: NS,
    capacity: 2,
    images: [],
    ...extra,
  };
}

function registryWith(...regs: AgentRegistration[]): Registry {
  const registry = new Registry();
  regs.forEach((reg, i) => registry.registerOrUpdate(reg, 1000 + i));
  return registry;
}

function allocateId(
  registry: Registry,
  image = "busybox",
  ports?: number[],
  pool = POOL,
  namespace = NS,
): string {
  return registry.allocate({ pool, namespace, image, ports }).id;
}

function assertThrowsExactly(
  fn: () => unknown,
  cls: new (...args: never[]) => Error,
  message: string,
): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

function noCapacity(detail = "has no free capacity", pool = POOL, namespace = NS): string {
  return `Cannot allocate sandbox as pool "${pool}" in namespace "${namespace}" ${detail}`;
}

Deno.test("registerOrUpdate() adds an agent with normalized images and defaults", () => {
  const registry = new Registry();
  const info = registry.registerOrUpdate(
    agent("a1", { images: ["busybox", "ghcr.io/acme/tool:1", "busybox:latest", ""] }),
    500,
  );
  assert.equal(registry.size, 1);
  assert.equal(info.id, "a1");
  assert.equal(info.address, "a1.internal:5758");
  assert.equal(info.advertiseHost, "a1.internal");
  assert.equal(info.ready, true);
  assert.equal(info.allocated, 0);
  assert.equal(info.lastHeartbeat, 500);
  assert.deepEqual([...info.ports], []);
  assert.deepEqual(
    [...info.images].sort(),
    [normalizeImage("busybox"), normalizeImage("ghcr.io/acme/tool:1")].sort(),
  );
});

Deno.test("registerOrUpdate() takes the advertised host from an IPv6 address or as given", () => {
  const registry = new Registry();
  assert.equal(
    registry.registerOrUpdate(agent("v6", { address: "[::1]:5758" }), 0).advertiseHost,
    "[::1]",
  );
  assert.equal(
    registry.registerOrUpdate(agent("given", { advertiseHost: "203.0.113.7" }), 0).advertiseHost,
    "203.0.113.7",
  );
});

Deno.test("registerOrUpdate() keeps allocations and ports when an agent re-registers", () => {
  const registry = registryWith(agent("a1", { capacity: 3 }));
  allocateId(registry, "busybox", [8080]);
  const info = registry.registerOrUpdate(
    agent("a1", {
      address: "10.0.0.9:6000",
      capacity: 4,
      images: ["python:3.12"],
      ready: true,
    }),
    9000,
  );
  assert.equal(info.allocated, 1);
  assert.deepEqual([...info.ports], [8080]);
  assert.equal(info.capacity, 4);
  assert.equal(info.address, "10.0.0.9:6000");
  assert.equal(info.advertiseHost, "10.0.0.9");
  assert.equal(info.lastHeartbeat, 9000);
  assert.deepEqual([...info.images], [normalizeImage("python:3.12")]);
  assert.equal(registry.size, 1);
});

Deno.test("registerOrUpdate() moves an agent to a new pool with its allocations", () => {
  const registry = registryWith(agent("a1"));
  allocateId(registry, "busybox", [9000]);
  registry.registerOrUpdate(agent("a1", { pool: "gpu" }), 2000);
  assertThrowsExactly(() => allocateId(registry), NoCapacityError, noCapacity("has no agents"));
  const info = registry.allocate({ pool: "gpu", namespace: NS, image: "x", ports: [9001] });
  assert.equal(info.id, "a1");
  assert.equal(info.allocated, 2);
  assert.deepEqual([...info.ports].sort(), [9000, 9001]);
});

Deno.test("registerOrUpdate() rejects an invalid registration", () => {
  const registry = new Registry();
  const cases: [Partial<AgentRegistration>, string][] = [
    [{ id: "" }, "Invalid agent_id: must not be empty"],
    [{ pool: "" }, "Invalid pool: must not be empty"],
    [{ namespace: "" }, "Invalid namespace: must not be empty"],
    [{ capacity: -1 }, "Invalid capacity: must be a non-negative integer, got -1"],
    [{ capacity: 1.5 }, "Invalid capacity: must be a non-negative integer, got 1.5"],
  ];
  for (const [extra, message] of cases) {
    assertThrowsExactly(
      () => registry.registerOrUpdate(agent("a1", extra), 0),
      InvalidArgumentError,
      message,
    );
  }
  assert.equal(registry.size, 0);
});

Deno.test("registerOrUpdate() reports the offending field and rule", () => {
  const registry = new Registry();
  assert.throws(
    () => registry.registerOrUpdate(agent("a1", { capacity: -3 }), 0),
    {
      field: "capacity",
      rule: "must be a non-negative integer, got -3",
      status: "INVALID_ARGUMENT",
    },
  );
});

Deno.test("getAllAgents() lists agents in registration order and returns a fresh array", () => {
  const registry = registryWith(agent("a1"), agent("a2"), agent("a3"));
  registry.remove("a2");
  registry.registerOrUpdate(agent("a2"), 5000);
  registry.registerOrUpdate(agent("a1"), 5001);
  const ids = registry.getAllAgents().map((a) => a.id);
  assert.deepEqual(ids, ["a1", "a3", "a2"]);
  const list = registry.getAllAgents();
  list.pop();
  assert.equal(registry.getAllAgents().length, 3);
});

Deno.test("getAgentById() finds a registered agent and nothing else", () => {
  const registry = registryWith(agent("a1"));
  assert.equal(registry.getAgentById("a1")?.address, "a1.internal:5758");
  assert.equal(registry.getAgentById("nope"), undefined);
});

Deno.test("allocate() only considers agents of the request's pool and namespace", () => {
  const registry = registryWith(
    agent("other-pool", { pool: "gpu" }),
    agent("other-ns", { namespace: "team-b" }),
    agent("match"),
  );
  assert.equal(allocateId(registry), "match");
  assert.equal(allocateId(registry, "busybox", undefined, "gpu"), "other-pool");
  assert.equal(allocateId(registry, "busybox", undefined, POOL, "team-b"), "other-ns");
});

Deno.test("allocate() reports a pool and namespace without agents", () => {
  const registry = registryWith(agent("a1"));
  assertThrowsExactly(
    () => allocateId(registry, "busybox", undefined, "empty-pool"),
    NoCapacityError,
    noCapacity("has no agents", "empty-pool"),
  );
  assertThrowsExactly(
    () => allocateId(registry, "busybox", undefined, POOL, "elsewhere"),
    NoCapacityError,
    noCapacity("has no agents", POOL, "elsewhere"),
  );
});

Deno.test("allocate() never places more sandboxes than an agent's capacity", () => {
  const registry = registryWith(agent("a1", { capacity: 2 }), agent("zero", { capacity: 0 }));
  assert.equal(allocateId(registry), "a1");
  assert.equal(allocateId(registry), "a1");
  assertThrowsExactly(() => allocateId(registry), NoCapacityError, noCapacity());
  assert.equal(registry.getAgentById("a1")?.allocated, 2);
  assert.equal(registry.getAgentById("zero")?.allocated, 0);
});

Deno.test("allocate() fails with the pool and namespace named on the error", () => {
  const registry = registryWith(agent("a1", { capacity: 0 }));
  assert.throws(() => allocateId(registry), {
    name: "NoCapacityError",
    pool: POOL,
    namespace: NS,
    status: "RESOURCE_EXHAUSTED",
  });
});

Deno.test("allocate() skips agents that are not ready", () => {
  const registry = registryWith(agent("down", { ready: false }), agent("up"));
  assert.equal(allocateId(registry), "up");
  assert.equal(allocateId(registry), "up");
  assertThrowsExactly(() => allocateId(registry), NoCapacityError, noCapacity());
  registry.remove("up");
  assertThrowsExactly(
    () => allocateId(registry),
    NoCapacityError,
    noCapacity("has no ready agents"),
  );
  registry.registerOrUpdate(agent("down", { ready: true }), 3000);
  assert.equal(allocateId(registry), "down");
});

Deno.test("allocate() prefers an agent with the image, even a busier one", () => {
  const registry = registryWith(
    agent("plain", { capacity: 5 }),
    agent("cached", { capacity: 5, images: ["docker.io/library/busybox:latest"] }),
  );
  // "busybox" normalizes to the cached reference.
  assert.equal(allocateId(registry, "busybox"), "cached");
  assert.equal(allocateId(registry, "busybox:latest"), "cached");
  assert.equal(registry.getAgentById("cached")?.allocated, 2);
  assert.equal(registry.getAgentById("plain")?.allocated, 0);
  // An image nobody has goes to the least allocated agent.
  assert.equal(allocateId(registry, "python:3.12"), "plain");
});

Deno.test("allocate() falls back to an agent without the image when those with it are full", () => {
  const registry = registryWith(
    agent("cached", { capacity: 1, images: ["busybox"] }),
    agent("plain", { capacity: 1 }),
  );
  assert.equal(allocateId(registry), "cached");
  assert.equal(allocateId(registry), "plain");
});

Deno.test("allocate() picks the least allocated agent", () => {
  const registry = registryWith(
    agent("a1", { capacity: 5 }),
    agent("a2", { capacity: 5 }),
  );
  registry.restore("a1");
  registry.restore("a1");
  registry.restore("a2");
  assert.equal(allocateId(registry), "a2");
  // Now a1 has 2 and a2 has 2; a1 changed less recently, so it wins the tie.
  assert.equal(allocateId(registry), "a1");
  assert.equal(allocateId(registry), "a2");
});

Deno.test("allocate() breaks ties by the agent whose placement changed least recently", () => {
  const registry = registryWith(agent("a1"), agent("a2"), agent("a3"));
  // Equal load: registration order first, then each allocation files its agent last.
  const order = [1, 2, 3, 4, 5].map(() => allocateId(registry));
  assert.deepEqual(order, ["a1", "a2", "a3", "a1", "a2"]);
  // All three at one sandbox now, a3 since the third allocation, a1 and a2 since these releases.
  registry.release("a1");
  registry.release("a2");
  assert.deepEqual([allocateId(registry), allocateId(registry)], ["a3", "a1"]);
});

Deno.test("allocate() keeps FIFO order through heartbeats that change nothing placement-relevant", () => {
  const registry = registryWith(agent("a1"), agent("a2"));
  registry.registerOrUpdate(agent("a1", { address: "10.1.1.1:5758" }), 5000);
  assert.equal(allocateId(registry), "a1");
  registry.release("a1");
  // a1's allocation count changed, so a2 is now first in line.
  assert.equal(allocateId(registry), "a2");
});

Deno.test("allocate() files an agent last when its image set changes, not when it is respelled", () => {
  const registry = registryWith(agent("a1", { images: ["alpine"] }), agent("a2"));
  registry.registerOrUpdate(agent("a1", { images: ["alpine", "node:22"] }), 5000);
  assert.equal(allocateId(registry, "busybox"), "a2");
  registry.release("a2");
  // Both idle again, a1 filed before a2; the same image in another spelling changes nothing.
  registry.registerOrUpdate(
    agent("a1", { images: ["docker.io/library/alpine:latest", "node:22"] }),
    5001,
  );
  assert.equal(allocateId(registry, "busybox"), "a1");
});

Deno.test("allocate() keeps FIFO order for an image asked for the first time", () => {
  const registry = registryWith(
    agent("a1", { images: ["alpine"] }),
    agent("a2", { images: ["alpine"] }),
  );
  // Nobody has busybox, so a1 (first in line) takes it; its release files it last.
  assert.equal(allocateId(registry, "busybox"), "a1");
  registry.release("a1");
  // The first request for alpine must see that same order: a2 first.
  assert.equal(allocateId(registry, "alpine"), "a2");
  assert.equal(allocateId(registry, "alpine"), "a1");
});

Deno.test("allocate() reserves ports and skips agents holding a requested port", () => {
  const registry = registryWith(agent("a1", { capacity: 3 }), agent("a2", { capacity: 3 }));
  assert.equal(allocateId(registry, "busybox", [8080, 9090]), "a1");
  assert.equal(allocateId(registry, "busybox", [8080]), "a2");
  assertThrowsExactly(
    () => allocateId(registry, "busybox", [9091, 8080]),
    NoCapacityError,
    noCapacity("has no agent with a free slot and ports 9091, 8080 free"),
  );
  assert.equal(allocateId(registry, "busybox", [9091]), "a1");
  assert.deepEqual([...registry.getAgentById("a1")!.ports].sort(), [8080, 9090, 9091]);
  registry.release("a1", [8080]);
  assert.equal(allocateId(registry, "busybox", [8080]), "a1");
});

Deno.test("allocate() rejects invalid requests before looking for capacity", () => {
  const registry = new Registry();
  const cases: [Partial<Parameters<Registry["allocate"]>[0]>, string, string][] = [
    [{ image: "" }, "image", "must not be empty"],
    [{ pool: "" }, "pool", "must not be empty"],
    [{ namespace: "" }, "namespace", "must not be empty"],
    [{ ports: [0] }, "exposed_ports[0]", "must be within 1..65535, got 0"],
    [{ ports: [80, 70000] }, "exposed_ports[1]", "must be within 1..65535, got 70000"],
    [{ ports: [-5] }, "exposed_ports[0]", "must be within 1..65535, got -5"],
    [{ ports: [80.5] }, "exposed_ports[0]", "must be an integer, got 80.5"],
    [{ ports: [NaN] }, "exposed_ports[0]", "must be an integer, got NaN"],
    [{ ports: [8080, 9090, 8080] }, "exposed_ports[2]", "repeats port 8080"],
  ];
  for (const [extra, field, rule] of cases) {
    const req = { pool: POOL, namespace: NS, image: "busybox", ...extra };
    assertThrowsExactly(
      () => registry.allocate(req),
      InvalidArgumentError,
      `Invalid ${field}: ${rule}`,
    );
    assert.throws(() => registry.allocate(req), { field, rule });
  }
});

Deno.test("allocate() finds a repeated port in a long port list", () => {
  const registry = registryWith(agent("a1"));
  const ports = Array.from({ length: 40 }, (_, i) => 10000 + i);
  ports.push(10007);
  assertThrowsExactly(
    () => allocateId(registry, "busybox", ports),
    InvalidArgumentError,
    "Invalid exposed_ports[40]: repeats port 10007",
  );
  ports.pop();
  assert.equal(allocateId(registry, "busybox", ports), "a1");
});

Deno.test("allocate() returns the live agent record", () => {
  const registry = registryWith(agent("a1", { capacity: 3 }));
  const info: AgentInfo = registry.allocate({ pool: POOL, namespace: NS, image: "busybox" });
  assert.equal(info.allocated, 1);
  assert.equal(registry.getAgentById("a1"), info);
});

Deno.test("allocate() skips an agent whose capacity dropped below its allocations", () => {
  const registry = registryWith(agent("a1", { capacity: 3 }), agent("a2", { capacity: 3 }));
  allocateId(registry);
  allocateId(registry);
  allocateId(registry);
  registry.registerOrUpdate(agent("a1", { capacity: 1 }), 4000);
  assert.equal(allocateId(registry), "a2");
  assert.equal(allocateId(registry), "a2");
  assertThrowsExactly(() => allocateId(registry), NoCapacityError, noCapacity());
  registry.release("a1");
  assertThrowsExactly(() => allocateId(registry), NoCapacityError, noCapacity());
  registry.release("a1");
  assert.equal(allocateId(registry), "a1");
});

Deno.test("release() frees one slot and never goes below zero", () => {
  const registry = registryWith(agent("a1", { capacity: 1 }));
  allocateId(registry, "busybox", [8080]);
  assert.equal(registry.release("a1", [8080]), true);
  assert.equal(registry.getAgentById("a1")?.allocated, 0);
  assert.deepEqual([...registry.getAgentById("a1")!.ports], []);
  assert.equal(registry.release("a1"), true);
  assert.equal(registry.getAgentById("a1")?.allocated, 0);
  assert.equal(allocateId(registry), "a1");
  assertThrowsExactly(() => allocateId(registry), NoCapacityError, noCapacity());
});

Deno.test("release() returns false for an unknown agent", () => {
  const registry = registryWith(agent("a1"));
  assert.equal(registry.release("ghost", [8080]), false);
});

Deno.test("restore() re-reserves a slot and ports, even past capacity", () => {
  const registry = registryWith(agent("a1", { capacity: 1 }));
  assert.equal(registry.restore("a1", [8080]), true);
  assert.equal(registry.restore("a1", [8081]), true);
  const info = registry.getAgentById("a1")!;
  assert.equal(info.allocated, 2);
  assert.deepEqual([...info.ports].sort(), [8080, 8081]);
  assertThrowsExactly(() => allocateId(registry), NoCapacityError, noCapacity());
  registry.release("a1", [8080]);
  assertThrowsExactly(() => allocateId(registry), NoCapacityError, noCapacity());
  registry.release("a1", [8081]);
  assert.equal(allocateId(registry, "busybox", [8080]), "a1");
  assert.equal(registry.restore("ghost"), false);
});

Deno.test("remove() forgets an agent and returns it", () => {
  const registry = registryWith(agent("a1"), agent("a2"));
  assert.equal(registry.remove("a1")?.id, "a1");
  assert.equal(registry.remove("a1"), undefined);
  assert.equal(registry.size, 1);
  assert.equal(registry.getAgentById("a1"), undefined);
  assert.equal(registry.release("a1"), false);
  assert.equal(allocateId(registry), "a2");
  assert.equal(allocateId(registry), "a2");
  assertThrowsExactly(() => allocateId(registry), NoCapacityError, noCapacity());
});

Deno.test("cleanupStaleAgents() removes only agents older than the timeout", () => {
  const registry = new Registry();
  registry.registerOrUpdate(agent("old"), 1000);
  registry.registerOrUpdate(agent("edge"), 2000);
  registry.registerOrUpdate(agent("fresh"), 2500);
  assert.deepEqual(registry.cleanupStaleAgents(1900, 1000), []);
  // Cutoff 2000: "edge" heartbeated exactly at the cutoff and stays.
  const removed = registry.cleanupStaleAgents(3000, 1000);
  assert.deepEqual(removed.map((a) => a.id), ["old"]);
  assert.deepEqual(registry.getAllAgents().map((a) => a.id), ["edge", "fresh"]);
  assert.equal(registry.getAgentById("old"), undefined);
});

Deno.test("cleanupStaleAgents() spares an agent whose heartbeat renewed it", () => {
  const registry = new Registry();
  registry.registerOrUpdate(agent("a1"), 1000);
  registry.registerOrUpdate(agent("a2"), 1100);
  registry.registerOrUpdate(agent("a1"), 1900);
  const removed = registry.cleanupStaleAgents(2500, 1000);
  assert.deepEqual(removed.map((a) => a.id), ["a2"]);
});

Deno.test("cleanupStaleAgents() stays correct when the clock goes backwards", () => {
  const registry = new Registry();
  registry.registerOrUpdate(agent("a"), 1000);
  registry.registerOrUpdate(agent("b"), 5000);
  // The clock went back: c's heartbeat is older than b's.
  registry.registerOrUpdate(agent("c"), 100);
  const removed = registry.cleanupStaleAgents(3000, 1000);
  assert.deepEqual(removed.map((a) => a.id).sort(), ["a", "c"]);
  // A cleanup whose own `now` went back removes nothing more than is stale.
  assert.deepEqual(registry.cleanupStaleAgents(10, 1000), []);
  assert.deepEqual(registry.getAllAgents().map((a) => a.id), ["b"]);
});

Deno.test("cleanupStaleAgents() handles a large backwards jump across many agents", () => {
  const registry = new Registry();
  for (let i = 0; i < 30; i++) registry.registerOrUpdate(agent(`late${i}`), 100_000 + i);
  // Far back in time, past more agents than the sorted insert walks over.
  for (let i = 0; i < 5; i++) registry.registerOrUpdate(agent(`early${i}`), 10 + i);
  registry.registerOrUpdate(agent("late3"), 20);
  const removed = registry.cleanupStaleAgents(60_000, 1000);
  assert.deepEqual(
    removed.map((a) => a.id),
    ["early0", "early1", "early2", "early3", "early4", "late3"],
  );
  assert.equal(registry.size, 29);
  // Heartbeats 100_000..100_009 are older than the cutoff 100_010; late3 is gone already.
  assert.deepEqual(
    registry.cleanupStaleAgents(100_000 + 1010, 1000).map((a) => a.id),
    ["late0", "late1", "late2", "late4", "late5", "late6", "late7", "late8", "late9"],
  );
});

const BUSYBOX = normalizeImage("busybox");

Deno.test("allocate() prefers an agent with a warm container", () => {
  const registry = registryWith(
    agent("plain", { capacity: 5 }),
    agent("cached", { capacity: 5, images: ["busybox"] }),
    agent("warm", { capacity: 5, images: ["busybox"], warm: { "busybox:latest": 3 } }),
    agent("warm-elsewhere", { capacity: 5, pool: "gpu", warm: { busybox: 3 } }),
  );
  // Busier than the others, and last in line: the warm container still wins.
  registry.restore("warm");
  registry.restore("warm");
  const placement = registry.place({
    pool: POOL,
    namespace: NS,
    image: "docker.io/library/busybox",
  });
  assert.equal(placement.agent.id, "warm");
  assert.equal(placement.warm, true);
  assert.equal(placement.image, BUSYBOX);
  assert.equal(placement.agent, registry.getAgentById("warm"));
  assert.deepEqual([...placement.agent.warm], [[BUSYBOX, 2]]);
  // Warm containers of another image count for nothing.
  const other = registry.place({ pool: POOL, namespace: NS, image: "python:3.12" });
  assert.deepEqual([other.agent.id, other.warm, other.image], [
    "plain",
    false,
    normalizeImage("python:3.12"),
  ]);
  // allocate() takes the same choice.
  assert.equal(allocateId(registry), "warm");
  assert.equal(registry.getAgentById("warm")?.warm.get(BUSYBOX), 1);
  assert.equal(registry.getAgentById("warm-elsewhere")?.warm.get(BUSYBOX), 3);
});

Deno.test("allocate() counts a chosen warm container as taken until the next heartbeat", () => {
  const warmReg = agent("warm", { capacity: 5, warm: { busybox: 1 } });
  const registry = registryWith(warmReg, agent("cached", { capacity: 5, images: ["busybox"] }));
  const first = registry.place({ pool: POOL, namespace: NS, image: "busybox" });
  assert.deepEqual([first.agent.id, first.warm], ["warm", true]);
  assert.equal(first.agent.warm.get(BUSYBOX), 0);
  // Its only warm container is taken: the next request goes by cache.
  const second = registry.place({ pool: POOL, namespace: NS, image: "busybox" });
  assert.deepEqual([second.agent.id, second.warm], ["cached", false]);
  // A heartbeat that changes nothing else still replaces the counts.
  registry.registerOrUpdate(warmReg, 5000);
  assert.equal(registry.getAgentById("warm")?.warm.get(BUSYBOX), 1);
  const third = registry.place({ pool: POOL, namespace: NS, image: "busybox" });
  assert.deepEqual([third.agent.id, third.warm], ["warm", true]);
  // The agent reports its pool drained: with both idle again, the cached one wins.
  registry.registerOrUpdate({ ...warmReg, warm: { busybox: 0 } }, 6000);
  registry.release("cached");
  registry.release("warm");
  registry.release("warm");
  const drained = registry.place({ pool: POOL, namespace: NS, image: "busybox" });
  assert.deepEqual([drained.agent.id, drained.warm], ["cached", false]);
  assert.deepEqual([...registry.getAgentById("warm")!.warm], [[BUSYBOX, 0]]);
});

Deno.test("allocate() prefers a warm agent, then a cached one, then the least allocated", () => {
  const registry = registryWith(
    agent("idle", { capacity: 3 }),
    agent("cached", { capacity: 3, images: ["busybox"] }),
    agent("warm", { capacity: 3, warm: { busybox: 2 } }),
  );
  registry.restore("cached");
  registry.restore("warm");
  registry.restore("warm");
  const order = [1, 2, 3, 4, 5].map(() => {
    const p = registry.place({ pool: POOL, namespace: NS, image: "busybox" });
    return `${p.agent.id}${p.warm ? " (warm)" : ""}`;
  });
  // warm is at capacity after one; cached fills up; then the least allocated.
  assert.deepEqual(order, ["warm (warm)", "cached", "cached", "idle", "idle"]);
  assert.equal(registry.getAgentById("warm")?.warm.get(BUSYBOX), 1);
});

Deno.test("allocate() skips a warm agent that is full or holds a requested port", () => {
  const registry = registryWith(
    agent("warm-full", { capacity: 1, warm: { busybox: 2 } }),
    agent("warm-port", { capacity: 3, warm: { busybox: 2 } }),
    agent("warm-down", { capacity: 3, warm: { busybox: 2 }, ready: false }),
    agent("plain", { capacity: 3 }),
  );
  registry.restore("warm-full");
  registry.restore("warm-port", [8080]);
  const withPort = registry.place({ pool: POOL, namespace: NS, image: "busybox", ports: [8080] });
  assert.deepEqual([withPort.agent.id, withPort.warm], ["plain", false]);
  // Skipped agents keep their warm containers.
  assert.equal(registry.getAgentById("warm-full")?.warm.get(BUSYBOX), 2);
  assert.equal(registry.getAgentById("warm-port")?.warm.get(BUSYBOX), 2);
  assert.equal(registry.getAgentById("warm-down")?.warm.get(BUSYBOX), 2);
  const free = registry.place({ pool: POOL, namespace: NS, image: "busybox", ports: [9090] });
  assert.deepEqual([free.agent.id, free.warm], ["warm-port", true]);
  // Once the full one frees a slot, its warm containers count again.
  registry.release("warm-full");
  const freed = registry.place({ pool: POOL, namespace: NS, image: "busybox" });
  assert.deepEqual([freed.agent.id, freed.warm], ["warm-full", true]);
});

Deno.test("allocate() keeps FIFO order through warm count changes; a warm-set change files an agent last only among warm agents", () => {
  const registry = registryWith(
    agent("a1", { warm: { busybox: 2 } }),
    agent("a2", { warm: { busybox: 2 } }),
  );
  // New counts, same set of warm images: a1 stays first in line.
  registry.registerOrUpdate(agent("a1", { warm: { busybox: 4, alpine: 0 } }), 5000);
  assert.equal(allocateId(registry), "a1");
  registry.release("a1");
  assert.equal(allocateId(registry), "a2");
  registry.release("a2");
  // a1 is first again. Its warm image set changes: it goes last among busybox's warm
  // agents, but keeps its place for every other image.
  registry.registerOrUpdate(agent("a1", { warm: { busybox: 4, alpine: 1 } }), 5001);
  registry.registerOrUpdate(agent("a1", { warm: { busybox: 4 } }), 5002);
  assert.equal(allocateId(registry, "python:3.12"), "a1");
  registry.release("a1");
  assert.equal(allocateId(registry, "python:3.12"), "a2");
  registry.release("a2");
  // a1 is first again, for any image. Its busybox pool drains and refills: that files it
  // last among busybox's warm agents, though a2 changed more recently.
  registry.registerOrUpdate(agent("a1", { warm: { busybox: 0 } }), 5003);
  registry.registerOrUpdate(agent("a1", { warm: { busybox: 1 } }), 5004);
  assert.deepEqual([allocateId(registry), allocateId(registry)], ["a2", "a1"]);
});

Deno.test("registerOrUpdate() normalizes warm images and adds up their spellings", () => {
  const registry = new Registry();
  const info = registry.registerOrUpdate(
    agent("a1", { warm: { busybox: 1, "docker.io/library/busybox:latest": 2, "python:3.12": 0 } }),
    0,
  );
  assert.deepEqual([...info.warm].sort(), [[BUSYBOX, 3], [normalizeImage("python:3.12"), 0]]);
  assert.deepEqual([...registry.registerOrUpdate(agent("a1"), 1).warm], []);
  assert.equal(registry.registerOrUpdate(agent("a1"), 2).warm, info.warm);
});

Deno.test("registerOrUpdate() rejects invalid warm counts and image names", () => {
  const registry = registryWith(agent("a1", { warm: { busybox: 2 } }));
  const cases: [Record<string, number>, string, string][] = [
    [{ busybox: -1 }, "warm[busybox]", "must be a non-negative integer, got -1"],
    [
      { alpine: 1, "python:3.12": 0.5 },
      "warm[python:3.12]",
      "must be a non-negative integer, got 0.5",
    ],
    [{ busybox: NaN }, "warm[busybox]", "must be a non-negative integer, got NaN"],
    [{ "": 1 }, "warm", "image name must not be empty"],
    [
      { "busy box": 1 },
      "warm",
      'image name must not contain whitespace or control characters, got "busy box"',
    ],
    [
      { "busybox\n": 1 },
      "warm",
      'image name must not contain whitespace or control characters, got "busybox\\n"',
    ],
  ];
  for (const [warm, field, rule] of cases) {
    for (const id of ["a1", "new"]) {
      assertThrowsExactly(
        () => registry.registerOrUpdate(agent(id, { capacity: 9, warm }), 5000),
        InvalidArgumentError,
        `Invalid ${field}: ${rule}`,
      );
      assert.throws(() => registry.registerOrUpdate(agent(id, { warm }), 5000), { field, rule });
    }
  }
  // Nothing changed: no new agent, a1 as it was.
  assert.equal(registry.size, 1);
  const a1 = registry.getAgentById("a1")!;
  assert.deepEqual([a1.capacity, a1.lastHeartbeat, [...a1.warm]], [2, 1000, [[BUSYBOX, 2]]]);
  assert.equal(registry.place({ pool: POOL, namespace: NS, image: "busybox" }).warm, true);
});

Deno.test("allocate() forgets the warm containers of an agent that moved or was removed", () => {
  const registry = registryWith(
    agent("mover", { warm: { busybox: 2 } }),
    agent("gone", { warm: { busybox: 2 } }),
    agent("plain"),
  );
  assert.equal(registry.place({ pool: POOL, namespace: NS, image: "busybox" }).agent.id, "mover");
  registry.registerOrUpdate(agent("mover", { pool: "gpu", warm: { busybox: 2 } }), 5000);
  registry.remove("gone");
  const left = registry.place({ pool: POOL, namespace: NS, image: "busybox" });
  assert.deepEqual([left.agent.id, left.warm], ["plain", false]);
  // In its new pool it is warm again, with the heartbeat's counts.
  const moved = registry.place({ pool: "gpu", namespace: NS, image: "busybox" });
  assert.deepEqual([moved.agent.id, moved.warm, moved.agent.warm.get(BUSYBOX)], ["mover", true, 1]);
  // A new agent warm for the image in the old pool is found (the warm index is rebuilt).
  registry.registerOrUpdate(agent("fresh", { warm: { busybox: 1 } }), 5001);
  const fresh = registry.place({ pool: POOL, namespace: NS, image: "busybox" });
  assert.deepEqual([fresh.agent.id, fresh.warm], ["fresh", true]);
});
