import assert from "node:assert/strict";
import { create, type JsonValue, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  type ConsistencyMode,
  CreateSandboxRequestSchema,
  type FailurePolicy,
  type SandboxInfo,
  type UpdateSandboxRequestSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { AgentReportSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Code, codeName, RpcError } from "../../proto/grpc.ts";
import { openStore } from "../../controller/store/mod.ts";
import { type Cluster, startCluster } from "../support/cluster.ts";

type CreateInit = MessageInitShape<typeof CreateSandboxRequestSchema>;
type UpdateInit = MessageInitShape<typeof UpdateSandboxRequestSchema>;

const DNS_RULE =
  "must be a DNS-1123 label (lowercase a-z, 0-9 and '-', starting and ending alphanumeric)";
const LABEL_KEY_RULE =
  "key name must be 1-63 characters of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric";
const LABEL_VALUE_RULE =
  "value must be at most 63 characters of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric";
const ENV_RULE = "name must match [A-Za-z_][A-Za-z0-9_]*";
const KIB = 1024;
/** The server's receive limit (proto/grpc.ts): a bigger request never reaches validation. */
const SERVER_RECEIVE_LIMIT = 16 * KIB * KIB;

/** Awaits `p`, which must fail with `code` and exactly `message`. */
async function rejects(p: Promise<unknown>, code: number, message: string): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RpcError, `expected RpcError, got ${err}`);
    assert.equal(err.codeName, codeName(code), err.message);
    assert.equal(err.message, message);
    return err;
  }
  assert.fail(`expected ${codeName(code)}: ${message}`);
}

/** Reads a sandbox's whole log through the controller (errors surface on iteration). */
async function readLogs(cluster: Cluster, req: { name: string; namespace?: string }) {
  const chunks: Uint8Array[] = [];
  // A short deadline, so that a stream that never ends fails the test quickly.
  const stream = cluster.client.streamLogs({ ...req, follow: false }, { timeoutMs: 3_000 });
  for await (const chunk of stream) {
    chunks.push(chunk.data);
  }
  return chunks;
}

/** Everything a request could have left behind, from every place it could be. */
interface State {
  /** Each agent's slots and ports in the controller's registry. */
  registry: { id: string; allocated: number; ports: number[] }[];
  /** What ListSandboxes shows across all namespaces. */
  listed: SandboxInfo[];
  /** Sandbox ids each agent's runtime holds. */
  runtime: Record<string, string[]>;
  /** Every sandbox record in the store file, after the write-behind queue is flushed. */
  stored: { key: string; value: JsonValue }[];
}

async function stateOf(cluster: Cluster): Promise<State> {
  const registry = cluster.controller.controller.registry.getAllAgents()
    .map((a) => ({ id: a.id, allocated: a.allocated, ports: [...a.ports].sort((x, y) => x - y) }))
    .sort((a, b) => a.id < b.id ? -1 : 1);
  const listed = (await cluster.client.listSandboxes({ allNamespaces: true })).sandboxes;
  const runtime: Record<string, string[]> = {};
  for (const [id, agent] of cluster.agents) {
    runtime[id] = (await agent.runtime.list()).map((s) => s.spec.sandboxId).sort();
  }
  await cluster.controller.controller.flush();
  // A second handle on the controller's own store file: what a restart would load.
  const store = await openStore<JsonValue>("sqlite:", {
    dataDir: `${cluster.dataDir}/controller`,
  });
  try {
    const stored = (await store.list("sandboxes/")).map(({ key, value }) => ({ key, value }));
    return { registry, listed, runtime, stored };
  } finally {
    await store.close();
  }
}

function emptyState(cluster: Cluster): State {
  return {
    registry: [...cluster.agents.keys()].sort().map((id) => ({ id, allocated: 0, ports: [] })),
    listed: [],
    runtime: Object.fromEntries([...cluster.agents.keys()].map((id) => [id, []])),
    stored: [],
  };
}

const GOOD: CreateInit = { name: "box", image: "busybox", command: ["sleep", "60"] };

