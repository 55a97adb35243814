// The library client (`cli/client.ts`, `@fsb/fsb/client`) against a real
// controller and agent (process runtime), and against the fake FastPath where
// a test needs a server that answers as told.
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  ExecInfoSchema,
  ExecListResponseSchema,
  FileInfoSchema,
  ListDirResponseSchema,
  RemoveResponseSchema,
  SandboxInfoSchema,
  WaitResponseSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, connect, type FsbClient, RpcError } from "../../cli/client.ts";
import { type Cluster, type ClusterOptions, startCluster, waitFor } from "../support/cluster.ts";
import { startFakeFastPath } from "./fake_fastpath.ts";

const decoder = new TextDecoder();

/** A loopback port that nothing listens on (bound, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function isCode(code: number) {
  return (err: unknown) => {
    assert.ok(err instanceof RpcError, `expected an RpcError, got ${err}`);
    assert.equal(err.codeName, new RpcError(code, "").codeName, err.message);
    return true;
  };
}

async function logsOf(client: FsbClient, name: string, namespace?: string): Promise<string> {
  let out = "";
  for await (const chunk of client.logs(name, { namespace })) {
    assert.ok(chunk instanceof Uint8Array && chunk.length > 0);
    out += decoder.decode(chunk);
  }
  return out;
}

async function withCluster(
  fn: (cluster: Cluster) => Promise<void>,
  opts: ClusterOptions = {},
): Promise<void> {
  const cluster = await startCluster(opts);
  try {
    await fn(cluster);
  } finally {
    await cluster.close();
  }
}

Deno.test("client: create, get, list, logs, update, reset and delete against a real cluster", () =>
  withCluster(async (cluster) => {
    using fsb = connect({ endpoint: cluster.controller.address, token: cluster.adminToken });
    const created = await fsb.sandboxes.create({
      name: "demo",
      image: "busybox",
      command: ["sh", "-c", "echo hello; echo oops >&2; exec sleep 60"],
      labels: { team: "a" },
      envs: { GREETING: "hi" },
    });
    assert.equal(created.name, "demo");
    assert.equal(created.namespace, "default");
    assert.equal(created.phase, "Running");
    assert.match(created.sandboxId, /^[0-9a-f]{32}$/);
    assert.equal(typeof created.createdAt, "bigint");

    const got = await fsb.sandboxes.get("demo");
    assert.equal(got.sandboxId, created.sandboxId);
    assert.deepEqual(got.labels, { team: "a" });
    assert.deepEqual(got.envs, { GREETING: "hi" });
    await assert.rejects(fsb.sandboxes.get("demo", { namespace: "other" }), isCode(Code.NOT_FOUND));
    await assert.rejects(fsb.sandboxes.get("missing"), isCode(Code.NOT_FOUND));

    const other = await fsb.sandboxes.create({
      name: "job",
      namespace: "team-b",
      image: "busybox",
      command: ["sh", "-c", "echo from team-b; exec sleep 60"],
    });
    assert.equal(other.namespace, "team-b");
    assert.deepEqual((await fsb.sandboxes.list()).map((s) => s.name), ["demo"]);
    assert.deepEqual((await fsb.sandboxes.list({ namespace: "team-b" })).map((s) => s.name), [
      "job",
    ]);
    assert.deepEqual(
      (await fsb.sandboxes.list({ allNamespaces: true })).map((s) => `${s.namespace}/${s.name}`)
        .sort(),
      ["default/demo", "team-b/job"],
    );

    await waitFor(async () => (await logsOf(fsb, "demo")).includes("oops"));
    const logs = await logsOf(fsb, "demo");
    assert.ok(logs === "hello\noops\n" || logs === "oops\nhello\n", JSON.stringify(logs));
    await waitFor(async () => (await logsOf(fsb, "job", "team-b")) === "from team-b\n");

    const expireTime = BigInt(Math.floor(Date.now() / 1000) + 3600);
    const updated = await fsb.sandboxes.update({ name: "demo", expireTime, labels: { v: "2" } });
    assert.equal(updated.expireTime, expireTime);
    assert.deepEqual(updated.labels, { team: "a", v: "2" });

    const reset = await fsb.sandboxes.reset("job", { namespace: "team-b" });
    assert.equal(reset.name, "job");
    assert.equal(reset.phase, "Running");

    const deleted = await fsb.sandboxes.delete("demo");
    assert.equal(deleted.sandboxId, created.sandboxId);
    await assert.rejects(fsb.sandboxes.get("demo"), isCode(Code.NOT_FOUND));
    await fsb.sandboxes.delete("job", { namespace: "team-b" });
    assert.deepEqual(await fsb.sandboxes.list({ allNamespaces: true }), []);
  }, { agents: [{ id: "agent-a" }, { id: "agent-b", namespace: "team-b" }] }));

Deno.test("client: logs with follow stream new output, and end quietly when the signal aborts", () =>
  withCluster(async (cluster) => {
    using fsb = connect({ endpoint: cluster.controller.address, token: cluster.adminToken });
    await fsb.sandboxes.create({
      name: "ticker",
      image: "busybox",
      command: ["sh", "-c", "echo one; sleep 0.3; echo two; exec sleep 60"],
    });
    const stop = new AbortController();
    let out = "";
    for await (const chunk of fsb.logs("ticker", { follow: true, signal: stop.signal })) {
      out += decoder.decode(chunk);
      if (out.includes("two")) stop.abort();
    }
    assert.equal(out, "one\ntwo\n");
  }));

Deno.test("client: an endpoint list fails over past a closed port, for calls and for streams", () =>
  withCluster(async (cluster) => {
    const closed = `127.0.0.1:${freePort()}`;
    // As an array, and as one comma-separated string.
    for (
      const endpoint of [
        [closed, cluster.controller.address],
        `${closed},${cluster.controller.address}`,
      ]
    ) {
      using fsb = connect({ endpoint, token: cluster.adminToken });
      assert.deepEqual(fsb.endpoints, [closed, cluster.controller.address]);
      await fsb.ready(2_000);
      assert.deepEqual(await fsb.sandboxes.list(), []);
    }
    // A stream is the first call of its client: it fails over too.
    await cluster.client.createSandbox({
      name: "echo",
      image: "busybox",
      command: ["sh", "-c", "echo hi; exec sleep 60"],
    });
    await waitFor(async () => {
      using fsb = connect({
        endpoint: [closed, cluster.controller.address],
        token: cluster.adminToken,
      });
      return (await logsOf(fsb, "echo")) === "hi\n";
    });

    // Nothing answers anywhere: UNAVAILABLE, naming the last endpoint tried.
    const closed2 = `127.0.0.1:${freePort()}`;
    using down = connect({ endpoint: [closed, closed2] });
    await assert.rejects(down.sandboxes.list(), (err) => {
      isCode(Code.UNAVAILABLE)(err);
      assert.match((err as Error).message, new RegExp(`^Cannot connect to ${closed2}: `));
      return true;
    });
    await assert.rejects(down.ready(300), isCode(Code.UNAVAILABLE));
    await assert.rejects(
      (async () => {
        for await (const _ of down.logs("echo")) { /* nothing */ }
      })(),
      isCode(Code.UNAVAILABLE),
    );
  }));

