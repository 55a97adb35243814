// The warm pool on real containerd (each test starts its own), real network
// namespaces on a test bridge, runc and gVisor; and its claim script on the
// host's own busybox sh.
import assert from "node:assert/strict";
import { join } from "node:path";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Status } from "../../../proto/gen/containerd/types/task_pb.ts";
import {
  ContainerdClient,
  ContainerdRuntime,
  importImage,
  isNotFound,
} from "../../../agent/containerd/mod.ts";
import type { BridgeNetwork } from "../../../agent/network/mod.ts";
import {
  type Claimed,
  type MissReason,
  WARM_LABELS,
  WarmPool,
  type WarmPoolOptions,
} from "../../../agent/containerd/warm_pool.ts";
import { claimScript, envProblem, startArgv } from "../../../agent/containerd/_warm_script.ts";
import { fitClaim, type WarmShape } from "../../../agent/containerd/_warm_fit.ts";
import { findStaticBusybox } from "../../../agent/containerd/_helper.ts";
import { buildBusyboxImage } from "../../support/busybox_image.ts";
import { type ContainerdServer, startContainerd } from "../../support/containerd.ts";
import { networkLeftovers, startTestNetwork } from "../../support/network.ts";
import { ignoreWithout } from "../../support/real_parts.ts";
import { freePort } from "../../support/registry.ts";
import { collectExec, eventually } from "../runtime_contract.ts";

const IGNORE = ignoreWithout("containerd", "root");
const HOST_BUSYBOX = findStaticBusybox();
/** The script tests need the host's static busybox (busybox-static), unless real parts are required. */
const NO_BUSYBOX = HOST_BUSYBOX === undefined && Deno.env.get("FSB_REQUIRE_REAL") !== "1";
const BUSYBOX = "docker.io/library/busybox:latest";
const OCIS = ["runc", "runsc"] as const;
type Oci = typeof OCIS[number];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Arguments no quoting mistake survives: spaces, quotes, `$`, newlines, unicode, empty. */
const NASTY_ARGS = [
  "two words",
  "it's",
  'say "hi"',
  "$HOME and $(id) and `id`",
  "line one\nline two",
  "ünïcødé ✓ 🎉",
  "",
  "-n",
  "back\\slash",
  "a=b",
];
const NASTY_ENV = {
  QUOTES: `it's "quoted" = $HOME`,
  NEWLINE: "first\nsecond\n",
  EQUALS: "a=b=c",
  UNICODE: "ünïcødé 🎉",
  EMPTY: "",
  IFS: ":",
  SHLVL: "7",
};

/**
 * What PID 1 sees of itself, printed by the image's sh: its argv and env as
 * exec'd (/proc/1/cmdline and /proc/1/environ), working dir, pid, open fds,
 * stdin, mount points; then it exits 7.
 */
const PROBE = [
  "cat /proc/1/cmdline; echo; echo ---",
  "cat /proc/1/environ; echo; echo ---",
  // The glob is expanded by PID 1 itself (no pipeline holding fds of its own meanwhile).
  "pwd; echo $$; echo /proc/1/fd/*; readlink /proc/1/fd/0; echo ---",
  "cut -d' ' -f5 /proc/1/mountinfo | sort | tr '\\n' ' '; echo",
  "exit 7",
].join("\n");

/** A test's containerd (busybox imported), bridge network, runtime and pools, all undone after. */
interface Scene {
  readonly server: ContainerdServer;
  readonly dir: string;
  readonly oci: Oci;
  readonly client: ContainerdClient;
  readonly network: BridgeNetwork;
  /** The cold path on the same containerd and network, to compare with and to delete claimed sandboxes. */
  readonly runtime: ContainerdRuntime;
  /** A pool on the scene's containerd and network; closed after the test unless the test did. */
  pool(images: Record<string, number>, opts?: Partial<WarmPoolOptions>): WarmPool;
  spec(command: string[], extra?: JsonObject): SandboxSpec;
  logPath(id: string): string;
}

