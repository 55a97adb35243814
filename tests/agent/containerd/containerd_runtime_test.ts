import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Status } from "../../../proto/gen/containerd/types/task_pb.ts";
import { Kind } from "../../../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import {
  FailedPreconditionError,
  NotFoundError,
  UnavailableError,
} from "../../../registry/errors.ts";
import {
  ContainerdClient,
  ContainerdRuntime,
  type ContainerdRuntimeOptions,
  importImage,
  isNotFound,
  LABELS,
  SPEC_EXTENSION,
} from "../../../agent/containerd/mod.ts";
import { buildBusyboxImage } from "../../support/busybox_image.ts";
import { type ContainerdServer, startContainerd } from "../../support/containerd.ts";
import { assertSameSpec, eventually } from "../runtime_contract.ts";
import { ignoreWithout } from "../../support/real_parts.ts";
import { logPathOfUri } from "../../../agent/containerd/_shim_logger.ts";

const IGNORE = ignoreWithout("containerd", "root");

const decoder = new TextDecoder();
const BUSYBOX = "docker.io/library/busybox:latest";

/** One test's containerd (with busybox imported), runtimes and sandboxes, all undone when it ends. */
interface Scene {
  readonly server: ContainerdServer;
  readonly dir: string;
  /** A client of containerd's namespace `fsb`, to check what the runtime did. */
  readonly client: ContainerdClient;
  readonly runtime: ContainerdRuntime;
  /** Another runtime on the same socket, as after an agent restart. */
  reopen(opts?: Partial<ContainerdRuntimeOptions>): ContainerdRuntime;
  spec(command: string[], extra?: JsonObject): SandboxSpec;
  logPath(id: string): string;
}

async function withScene(fn: (s: Scene) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_containerd_test_" });
  let server: ContainerdServer | undefined;
  const runtimes: ContainerdRuntime[] = [];
  let client: ContainerdClient | undefined;
  try {
    const tar = await buildBusyboxImage(dir);
    server = await startContainerd();
    await importImage(tar, { socket: server.socket });
    client = new ContainerdClient(server.socket);
    const socket = server.socket;
    const reopen = (opts: Partial<ContainerdRuntimeOptions> = {}) => {
      const runtime = new ContainerdRuntime({ socket, stateDir: join(dir, "state"), ...opts });
      runtimes.push(runtime);
      return runtime;
    };
    await fn({
      server,
      dir,
      client,
      runtime: reopen(),
      reopen,
      spec: (command, extra = {}) => {
        const id = crypto.randomUUID().replaceAll("-", "");
        return fromJson(SandboxSpecSchema, {
          sandboxId: id,
          name: `sb-${id.slice(0, 8)}`,
          namespace: "default",
          pool: "default-pool",
          image: "busybox",
          command,
          failurePolicy: "MANUAL",
          ...extra,
        });
      },
      logPath: (id) => join(dir, "logs", `${id}.log`),
    });
  } finally {
    for (const runtime of runtimes) await runtime.close();
    client?.close();
    // Stopping kills and deletes every task and container, whatever the test left.
    await server?.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

async function readLog(runtime: ContainerdRuntime, id: string): Promise<string> {
  let text = "";
  for await (const chunk of runtime.logs(id, { follow: false })) text += decoder.decode(chunk);
  return text;
}

async function gone(what: Promise<unknown>): Promise<boolean> {
  try {
    await what;
    return false;
  } catch (err) {
    if (isNotFound(err)) return true;
    throw err;
  }
}

function fileExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Asserts that containerd holds no container, task or snapshot for `id`. */
async function assertNothingLeft(client: ContainerdClient, id: string): Promise<void> {
  assert.ok(await gone(client.containers.get({ id })), `container ${id} is gone`);
  assert.ok(await gone(client.tasks.get({ containerId: id })), `task ${id} is gone`);
  assert.ok(
    await gone(client.snapshots.stat({ snapshotter: "overlayfs", key: id })),
    `snapshot ${id} is gone`,
  );
}

/** Shim processes serving the containerd at `socket`. */
async function shimCount(socket: string): Promise<number> {
  let n = 0;
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes("containerd-shim-runc-v2") && cmdline.includes(socket)) n++;
    } catch {
      // Exited while we looked.
    }
  }
  return n;
}

