import assert from "node:assert/strict";
import { Agent as AgentService } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcChannel, RpcError } from "../../proto/grpc.ts";
import { type Cluster, processAlive, startCluster, waitFor } from "../support/cluster.ts";

const encoder = new TextEncoder();
const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/** A small seeded generator (mulberry32), so every run sends the same "random" bytes. */
function seededBytes(seed: number): (n: number) => Uint8Array {
  let state = seed >>> 0;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out[i] = (t ^ (t >>> 14)) & 0xff;
    }
    return out;
  };
}

function concat(...parts: (string | Uint8Array)[]): Uint8Array {
  const bytes = parts.map((p) => typeof p === "string" ? encoder.encode(p) : p);
  const out = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of bytes) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/** An HTTP/2 frame header: 24-bit length, type, flags, 31-bit stream id. */
function frameHeader(length: number, type: number, flags: number, stream: number): Uint8Array {
  return new Uint8Array([
    (length >>> 16) & 0xff,
    (length >>> 8) & 0xff,
    length & 0xff,
    type,
    flags,
    (stream >>> 24) & 0x7f,
    (stream >>> 16) & 0xff,
    (stream >>> 8) & 0xff,
    stream & 0xff,
  ]);
}

/** What one round throws at a port: junk of every layer a gRPC server parses. */
function payloads(random: (n: number) => Uint8Array): { what: string; bytes: Uint8Array }[] {
  return [
    { what: "nothing at all", bytes: new Uint8Array() },
    { what: "random bytes", bytes: random(4096) },
    {
      what: "an HTTP/1.1 request",
      bytes: encoder.encode(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
      ),
    },
    {
      what: "an HTTP/1.1 POST to a gRPC method",
      bytes: encoder.encode(
        "POST /fsb.fastpath.v1.FastPath/CreateSandbox HTTP/1.1\r\nHost: x\r\n" +
          "Content-Type: application/grpc\r\nContent-Length: 5\r\n\r\n\0\0\0\0\0",
      ),
    },
    { what: "a truncated HTTP/2 preface", bytes: encoder.encode(PREFACE.slice(0, 14)) },
    { what: "the HTTP/2 preface and random frames", bytes: concat(PREFACE, random(2048)) },
    {
      what: "the HTTP/2 preface and a frame cut short",
      bytes: concat(PREFACE, frameHeader(16_000, 0x0, 0, 1), random(100)),
    },
    {
      what: "SETTINGS, then HEADERS with a garbage header block",
      bytes: concat(
        PREFACE,
        frameHeader(0, 0x4, 0, 0),
        frameHeader(64, 0x1, 0x4, 1),
        random(64),
      ),
    },
    {
      what: "a frame larger than any settings allow",
      bytes: concat(PREFACE, frameHeader(0xffffff, 0x0, 0, 1), random(512)),
    },
  ];
}

/**
 * Writes `bytes` on a fresh connection to `address`, then reads until the
 * server closes or `waitMs` passes, then closes. Errors from a server that
 * resets the connection are what we asked for.
 */
async function throwAt(address: string, bytes: Uint8Array, waitMs: number): Promise<void> {
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    if (bytes.length > 0) await conn.write(bytes).catch(() => 0);
    // Half-close: a server that waits for more bytes sees the end of the stream.
    await conn.closeWrite().catch(() => {});
    const buf = new Uint8Array(4096);
    const drained = (async () => {
      try {
        while ((await conn.read(buf)) !== null) { /* discard whatever the server answers */ }
      } catch {
        // Reset by the server.
      }
    })();
    await Promise.race([drained, new Promise((r) => timer = setTimeout(r, waitMs))]);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** A create, get, list, delete cycle through the controller, checked end to end. */
async function roundTrip(cluster: Cluster, name: string): Promise<void> {
  const made = await cluster.client.createSandbox({
    name,
    image: "busybox",
    command: ["sh", "-c", "echo pid=$$; exec sleep 60"],
    exposedPorts: [8080],
  });
  assert.equal(made.phase, "Running");
  assert.equal((await cluster.client.getSandbox({ name })).sandboxId, made.sandboxId);
  assert.deepEqual(
    (await cluster.client.listSandboxes({})).sandboxes.map((s) => s.name),
    [name],
  );
  let pid = 0;
  await waitFor(async () => {
    let out = "";
    for await (const c of cluster.client.streamLogs({ name })) {
      out += new TextDecoder().decode(c.data);
    }
    pid = Number(/pid=(\d+)/.exec(out)?.[1] ?? 0);
    return pid > 0;
  });
  assert.ok(processAlive(pid));
  await cluster.client.deleteSandbox({ name });
  assert.equal(processAlive(pid), false);
  const agent = cluster.controller.controller.registry.getAgentById("agent-1")!;
  assert.equal(agent.allocated, 0);
  assert.equal(agent.ports.size, 0);
  try {
    await cluster.client.getSandbox({ name });
    assert.fail("expected NOT_FOUND");
  } catch (err) {
    assert.ok(err instanceof RpcError && err.code === Code.NOT_FOUND, String(err));
  }
}

Deno.test("garbage bytes on the controller's and the agent's gRPC ports take nothing down", async (t) => {
  const cluster = await startCluster();
  try {
    const controllerAddress = cluster.controller.address;
    const agentAddress = cluster.agents.get("agent-1")!.server.address;
    // Connections the controller already holds (client and agent channels) must survive too.
    await roundTrip(cluster, "warmup");
    const random = seededBytes(0x5eed);
    for (let round = 1; round <= 4; round++) {
      await t.step(`round ${round}`, async () => {
        const junk = payloads(random);
        // All at once, both ports, while a create is in flight; then one by one, waiting for replies.
        await Promise.all([
          ...junk.map((p) => throwAt(controllerAddress, p.bytes, 0)),
          ...junk.map((p) => throwAt(agentAddress, p.bytes, 0)),
          roundTrip(cluster, `during-${round}`),
        ]);
        for (const p of junk) {
          await throwAt(controllerAddress, p.bytes, 100);
          await throwAt(agentAddress, p.bytes, 100);
        }
        // Connections stuck halfway through the preface must not hold up anyone else.
        const stuck = await Promise.all(
          [controllerAddress, agentAddress].map(async (address) => {
            const conn = await Deno.connect({
              hostname: "127.0.0.1",
              port: Number(address.slice(address.lastIndexOf(":") + 1)),
            });
            await conn.write(encoder.encode(PREFACE.slice(0, 9)));
            return conn;
          }),
        );
        try {
          await roundTrip(cluster, `after-${round}`);
        } finally {
          for (const conn of stuck) conn.close();
        }
        // New connections are served too, not only the ones opened before the garbage.
        const fresh = new RpcChannel(controllerAddress, {
          timeoutMs: 5_000,
          metadata: { authorization: `Bearer ${cluster.adminToken}` },
        });
        const credential = await Deno.readTextFile(
          `${cluster.agents.get("agent-1")!.dataDir}/credential`,
        );
        const direct = new RpcChannel(agentAddress, {
          timeoutMs: 5_000,
          metadata: { authorization: `Bearer ${credential.trim()}` },
        });
        try {
          assert.deepEqual((await fresh.client(FastPath).listSandboxes({})).sandboxes, []);
          assert.deepEqual((await direct.client(AgentService).listSandboxes({})).sandboxes, []);
        } finally {
          fresh.close();
          direct.close();
        }
      });
    }
  } finally {
    await cluster.close();
  }
});