async function withScene(oci: Oci, fn: (s: Scene) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_warm_test_" });
  let server: ContainerdServer | undefined;
  let network: BridgeNetwork | undefined;
  let client: ContainerdClient | undefined;
  let runtime: ContainerdRuntime | undefined;
  const pools: WarmPool[] = [];
  try {
    const tar = await buildBusyboxImage(dir);
    server = await startContainerd();
    await importImage(tar, { socket: server.socket });
    network = await startTestNetwork(join(dir, "net"));
    client = new ContainerdClient(server.socket);
    const stateDir = join(dir, "state");
    runtime = new ContainerdRuntime({ socket: server.socket, stateDir, network, ociRuntime: oci });
    const socket = server.socket;
    const net = network;
    await fn({
      server,
      dir,
      oci,
      client,
      network,
      runtime,
      pool: (images, opts = {}) => {
        const pool = new WarmPool({
          socket,
          stateDir,
          logDir: join(dir, "logs"),
          images,
          network: net,
          ociRuntime: oci,
          refillDelayMs: 0,
          ...opts,
        });
        pools.push(pool);
        return pool;
      },
      spec: (command, extra = {}) => {
        const id = crypto.randomUUID().replaceAll("-", "");
        return fromJson(SandboxSpecSchema, {
          sandboxId: id,
          name: `sb-${id.slice(0, 8)}`,
          namespace: "default",
          pool: "default-pool",
          image: "busybox",
          command,
          ...extra,
        });
      },
      logPath: (id) => join(dir, "logs", `${id}.log`),
    });
  } finally {
    for (const pool of pools) await pool.close().catch(() => {});
    await runtime?.close();
    client?.close();
    // Stopping kills and deletes every task and container, whatever the test left.
    await server?.stop();
    await network?.teardown();
    await Deno.remove(dir, { recursive: true });
  }
}

function full(pool: WarmPool, n: number): Promise<void> {
  return eventually(`${n} warm containers ready`, () => pool.counts()[BUSYBOX] === n, 60_000);
}

/** Claims, or fails the test with the miss's reason. */
async function mustClaim(
  pool: WarmPool,
  spec: SandboxSpec,
  logPath: string,
): Promise<Claimed> {
  let why = "";
  const claimed = await pool.claim(spec, { logPath, onMiss: (r, d) => why = `${r}: ${d}` });
  assert.ok(claimed !== undefined, `the claim missed (${why})`);
  return claimed;
}

/** Waits for the task of `containerId` to end; its exit status. */
async function exitOf(client: ContainerdClient, containerId: string): Promise<number> {
  return (await client.tasks.wait({ containerId }, { timeoutMs: 60_000 })).exitStatus;
}

/**
 * The probe's whole output in the log at `path`: the shim copies a task's
 * output to its log on its own time, so the last lines may land after the
 * task's wait has returned.
 */
async function wholeProbe(path: string): Promise<string> {
  let log = "";
  await eventually("the probe's whole output in its log", async () => {
    log = await Deno.readTextFile(path);
    // Four parts, the last (the mount list) a whole line: it may come after the last "---".
    const parts = log.split("\n---\n");
    return parts.length === 4 && parts[3].trim() !== "" && parts[3].endsWith("\n");
  }, 20_000);
  return log;
}

/** The probe's output split in its parts, env entries sorted (their order is the shell's). */
function probeParts(log: string) {
  const [cmdline, environ, self, mounts] = log.split("\n---\n");
  return {
    cmdline,
    env: environ.split("\0").filter((e) => e !== "").sort(),
    self: self.split("\n"),
    mounts: mounts.trim(),
  };
}