Deno.test({
  name: "importImage() stores the image under its normalized name, unpacked, and can run again",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ server, dir, client, runtime }) => {
    assert.deepEqual(await runtime.images(), [BUSYBOX]);
    const { image } = await client.images.get({ name: BUSYBOX });
    assert.ok(image?.target?.digest.startsWith("sha256:"));
    // A lease deleted with sync runs containerd's garbage collector at once:
    // the image's labels must keep its blobs and snapshot from it.
    const { lease } = await client.leases.create({ id: "collect-now" });
    await client.leases.delete({ id: lease!.id, sync: true });
    const snapshots = [];
    for await (const res of client.snapshots.list({ snapshotter: "overlayfs" })) {
      snapshots.push(...res.info);
    }
    assert.equal(snapshots.length, 1, "one layer, one committed snapshot");
    assert.equal(snapshots[0].kind, Kind.COMMITTED);
    const manifest = JSON.parse(decoder.decode(await client.readBlob(image!.target!.digest)));
    for (const desc of [manifest.config, ...manifest.layers]) {
      assert.equal((await client.content.info({ digest: desc.digest })).info?.digest, desc.digest);
    }

    // A gzipped layer under a short name lands on the same normalized name.
    const again = await buildBusyboxImage(join(dir, "gz"), { gzip: true, ref: "busybox" });
    assert.deepEqual(await importImage(again, { socket: server.socket }), [BUSYBOX]);
    assert.deepEqual(await runtime.images(), [BUSYBOX]);
    const spec = fromJson(SandboxSpecSchema, {
      sandboxId: crypto.randomUUID().replaceAll("-", ""),
      image: "docker.io/library/busybox",
      command: ["echo", "from the gzipped image"],
    });
    await runtime.create(spec, { logPath: join(dir, "logs", "gz.log") });
    await eventually("the echo", async () => (await readLog(runtime, spec.sandboxId)) !== "");
    assert.equal(await readLog(runtime, spec.sandboxId), "from the gzipped image\n");
    await runtime.delete(spec.sandboxId, 0);
  });
});

Deno.test({
  name:
    "importImage() unpacks a two-layer image into a chain of snapshots that a sandbox sees whole",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ server, dir, client, runtime, spec, logPath }) => {
    const tar = await buildBusyboxImage(join(dir, "two"), {
      ref: "example.com/two:1",
      gzip: true,
      extraLayer: { "etc/motd": "from layer two" },
    });
    assert.deepEqual(await importImage(tar, { socket: server.socket }), ["example.com/two:1"]);
    const s = spec(["cat", "/etc/motd"], { image: "example.com/two:1" });
    await runtime.create(s, { logPath: logPath(s.sandboxId) });
    await eventually("the motd", async () => (await readLog(runtime, s.sandboxId)) !== "");
    assert.equal(await readLog(runtime, s.sandboxId), "from layer two");
    const { info: top } = await client.snapshots.stat({
      snapshotter: "overlayfs",
      key: s.sandboxId,
    });
    const { info: upper } = await client.snapshots.stat({
      snapshotter: "overlayfs",
      key: top!.parent,
    });
    assert.ok(
      upper!.parent.startsWith("sha256:"),
      "the second layer's snapshot sits on the first's",
    );
    const { info: lower } = await client.snapshots.stat({
      snapshotter: "overlayfs",
      key: upper!.parent,
    });
    assert.equal(lower!.parent, "");
    await runtime.delete(s.sandboxId, 0);
  });
});

