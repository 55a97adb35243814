// FetchChannel with the lite FastPath codecs against a real gRPC server
// (grpc-js over loopback, with the generated protobuf-es schemas): the two
// sides of every call the CLI makes.
import assert from "node:assert/strict";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type CreateSandboxRequest,
  FailurePolicy,
  FastPath,
  type SandboxInfo,
  SandboxInfoSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { RpcServer } from "../../proto/grpc.ts";
import { Code, RpcError, type ServiceImpl } from "../../proto/rpc.ts";
import { FetchChannel } from "../../proto/fetch_client.ts";
import { FastPathLite } from "../../proto/fastpath_lite.ts";

type Impl = ServiceImpl<typeof FastPath.method>;

function info(name: string, more: MessageInitShape<typeof SandboxInfoSchema> = {}): SandboxInfo {
  return create(SandboxInfoSchema, { sandboxId: "ab".repeat(16), name, phase: "Running", ...more });
}

/** Never settles until the call is cancelled; the handler for deadline tests. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
}

const notCalled = () => {
  throw new RpcError(Code.UNIMPLEMENTED, "not used by this test");
};

async function withServer(
  impl: Partial<Impl>,
  fn: (channel: FetchChannel) => Promise<void>,
): Promise<void> {
  const server = new RpcServer();
  server.add(FastPath, {
    createSandbox: notCalled,
    getSandbox: notCalled,
    listSandboxes: notCalled,
    deleteSandbox: notCalled,
    updateSandbox: notCalled,
    // deno-lint-ignore require-yield
    streamLogs: async function* () {
      notCalled();
    },
    createToken: notCalled,
    listTokens: notCalled,
    revokeToken: notCalled,
    // deno-lint-ignore require-yield
    profile: async function* () {
      notCalled();
    },
    // The streams of requests are tested in fetch_client_streams_test.ts.
    // deno-lint-ignore require-yield
    exec: async function* () {
      notCalled();
    },
    // deno-lint-ignore require-yield
    execAttach: async function* () {
      notCalled();
    },
    execList: notCalled,
    execKill: notCalled,
    writeFile: notCalled,
    // deno-lint-ignore require-yield
    readFile: async function* () {
      notCalled();
    },
    listDir: notCalled,
    stat: notCalled,
    makeDir: notCalled,
    remove: notCalled,
    wait: notCalled,
    ...impl,
  });
  const address = await server.listen("127.0.0.1:0");
  const channel = new FetchChannel(address);
  try {
    await fn(channel);
  } finally {
    channel.close();
    await server.close();
  }
}

Deno.test("FetchChannel with FastPathLite sends requests the server reads and decodes its answers", async () => {
  const seen: CreateSandboxRequest[] = [];
  const answer = info("demo", {
    endpoints: ["10.0.0.1:8080"],
    createdAt: 1_700_000_000n,
    failurePolicy: FailurePolicy.AUTO_RECREATE,
    labels: { team: "ci" },
    exposedPorts: [8080],
  });
  await withServer({
    createSandbox: (req) => {
      seen.push(req);
      return answer;
    },
    listSandboxes: (req) => ({
      sandboxes: req.allNamespaces ? [info("a"), info("b", { namespace: "other" })] : [],
    }),
  }, async (channel) => {
    const client = channel.client(FastPathLite);
    const got = await client.createSandbox({
      name: "demo",
      image: "busybox",
      command: ["sh", "-c", "echo ü"],
      envs: { A: "1" },
      exposedPorts: [8080, 9090],
      expireTime: 1_700_003_600n,
      failurePolicy: FailurePolicy.AUTO_RECREATE,
      consistencyMode: undefined,
    });
    assert.deepEqual(got, answer);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].name, "demo");
    assert.deepEqual(seen[0].command, ["sh", "-c", "echo ü"]);
    assert.deepEqual(seen[0].envs, { A: "1" });
    assert.deepEqual(seen[0].exposedPorts, [8080, 9090]);
    assert.equal(seen[0].expireTime, 1_700_003_600n);
    assert.equal(seen[0].failurePolicy, FailurePolicy.AUTO_RECREATE);
    const all = await client.listSandboxes({ allNamespaces: true });
    assert.deepEqual(all.sandboxes.map((s) => s.name), ["a", "b"]);
    assert.deepEqual((await client.listSandboxes({})).sandboxes, []);
  });
});

Deno.test("FetchChannel turns a failed call's status into an RpcError with its code and message", async () => {
  await withServer({
    getSandbox: (req) => {
      throw new RpcError(Code.NOT_FOUND, `Sandbox "default/${req.name}" not found`);
    },
  }, async (channel) => {
    await assert.rejects(
      channel.client(FastPathLite).getSandbox({ name: "nöpe" }),
      (err) =>
        err instanceof RpcError && err.code === Code.NOT_FOUND &&
        err.message === 'Sandbox "default/nöpe" not found',
    );
  });
});

Deno.test("FetchChannel streams every log chunk in order, and a stream that fails first throws", async () => {
  const chunks = ["one\n", "two\n", "three\n"].map((s) => new TextEncoder().encode(s));
  await withServer({
    streamLogs: async function* (req) {
      if (req.name === "gone") throw new RpcError(Code.NOT_FOUND, "no such sandbox");
      for (const data of chunks) yield { data };
    },
  }, async (channel) => {
    const client = channel.client(FastPathLite);
    const got: Uint8Array[] = [];
    for await (const chunk of client.streamLogs({ name: "x" })) got.push(chunk.data);
    assert.deepEqual(got, chunks);
    await assert.rejects(
      async () => {
        for await (const _ of client.streamLogs({ name: "gone" })) { /* none */ }
      },
      (err) => err instanceof RpcError && err.code === Code.NOT_FOUND,
    );
  });
});