Deno.test("client: token errors surface as RpcError UNAUTHENTICATED, and tokens can be managed", () =>
  withCluster(async (cluster) => {
    const endpoint = cluster.controller.address;
    using anonymous = connect({ endpoint });
    await assert.rejects(anonymous.sandboxes.list(), isCode(Code.UNAUTHENTICATED));
    using stranger = connect({ endpoint, token: "fsb_000000000000_wrong" });
    await assert.rejects(stranger.sandboxes.get("x"), isCode(Code.UNAUTHENTICATED));
    await assert.rejects(stranger.tokens.list(), isCode(Code.UNAUTHENTICATED));
    await assert.rejects(
      (async () => {
        for await (const _ of stranger.logs("x")) { /* nothing */ }
      })(),
      isCode(Code.UNAUTHENTICATED),
    );

    using admin = connect({ endpoint, token: cluster.adminToken });
    const made = await admin.tokens.create({ namespaces: ["team-a"], ttlSeconds: 3600n, quota: 1 });
    assert.match(made.secret, /^fsb_[0-9a-f]{12}_/);
    assert.deepEqual(made.token?.namespaces, ["team-a"]);
    const id = made.token!.id;
    assert.ok((await admin.tokens.list()).some((t) => t.id === id && !t.admin));

    using team = connect({ endpoint, token: made.secret });
    assert.deepEqual(await team.sandboxes.list({ namespace: "team-a" }), []);
    await assert.rejects(team.sandboxes.list(), isCode(Code.PERMISSION_DENIED));
    await assert.rejects(team.tokens.list(), isCode(Code.PERMISSION_DENIED));

    const revoked = await admin.tokens.revoke(id);
    assert.equal(revoked.id, id);
    await assert.rejects(
      team.sandboxes.list({ namespace: "team-a" }),
      isCode(Code.UNAUTHENTICATED),
    );
    // An UNAUTHENTICATED answer is the controller's: no other endpoint is tried for it.
    await assert.rejects(admin.tokens.revoke("no-such-token"), isCode(Code.NOT_FOUND));
  }));