Deno.test({
  name: "create() unpacks an image whose layers are not snapshots, and reports the unpack stage",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ client, runtime, spec, logPath }) => {
    // As after an import by a tool that does not unpack: the chain is gone.
    for await (const res of client.snapshots.list({ snapshotter: "overlayfs" })) {
      for (const info of res.info) {
        await client.snapshots.remove({ snapshotter: "overlayfs", key: info.name });
      }
    }
    const s = spec(["echo", "unpacked"]);
    const { stageMs } = await runtime.create(s, { logPath: logPath(s.sandboxId) });
    assert.ok(stageMs.image_unpack >= 0, JSON.stringify(stageMs));
    await eventually(
      "the echo",
      async () => (await readLog(runtime, s.sandboxId)) === "unpacked\n",
    );
    const second = spec(["true"]);
    assert.equal(
      (await runtime.create(second, { logPath: logPath(second.sandboxId) })).stageMs.image_unpack,
      undefined,
    );
    for (const id of [s.sandboxId, second.sandboxId]) await runtime.delete(id, 0);
  });
});

Deno.test({
  name: "ContainerdClient.writeBlob() writes a blob bigger than one message in resumed sessions",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ client }) => {
    const bytes = new Uint8Array(9 * 1024 * 1024 + 123);
    for (let i = 0; i < bytes.length; i += 65536) {
      crypto.getRandomValues(bytes.subarray(i, i + 65536));
    }
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    const lease = (await client.leases.create({ id: "test-write" })).lease!.id;
    const leased = client.withLease(lease);
    try {
      await leased.writeBlob({ digest, size: bytes.length }, [bytes], {
        ref: "test-big",
        labels: { a: "1" },
      });
      const { info } = await client.content.info({ digest });
      assert.equal(info?.size, BigInt(bytes.length));
      assert.deepEqual(info?.labels, { a: "1" });
      assert.deepEqual(await client.readBlob(digest), bytes);
      // Writing it again only adds labels.
      await leased.writeBlob({ digest, size: bytes.length }, [bytes], {
        ref: "test-big-2",
        labels: { b: "2" },
      });
      assert.deepEqual((await client.content.info({ digest })).info?.labels, { a: "1", b: "2" });
    } finally {
      leased.close();
      await client.leases.delete({ id: lease });
    }
  });
});

Deno.test({
  name:
    "create() runs a container on its own snapshot; delete() removes container, task, snapshot and log",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ client, runtime, spec, logPath }) => {
    const s = spec(["sh", "-c"], {
      args: ["echo hi; sleep 30"],
      envs: { A: "1" },
      labels: { team: "x" },
    });
    const { stageMs } = await runtime.create(s, { logPath: logPath(s.sandboxId) });
    for (const stage of ["snapshot_prepare", "container_create", "task_create", "task_start"]) {
      assert.ok(stageMs[stage] >= 0, `stage ${stage} is reported: ${JSON.stringify(stageMs)}`);
    }
    const { container } = await client.containers.get({ id: s.sandboxId });
    assert.equal(container?.runtime?.name, "io.containerd.runc.v2");
    assert.equal(container?.snapshotter, "overlayfs");
    assert.equal(container?.snapshotKey, s.sandboxId);
    assert.equal(container?.image, BUSYBOX);
    assert.equal(container?.labels[LABELS.name], s.name);
    assert.equal(container?.labels[LABELS.namespace], "default");
    assert.equal(container?.labels[LABELS.pool], "default-pool");
    assert.equal(
      container?.spec?.typeUrl,
      "types.containerd.io/opencontainers/runtime-spec/1/Spec",
    );
    const { info } = await client.snapshots.stat({ snapshotter: "overlayfs", key: s.sandboxId });
    assert.ok(info?.parent.startsWith("sha256:"), "prepared on the image's chain");
    const { process } = await client.tasks.get({ containerId: s.sandboxId });
    assert.equal(process?.status, Status.RUNNING);
    // Written by the shim's logger (see agent/containerd/_shim_logger.ts), not the shim itself.
    assert.ok(process?.stdout.startsWith("binary://"), process?.stdout);
    assert.equal(logPathOfUri(process?.stdout), logPath(s.sandboxId));

    const [listed] = (await runtime.list()).filter((x) => x.spec.sandboxId === s.sandboxId);
    assert.equal(listed.phase, "Running");
    assertSameSpec(listed.spec, s);
    await eventually("hi in the log", async () => (await readLog(runtime, s.sandboxId)) === "hi\n");

    assert.equal(await runtime.delete(s.sandboxId, 5000), true);
    await assertNothingLeft(client, s.sandboxId);
    assert.equal(fileExists(logPath(s.sandboxId)), false, "the log file is removed");
    assert.equal(await runtime.delete(s.sandboxId, 5000), false);
    assert.deepEqual(await runtime.list(), []);
  });
});