Deno.test("FetchChannel ends a followed stream quietly when the caller aborts it", async () => {
  await withServer({
    streamLogs: async function* (_req, ctx) {
      yield { data: new TextEncoder().encode("first\n") };
      await untilAborted(ctx.signal);
    },
  }, async (channel) => {
    const abort = new AbortController();
    const got: string[] = [];
    for await (
      const chunk of channel.client(FastPathLite).streamLogs({ name: "x", follow: true }, {
        signal: abort.signal,
      })
    ) {
      got.push(new TextDecoder().decode(chunk.data));
      abort.abort();
    }
    assert.deepEqual(got, ["first\n"]);
  });
});

Deno.test("FetchChannel fails a call past its deadline with DEADLINE_EXCEEDED", async () => {
  await withServer({ getSandbox: (_req, ctx) => untilAborted(ctx.signal) }, async (channel) => {
    await assert.rejects(
      channel.client(FastPathLite).getSandbox({ name: "slow" }, { timeoutMs: 50 }),
      (err) => err instanceof RpcError && err.code === Code.DEADLINE_EXCEEDED,
    );
  });
});

Deno.test("FetchChannel reports a request it cannot encode as INTERNAL, not as a connection failure", async () => {
  await withServer({}, async (channel) => {
    await assert.rejects(
      channel.client(FastPathLite).createSandbox({ name: "x", exposedPorts: [-1] }),
      (err) =>
        err instanceof RpcError && err.code === Code.INTERNAL &&
        err.message === "Request message serialization failure: invalid uint32: -1",
    );
  });
});

Deno.test("FetchChannel reports an answer it cannot decode as INTERNAL", async () => {
  await withServer({ getSandbox: () => info("x") }, async (channel) => {
    const broken = {
      typeName: FastPathLite.typeName,
      methods: {
        getSandbox: {
          ...FastPathLite.methods.getSandbox,
          decode: (): SandboxInfo => {
            throw new Error("premature EOF");
          },
        },
      },
    };
    await assert.rejects(
      channel.client(broken).getSandbox({ name: "x" }),
      (err) =>
        err instanceof RpcError && err.code === Code.INTERNAL &&
        err.message === "Response message parsing error: premature EOF",
    );
  });
});

Deno.test("FetchChannel reports an endpoint nothing listens on as UNAVAILABLE", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  const channel = new FetchChannel(`127.0.0.1:${port}`);
  try {
    await assert.rejects(
      channel.client(FastPathLite).getSandbox({ name: "x" }),
      (err) =>
        err instanceof RpcError && err.code === Code.UNAVAILABLE &&
        err.message.startsWith(`Cannot connect to 127.0.0.1:${port}: `),
    );
  } finally {
    channel.close();
  }
});