/** Each bad CreateSandboxRequest, with the exact INVALID_ARGUMENT message it must get. */
function badCreates(nowSec: number): { what: string; req: CreateInit; message: string }[] {
  return [
    { what: "an empty image", req: { ...GOOD, image: "" }, message: "Invalid image: is required" },
    {
      what: "a malformed image",
      req: { ...GOOD, image: "busybox; rm -rf /" },
      message:
        'Invalid image: must be an image reference like busybox:1.36, got "busybox; rm -rf /"',
    },
    {
      what: "an image starting with '-'",
      req: { ...GOOD, image: "-busybox" },
      message: 'Invalid image: must be an image reference like busybox:1.36, got "-busybox"',
    },
    {
      what: "an uppercase name",
      req: { ...GOOD, name: "Box" },
      message: `Invalid name: ${DNS_RULE}, got "Box"`,
    },
    {
      what: "a name of 64 characters",
      req: { ...GOOD, name: "b".repeat(64) },
      message: "Invalid name: must be at most 63 characters, got 64",
    },
    {
      what: "a name starting with '-'",
      req: { ...GOOD, name: "-box" },
      message: `Invalid name: ${DNS_RULE}, got "-box"`,
    },
    {
      what: "a name with an underscore",
      req: { ...GOOD, name: "my_box" },
      message: `Invalid name: ${DNS_RULE}, got "my_box"`,
    },
    {
      what: "a bad namespace",
      req: { ...GOOD, namespace: "Team-A" },
      message: `Invalid namespace: ${DNS_RULE}, got "Team-A"`,
    },
    {
      what: "a bad pool",
      req: { ...GOOD, pool: "gpu.pool" },
      message: `Invalid pool: ${DNS_RULE}, got "gpu.pool"`,
    },
    {
      what: "port 0",
      req: { ...GOOD, exposedPorts: [0] },
      message: "Invalid exposed_ports[0]: must be within 1..65535, got 0",
    },
    {
      what: "port 70000",
      req: { ...GOOD, exposedPorts: [8080, 70000] },
      message: "Invalid exposed_ports[1]: must be within 1..65535, got 70000",
    },
    {
      what: "a repeated port",
      req: { ...GOOD, exposedPorts: [8080, 9090, 8080] },
      message: "Invalid exposed_ports[2]: repeats port 8080",
    },
    {
      what: "an unknown consistency mode",
      req: { ...GOOD, consistencyMode: 7 as ConsistencyMode },
      message: "Invalid consistency_mode: must be FAST or STRONG, got 7",
    },
    {
      what: "an unknown failure policy",
      req: { ...GOOD, failurePolicy: 9 as FailurePolicy },
      message: "Invalid failure_policy: must be MANUAL or AUTO_RECREATE, got 9",
    },
    {
      what: "an expire time in the past",
      req: { ...GOOD, expireTime: BigInt(nowSec - 60) },
      message: `Invalid expire_time: must be in the future (now is ${nowSec}), got ${nowSec - 60}`,
    },
    {
      what: "a negative expire time",
      req: { ...GOOD, expireTime: -1n },
      message: "Invalid expire_time: must be unix seconds or 0 for never, got -1",
    },
    {
      what: "a label key with a space",
      req: { ...GOOD, labels: { "bad key": "v" } },
      message: `Invalid labels["bad key"]: ${LABEL_KEY_RULE}`,
    },
    {
      what: "a label key with a bad prefix",
      req: { ...GOOD, labels: { "Example.com/app": "v" } },
      message:
        'Invalid labels["Example.com/app"]: key prefix must be a DNS subdomain (e.g. example.com)',
    },
    {
      what: "a label value with a space",
      req: { ...GOOD, labels: { app: "a b" } },
      message: `Invalid labels["app"]: ${LABEL_VALUE_RULE}`,
    },
    {
      what: "a label value of 64 characters",
      req: { ...GOOD, labels: { app: "v".repeat(64) } },
      message: `Invalid labels["app"]: ${LABEL_VALUE_RULE}`,
    },
    {
      what: "an env name starting with a digit",
      req: { ...GOOD, envs: { "1ABC": "x" } },
      message: `Invalid envs["1ABC"]: ${ENV_RULE}`,
    },
    {
      what: "an env name with '='",
      req: { ...GOOD, envs: { "A=B": "x" } },
      message: `Invalid envs["A=B"]: ${ENV_RULE}`,
    },
    {
      what: "an env value with a NUL byte",
      req: { ...GOOD, envs: { A: "x\0y" } },
      message: 'Invalid envs["A"]: must not contain NUL bytes',
    },
    {
      what: "a command with a NUL byte",
      req: { ...GOOD, command: ["sleep", "6\x000"] },
      message: "Invalid command[1]: must not contain NUL bytes",
    },
    {
      what: "a relative working dir",
      req: { ...GOOD, workingDir: "work/dir" },
      message: 'Invalid working_dir: must be an absolute path, got "work/dir"',
    },
    // Input bounds (shared/DESIGN.md section 12): everything below would ride in every heartbeat.
    {
      what: "an image of 513 characters",
      req: { ...GOOD, image: "a".repeat(513) },
      message: "Invalid image: must be at most 512 characters, got 513",
    },
    {
      what: "65 labels",
      req: {
        ...GOOD,
        labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, "v"])),
      },
      message: "Invalid labels: must hold at most 64 labels, got 65",
    },
    {
      what: "257 env entries",
      req: {
        ...GOOD,
        envs: Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`E${i}`, "x"])),
      },
      message: "Invalid envs: must hold at most 256 entries, got 257",
    },
    {
      what: "129 KiB of env",
      req: { ...GOOD, envs: { A: "1", BIG: "x".repeat(129 * KIB - 5) } },
      message:
        "Invalid envs: must total at most 131072 bytes (128 KiB) of names and values, got 132096",
    },
    {
      what: "257 command and args entries",
      req: { ...GOOD, command: ["echo"], args: Array(256).fill("x") },
      message: "Invalid command and args: must hold at most 256 entries in all, got 257",
    },
    {
      what: "129 KiB of command and args",
      req: { ...GOOD, command: ["sh", "-c"], args: ["x".repeat(129 * KIB - 4)] },
      message:
        "Invalid command and args: must total at most 131072 bytes (128 KiB) in all, got 132096",
    },
    {
      what: "a working dir of 4097 bytes",
      req: { ...GOOD, workingDir: "/" + "d".repeat(4096) },
      message: "Invalid working_dir: must be at most 4096 bytes, got 4097",
    },
    {
      what: "65 exposed ports",
      req: { ...GOOD, exposedPorts: Array.from({ length: 65 }, (_, i) => 20000 + i) },
      message: "Invalid exposed_ports: must hold at most 64 ports, got 65",
    },
    {
      what: "a label key of 1 MiB (quoted clipped, so the error itself stays small)",
      req: { ...GOOD, labels: { ["k".repeat(KIB * KIB)]: "a b" } },
      message: `Invalid labels["${"k".repeat(64)}..."]: ${LABEL_KEY_RULE}`,
    },
  ];
}