Deno.test({
  name:
    "a sandbox's log keeps what it wrote to stderr just before it exited (the shim's file:// log could drop it)",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ runtime, spec, logPath }) => {
    // containerd 1.6's shim closed a file:// log under its stderr copier once stdout had ended:
    // with this command, some of 30 logs lacked "err" (5-20% of short-lived sandboxes).
    const specs = Array.from({ length: 30 }, () => spec(["sh", "-c", "echo out; echo err >&2"]));
    for (const sp of specs) await runtime.create(sp, { logPath: logPath(sp.sandboxId) });
    for (const sp of specs) {
      await eventually(
        "the sandbox ended",
        async () =>
          (await runtime.list()).find((x) => x.spec.sandboxId === sp.sandboxId)?.phase === "Exited",
      );
      await eventually(
        `both lines in ${sp.sandboxId}'s log`,
        async () => (await readLog(runtime, sp.sandboxId)).split("\n").sort().join() === ",err,out",
        5_000,
      );
    }
    for (const sp of specs) await runtime.delete(sp.sandboxId, 0);
  });
});

Deno.test({
  name:
    "create() confines the container: default capabilities, no new privileges, a pids limit, host network and resolv.conf",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ runtime, spec, logPath }) => {
    const s = spec([
      "sh",
      "-c",
      "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; cat /sys/fs/cgroup/pids/pids.max; " +
      "readlink /proc/self/ns/net; cat /etc/resolv.conf; echo pid $$",
    ]);
    await runtime.create(s, { logPath: logPath(s.sandboxId) });
    await eventually(
      "the report",
      async () => (await readLog(runtime, s.sandboxId)).includes("pid "),
    );
    const lines = (await readLog(runtime, s.sandboxId)).trim().split("\n");
    // Docker's 14 default capabilities minus CAP_NET_RAW (bit 13) as a mask.
    assert.equal(lines[0], "CapEff:\t00000000a80405fb");
    assert.equal(lines[1], "NoNewPrivs:\t1");
    assert.equal(lines[2], "1024");
    assert.equal(
      lines[3],
      await Deno.readLink("/proc/self/ns/net"),
      "the host's network namespace",
    );
    const resolv = (await Deno.readTextFile("/etc/resolv.conf")).trim().split("\n");
    assert.deepEqual(lines.slice(4, 4 + resolv.length), resolv);
    assert.equal(lines[lines.length - 1], "pid 1", "its own PID namespace");
    await runtime.delete(s.sandboxId, 0);
  });
});

Deno.test({
  name: "create() applies the image's Cmd, Env and PATH, the request's envs and working dir",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ runtime, spec, logPath }) => {
    // No command: the image's Cmd (sh) runs with the request's args replacing it.
    const s = spec([], {
      args: ["sh", "-c", 'echo "$GREETING $PATH $(pwd)"'],
      envs: { GREETING: "hey" },
      workingDir: "/tmp",
    });
    await runtime.create(s, { logPath: logPath(s.sandboxId) });
    await eventually("the echo", async () => (await readLog(runtime, s.sandboxId)) !== "");
    assert.equal(
      await readLog(runtime, s.sandboxId),
      "hey /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /tmp\n",
    );
    await eventually("exit", async () => (await runtime.list())[0]?.phase === "Exited");
    assert.equal((await runtime.list())[0].message, "exit code 0");
    await runtime.delete(s.sandboxId, 0);
  });
});