Deno.test("FetchChannel reports a server that closes the connection at once as UNAVAILABLE, its reason whole", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const accepting = (async () => {
    for await (const conn of listener) conn.close();
  })().catch(() => {});
  const channel = new FetchChannel(`127.0.0.1:${port}`);
  try {
    // fetch's reason has no ": " to cut at here; it was shown without its first letter.
    await assert.rejects(
      channel.client(FastPathLite).getSandbox({ name: "x" }),
      (err) =>
        err instanceof RpcError && err.code === Code.UNAVAILABLE &&
        // "connection closed", or "reset" when the close found the client's bytes unread.
        new RegExp(`^Cannot connect to 127\\.0\\.0\\.1:${port}: [Cc]onnection \\w+`).test(
          err.message,
        ),
    );
  } finally {
    channel.close();
    listener.close();
    await accepting;
  }
});

/**
 * Relays one loopback TCP connection at a time to `target`, keeping what the
 * client sent: the HTTP/2 frames FetchChannel writes, as the server reads them.
 */
function startRelay(target: string): { address: string; sent: Uint8Array[]; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [hostname, port] = [
    target.slice(0, target.lastIndexOf(":")),
    target.slice(target.lastIndexOf(":") + 1),
  ];
  const sent: Uint8Array[] = [];
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const client of listener) {
      const server = await Deno.connect({ hostname, port: Number(port) });
      conns.push(client, server);
      const record = new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          sent.push(chunk.slice());
          controller.enqueue(chunk);
        },
      });
      client.readable.pipeThrough(record).pipeTo(server.writable).catch(() => {});
      server.readable.pipeThrough(frameByFrame()).pipeTo(client.writable).catch(() => {});
    }
  })().catch(() => {});
  return {
    address: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    sent,
    close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Closed by the pipe already.
        }
      }
    },
  };
}

/**
 * Passes on a server's HTTP/2 frames one write at a time, FRAME_GAP_MS
 * apart, as a busy server may send them: a response's DATA and its trailers
 * then reach the client separately, the trailers after the client has read
 * the answer.
 */
const FRAME_GAP_MS = 20;

function frameByFrame(): TransformStream<Uint8Array, Uint8Array> {
  let held = new Uint8Array(0);
  return new TransformStream({
    async transform(chunk, controller) {
      const joined = new Uint8Array(held.length + chunk.length);
      joined.set(held);
      joined.set(chunk, held.length);
      let at = 0;
      while (at + 9 <= joined.length) {
        const end = at + 9 + ((joined[at] << 16) | (joined[at + 1] << 8) | joined[at + 2]);
        if (end > joined.length) break;
        controller.enqueue(joined.slice(at, end));
        at = end;
        await new Promise((resolve) => setTimeout(resolve, FRAME_GAP_MS));
      }
      held = joined.slice(at);
    },
  });
}

/** The types of the HTTP/2 frames in what a client sent (after its connection preface). */
function frameTypes(sent: Uint8Array[]): number[] {
  const bytes = new Uint8Array(sent.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of sent) {
    bytes.set(c, at);
    at += c.length;
  }
  const types: number[] = [];
  for (let i = 24; i + 9 <= bytes.length;) {
    const length = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    types.push(bytes[i + 3]);
    i += 9 + length;
  }
  return types;
}

Deno.test("FetchChannel reads each unary answer to the end of its stream, never resetting it", async () => {
  // A reset (RST_STREAM) after the answer was a small write of its own, which on fetch's
  // Nagle-enabled socket held the next call back until the server's delayed ACK (~40 ms).
  let calls = 0;
  const impl: Partial<Impl> = {
    listSandboxes: () => {
      calls++;
      return { sandboxes: [info("a")] };
    },
  };
  await withServer(impl, async (direct) => {
    // The server of withServer, reached through the relay by a channel of the test's own.
    const relay = startRelay(direct.address);
    const channel = new FetchChannel(relay.address);
    try {
      const client = channel.client(FastPathLite);
      for (let i = 0; i < 10; i++) {
        assert.deepEqual((await client.listSandboxes({})).sandboxes.map((s) => s.name), ["a"]);
      }
      const types = frameTypes(relay.sent);
      assert.equal(types.filter((t) => t === 0x1).length, 10, "one HEADERS frame per call");
      assert.equal(types.filter((t) => t === 0x3).length, 0, `no RST_STREAM: ${types}`);
      assert.equal(calls, 10);
    } finally {
      channel.close();
      relay.close();
    }
  });
});
