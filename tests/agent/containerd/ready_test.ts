import assert from "node:assert/strict";
import { join } from "node:path";
import { fromJson } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { type SandboxSpec, SandboxSpecSchema } from "../../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Containers } from "../../../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import { Content } from "../../../proto/gen/containerd/services/content/v1/content_pb.ts";
import { Diff } from "../../../proto/gen/containerd/services/diff/v1/diff_pb.ts";
import { Images } from "../../../proto/gen/containerd/services/images/v1/images_pb.ts";
import { Leases } from "../../../proto/gen/containerd/services/leases/v1/leases_pb.ts";
import { Namespaces } from "../../../proto/gen/containerd/services/namespaces/v1/namespace_pb.ts";
import { Snapshots } from "../../../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Status } from "../../../proto/gen/containerd/types/task_pb.ts";
import { Tasks } from "../../../proto/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Version } from "../../../proto/gen/containerd/services/version/v1/version_pb.ts";
import {
  type CallContext,
  Code,
  RpcError,
  RpcServer,
  type ServiceImpl,
} from "../../../proto/grpc.ts";
import { ContainerdClient, ContainerdRuntime, importImage } from "../../../agent/containerd/mod.ts";
import { buildBusyboxImage } from "../../support/busybox_image.ts";
import { startContainerd } from "../../support/containerd.ts";
import { eventually } from "../runtime_contract.ts";
import { ignoreWithout } from "../../support/real_parts.ts";

const IGNORE = ignoreWithout("containerd", "root");

type Forwarded = Record<string, (req: unknown, opts: unknown) => unknown>;

/**
 * A gRPC proxy in front of a real containerd that passes every call through, except
 * that the Version service answers UNAVAILABLE while `failVersion` is set, and that a
 * method may be held (see `hold`).
 *
 * Why a proxy: the readiness probe and every other call share one HTTP/2 connection,
 * so real containerd only fails the probe with UNAVAILABLE when that connection is
 * down, which ends the other calls by itself. What the proxy adds is a probe that fails
 * while the connection lives (as a stream-level UNAVAILABLE does); everything else is
 * real containerd's doing.
 */
class FlakyProxy {
  failVersion = false;
  /** Calls in flight through the proxy, by `Service.method` (`Tasks.wait`). */
  readonly inFlight = new Map<string, number>();
  readonly #held = new Map<string, Promise<void>>();
  readonly #server = new RpcServer();
  readonly #upstream: ContainerdClient;

  constructor(upstreamSocket: string) {
    const up = new ContainerdClient(upstreamSocket, { timeoutMs: 10 * 60_000 });
    this.#upstream = up;
    const services: [GenService<GenServiceMethods>, unknown][] = [
      [Containers, up.containers],
      [Content, up.content],
      [Diff, up.diff],
      [Images, up.images],
      [Leases, up.leases],
      [Namespaces, up.namespaces],
      [Snapshots, up.snapshots],
      [Tasks, up.tasks],
    ];
    for (const [service, client] of services) this.#forward(service, client as Forwarded);
    const version = up.version as unknown as Forwarded;
    this.#forward(Version, {
      version: (req, opts) => {
        if (this.failVersion) throw new RpcError(Code.UNAVAILABLE, "connection error (injected)");
        return version.version(req, opts);
      },
    });
  }

  /** Calls of `Service.method` wait, before reaching containerd, until the returned function is called. */
  hold(name: string): () => void {
    let release!: () => void;
    this.#held.set(name, new Promise<void>((resolve) => release = resolve));
    return () => {
      this.#held.delete(name);
      release();
    };
  }

  listen(socket: string): Promise<string> {
    return this.#server.listen(`unix://${socket}`);
  }

  async close(): Promise<void> {
    await this.#server.close();
    this.#upstream.close();
  }

  #forward<S extends GenServiceMethods>(service: GenService<S>, upstream: Forwarded): void {
    const impl: Record<string, unknown> = {};
    for (const method of service.methods) {
      const name = method.localName;
      const key = `${service.name}.${name}`;
      const count = (by: number) => this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + by);
      const pass = async (req: unknown, ctx: CallContext) => {
        count(1);
        try {
          await this.#held.get(key);
          return await upstream[name](req, { signal: ctx.signal });
        } finally {
          count(-1);
        }
      };
      const kind = method.methodKind;
      impl[name] = kind === "unary" || kind === "client_streaming"
        ? pass
        : async function* (req: unknown, ctx: CallContext) {
          yield* upstream[name](req, { signal: ctx.signal }) as AsyncIterable<unknown>;
        };
    }
    this.#server.add(service, impl as ServiceImpl<S>);
  }
}

