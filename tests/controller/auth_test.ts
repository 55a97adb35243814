/**
 * Access control over real gRPC on loopback (shared/DESIGN.md section 12):
 * tokens, namespaces, quotas, the join token and agent credentials.
 */
import assert from "node:assert/strict";
import client from "prom-client";
import { Code, RpcChannel, RpcError, type ServiceClient } from "../../proto/grpc.ts";
import {
  Agent as AgentService,
  AgentRegistry,
  type AgentReport,
} from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import type { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { startController } from "../../controller/mod.ts";
import { type Cluster, silentLogger, startCluster } from "../support/cluster.ts";

type FastPathClient = ServiceClient<typeof FastPath.method>;

function isCode(code: number, text?: string) {
  return (err: unknown) => {
    assert.ok(err instanceof RpcError, `expected an RpcError, got ${err}`);
    assert.equal(err.codeName, Object.entries(Code).find(([, v]) => v === code)?.[0]);
    if (text !== undefined) assert.match(err.message, new RegExp(text));
    return true;
  };
}

/** Every FastPath method once, each as a thunk. */
function everyCall(c: FastPathClient): [string, () => Promise<unknown>][] {
  const drain = async () => {
    for await (const _ of c.streamLogs({ name: "a" })) { /* drain */ }
  };
  return [
    ["CreateSandbox", () => c.createSandbox({ name: "x", image: "busybox", command: ["true"] })],
    ["GetSandbox", () => c.getSandbox({ name: "a" })],
    ["ListSandboxes", () => c.listSandboxes({ allNamespaces: true })],
    ["DeleteSandbox", () => c.deleteSandbox({ name: "a" })],
    ["UpdateSandbox", () => c.updateSandbox({ name: "a", labels: { k: "v" } })],
    ["StreamLogs", drain],
    ["CreateToken", () => c.createToken({ admin: true })],
    ["ListTokens", () => c.listTokens({})],
    ["RevokeToken", () => c.revokeToken({ id: "000000000000" })],
  ];
}

async function withCluster(fn: (c: Cluster) => Promise<void>): Promise<void> {
  // Agents serve one namespace each: the tenants' and the default one.
  const cluster = await startCluster({
    agents: [
      { id: "agent-1" },
      { id: "agent-a", namespace: "team-a" },
      { id: "agent-b", namespace: "team-b" },
      { id: "agent-small", namespace: "small" },
    ],
  });
  try {
    await fn(cluster);
  } finally {
    await cluster.close();
  }
}

Deno.test("every FastPath call without a token, or with a wrong, expired or revoked one, is UNAUTHENTICATED and changes nothing", async () => {
  await withCluster(async (cluster) => {
    await cluster.client.createSandbox({ name: "a", image: "busybox", command: ["sleep", "30"] });
    const expiring = await cluster.client.createToken({ admin: true, ttlSeconds: 60n });
    const revoked = await cluster.client.createToken({ admin: true });
    await cluster.client.revokeToken({ id: revoked.token!.id });
    const wrong = cluster.adminToken.slice(0, -4) + "AAAA";
    // Used once while valid, so the verification is cached: the cache must not outlive expiry.
    await cluster.clientFor(expiring.secret).listTokens({});
    cluster.clock.advance(61_000);
    const callers: [string, FastPathClient][] = [
      ["no token", cluster.clientFor(undefined)],
      ["a malformed token", cluster.clientFor("let-me-in")],
      ["a wrong secret", cluster.clientFor(wrong)],
      ["an expired token", cluster.clientFor(expiring.secret)],
      ["a revoked token", cluster.clientFor(revoked.secret)],
      ["the join token", cluster.clientFor(cluster.joinToken)],
    ];
    for (const [who, c] of callers) {
      for (const [method, call] of everyCall(c)) {
        await assert.rejects(call(), isCode(Code.UNAUTHENTICATED), `${method} with ${who}`);
      }
    }
    const list = await cluster.client.listSandboxes({ allNamespaces: true });
    assert.deepEqual(list.sandboxes.map((s) => [s.name, s.phase, s.labels]), [
      ["a", "Running", {}],
    ]);
    // The admin token and the expired one; the revoked one is gone.
    assert.equal((await cluster.client.listTokens({})).tokens.length, 2);
  });
});

Deno.test("two tenants see and touch only their own namespaces; an admin sees both; envs never cross", async () => {
  await withCluster(async (cluster) => {
    const a = cluster.clientFor(
      (await cluster.client.createToken({ namespaces: ["team-a"] })).secret,
    );
    const b = cluster.clientFor(
      (await cluster.client.createToken({ namespaces: ["team-b"] })).secret,
    );
    const secretEnv = { API_KEY: "only-for-a" };
    await a.createSandbox({
      name: "job",
      namespace: "team-a",
      image: "busybox",
      command: ["sleep", "30"],
      envs: secretEnv,
    });
    await b.createSandbox({
      name: "job",
      namespace: "team-b",
      image: "busybox",
      command: ["sleep", "30"],
    });
    const denied = isCode(Code.PERMISSION_DENIED, 'may not use namespace "team-a"');
    await assert.rejects(b.getSandbox({ name: "job", namespace: "team-a" }), denied);
    await assert.rejects(b.deleteSandbox({ name: "job", namespace: "team-a" }), denied);
    await assert.rejects(
      b.updateSandbox({ name: "job", namespace: "team-a", reset: true }),
      denied,
    );
    await assert.rejects(
      b.updateSandbox({ name: "job", namespace: "team-a", labels: { x: "y" } }),
      denied,
    );
    await assert.rejects(b.listSandboxes({ namespace: "team-a" }), denied);
    await assert.rejects(
      (async () => {
        for await (const _ of b.streamLogs({ name: "job", namespace: "team-a" })) { /* drain */ }
      })(),
      denied,
    );
    await assert.rejects(
      b.createSandbox({
        name: "intruder",
        namespace: "team-a",
        image: "busybox",
        command: ["true"],
      }),
      denied,
    );
    // A name that does not exist is denied the same way: nothing leaks about other namespaces.
    await assert.rejects(b.getSandbox({ name: "nothing-here", namespace: "team-a" }), denied);
    await assert.rejects(b.listTokens({}), isCode(Code.PERMISSION_DENIED, "admin"));
    const bAll = await b.listSandboxes({ allNamespaces: true });
    assert.deepEqual(bAll.sandboxes.map((s) => s.namespace), ["team-b"]);
    assert.ok(bAll.sandboxes.every((s) => !Object.values(s.envs).includes("only-for-a")));
    const aOwn = await a.getSandbox({ name: "job", namespace: "team-a" });
    assert.deepEqual(aOwn.envs, secretEnv);
    const all = await cluster.client.listSandboxes({ allNamespaces: true });
    assert.deepEqual(all.sandboxes.map((s) => s.namespace), ["team-a", "team-b"]);
    assert.equal((await a.getSandbox({ name: "job", namespace: "team-a" })).phase, "Running");
  });
});

Deno.test("a namespace quota caps sandboxes at once with RESOURCE_EXHAUSTED naming it", async () => {
  await withCluster(async (cluster) => {
    const made = await cluster.client.createToken({ namespaces: ["small"], quota: 2 });
    const c = cluster.clientFor(made.secret);
    const spec = { namespace: "small", image: "busybox", command: ["sleep", "30"] };
    await c.createSandbox({ name: "one", ...spec });
    await c.createSandbox({ name: "two", ...spec });
    await assert.rejects(
      c.createSandbox({ name: "three", ...spec }),
      isCode(Code.RESOURCE_EXHAUSTED, 'namespace "small" has reached its quota of 2 sandboxes'),
    );
    // Repeating an existing create is not a new sandbox.
    assert.equal((await c.createSandbox({ name: "two", ...spec })).name, "two");
    await c.deleteSandbox({ name: "one", namespace: "small" });
    assert.equal((await c.createSandbox({ name: "three", ...spec })).phase, "Running");
  });
});

Deno.test("token create, list and revoke: secrets shown once, never listed; only admins manage tokens", async () => {
  await withCluster(async (cluster) => {
    const made = await cluster.client.createToken({
      namespaces: ["team-a", "team-a"],
      ttlSeconds: 3600n,
    });
    assert.match(made.secret, /^fsb_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(made.token?.namespaces, ["team-a"]);
    assert.ok(made.token!.expireTime > made.token!.createdAt);
    const listed = await cluster.client.listTokens({});
    assert.ok(
      !JSON.stringify(listed, (_k, v) => typeof v === "bigint" ? String(v) : v).includes(
        made.secret.slice(-43),
      ),
    );
    await assert.rejects(
      cluster.client.createToken({ namespaces: [] }),
      isCode(Code.INVALID_ARGUMENT, "namespaces"),
    );
    await assert.rejects(
      cluster.client.createToken({ namespaces: ["Not_A_Label"] }),
      isCode(Code.INVALID_ARGUMENT, "namespaces\\[0\\]"),
    );
    await assert.rejects(
      cluster.client.revokeToken({ id: "ffffffffffff" }),
      isCode(Code.NOT_FOUND, "ffffffffffff"),
    );
    const c = cluster.clientFor(made.secret);
    await c.listSandboxes({ namespace: "team-a" });
    await cluster.client.revokeToken({ id: made.token!.id });
    // Revocation takes effect at once, cached verification or not.
    await assert.rejects(c.listSandboxes({ namespace: "team-a" }), isCode(Code.UNAUTHENTICATED));
  });
});

Deno.test("nobody can register as a live agent: no credential, a wrong one, or the join token alone are refused", async () => {
  await withCluster(async (cluster) => {
    await cluster.client.createSandbox({
      name: "kept",
      image: "busybox",
      command: ["sleep", "30"],
    });
    const real = cluster.agents.get("agent-1")!;
    const forged: AgentReport = {
      ...(await real.server.report()),
      address: "127.0.0.1:1",
      sandboxes: [],
    };
    for (
      const [who, bearer, code] of [
        ["no credential", undefined, Code.UNAUTHENTICATED],
        ["a made-up credential", "fsba_forged", Code.UNAUTHENTICATED],
        ["the join token", cluster.joinToken, Code.PERMISSION_DENIED],
      ] as const
    ) {
      const channel = new RpcChannel(cluster.controller.address, {
        metadata: bearer === undefined ? {} : { authorization: `Bearer ${bearer}` },
      });
      try {
        const registry = channel.client(AgentRegistry);
        await assert.rejects(registry.register(forged), isCode(code), `Register with ${who}`);
        await assert.rejects(
          registry.heartbeat(forged),
          isCode(Code.UNAUTHENTICATED),
          `Heartbeat with ${who}`,
        );
      } finally {
        channel.close();
      }
    }
    const agent = cluster.controller.controller.registry.getAgentById(real.id)!;
    assert.equal(agent.address, real.server.address);
    const kept = await cluster.client.getSandbox({ name: "kept" });
    assert.equal(kept.phase, "Running");
    assert.equal(kept.agent, real.id);
  });
});

Deno.test("an agent's port refuses calls without the controller's credential, and a ../ id makes nothing", async () => {
  await withCluster(async (cluster) => {
    const real = cluster.agents.get("agent-1")!;
    for (const bearer of [undefined, cluster.adminToken, cluster.joinToken]) {
      const channel = new RpcChannel(real.server.address, {
        metadata: bearer === undefined ? {} : { authorization: `Bearer ${bearer}` },
      });
      try {
        const agent = channel.client(AgentService);
        await assert.rejects(
          agent.createSandbox({
            spec: {
              sandboxId: "../../../tmp/escape",
              name: "x",
              image: "busybox",
              command: ["true"],
            },
          }),
          isCode(Code.UNAUTHENTICATED, "controller's credential"),
        );
        await assert.rejects(agent.listSandboxes({}), isCode(Code.UNAUTHENTICATED));
      } finally {
        channel.close();
      }
    }
    assert.deepEqual([...Deno.readDirSync(`${real.dataDir}/logs`)], []);
    // The controller's own calls carry the credential and work.
    const made = await cluster.client.createSandbox({
      name: "ok",
      image: "busybox",
      command: ["sleep", "30"],
    });
    assert.equal(made.phase, "Running");
  });
});

Deno.test("the controller writes its admin and join tokens, mode 0600, before it listens; --auth none needs loopback", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-auth-" });
  try {
    const opts = () => ({
      listen: "127.0.0.1:0",
      metricsListen: "",
      store: "sqlite:",
      dataDir: dir,
      mode: "fast" as const,
      agentTimeoutMs: 10_000,
      logger: silentLogger(),
      metricsRegistry: new client.Registry(),
      tickMs: 3_600_000,
    });
    const handle = await startController(opts());
    const admin = await Deno.readTextFile(`${dir}/admin-token`);
    for (const file of ["admin-token", "join-token"]) {
      assert.equal((await Deno.stat(`${dir}/${file}`)).mode! & 0o777, 0o600, file);
    }
    await handle.close();
    // A restart keeps the same tokens.
    const again = await startController(opts());
    assert.equal(await Deno.readTextFile(`${dir}/admin-token`), admin);
    await again.close();
    await assert.rejects(
      startController({ ...opts(), listen: "0.0.0.0:0", auth: "none" }),
      /Cannot serve with --auth none on 0\.0\.0\.0:0: without auth every listener must be on loopback/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a joined agent cannot inject sandboxes into other namespaces nor replace another agent's", async () => {
  await withCluster(async (cluster) => {
    const real = await cluster.client.createSandbox({
      name: "db",
      image: "busybox",
      command: ["sleep", "30"],
    });
    const teamA = cluster.clientFor(
      (await cluster.client.createToken({ namespaces: ["team-a"] })).secret,
    );
    const rogueChannel = new RpcChannel(cluster.controller.address, {
      metadata: { authorization: `Bearer ${cluster.joinToken}` },
    });
    try {
      const spec = (name: string, namespace: string) => ({
        sandboxId: "ab".repeat(16),
        name,
        namespace,
        pool: "default-pool",
        image: "evil",
        command: ["true"],
      });
      const report = (sandboxes: AgentReport["sandboxes"]): AgentReport => ({
        $typeName: "fsb.agent.v1.AgentReport",
        agentId: "rogue-1",
        address: "127.0.0.1:1",
        pool: "default-pool",
        namespace: "default",
        capacity: 5,
        allocated: sandboxes.length,
        images: [],
        sandboxes,
        ready: true,
        runtime: "process",
        advertiseHost: "203.0.113.66",
        inventoryUnknown: false,
        beats: [],
        warm: {},
      });
      const status = (s: ReturnType<typeof spec>) => ({
        $typeName: "fsb.agent.v1.SandboxStatus" as const,
        spec: { $typeName: "fsb.agent.v1.SandboxSpec" as const, ...emptySpec(), ...s },
        phase: "Running",
        message: "",
        ip: "",
        runtime: "process",
      });
      const registry = rogueChannel.client(AgentRegistry);
      await registry.register(report([
        status(spec("injected", "team-a")),
        status({ ...spec("db", "default"), sandboxId: "cd".repeat(16) }),
      ]));
      assert.deepEqual((await teamA.listSandboxes({ namespace: "team-a" })).sandboxes, []);
      const db = await cluster.client.getSandbox({ name: "db" });
      assert.equal(db.sandboxId, real.sandboxId);
      assert.equal(db.agent, real.agent);
      assert.equal(db.image, "busybox");
    } finally {
      rogueChannel.close();
    }
  });
});

/** The fields of a SandboxSpec a test does not care about. */
function emptySpec() {
  return {
    args: [],
    envs: {},
    workingDir: "",
    exposedPorts: [],
    expireTime: 0n,
    failurePolicy: "MANUAL",
    labels: {},
    createdAt: 0n,
    network: undefined,
    resources: undefined,
    generation: 1,
  };
}