Deno.test("client: fails over on the server's UNAVAILABLE, but not on other codes", async () => {
  const info = create(SandboxInfoSchema, { name: "x", namespace: "default", phase: "Running" });
  const unavailable = startFakeFastPath(() => ({
    code: Code.UNAVAILABLE,
    error: "not the leader",
  }));
  const notFound = startFakeFastPath(() => ({ code: Code.NOT_FOUND, error: "no sandbox x" }));
  const ok = startFakeFastPath(() => ({ message: info }));
  try {
    using fsb = connect({ endpoint: [unavailable.endpoint, ok.endpoint] });
    assert.equal((await fsb.sandboxes.get("x")).phase, "Running");
    // The endpoint that answered is tried first from then on.
    assert.equal((await fsb.sandboxes.get("x")).phase, "Running");
    assert.equal(unavailable.calls.length, 1);
    assert.equal(ok.calls.length, 2);

    using stops = connect({ endpoint: [notFound.endpoint, ok.endpoint] });
    await assert.rejects(stops.sandboxes.get("x"), (err) => {
      isCode(Code.NOT_FOUND)(err);
      assert.equal((err as Error).message, "no sandbox x");
      return true;
    });
    assert.equal(ok.calls.length, 2);

    // When the last endpoint cannot be reached, a controller's own UNAVAILABLE is what is reported.
    using lastDown = connect({ endpoint: [unavailable.endpoint, `127.0.0.1:${freePort()}`] });
    await assert.rejects(lastDown.sandboxes.get("x"), (err) => {
      isCode(Code.UNAVAILABLE)(err);
      assert.equal((err as Error).message, "not the leader");
      return true;
    });

    // The deadline covers every attempt; each attempt carries what is left of it.
    using timed = connect({ endpoint: [unavailable.endpoint, ok.endpoint] });
    await timed.sandboxes.get("x", { timeoutMs: 5_000 });
    const first = unavailable.calls.at(-1)!.headers.get("grpc-timeout")!;
    const second = ok.calls.at(-1)!.headers.get("grpc-timeout")!;
    assert.equal(first, "5000m");
    assert.ok(Number(second.slice(0, -1)) <= 5000, second);
  } finally {
    await unavailable.close();
    await notFound.close();
    await ok.close();
  }
});

