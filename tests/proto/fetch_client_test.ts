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