/** A real containerd with busybox, a runtime on its socket and one through a FlakyProxy. */
interface Scene {
  readonly proxy: FlakyProxy;
  readonly direct: ContainerdRuntime;
  readonly proxied: ContainerdRuntime;
  readonly dir: string;
}

async function withProxy(fn: (s: Scene) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_ready_test_" });
  const server = await startContainerd();
  const proxy = new FlakyProxy(server.socket);
  const stateDir = join(dir, "state");
  const direct = new ContainerdRuntime({ socket: server.socket, stateDir });
  const proxySocket = join(dir, "proxy.sock");
  const proxied = new ContainerdRuntime({ socket: proxySocket, stateDir, readyTimeoutMs: 1000 });
  try {
    await importImage(await buildBusyboxImage(dir), { socket: server.socket });
    await proxy.listen(proxySocket);
    await fn({ proxy, direct, proxied, dir });
  } finally {
    await proxied.close();
    await direct.close();
    await proxy.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

function specOf(command: string[]): SandboxSpec {
  const id = crypto.randomUUID().replaceAll("-", "");
  return fromJson(SandboxSpecSchema, {
    sandboxId: id,
    name: `sb-${id.slice(0, 8)}`,
    namespace: "default",
    pool: "default-pool",
    image: "busybox",
    command,
    failurePolicy: "MANUAL",
  });
}

const TERM_EXITS_7 = ["sh", "-c", 'trap "exit 7" TERM; while true; do sleep 0.05; done'];

Deno.test({
  name: "ready() answering false leaves a create in flight to finish and its sandbox running",
  ignore: IGNORE,
}, async () => {
  await withProxy(async ({ proxy, direct, proxied, dir }) => {
    assert.equal(await proxied.ready(), true);
    const spec = specOf(TERM_EXITS_7);
    const id = spec.sandboxId;
    // The create stops at the task, its container made: calls remain for it to make.
    const release = proxy.hold("Tasks.create");
    const creating = proxied.create(spec, { logPath: join(dir, `${id}.log`) });
    await eventually("the task create is held", () => proxy.inFlight.get("Tasks.create") === 1);

    proxy.failVersion = true;
    assert.equal(await proxied.ready(), false);
    proxy.failVersion = false;
    release();

    await creating;
    const { process } = await direct.client.tasks.get({ containerId: id });
    assert.equal(process?.status, Status.RUNNING);
    assert.equal(await proxied.ready(), true);
    await direct.delete(id, 0);
  });
});

Deno.test({
  name: "ready() answering false leaves a wait in flight to end with the task's exit status",
  ignore: IGNORE,
}, async () => {
  await withProxy(async ({ proxy, direct, proxied, dir }) => {
    const spec = specOf(TERM_EXITS_7);
    const id = spec.sandboxId;
    await direct.create(spec, { logPath: join(dir, `${id}.log`) });
    assert.equal(await proxied.ready(), true);

    let settled = false;
    const waiting = proxied.wait(id);
    waiting.then(() => settled = true, () => settled = true);
    await eventually("the wait is in flight", () => proxy.inFlight.get("Tasks.wait") === 1);

    proxy.failVersion = true;
    assert.equal(await proxied.ready(), false);
    assert.equal(await proxied.ready(), false, "a second failed probe cuts nothing either");
    proxy.failVersion = false;
    assert.equal(settled, false, "the wait is still in flight");

    await direct.client.tasks.kill({ containerId: id, signal: 15 });
    assert.equal(await waiting, 7);
    assert.equal(await proxied.ready(), true);
    await direct.delete(id, 0);
  });
});

Deno.test({
  name: "ready() is true at once when containerd comes back after failed probes",
  ignore: IGNORE,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb_ready_test_" });
  const server = await startContainerd();
  // The runtime dials a symlink: pointing it at nothing and back stands for containerd
  // going away and returning, without the seconds a restart takes.
  const link = join(dir, "c.sock");
  await Deno.symlink(join(dir, "nothing.sock"), link);
  const runtime = new ContainerdRuntime({
    socket: link,
    stateDir: join(dir, "state"),
    readyTimeoutMs: 1000,
  });
  try {
    // Failed dials over a few seconds grow the transport's reconnect backoff past a second.
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      assert.equal(await runtime.ready(), false);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await Deno.remove(link);
    await Deno.symlink(server.socket, link);
    assert.equal(await runtime.ready(), true);
    assert.ok((await runtime.client.version.version({})).version !== "");
  } finally {
    await runtime.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