/** Runs `spec` on the cold path; its log once its task ended, and its exit status. */
async function cold(s: Scene, spec: SandboxSpec): Promise<{ log: string; exit: number }> {
  await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
  const exit = await exitOf(s.client, spec.sandboxId);
  const log = await wholeProbe(s.logPath(spec.sandboxId));
  await s.runtime.delete(spec.sandboxId, 0);
  return { log, exit };
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

async function entries(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort();
}

// The claim script on the host's busybox sh: no containerd needed.

/** Runs `script` on the host's busybox `sh -s` as a warm container would, with `env` to start with. */
async function runScript(script: string, env: Record<string, string>) {
  const [sh, ...args] = startArgv(HOST_BUSYBOX!);
  const child = new Deno.Command(sh, {
    args,
    env,
    clearEnv: true,
    cwd: "/",
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode(script));
  await writer.close();
  const out = await child.output();
  return { stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr), code: out.code };
}

const HOST_PATH = "PATH=/usr/local/bin:/usr/bin:/bin";

Deno.test({
  name: "claimScript() gives the command its argv and env byte-exact, nothing of the shell's",
  ignore: NO_BUSYBOX,
}, async () => {
  const env = [HOST_PATH, ...Object.entries(NASTY_ENV).map(([k, v]) => `${k}=${v}`)];
  const argv = ["printf", "<%s>\\n", ...NASTY_ARGS];
  const start = { env: [HOST_PATH], cwd: "/", helper: HOST_BUSYBOX! };
  const printed = await runScript(claimScript({ argv, env, cwd: "/" }, start), {
    PATH: "/usr/bin:/bin",
  });
  assert.equal(printed.stderr, "");
  assert.equal(printed.stdout, NASTY_ARGS.map((a) => `<${a}>\n`).join(""));
  // /usr/bin/env prints its environment as exec'd: exactly the requested one.
  const envd = await runScript(claimScript({ argv: ["env", "-0"], env, cwd: "/tmp" }, start), {
    PATH: "/usr/bin:/bin",
  });
  assert.deepEqual(envd.stdout.split("\0").filter((e) => e !== "").sort(), [...env].sort());
});

Deno.test({
  name: "claimScript() runs the image's command, never a busybox applet of the same name",
  ignore: NO_BUSYBOX,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb_warm_script_" });
  try {
    // An `echo` of the "image's" own, first in PATH; busybox would otherwise run its applet.
    await Deno.writeTextFile(join(dir, "echo"), '#!/bin/sh\nprintf \'mine: %s\\n\' "$0" "$@"\n');
    await Deno.chmod(join(dir, "echo"), 0o755);
    const env = [`PATH=${dir}:/usr/bin:/bin`];
    const start = { env, cwd: "/", helper: HOST_BUSYBOX! };
    const out = await runScript(claimScript({ argv: ["echo", "hi"], env, cwd: "/" }, start), {});
    // (A script sees its own path as $0: argv[0] itself is checked in a container, below.)
    assert.equal(out.stdout, `mine: ${join(dir, "echo")}\nmine: hi\n`);
    const missing = await runScript(
      claimScript({ argv: ["no-such-cmd"], env, cwd: "/" }, start),
      {},
    );
    assert.equal(missing.code, 127);
    // On stdout: the script sends stderr there (one stream, nothing dropped by the shim).
    assert.equal(missing.stdout, 'exec: "no-such-cmd": executable file not found in $PATH\n');
    assert.equal(missing.stderr, "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "claimScript() cut short runs nothing of it",
  ignore: NO_BUSYBOX,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb_warm_script_" });
  try {
    const marker = join(dir, "ran");
    const script = claimScript(
      { argv: ["touch", marker], env: [HOST_PATH], cwd: dir },
      { env: [HOST_PATH], cwd: "/", helper: HOST_BUSYBOX! },
    );
    for (const cut of [script.length - 3, script.indexOf("exec -a") + 10]) {
      const out = await runScript(script.slice(0, cut), {});
      assert.notEqual(out.code, 0);
      await assert.rejects(Deno.stat(marker), Deno.errors.NotFound);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("envProblem() refuses names the warm shell cannot pass on", () => {
  assert.equal(envProblem(["PATH=/bin", "A_1=x=y", "IFS= "]), undefined);
  assert.equal(envProblem(["a-b=1"]), 'env name "a-b" is not a shell name');
  assert.equal(envProblem(["RANDOM=4"]), "env name RANDOM is the shell's own");
});

Deno.test("fitClaim() says why a request does not fit the warm shape", () => {
  const shape: WarmShape = {
    config: { Env: ["PATH=/bin"], Cmd: ["sh"], WorkingDir: "/srv" },
    limits: { pids: 1024 },
    defaults: { pids: 1024 },
    host: { memoryBytes: 8 * 2 ** 30, cpus: 2 },
    networkKind: "private",
    ociRuntime: "runc",
    user: { uid: 0, gid: 0 },
  };
  const spec = (extra: JsonObject) =>
    fromJson(SandboxSpecSchema, { sandboxId: "a".repeat(32), image: "busybox", ...extra });
  const reason = (fit: ReturnType<typeof fitClaim>) => "reason" in fit ? fit.reason : "fits";
  assert.deepEqual(fitClaim(spec({ envs: { A: "1" } }), shape), {
    argv: ["sh"],
    env: ["PATH=/bin", "A=1"],
    cwd: "/srv",
    limits: { pids: 1024, cpuMillis: undefined, memoryBytes: undefined },
  });
  const cases: [JsonObject, MissReason | "fits"][] = [
    [{ network: { egress: "EGRESS_DENY" } }, "fits"],
    [{ exposedPorts: [8080] }, "fits"],
    [{ network: { mode: "NETWORK_MODE_NONE" } }, "network"],
    [{ resources: { memoryBytes: "1" } }, "resources"],
    [{ envs: { "bad-name": "1" } }, "env"],
    [{ command: [""] }, "command"],
  ];
  for (const [extra, want] of cases) {
    assert.equal(reason(fitClaim(spec(extra), shape)), want, JSON.stringify(extra));
  }
  const limited = fitClaim(
    spec({ resources: { memoryBytes: String(64 * 2 ** 20), pids: 50 } }),
    shape,
  );
  assert.deepEqual("update" in limited ? limited.update : undefined, {
    memory: { limit: 64 * 2 ** 20 },
    cpu: { quota: -1, period: 100_000 },
    pids: { limit: 50 },
  });
  // Egress rules and ports are applied to the warm container's network at claim.
  const ruled = fitClaim(
    spec({ network: { egress: "EGRESS_DENY", allowCidrs: ["10.9.0.0/16"] }, exposedPorts: [80] }),
    shape,
  );
  assert.deepEqual("network" in ruled ? ruled.network : undefined, {
    sandboxId: "a".repeat(32),
    mode: "private",
    egress: "deny",
    allowCidrs: ["10.9.0.0/16"],
    denyCidrs: [],
    ports: [80],
  });
  // On a host-network agent a plain request has nothing to apply; rules cannot be had.
  const host = { ...shape, networkKind: "host" as const };
  assert.equal(reason(fitClaim(spec({ exposedPorts: [80] }), host)), "fits");
  assert.equal(reason(fitClaim(spec({ network: { egress: "EGRESS_DENY" } }), host)), "network");
  const gvisor = { ...shape, ociRuntime: "runsc" as const };
  assert.equal(reason(fitClaim(spec({ resources: { pids: 50 } }), gvisor)), "resources");
  assert.equal(reason(fitClaim(spec({}), shape, { user: { uid: 1000, gid: 1000 } })), "user");
  assert.equal(reason(fitClaim(spec({}), shape, { user: { uid: 0, gid: 0 } })), "fits");
});

// On real containerd, runc and runsc alike.

for (const oci of OCIS) {
  Deno.test({
    name:
      `claim() (${oci}) runs the command as PID 1 with the cold path's argv, env, dir, fds and mounts`,
    ignore: IGNORE,
  }, async () => {
    await withScene(oci, async (s) => {
      const pool = s.pool({ busybox: 1 });
      await pool.start();
      await full(pool, 1);
      // The waiting shell writes nothing to the log the command will write to.
      const { containers: [warmOne] } = await s.client.containers.list({});
      assert.equal((await Deno.stat(warmOne.labels["fsb.io/log"])).size, 0);
      const extra = { args: NASTY_ARGS, envs: NASTY_ENV, workingDir: "/made/for/it" };
      const warmSpec = s.spec(["sh", "-c", PROBE], extra);
      const claimed = await mustClaim(pool, warmSpec, s.logPath(warmSpec.sandboxId));
      assert.equal(claimed.logPath, s.logPath(warmSpec.sandboxId));
      assert.match(claimed.ip, /^10\.\d+\.\d+\.\d+$/);
      assert.equal(await exitOf(s.client, claimed.containerId), 7, "the task's wait sees exit 7");
      const warm = probeParts(await wholeProbe(claimed.logPath));
      const coldRun = await cold(s, s.spec(["sh", "-c", PROBE], extra));
      assert.equal(coldRun.exit, 7);
      const want = probeParts(coldRun.log);

      assert.equal(warm.cmdline, ["sh", "-c", PROBE, ...NASTY_ARGS].join("\0") + "\0");
      assert.equal(warm.cmdline, want.cmdline);
      assert.deepEqual(warm.env, want.env);
      for (const [k, v] of Object.entries(NASTY_ENV)) assert.ok(warm.env.includes(`${k}=${v}`), k);
      assert.ok(!warm.env.some((e) => /^(PWD|OLDPWD|d)=/.test(e)), warm.env.join("|"));
      assert.deepEqual(warm.self.slice(0, 2), ["/made/for/it", "1"]);
      assert.equal(warm.self[3], "/dev/null");
      // stdin reads end of file either way; under gVisor a cold sandbox's is the host's
      // /dev/null, shown as a host file (`host:[1]`), a warm one's the sandbox's own.
      assert.deepEqual(warm.self.slice(0, 3), want.self.slice(0, 3));
      if (oci === "runc") assert.equal(want.self[3], "/dev/null");
      // Nothing mounted but what a cold sandbox has: the helper, read-only, and no run dir.
      assert.equal(warm.mounts, want.mounts);
      assert.ok(warm.mounts.includes("/.fsb/busybox"));
    });
  });

  Deno.test({
    name: `claim() (${oci}) never hands out one container twice, and the pool refills`,
    ignore: IGNORE,
  }, async () => {
    await withScene(oci, async (s) => {
      const pool = s.pool({ busybox: 3 });
      await pool.start();
      await full(pool, 3);
      const specs = Array.from({ length: 5 }, () => s.spec(["sh", "-c", "echo $$; sleep 600"]));
      const misses: MissReason[] = [];
      const results = await Promise.all(specs.map((spec) =>
        pool.claim(spec, {
          logPath: s.logPath(spec.sandboxId),
          onMiss: (reason) => misses.push(reason),
        })
      ));
      const hits = results.filter((r) => r !== undefined);
      assert.equal(hits.length, 3);
      assert.equal(new Set(hits.map((c) => c.containerId)).size, 3, "three different containers");
      assert.deepEqual(misses, ["empty", "empty"]);
      for (const c of hits) {
        await eventually("its pid", async () => (await Deno.readTextFile(c.logPath)) === "1\n");
        const { container } = await s.client.containers.get({ id: c.containerId });
        assert.equal(container?.labels[WARM_LABELS.image], undefined, "no longer warm");
        assert.ok(specs.some((sp) => sp.sandboxId === container?.labels[WARM_LABELS.claimed]));
      }
      await full(pool, 3);
      const { hits: n, misses: byReason } = pool.stats();
      assert.deepEqual({ n, byReason }, { n: 3, byReason: { empty: 2 } });
      for (const c of hits) await s.runtime.delete(c.containerId, 0);
    });
  });

  Deno.test({
    name:
      `close() (${oci}) leaves nothing of unclaimed warm containers: containerd, netns, run dir, logs`,
    ignore: IGNORE,
  }, async () => {
    await withScene(oci, async (s) => {
      const before = await snapshotKeys(s.client);
      const pool = s.pool({ busybox: 2 });
      await pool.start();
      await full(pool, 2);
      const spec = s.spec(["sleep", "600"]);
      const claimed = await mustClaim(pool, spec, s.logPath(spec.sandboxId));
      // Closes while the refill makes the next one.
      await eventually("a refill under way", () => pool.stats().making === 1);
      // The ready one's (and the one being made, once containerd has its record).
      const warmNetns = await warmNamespaces(s.client);
      assert.ok(warmNetns.length >= 1);
      await pool.close();
      for (const path of warmNetns) await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
      const { containers } = await s.client.containers.list({});
      assert.deepEqual(containers.map((c) => c.id), [claimed.containerId], "only the claimed one");
      const { tasks } = await s.client.tasks.list({});
      assert.deepEqual(tasks.map((t) => t.containerId || t.id), [claimed.containerId]);
      assert.deepEqual(await snapshotKeys(s.client), [...before, claimed.containerId].sort());
      assert.deepEqual(await entries(join(s.dir, "state", "warm")), []);
      assert.deepEqual(await entries(join(s.dir, "logs")), [`${spec.sandboxId}.log`]);
      // Left on the bridge: the claimed sandbox's namespace and the network's own ready ones.
      await eventually("only the claimed sandbox's and the ready namespaces", async () => {
        const left = await networkLeftovers(s.network.bridge, s.network.table);
        return left.filter((l) => l.startsWith("netns")).length === 1 + s.network.readyCount;
      });
      await Deno.stat(claimed.netns);
      await s.runtime.delete(claimed.containerId, 0);
      assert.ok(await gone(s.client.containers.get({ id: claimed.containerId })));
    });
  });
}

// runc only: network rules and limits changed at claim, restarts.

Deno.test({
  name:
    "claim() applies the request's egress rules and published ports to the warm container's network first",
  ignore: IGNORE,
}, async () => {
  await withScene("runc", async (s) => {
    const pool = s.pool({ busybox: 2 });
    await pool.start();
    await full(pool, 2);
    const port = await freePort();
    const spec = s.spec(["sleep", "600"], {
      network: { egress: "EGRESS_DENY", allowCidrs: ["198.51.100.0/24"] },
      exposedPorts: [port],
    });
    const claimed = await mustClaim(pool, spec, s.logPath(spec.sandboxId));
    assert.ok(claimed.stageMs.warm_network >= 0, JSON.stringify(claimed.stageMs));
    // Read, never tried: the rules name the container's address and the allowed range.
    const rules = async () => {
      const out = await new Deno.Command("nft", {
        args: ["list", "table", "inet", s.network.table],
        stdout: "piped",
      }).output();
      return decoder.decode(out.stdout);
    };
    const listed = await rules();
    assert.match(listed, new RegExp(`egress[^}]*${claimed.ip.replaceAll(".", "\\.")}`, "s"));
    assert.match(listed, /198\.51\.100\.0\/24/);
    assert.match(listed, new RegExp(`published[^}]*\\b${port}\\b`, "s"));
    // The port is the sandbox's on the host now.
    assert.throws(() => Deno.listen({ hostname: "0.0.0.0", port }), Deno.errors.AddrInUse);
    // A port the host already uses: the claim misses (the cold path then says why), taking nothing.
    const squatter = Deno.listen({ hostname: "0.0.0.0", port: 0 });
    const taken = s.spec(["true"], { exposedPorts: [squatter.addr.port] });
    const misses: MissReason[] = [];
    const logPath = s.logPath(taken.sandboxId);
    assert.equal(await pool.claim(taken, { logPath, onMiss: (r) => misses.push(r) }), undefined);
    squatter.close();
    assert.deepEqual(misses, ["network"]);
    // Deleted, the sandbox gives its port back and its rules go.
    await s.runtime.delete(claimed.containerId, 0);
    Deno.listen({ hostname: "0.0.0.0", port }).close();
    assert.doesNotMatch(await rules(), /198\.51\.100\.0\/24/);
  });
});

Deno.test({
  name: "claim() applies limits other than the pool's through containerd's task update",
  ignore: IGNORE,
}, async () => {
  await withScene("runc", async (s) => {
    const pool = s.pool({ busybox: 1 });
    await pool.start();
    await full(pool, 1);
    const spec = s.spec(["sleep", "600"], {
      resources: { memoryBytes: String(64 * 2 ** 20), pids: 50, cpuMillis: 500 },
    });
    const claimed = await mustClaim(pool, spec, s.logPath(spec.sandboxId));
    assert.ok(claimed.stageMs.warm_limits >= 0);
    const cgroup = (ctl: string, file: string) =>
      Deno.readTextFile(`/sys/fs/cgroup/${ctl}/fsb/${claimed.containerId}/${file}`).then((t) =>
        t.trim()
      );
    assert.equal(await cgroup("memory", "memory.limit_in_bytes"), String(64 * 2 ** 20));
    assert.equal(await cgroup("pids", "pids.max"), "50");
    assert.equal(await cgroup("cpu", "cpu.cfs_quota_us"), "50000");
    // The record says so too, for execs and restarts.
    const { container } = await s.client.containers.get({ id: claimed.containerId });
    const oci = JSON.parse(decoder.decode(container!.spec!.value));
    assert.deepEqual(oci.linux.resources.pids, { limit: 50 });
    assert.deepEqual(oci.process.args, ["sleep", "600"]);
    await s.runtime.delete(claimed.containerId, 0);
  });
});

Deno.test({
  name: "claim() misses for an image without warm containers and for requests of another shape",
  ignore: IGNORE,
}, async () => {
  await withScene("runc", async (s) => {
    const pool = s.pool({ busybox: 1 });
    const misses: string[] = [];
    const onMiss = (reason: MissReason) => misses.push(reason);
    // Before the pool made any.
    assert.equal(await pool.claim(s.spec(["true"]), { onMiss }), undefined);
    await pool.start();
    await full(pool, 1);
    assert.equal(await pool.claim(s.spec(["true"], { image: "alpine" }), { onMiss }), undefined);
    const offline = s.spec(["true"], { network: { mode: "NETWORK_MODE_NONE" } });
    assert.equal(await pool.claim(offline, { onMiss }), undefined);
    assert.deepEqual(misses, ["empty", "not-warm", "network"]);
    assert.equal(pool.counts()[BUSYBOX], 1, "a miss takes nothing");
  });
});

Deno.test({
  name: "the pool refills only within the room the caller gives",
  ignore: IGNORE,
}, async () => {
  await withScene("runc", async (s) => {
    let cap = 2;
    const pool: WarmPool = s.pool({ busybox: 3 }, { room: () => cap - pool.held });
    await pool.start();
    await full(pool, 2);
    const spec = s.spec(["sleep", "600"]);
    const claimed = await mustClaim(pool, spec, s.logPath(spec.sandboxId));
    await full(pool, 2);
    // The room is used up: the refill stopped there, nothing more is being made.
    assert.deepEqual([pool.held, pool.stats().making], [2, 0]);
    cap = 3;
    pool.refill();
    await full(pool, 3);
    await s.runtime.delete(claimed.containerId, 0);
  });
});

Deno.test({
  name:
    "adopt() after a restart takes running warm containers back and removes dead or cut-short ones",
  ignore: IGNORE,
}, async () => {
  await withScene("runc", async (s) => {
    const first = s.pool({ busybox: 3 });
    await first.start();
    await full(first, 3);
    await first.release();
    const { containers } = await s.client.containers.list({});
    const [alive, dead, cut] = containers.map((c) => c.id).sort();
    // One whose shell died, one whose claim stopped after unlinking its FIFO.
    await s.client.tasks.kill({ containerId: dead, signal: 9 });
    await exitOf(s.client, dead);
    const { process } = await s.client.tasks.get({ containerId: cut });
    await Deno.remove(process!.stdin);

    const second = s.pool({ busybox: 3 });
    const adopted = await second.start();
    assert.deepEqual(adopted.adopted, [alive]);
    assert.deepEqual(adopted.removed.sort(), [cut, dead].sort());
    for (const id of [cut, dead]) assert.ok(await gone(s.client.containers.get({ id })), id);
    await full(second, 3);
    // The adopted one serves a claim like any.
    const spec = s.spec(["echo", "adopted"]);
    const claimed = await mustClaim(second, spec, s.logPath(spec.sandboxId));
    assert.equal(claimed.containerId, alive);
    assert.equal(await exitOf(s.client, alive), 0);
    // The shim may copy the output to the log after the wait returned.
    await eventually(
      "its output",
      async () => (await Deno.readTextFile(claimed.logPath)) === "adopted\n",
    );
    await s.runtime.delete(alive, 0);
  });
});

Deno.test({
  name:
    "adopt() sends the script of a claim cut short after its record; sweep() removes warm leftovers",
  ignore: IGNORE,
}, async () => {
  await withScene("runc", async (s) => {
    const first = s.pool({ busybox: 2 });
    await first.start();
    await full(first, 2);
    await first.release();
    const { containers } = await s.client.containers.list({});
    const [cut, left] = containers.map((c) => c.id).sort();
    // What a claim writes before its script, done by hand: the record of a claimed `echo`.
    const { container } = await s.client.containers.get({ id: cut });
    const oci = JSON.parse(decoder.decode(container!.spec!.value));
    oci.process = {
      ...oci.process,
      args: ["sh", "-c", 'echo "resumed in $PWD as $$"'],
      cwd: "/tmp",
    };
    await s.client.containers.update({
      container: {
        id: cut,
        labels: { [WARM_LABELS.claimed]: "f".repeat(32) },
        spec: { typeUrl: container!.spec!.typeUrl, value: encoder.encode(JSON.stringify(oci)) },
      },
      updateMask: {
        paths: ["spec", `labels.${WARM_LABELS.claimed}`, `labels.${WARM_LABELS.image}`],
      },
    });

    const second = s.pool({});
    const found = await second.adopt();
    assert.deepEqual(found, { adopted: [], removed: [left], resumed: [cut] });
    assert.equal(await exitOf(s.client, cut), 0);
    const logPath = container!.labels["fsb.io/log"];
    await eventually(
      "its output",
      async () => (await Deno.readTextFile(logPath)) === "resumed in /tmp as 1\n",
    );

    // A warm container some other run left, unknown to this pool: sweep() takes it.
    const third = s.pool({ busybox: 1 });
    await third.start();
    await full(third, 1);
    await third.release();
    assert.equal((await second.sweep()).length, 1);
    const { containers: after } = await s.client.containers.list({});
    assert.deepEqual(after.map((c) => c.id), [cut]);
    await s.runtime.delete(cut, 0);
  });
});

Deno.test({
  name:
    "a claimed container is an ordinary sandbox to the runtime: exec gets the request's env and dir",
  ignore: IGNORE,
}, async () => {
  await withScene("runc", async (s) => {
    const pool = s.pool({ busybox: 1 });
    await pool.start();
    await full(pool, 1);
    const spec = s.spec(["sleep", "600"], {
      envs: { GREETING: "hello there" },
      workingDir: "/srv",
    });
    const claimed = await mustClaim(pool, spec, s.logPath(spec.sandboxId));
    const exec = await collectExec(
      await s.runtime.exec(claimed.containerId, {
        argv: ["sh", "-c", 'echo "$GREETING from $(pwd)"'],
        env: {},
        workingDir: "",
        tty: false,
        stdin: false,
        detach: false,
      }),
    );
    assert.equal(exec.exit.exitCode, 0);
    const out = decoder.decode(exec.stdout);
    assert.equal(out, "hello there from /srv\n");
    const { process } = await s.client.tasks.get({ containerId: claimed.containerId });
    assert.equal(process?.status, Status.RUNNING);
    assert.equal(await s.runtime.delete(claimed.containerId, 1000), true);
    assert.ok(await gone(s.client.containers.get({ id: claimed.containerId })));
  });
});

/** The network namespace paths of the (unclaimed) warm containers containerd holds. */
async function warmNamespaces(client: ContainerdClient): Promise<string[]> {
  const { containers } = await client.containers.list({});
  const out: string[] = [];
  for (const c of containers) {
    if (c.labels[WARM_LABELS.image] === undefined) continue;
    const oci = JSON.parse(decoder.decode(c.spec!.value));
    const ns = oci.linux.namespaces.find((n: { type: string }) => n.type === "network");
    out.push(ns.path);
  }
  return out;
}

/** Snapshot keys in the scene's overlayfs snapshotter, sorted. */
async function snapshotKeys(client: ContainerdClient): Promise<string[]> {
  const keys: string[] = [];
  for await (const res of client.snapshots.list({ snapshotter: "overlayfs" })) {
    for (const info of res.info) keys.push(info.name);
  }
  return keys.sort();
}