Deno.test({
  name: "logs() keeps each stream's order, and the order across streams when writes are apart",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ runtime, spec, logPath }) => {
    const burst = spec(["sh", "-c", "echo o1; echo e1 >&2; echo o2; echo e2 >&2; echo o3"]);
    const paced = spec(["sh", "-c", "echo a; sleep 0.2; echo b >&2; sleep 0.2; echo c"]);
    for (const s of [burst, paced]) await runtime.create(s, { logPath: logPath(s.sandboxId) });
    await eventually(
      "all lines",
      async () => (await readLog(runtime, burst.sandboxId)).length === 15,
    );
    const lines = (await readLog(runtime, burst.sandboxId)).trim().split("\n");
    assert.deepEqual(lines.filter((l) => l.startsWith("o")), ["o1", "o2", "o3"]);
    assert.deepEqual(lines.filter((l) => l.startsWith("e")), ["e1", "e2"]);
    await eventually(
      "paced lines",
      async () => (await readLog(runtime, paced.sandboxId)).length === 6,
    );
    assert.equal(await readLog(runtime, paced.sandboxId), "a\nb\nc\n");
    for (const s of [burst, paced]) await runtime.delete(s.sandboxId, 0);
  });
});

Deno.test({
  name:
    "a second ContainerdRuntime on the same socket lists the sandboxes with their specs, big ones too",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ client, runtime, reopen, spec, logPath }) => {
    const small = spec(["sleep", "30"]);
    // Too big for a 4096-byte label: carried as a container extension instead.
    const big = spec(["sleep", "30"], { labels: { note: "x".repeat(5000) } });
    for (const s of [small, big]) await runtime.create(s, { logPath: logPath(s.sandboxId) });
    const { container } = await client.containers.get({ id: big.sandboxId });
    assert.equal(container?.labels[LABELS.spec], undefined);
    assert.ok(container?.extensions[SPEC_EXTENSION] !== undefined);
    await runtime.close();

    const restarted = reopen();
    const listed = await restarted.list();
    assert.equal(listed.length, 2);
    for (const s of [small, big]) {
      const found = listed.find((x) => x.spec.sandboxId === s.sandboxId);
      assert.equal(found?.phase, "Running");
      assertSameSpec(found.spec, s);
    }
    for (const s of [small, big]) {
      assert.equal(await restarted.delete(s.sandboxId, 0), true);
      await assertNothingLeft(client, s.sandboxId);
    }
  });
});

Deno.test({
  name:
    "a create that fails at task start throws FailedPreconditionError and leaves no container, task, snapshot or log",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ client, runtime, spec, logPath }) => {
    const s = spec(["/nonexistent"]);
    await assert.rejects(
      runtime.create(s, { logPath: logPath(s.sandboxId) }),
      (err: Error) => {
        assert.ok(err instanceof FailedPreconditionError);
        assert.match(
          err.message,
          new RegExp(`^Cannot start sandbox ${s.sandboxId}: .*/nonexistent`),
        );
        return true;
      },
    );
    await assertNothingLeft(client, s.sandboxId);
    assert.equal(fileExists(logPath(s.sandboxId)), false);
    assert.deepEqual((await client.containers.list({})).containers, []);
  });
});

Deno.test(
  { name: "a create aborted between stages undoes what it did", ignore: IGNORE },
  async () => {
    await withScene(async ({ client, reopen, spec, logPath }) => {
      for (const at of ["snapshot_prepare", "task_create"]) {
        const ctl = new AbortController();
        const runtime = reopen({
          onStage: (stage) => stage === at && ctl.abort(new Error(`stop after ${at}`)),
        });
        const s = spec(["sleep", "30"]);
        await assert.rejects(
          runtime.create(s, { logPath: logPath(s.sandboxId), signal: ctl.signal }),
          new Error(`stop after ${at}`),
        );
        await assertNothingLeft(client, s.sandboxId);
        assert.equal(fileExists(logPath(s.sandboxId)), false);
      }
    });
  },
);