for (const mode of ["fast", "strong"] as const) {
  Deno.test(`every bad create field is INVALID_ARGUMENT naming it and reserves nothing (${mode})`, async (t) => {
    const cluster = await startCluster({ mode, agents: [{ id: "a" }, { id: "b" }] });
    try {
      const before = await stateOf(cluster);
      assert.deepEqual(before, emptyState(cluster));
      const nowSec = Math.floor(cluster.clock.now() / 1000);
      for (const c of badCreates(nowSec)) {
        await t.step(c.what, async () => {
          await rejects(cluster.client.createSandbox(c.req), Code.INVALID_ARGUMENT, c.message);
          assert.deepEqual(await stateOf(cluster), before);
        });
      }
      // The same cluster still creates a good sandbox under the name the bad ones used.
      const made = await cluster.client.createSandbox({ ...GOOD, exposedPorts: [8080] });
      assert.equal(made.phase, "Running");
      assert.deepEqual((await stateOf(cluster)).listed.map((s) => s.sandboxId), [made.sandboxId]);
    } finally {
      await cluster.close();
    }
  });
}

for (const mode of ["fast", "strong"] as const) {
  Deno.test(`creates with 130,000 labels are INVALID_ARGUMENT naming labels; the agent keeps its sandbox (${mode})`, async () => {
    const cluster = await startCluster({ mode });
    try {
      const kept = await cluster.client.createSandbox({
        ...GOOD,
        name: "keep",
        exposedPorts: [8080],
      });
      assert.equal(kept.phase, "Running");
      const before = await stateOf(cluster);
      assert.deepEqual(before.registry, [{ id: "agent-1", allocated: 1, ports: [8080] }]);
      assert.deepEqual(before.listed, [kept]);

      // Well-formed labels, as many as an attacker likes: each would sit in the
      // agent's containerd labels and in every one of its heartbeats.
      const labels = Object.fromEntries(
        Array.from({ length: 130_000 }, (_, i) => [`k${i.toString(36)}`, "v"]),
      );
      const attack = (name: string): CreateInit => ({ ...GOOD, name, labels });
      // Far under the server's receive limit, so the controller's validation is what answers.
      const size =
        toBinary(CreateSandboxRequestSchema, create(CreateSandboxRequestSchema, attack("big-1")))
          .length;
      assert.ok(size < SERVER_RECEIVE_LIMIT / 4, `request of ${size} bytes`);

      const message = "Invalid labels: must hold at most 64 labels, got 130000";
      await Promise.all([
        rejects(cluster.client.createSandbox(attack("big-1")), Code.INVALID_ARGUMENT, message),
        rejects(cluster.client.createSandbox(attack("big-2")), Code.INVALID_ARGUMENT, message),
      ]);
      for (const name of ["big-1", "big-2"]) {
        await rejects(
          cluster.client.getSandbox({ name }),
          Code.NOT_FOUND,
          `Sandbox "default/${name}" not found`,
        );
      }
      assert.deepEqual(await stateOf(cluster), before);

      // The agent's heartbeat carries only the kept sandbox, and stays small.
      const report = await cluster.agents.get("agent-1")!.server.report();
      assert.deepEqual(report.sandboxes.map((s) => s.spec?.sandboxId), [kept.sandboxId]);
      const reportBytes = toBinary(AgentReportSchema, report).length;
      assert.ok(reportBytes < 4 * KIB, `heartbeat of ${reportBytes} bytes`);

      // Well past the stale timeout (10 s), heartbeating all along: the agent stays.
      for (let i = 0; i < 4; i++) {
        cluster.clock.advance(5_000);
        await cluster.heartbeatAll();
        await cluster.tick();
      }
      assert.ok(cluster.controller.controller.registry.getAgentById("agent-1") !== undefined);
      assert.equal((await cluster.client.getSandbox({ name: "keep" })).phase, "Running");
      assert.deepEqual(await stateOf(cluster), before);
    } finally {
      await cluster.close();
    }
  });
}