Deno.test("client: sends the token as a bearer header and the request as plain data", async () => {
  const info = create(SandboxInfoSchema, { name: "web", namespace: "team-a" });
  const fake = startFakeFastPath(() => ({ message: info }));
  try {
    using fsb = connect({ endpoint: fake.endpoint, token: "s3cret" });
    await fsb.sandboxes.create({
      name: "web",
      namespace: "team-a",
      image: "busybox",
      exposedPorts: [8080],
      failurePolicy: 2,
      resources: { memoryBytes: 64n << 20n },
    });
    const call = fake.calls[0];
    assert.equal(call.method, "CreateSandbox");
    assert.equal(call.headers.get("authorization"), "Bearer s3cret");
    assert.equal(call.headers.get("grpc-timeout"), "60000m");
    const req = call.request as Record<string, unknown>;
    assert.equal(req.name, "web");
    assert.deepEqual(req.exposedPorts, [8080]);
    assert.equal(req.failurePolicy, 2);

    await fsb.sandboxes.get("web", { namespace: "team-a", timeoutMs: Infinity });
    assert.equal(fake.calls[1].headers.get("grpc-timeout"), null);
    assert.deepEqual(
      { ...(fake.calls[1].request as Record<string, unknown>), $typeName: undefined },
      { name: "web", namespace: "team-a", $typeName: undefined },
    );
  } finally {
    await fake.close();
  }
});

Deno.test("client: the exec and file calls' deadlines: none for wait, 10 s or 60 s for the short ones", async () => {
  const answers: Record<string, unknown> = {
    Wait: create(WaitResponseSchema, { exitCode: 0, phase: "Exited" }),
    ExecList: create(ExecListResponseSchema),
    ExecKill: create(ExecInfoSchema, { execId: "e-1" }),
    Stat: create(FileInfoSchema, { path: "/x" }),
    ListDir: create(ListDirResponseSchema),
    MakeDir: create(FileInfoSchema, { path: "/x", type: "dir" }),
    Remove: create(RemoveResponseSchema, { existed: true }),
  };
  const fake = startFakeFastPath((call) => ({ message: answers[call.method] }));
  try {
    using fsb = connect({ endpoint: fake.endpoint });
    await fsb.wait("job");
    await fsb.execs.list("job");
    await fsb.execs.kill("job", "e-1");
    await fsb.files.stat("job", "/x");
    await fsb.files.list("job", "/x");
    await fsb.files.mkdir("job", "/x");
    await fsb.files.remove("job", "/x");
    await fsb.wait("job", { timeoutMs: 1_000 });
    assert.deepEqual(
      fake.calls.map((c) => `${c.method} ${c.headers.get("grpc-timeout")}`),
      [
        "Wait null",
        "ExecList 10000m",
        "ExecKill 10000m",
        "Stat 10000m",
        "ListDir 10000m",
        "MakeDir 10000m",
        "Remove 60000m",
        "Wait 1000m",
      ],
    );
  } finally {
    await fake.close();
  }
});

Deno.test("connect() refuses bad options with INVALID_ARGUMENT, and a closed client refuses calls", async () => {
  for (
    const opts of [
      { endpoint: "controller" },
      { endpoint: [] },
      { endpoint: "127.0.0.1:9090," },
      { endpoint: "http://127.0.0.1:9090" },
      { endpoint: "127.0.0.1:9090", token: "has space" },
      { endpoint: "127.0.0.1:9090", tlsCa: "/etc/fsb/ca.pem" },
    ]
  ) {
    assert.throws(() => connect(opts), isCode(Code.INVALID_ARGUMENT), JSON.stringify(opts));
  }
  const fsb = connect({ endpoint: `127.0.0.1:${freePort()}` });
  fsb.close();
  fsb.close();
  await assert.rejects(fsb.sandboxes.list(), isCode(Code.FAILED_PRECONDITION));
  await assert.rejects(fsb.ready(100), isCode(Code.FAILED_PRECONDITION));
});