Deno.test({
  name:
    "create() of an image the host lacks throws FailedPreconditionError naming it and leaves nothing",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ client, runtime, spec, logPath }) => {
    const s = spec(["true"], { image: "ghcr.io/acme/absent:1" });
    await assert.rejects(
      runtime.create(s, { logPath: logPath(s.sandboxId) }),
      new FailedPreconditionError(
        `Cannot create sandbox ${s.sandboxId} as image "ghcr.io/acme/absent:1" is not present on this host`,
      ),
    );
    await assertNothingLeft(client, s.sandboxId);
    assert.deepEqual((await client.containers.list({})).containers, []);
  });
});

Deno.test({
  name: "create() finds an image that containerd stores under another spelling",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ client, runtime, spec, logPath }) => {
    const { image } = await client.images.get({ name: BUSYBOX });
    await client.images.create({ image: { name: "busybox:1.36", target: image!.target } });
    assert.ok((await runtime.images()).includes("docker.io/library/busybox:1.36"));
    const s = spec(["echo", "ok"], { image: "docker.io/library/busybox:1.36" });
    await runtime.create(s, { logPath: logPath(s.sandboxId) });
    const { container } = await client.containers.get({ id: s.sandboxId });
    assert.equal(container?.image, "busybox:1.36");
    await runtime.delete(s.sandboxId, 0);
  });
});

Deno.test({
  name: "with containerd not running, ready() is false and create() throws UnavailableError",
  ignore: IGNORE,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb_containerd_test_" });
  const socket = join(dir, "none.sock");
  const runtime = new ContainerdRuntime({
    socket,
    stateDir: join(dir, "state"),
    readyTimeoutMs: 300,
  });
  try {
    assert.equal(await runtime.ready(), false);
    const spec = fromJson(SandboxSpecSchema, {
      sandboxId: "a".repeat(32),
      image: "busybox",
      command: ["true"],
    });
    await assert.rejects(
      runtime.create(spec, { logPath: join(dir, "a.log") }),
      (err: Error) => {
        assert.ok(err instanceof UnavailableError, `${err}`);
        assert.match(err.message, new RegExp(`^Cannot reach containerd at unix://${socket}: `));
        return true;
      },
    );
    await assert.rejects(runtime.list(), UnavailableError);
  } finally {
    await runtime.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "delete() gives a sandbox that handles SIGTERM the chance to exit by itself",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ runtime, spec, logPath }) => {
    const s = spec([
      "sh",
      "-c",
      'trap "echo got TERM; sleep 0.3; exit 0" TERM; echo ready; while true; do sleep 0.05; done',
    ]);
    await runtime.create(s, { logPath: logPath(s.sandboxId) });
    await eventually(
      "the trap is set",
      async () => (await readLog(runtime, s.sandboxId)) === "ready\n",
    );
    const deleting = runtime.delete(s.sandboxId, 10_000);
    await eventually(
      "the handler runs",
      async () => (await readLog(runtime, s.sandboxId)).includes("got TERM"),
    );
    const start = performance.now();
    assert.equal(await deleting, true);
    assert.ok(performance.now() - start < 5000, "it ended by itself, well within the grace");
  });
});

Deno.test({
  name: "sandboxes share one shim, and deleting the first leaves the others running and logging",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ server, client, runtime, spec, logPath }) => {
    const ticker = "while true; do echo tick; sleep 0.05; done";
    const [a, b] = [spec(["sh", "-c", ticker]), spec(["sh", "-c", ticker])];
    for (const s of [a, b]) await runtime.create(s, { logPath: logPath(s.sandboxId) });
    assert.equal(await shimCount(server.socket), 1);

    assert.equal(await runtime.delete(a.sandboxId, 0), true);
    await assertNothingLeft(client, a.sandboxId);
    const before = (await readLog(runtime, b.sandboxId)).length;
    await eventually(
      "b keeps logging",
      async () => (await readLog(runtime, b.sandboxId)).length > before + 20,
    );
    assert.equal(
      (await runtime.list()).find((x) => x.spec.sandboxId === b.sandboxId)?.phase,
      "Running",
    );

    const c = spec(["sleep", "30"]);
    await runtime.create(c, { logPath: logPath(c.sandboxId) });
    assert.equal(await shimCount(server.socket), 1, "a new sandbox joins the surviving shim");
    for (const s of [b, c]) await runtime.delete(s.sandboxId, 0);
    await eventually(
      "the last delete ends the shim",
      async () => (await shimCount(server.socket)) === 0,
    );
  });
});