Deno.test("every bad update field is INVALID_ARGUMENT naming it and changes nothing", async (t) => {
  const cluster = await startCluster();
  try {
    const nowSec = Math.floor(cluster.clock.now() / 1000);
    const kept = await cluster.client.createSandbox({
      ...GOOD,
      name: "keep",
      exposedPorts: [8080],
      expireTime: BigInt(nowSec + 3600),
      labels: { team: "a" },
    });
    const before = await stateOf(cluster);
    assert.deepEqual(before.registry, [{ id: "agent-1", allocated: 1, ports: [8080] }]);
    assert.deepEqual(before.listed, [kept]);
    assert.deepEqual(before.stored.map((s) => s.key), ["sandboxes/default/keep"]);

    const cases: { what: string; req: UpdateInit; code: number; message: string }[] = [
      {
        what: "a missing name",
        req: { name: "", labels: { b: "2" } },
        code: Code.INVALID_ARGUMENT,
        message: "Invalid name: is required",
      },
      {
        what: "an uppercase name",
        req: { name: "Keep", labels: { b: "2" } },
        code: Code.INVALID_ARGUMENT,
        message: `Invalid name: ${DNS_RULE}, got "Keep"`,
      },
      {
        what: "a bad namespace",
        req: { name: "keep", namespace: "default_", labels: { b: "2" } },
        code: Code.INVALID_ARGUMENT,
        message: `Invalid namespace: ${DNS_RULE}, got "default_"`,
      },
      {
        what: "an expire time in the past",
        req: { name: "keep", expireTime: BigInt(nowSec - 1) },
        code: Code.INVALID_ARGUMENT,
        message: `Invalid expire_time: must be in the future (now is ${nowSec}), got ${nowSec - 1}`,
      },
      {
        what: "a negative expire time",
        req: { name: "keep", expireTime: -10n },
        code: Code.INVALID_ARGUMENT,
        message: "Invalid expire_time: must be unix seconds or 0 for never, got -10",
      },
      {
        what: "an unknown failure policy",
        req: { name: "keep", failurePolicy: 9 as FailurePolicy },
        code: Code.INVALID_ARGUMENT,
        message: "Invalid failure_policy: must be MANUAL or AUTO_RECREATE, got 9",
      },
      {
        what: "a malformed label key next to a good one (neither is applied)",
        req: { name: "keep", labels: { good: "1", "bad key": "x" } },
        code: Code.INVALID_ARGUMENT,
        message: `Invalid labels["bad key"]: ${LABEL_KEY_RULE}`,
      },
      {
        what: "a malformed label value with a good expiry (neither is applied)",
        req: {
          name: "keep",
          expireTime: BigInt(nowSec + 60),
          labels: { team: "-b" },
        },
        code: Code.INVALID_ARGUMENT,
        message: `Invalid labels["team"]: ${LABEL_VALUE_RULE}`,
      },
      {
        what: "65 labels in one update",
        req: {
          name: "keep",
          labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, "v"])),
        },
        code: Code.INVALID_ARGUMENT,
        message: "Invalid labels: must hold at most 64 labels, got 65",
      },
      {
        what: "a bad field on a missing sandbox (validation comes first)",
        req: { name: "ghost", failurePolicy: 9 as FailurePolicy },
        code: Code.INVALID_ARGUMENT,
        message: "Invalid failure_policy: must be MANUAL or AUTO_RECREATE, got 9",
      },
      {
        what: "a missing sandbox",
        req: { name: "ghost", labels: { b: "2" } },
        code: Code.NOT_FOUND,
        message: 'Sandbox "default/ghost" not found',
      },
      {
        what: "a missing sandbox in another namespace",
        req: { name: "keep", namespace: "other", labels: { b: "2" } },
        code: Code.NOT_FOUND,
        message: 'Sandbox "other/keep" not found',
      },
      {
        what: "a reset of a missing sandbox",
        req: { name: "ghost", reset: true },
        code: Code.NOT_FOUND,
        message: 'Sandbox "default/ghost" not found',
      },
    ];
    for (const c of cases) {
      await t.step(c.what, async () => {
        await rejects(cluster.client.updateSandbox(c.req), c.code, c.message);
        assert.deepEqual(await stateOf(cluster), before);
      });
    }
    // A good update still goes through afterwards.
    const updated = await cluster.client.updateSandbox({ name: "keep", labels: { b: "2" } });
    assert.deepEqual(updated.labels, { team: "a", b: "2" });
  } finally {
    await cluster.close();
  }
});

