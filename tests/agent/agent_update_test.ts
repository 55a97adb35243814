/**
 * The agent's UpdateSandbox (issue 11, fault 7): a newer generation of a
 * sandbox's spec into the runtime's record, which a restarted agent adopts;
 * what it refuses, by class and message. Real gRPC over loopback with the
 * controller's credential, process runtime.
 *
 * @module
 */
import assert from "node:assert/strict";
import { clone, create, toJson } from "@bufbuild/protobuf";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import type { Runtime } from "../../agent/runtime.ts";
import {
  Agent as AgentService,
  type SandboxSpec,
  SandboxSpecSchema,
} from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Code, codeName, RpcChannel, RpcError, type ServiceClient } from "../../proto/grpc.ts";
import { NotFoundError } from "../../registry/errors.ts";
import { type Cluster, startCluster, type TestAgent } from "../support/cluster.ts";

/** Awaits `p`, which must fail with status `code` and exactly `message`. */
async function rejects(p: Promise<unknown>, code: number, message: string): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RpcError, `expected RpcError, got ${err}`);
    assert.equal(err.codeName, codeName(code), err.message);
    assert.equal(err.message, message);
    return;
  }
  assert.fail(`expected ${codeName(code)}`);
}

/** A cluster, its agent, a client of the agent holding the controller's credential, one sandbox. */
async function withAgent(
  fn: (
    scene: {
      cluster: Cluster;
      agent: TestAgent;
      client: ServiceClient<typeof AgentService.method>;
      spec: SandboxSpec;
    },
  ) => Promise<void>,
  runtime?: Runtime,
): Promise<void> {
  const cluster = await startCluster({ agents: [{ id: "agent-1", runtime }] });
  const agent = cluster.agents.get("agent-1")!;
  const credential = (await Deno.readTextFile(`${agent.dataDir}/credential`)).trim();
  const channel = new RpcChannel(agent.server.address, {
    timeoutMs: 5_000,
    metadata: { authorization: `Bearer ${credential}` },
  });
  try {
    const made = await cluster.client.createSandbox({
      name: "s1",
      image: "busybox",
      command: ["sleep", "30"],
      labels: { a: "1" },
    });
    const spec = (await agent.runtime.list()).find((s) => s.spec.sandboxId === made.sandboxId)!
      .spec;
    await fn({ cluster, agent, client: channel.client(AgentService), spec });
  } finally {
    channel.close();
    await cluster.close();
  }
}

/** `spec` at `generation`, with `change` applied. */
function next(spec: SandboxSpec, generation: number, change: Partial<SandboxSpec> = {}) {
  return { ...clone(SandboxSpecSchema, spec), generation, ...change };
}

Deno.test("UpdateSandbox takes labels, expiry and failure policy into the record, which a restarted agent adopts", async () => {
  await withAgent(async ({ cluster, agent, client, spec }) => {
    const res = await client.updateSandbox({
      spec: next(spec, 2, {
        labels: { a: "2", b: "x" },
        expireTime: 4_000_000_000n,
        failurePolicy: "AUTO_RECREATE",
        // Not what an update may change: the record keeps the sandbox's own.
        command: ["rm", "-rf", "/"],
        image: "other",
      }),
    });
    assert.equal(res.generation, 2);
    const expected = next(spec, 2, {
      labels: { a: "2", b: "x" },
      expireTime: 4_000_000_000n,
      failurePolicy: "AUTO_RECREATE",
    });
    const json = (s: SandboxSpec) => toJson(SandboxSpecSchema, s);
    assert.deepEqual(json((await agent.runtime.list())[0].spec), json(expected));

    await cluster.stopAgent("agent-1");
    const again = new ProcessRuntime({ stateDir: `${agent.dataDir}/process` });
    try {
      assert.deepEqual(json((await again.list())[0].spec), json(expected));
    } finally {
      await again.close();
    }
  });
});

Deno.test("UpdateSandbox of a generation the record has, or an older one, changes nothing and says the record's", async () => {
  await withAgent(async ({ agent, client, spec }) => {
    await client.updateSandbox({ spec: next(spec, 3, { labels: { a: "3" } }) });
    for (const generation of [3, 2]) {
      const res = await client.updateSandbox({ spec: next(spec, generation, { labels: {} }) });
      assert.equal(res.generation, 3);
    }
    const record = (await agent.runtime.list())[0].spec;
    assert.equal(record.generation, 3);
    assert.deepEqual(record.labels, { a: "3" });
  });
});

Deno.test("UpdateSandbox refuses a call without the spec, a bad id, generation 0, another sandbox's name, an unknown id", async () => {
  await withAgent(async ({ client, spec }) => {
    await rejects(client.updateSandbox({}), Code.INVALID_ARGUMENT, "Invalid spec: is required");
    await rejects(
      client.updateSandbox({ spec: next(spec, 2, { sandboxId: "../x" }) }),
      Code.INVALID_ARGUMENT,
      'Invalid spec.sandbox_id: must be 32 lowercase hex characters, got "../x"',
    );
    await rejects(
      client.updateSandbox({ spec: next(spec, 0) }),
      Code.INVALID_ARGUMENT,
      "Invalid spec.generation: must be at least 1, got 0",
    );
    await rejects(
      client.updateSandbox({ spec: next(spec, 2, { name: "other" }) }),
      Code.INVALID_ARGUMENT,
      `Invalid spec: names sandbox "default/other", but sandbox ${spec.sandboxId} is "default/s1"`,
    );
    const unknown = "f".repeat(32);
    await rejects(
      client.updateSandbox({ spec: next(spec, 2, { sandboxId: unknown }) }),
      Code.NOT_FOUND,
      `Cannot update sandbox ${unknown} as it does not exist`,
    );
  });
});

Deno.test("UpdateSandbox without the controller's credential is UNAUTHENTICATED", async () => {
  await withAgent(async ({ agent, spec }) => {
    const channel = new RpcChannel(agent.server.address, { timeoutMs: 5_000 });
    try {
      await rejects(
        channel.client(AgentService).updateSandbox({ spec: next(spec, 2) }),
        Code.UNAUTHENTICATED,
        "Calls to an agent must carry the controller's credential",
      );
    } finally {
      channel.close();
    }
    assert.equal((await agent.runtime.list())[0].spec.generation, 1);
  });
});

Deno.test("UpdateSandbox on a runtime that keeps no spec records is UNIMPLEMENTED", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-agent-update-" });
  // A real process runtime without updateSpec: a runtime of another make, which the interface allows.
  const real = new ProcessRuntime({ stateDir: dir, images: ["busybox"] });
  const runtime = new Proxy(real, {
    get: (target, key) => {
      if (key === "updateSpec") return undefined;
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as Runtime;
  try {
    await withAgent(async ({ client, spec }) => {
      await rejects(
        client.updateSandbox({ spec: next(spec, 2) }),
        Code.UNIMPLEMENTED,
        'Runtime process on agent "agent-1" keeps no spec records to update',
      );
    }, runtime);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the process runtime's updateSpec of an unknown sandbox is a NotFoundError", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-process-update-" });
  const runtime = new ProcessRuntime({ stateDir: dir });
  try {
    const spec = create(SandboxSpecSchema, { sandboxId: "e".repeat(32), generation: 2 });
    await assert.rejects(
      runtime.updateSpec(spec),
      (err: unknown) =>
        err instanceof NotFoundError &&
        err.message === `Cannot update sandbox ${"e".repeat(32)} as it does not exist`,
    );
  } finally {
    await runtime.close();
    await Deno.remove(dir, { recursive: true });
  }
});