Deno.test(
  { name: "with shimGroup false, each sandbox gets its own shim", ignore: IGNORE },
  async () => {
    await withScene(async ({ server, reopen, spec, logPath }) => {
      const runtime = reopen({ shimGroup: false });
      const [a, b] = [spec(["sleep", "30"]), spec(["sleep", "30"])];
      for (const s of [a, b]) await runtime.create(s, { logPath: logPath(s.sandboxId) });
      assert.equal(await shimCount(server.socket), 2);
      for (const s of [a, b]) await runtime.delete(s.sandboxId, 0);
    });
  },
);

Deno.test(
  { name: "concurrent creates and deletes on a shared shim all succeed", ignore: IGNORE },
  async () => {
    await withScene(async ({ client, runtime, spec, logPath }) => {
      await Promise.all([0, 1, 2, 3].map(async () => {
        for (let i = 0; i < 5; i++) {
          const s = spec(["sleep", "30"]);
          await runtime.create(s, { logPath: logPath(s.sandboxId) });
          assert.equal(await runtime.delete(s.sandboxId, 0), true);
        }
      }));
      assert.deepEqual((await client.containers.list({})).containers, []);
    });
  },
);

Deno.test({
  name:
    "removeOrphans() removes containers without a readable spec once older than the grace window",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ client, reopen, spec, logPath }) => {
    let now = Date.now();
    const runtime = reopen({ now: () => now, orphanGraceMs: 60_000 });
    const kept = spec(["sleep", "30"]);
    await runtime.create(kept, { logPath: logPath(kept.sandboxId) });
    const { container: template } = await client.containers.get({ id: kept.sandboxId });
    for (
      const [id, labels] of [["alien", {}], ["broken", { [LABELS.spec]: "{not json" }]] as const
    ) {
      await client.containers.create({
        container: {
          id,
          labels,
          runtime: template!.runtime,
          spec: template!.spec,
          snapshotter: "overlayfs",
        },
      });
    }
    assert.deepEqual(await runtime.removeOrphans(), [], "young orphans are left alone");
    now += 61_000;
    assert.deepEqual((await runtime.removeOrphans({ keep: ["broken"] })).sort(), ["alien"]);
    assert.deepEqual((await runtime.removeOrphans()).sort(), ["broken"]);
    const { containers } = await client.containers.list({});
    assert.deepEqual(containers.map((c) => c.id), [kept.sandboxId]);
    assert.equal((await runtime.list())[0]?.phase, "Running");
    await runtime.delete(kept.sandboxId, 0);
  });
});

Deno.test({
  name: "list() reports a container whose task is gone as Failed, and delete() still cleans it up",
  ignore: IGNORE,
}, async () => {
  await withScene(async ({ client, runtime, spec, logPath }) => {
    const s = spec(["sleep", "30"]);
    await runtime.create(s, { logPath: logPath(s.sandboxId) });
    await client.tasks.kill({ containerId: s.sandboxId, signal: 9 });
    await client.tasks.wait({ containerId: s.sandboxId });
    await client.tasks.delete({ containerId: s.sandboxId });
    const [listed] = await runtime.list();
    assert.deepEqual([listed.phase, listed.message], ["Failed", "container has no task"]);
    assert.equal(await runtime.delete(s.sandboxId, 0), true);
    await assertNothingLeft(client, s.sandboxId);
  });
});

Deno.test(
  { name: "logs() of a sandbox it does not hold throws NotFoundError", ignore: IGNORE },
  async () => {
    await withScene(async ({ runtime }) => {
      const id = "f".repeat(32);
      await assert.rejects(
        readLog(runtime, id),
        new NotFoundError(`Cannot read logs of sandbox ${id} as it does not exist`),
      );
    });
  },
);