type NameRequest = { name: string; namespace?: string };

/** Missing and malformed names, for every call that takes one. */
const NAME_CASES: { what: string; req: NameRequest; code: number; message: string }[] = [
  {
    what: "a missing name",
    req: { name: "nope" },
    code: Code.NOT_FOUND,
    message: 'Sandbox "default/nope" not found',
  },
  {
    what: "a name that exists only in another namespace",
    req: { name: "keep", namespace: "other" },
    code: Code.NOT_FOUND,
    message: 'Sandbox "other/keep" not found',
  },
  {
    what: "an empty name",
    req: { name: "" },
    code: Code.INVALID_ARGUMENT,
    message: "Invalid name: is required",
  },
  {
    what: "an uppercase name",
    req: { name: "Keep" },
    code: Code.INVALID_ARGUMENT,
    message: `Invalid name: ${DNS_RULE}, got "Keep"`,
  },
  {
    what: "a name of 64 characters",
    req: { name: "k".repeat(64) },
    code: Code.INVALID_ARGUMENT,
    message: "Invalid name: must be at most 63 characters, got 64",
  },
  {
    what: "a bad namespace",
    req: { name: "keep", namespace: "-x" },
    code: Code.INVALID_ARGUMENT,
    message: `Invalid namespace: ${DNS_RULE}, got "-x"`,
  },
];

async function checkNameCases(
  t: Deno.TestContext,
  call: string,
  fn: (cluster: Cluster, req: NameRequest) => Promise<unknown>,
): Promise<void> {
  const cluster = await startCluster();
  try {
    await cluster.client.createSandbox({ ...GOOD, name: "keep" });
    const before = await stateOf(cluster);
    for (const c of NAME_CASES) {
      await t.step(`${call} of ${c.what}`, async () => {
        await rejects(fn(cluster, c.req), c.code, c.message);
        assert.deepEqual(await stateOf(cluster), before);
      });
    }
  } finally {
    await cluster.close();
  }
}

Deno.test("get of a missing name is NOT_FOUND, of a bad name INVALID_ARGUMENT", (t) =>
  checkNameCases(t, "get", (cluster, req) => cluster.client.getSandbox(req)));

Deno.test("delete of a missing name is NOT_FOUND, of a bad name INVALID_ARGUMENT", (t) =>
  checkNameCases(t, "delete", (cluster, req) => cluster.client.deleteSandbox(req)));

Deno.test({
  name: "logs of a missing name is NOT_FOUND, of a bad name INVALID_ARGUMENT",
  fn: (t) => checkNameCases(t, "logs", (cluster, req) => readLogs(cluster, req)),
});

Deno.test("list of a bad namespace is INVALID_ARGUMENT naming it", async () => {
  const cluster = await startCluster();
  try {
    await rejects(
      cluster.client.listSandboxes({ namespace: "Bad" }),
      Code.INVALID_ARGUMENT,
      `Invalid namespace: ${DNS_RULE}, got "Bad"`,
    );
  } finally {
    await cluster.close();
  }
});

for (const mode of ["fast", "strong"] as const) {
  Deno.test(`no capacity is RESOURCE_EXHAUSTED naming the pool, and reserves nothing (${mode})`, async (t) => {
    const cluster = await startCluster({
      mode,
      agents: [{ id: "a", capacity: 1 }, { id: "g", pool: "gpu", capacity: 2 }],
    });
    try {
      await cluster.client.createSandbox({ ...GOOD, name: "full", exposedPorts: [8080] });
      await cluster.client.createSandbox({
        ...GOOD,
        name: "port",
        pool: "gpu",
        exposedPorts: [9000],
      });
      const before = await stateOf(cluster);
      assert.deepEqual(before.registry, [
        { id: "a", allocated: 1, ports: [8080] },
        { id: "g", allocated: 1, ports: [9000] },
      ]);
      const cases: { what: string; req: CreateInit; message: string }[] = [
        {
          what: "a pool whose agents are full",
          req: { ...GOOD, name: "more" },
          message:
            'Cannot allocate sandbox as pool "default-pool" in namespace "default" has no free capacity',
        },
        {
          what: "a pool whose only agent holds the port",
          req: { ...GOOD, name: "more", pool: "gpu", exposedPorts: [9000, 9001] },
          message:
            'Cannot allocate sandbox as pool "gpu" in namespace "default" has no agent with a free slot and ports 9000, 9001 free',
        },
        {
          what: "a pool with no agents",
          req: { ...GOOD, name: "more", pool: "tpu" },
          message: 'Cannot allocate sandbox as pool "tpu" in namespace "default" has no agents',
        },
        {
          what: "a namespace with no agents",
          req: { ...GOOD, name: "more", namespace: "team-b" },
          message:
            'Cannot allocate sandbox as pool "default-pool" in namespace "team-b" has no agents',
        },
      ];
      for (const c of cases) {
        await t.step(c.what, async () => {
          await rejects(cluster.client.createSandbox(c.req), Code.RESOURCE_EXHAUSTED, c.message);
          assert.deepEqual(await stateOf(cluster), before);
          await rejects(
            cluster.client.getSandbox({ name: "more", namespace: c.req.namespace }),
            Code.NOT_FOUND,
            `Sandbox "${c.req.namespace || "default"}/more" not found`,
          );
        });
      }
      // Freeing the slot makes the same request succeed.
      await cluster.client.deleteSandbox({ name: "full" });
      const more = await cluster.client.createSandbox({ ...GOOD, name: "more" });
      assert.equal(more.agent, "a");
    } finally {
      await cluster.close();
    }
  });
}
