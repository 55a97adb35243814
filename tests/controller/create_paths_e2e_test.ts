/**
 * One correctness suite against each path a create can take on a containerd
 * agent (shared/DESIGN.md section 13): a warm container claimed, a snapshot
 * prepared ahead, or everything made at request time. End to end: a
 * controller and one agent over real gRPC on loopback, real containerd, runc
 * and gVisor. Traffic reaches only loopback and a namespace the test makes;
 * addresses elsewhere are checked in the firewall rules, never sent to.
 */
import assert from "node:assert/strict";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type ContainerdRuntime, LABELS } from "../../agent/containerd/mod.ts";
import {
  type CreateSandboxRequestSchema,
  Egress,
  type SandboxInfo,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcError } from "../../proto/grpc.ts";
import { waitFor } from "../support/cluster.ts";
import {
  type ContainerdScene,
  type Oci,
  withContainerdCluster,
} from "../support/containerd_cluster.ts";
import { type FakeInternet, sh, startFakeInternet } from "../support/network.ts";
import { ignoreWithout } from "../support/real_parts.ts";
import { freePort } from "../support/registry.ts";

const ignore = ignoreWithout("containerd", "root");
const BUSYBOX = "docker.io/library/busybox:latest";
const decoder = new TextDecoder("utf-8", { fatal: true });
/** Enough warm containers or snapshots that a case rarely waits for the refill. */
const STOCK = 4;

type Path = "warm" | "prepared" | "cold";
type Create = MessageInitShape<typeof CreateSandboxRequestSchema>;

/** A scene whose creates must all take `path`. */
interface Run {
  readonly scene: ContainerdScene;
  readonly path: Path;
  readonly runtime: ContainerdRuntime;
  /** The test's stand-in for the internet (runc scenes only). */
  readonly internet?: FakeInternet;
}

/** Until the scene's path has a warm container or a prepared snapshot of busybox ready. */
async function stocked(run: Run): Promise<void> {
  if (run.path === "warm") {
    await waitFor(() => (run.runtime.warmCounts()[BUSYBOX] ?? 0) > 0, 60_000);
  } else if (run.path === "prepared") {
    await waitFor(() => (run.runtime.preparedCounts()[BUSYBOX] ?? 0) > 0, 60_000);
  }
}

async function create(run: Run, req: Create & { name: string }): Promise<SandboxInfo> {
  await stocked(run);
  return await run.scene.cluster.client.createSandbox({ image: "busybox", ...req });
}

/** Checked last in each case, so that a create served by the wrong path still gets checked. */
function assertPath(run: Run, info: SandboxInfo): void {
  assert.equal(info.path, run.path, `"${info.name}" was served by the ${info.path} path`);
}

/** The sandbox's log (with `follow`, until the sandbox ends), and whether it ended as it should. */
async function readLog(run: Run, name: string, follow = false) {
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let out = "";
  let ended = false;
  for await (const chunk of run.scene.cluster.client.streamLogs({ name, follow })) {
    out += utf8.decode(chunk.data, { stream: true });
    ended ||= chunk.end;
  }
  return { out: out + utf8.decode(), ended };
}

async function logOf(run: Run, name: string): Promise<string> {
  return (await readLog(run, name)).out;
}

const DONE = "<<done>>";
/** Prints DONE without the script's text holding it (ps shows the script). */
const SAY_DONE = "echo '<<'done'>>'";

/** The sandbox's log once it printed DONE. */
async function outputOf(run: Run, name: string): Promise<string> {
  let out = "";
  await waitFor(async () => (out = await logOf(run, name)).includes(DONE), 30_000);
  return out;
}

/** Deletes the named sandboxes, those already gone included. */
async function remove(run: Run, ...names: string[]): Promise<void> {
  for (const name of names) {
    await run.scene.cluster.client.deleteSandbox({ name }).catch((err) => {
      if (!(err instanceof RpcError && err.code === Code.NOT_FOUND)) throw err;
    });
  }
}

/** containerd's containers for the sandbox: by its id or by its name label. */
async function containersOf(run: Run, info: SandboxInfo) {
  const { containers } = await run.runtime.client.containers.list({});
  return containers.filter((c) =>
    c.id === info.sandboxId ||
    (c.labels[LABELS.name] === info.name && c.labels[LABELS.namespace] === info.namespace)
  );
}

/** The runtime and containerd hold nothing of the sandbox. */
async function assertGone(run: Run, info: SandboxInfo): Promise<void> {
  const listed = (await run.runtime.list()).map((s) => s.spec.sandboxId);
  assert.ok(!listed.includes(info.sandboxId), `the runtime still lists "${info.name}"`);
  assert.deepEqual((await containersOf(run, info)).map((c) => c.id), []);
}

// Arguments and env values a shell, a quoting step or a script generator could mangle.
const ARGS = [
  "two  spaced words",
  "it's",
  `say "hi"`,
  "$HOME ${PATH} $(id) `id`",
  "back\\slash\\n\\\\",
  "multi\nline\n",
  "ünï©ødé ✓ 🙂",
  "",
  "-n",
  "*",
  "\ttab",
];
const ENVS: Record<string, string> = {
  SINGLE: "it's",
  DOUBLE: `"quoted"`,
  EQUALS: "a=b==c=",
  NEWLINES: "one\ntwo\n",
  DOLLAR: "$HOME `id`",
  BACKSLASH: "a\\b\\n",
  EMPTY: "",
};
/** Absent from the image: both paths must make it, as runc does. */
const CWD = "/srv/work dir";
// Its pid, its working dir, each argument and each env value on a line of its own, then
// hex dumps of PID 1's argv and environ as the kernel holds them.
const PRINT = [
  'echo "pid=$$"',
  'echo "cwd=$(pwd)"',
  'for a in "$@"; do printf "arg<%s>\\n" "$a"; done',
  ...Object.keys(ENVS).map((k) => `printf "env<%s>\\n" "$${k}"`),
  "echo '## cmdline'; od -An -v -tx1 /proc/1/cmdline",
  "echo '## environ'; od -An -v -tx1 /proc/1/environ",
  SAY_DONE,
].join("; ");

function fromHex(dump: string): string {
  const bytes = dump.trim().split(/\s+/).filter((h) => h !== "").map((h) => parseInt(h, 16));
  return decoder.decode(new Uint8Array(bytes));
}

/** A probe's output up to DONE by section (each opened by a `## NAME` line); "" before the first. */
function sections(out: string): Map<string, string> {
  const parts = new Map<string, string>();
  const pieces = out.slice(0, out.indexOf(DONE)).split(/^## (\w+)\n/m);
  parts.set("", pieces[0]);
  for (let i = 1; i < pieces.length; i += 2) parts.set(pieces[i], pieces[i + 1]);
  return parts;
}

/** A case: a step name and its body. */
type Case = [string, (run: Run) => Promise<void>];

const argvCase: Case = [
  "argv, env and working dir reach the process byte-exact, and it is PID 1",
  async (run) => {
    const command = ["sh", "-c", PRINT, "sh", ...ARGS];
    const info = await create(run, { name: "argv", command, envs: ENVS, workingDir: CWD });
    try {
      const out = sections(await outputOf(run, "argv"));
      const printed = [
        "pid=1",
        `cwd=${CWD}`,
        ...ARGS.map((a) => `arg<${a}>`),
        ...Object.values(ENVS).map((v) => `env<${v}>`),
        "",
      ].join("\n");
      assert.equal(out.get(""), printed);
      assert.equal(fromHex(out.get("cmdline")!), command.map((a) => `${a}\0`).join(""));
      const environ = fromHex(out.get("environ")!).split("\0").slice(0, -1);
      const env = new Map(
        environ.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]),
      );
      assert.deepEqual([...env.keys()].sort(), [...Object.keys(ENVS), "HOME", "PATH"].sort());
      for (const [k, v] of Object.entries(ENVS)) assert.equal(env.get(k), v, k);
      assert.equal((await run.scene.cluster.client.getSandbox({ name: "argv" })).path, info.path);
      assertPath(run, info);
    } finally {
      await remove(run, "argv");
    }
  },
];

const exitCase: Case = ["sh -c 'exit 3' ends Exited with exit code 3", async (run) => {
  const { cluster } = run.scene;
  const info = await create(run, { name: "exit3", command: ["sh", "-c", "exit 3"] });
  try {
    let got: SandboxInfo | undefined;
    await waitFor(async () => {
      await cluster.heartbeatAll();
      return (got = await cluster.client.getSandbox({ name: "exit3" })).phase === "Exited";
    });
    assert.equal(got?.message, "exit code 3");
    assertPath(run, info);
  } finally {
    await remove(run, "exit3");
  }
}];

const logsCase: Case = ["stdout and stderr lines are readable through the API", async (run) => {
  const script = 'for i in 1 2 3; do echo "out $i"; echo "err $i" >&2; done';
  const info = await create(run, { name: "logs", command: ["sh", "-c", script] });
  try {
    // Followed, the stream ends once the sandbox has exited, with every line.
    const { out: followed, ended } = await readLog(run, "logs", true);
    assert.ok(ended, "the followed stream ended as it should");
    const reads = { followed, whole: await logOf(run, "logs") };
    for (const [how, out] of Object.entries(reads)) {
      // Two pipes: each stream keeps its order, their interleaving is free.
      const lines = out.split("\n").slice(0, -1);
      const said = `${how}: ${JSON.stringify(out)}`;
      assert.deepEqual(lines.filter((l) => l.startsWith("out")), ["out 1", "out 2", "out 3"], said);
      assert.deepEqual(lines.filter((l) => l.startsWith("err")), ["err 1", "err 2", "err 3"], said);
      assert.equal(lines.length, 6, said);
    }
    assertPath(run, info);
  } finally {
    await remove(run, "logs");
  }
}];

const deleteCase: Case = [
  "after delete neither the runtime nor containerd holds anything of it",
  async (run) => {
    const info = await create(run, { name: "gone", command: ["sleep", "600"] });
    try {
      assert.equal(info.phase, "Running");
      assert.equal((await containersOf(run, info)).length, 1, "its container, before delete");
      await run.scene.cluster.client.deleteSandbox({ name: "gone" });
      await assertGone(run, info);
      await assert.rejects(
        run.scene.cluster.client.getSandbox({ name: "gone" }),
        (err) => err instanceof RpcError && err.code === Code.NOT_FOUND,
      );
      assertPath(run, info);
    } finally {
      await remove(run, "gone");
    }
  },
];

const expiryCase: Case = ["the controller removes it at its expiry time", async (run) => {
  const { cluster } = run.scene;
  const expireTime = BigInt(Math.floor(cluster.clock.now() / 1000) + 30);
  const info = await create(run, { name: "ttl", command: ["sleep", "600"], expireTime });
  try {
    cluster.clock.advance(29_000);
    await cluster.heartbeatAll();
    await cluster.tick();
    assert.equal((await cluster.client.getSandbox({ name: "ttl" })).phase, "Running");
    cluster.clock.advance(1_000);
    await cluster.heartbeatAll();
    await cluster.tick();
    assert.equal((await cluster.client.getSandbox({ name: "ttl" })).phase, "Expired");
    await assertGone(run, info);
    assertPath(run, info);
  } finally {
    await remove(run, "ttl");
  }
}];

/** The body of `url` when it answers within 3 s, else undefined. */
async function hostGet(url: string): Promise<string | undefined> {
  try {
    return await (await fetch(url, { signal: AbortSignal.timeout(3_000) })).text();
  } catch {
    return undefined;
  }
}

const portsCase: Case = [
  "a published port reaches the process from the host and from outside, until delete",
  async (run) => {
    const port = await freePort();
    const body = `served-by-${run.path}`;
    const serve =
      `mkdir -p /tmp/www && echo ${body} > /tmp/www/x && exec httpd -f -p ${port} -h /tmp/www`;
    const info = await create(run, {
      name: "ports",
      exposedPorts: [port],
      command: ["sh", "-c", serve],
    });
    try {
      assert.deepEqual(info.endpoints, [`127.0.0.1:${port}`]);
      const url = `http://127.0.0.1:${port}/x`;
      await waitFor(async () => (await hostGet(url)) === `${body}\n`);
      const { netns, hostIp } = run.internet!;
      assert.equal(
        await sh(
          `timeout 5 ip netns exec ${netns} wget -q -T 3 -O - http://${hostIp}:${port}/x || echo FAILED`,
        ),
        `${body}\n`,
      );
      await run.scene.cluster.client.deleteSandbox({ name: "ports" });
      assert.equal(await hostGet(url), undefined);
      assertPath(run, info);
    } finally {
      await remove(run, "ports");
    }
  },
];

// Documentation ranges (RFC 5737): only ever looked for in the rules, never sent to.
const OUTSIDE_ALLOWED = "198.51.100.0/24";
const OUTSIDE_DENIED = "203.0.113.0/24";

const egressCase: Case = ["egress rules are in force", async (run) => {
  const internet = run.internet!;
  const cases: [string, Create["network"], "REACHED" | "BLOCKED", string[]][] = [
    ["eg-allow", { egress: Egress.DENY, allowCidrs: [internet.cidr] }, "REACHED", [
      internet.cidr,
    ]],
    ["eg-deny", { egress: Egress.DENY, allowCidrs: [OUTSIDE_ALLOWED] }, "BLOCKED", [
      OUTSIDE_ALLOWED,
    ]],
    ["eg-cidr", { denyCidrs: [internet.cidr, OUTSIDE_DENIED] }, "BLOCKED", [
      internet.cidr,
      OUTSIDE_DENIED,
    ]],
  ];
  for (const [name, network, want, cidrs] of cases) {
    // Expecting an answer, a few tries (a loaded host may drop one); expecting none, one.
    const tries = want === "REACHED" ? 3 : 1;
    const probe = `r=BLOCKED; for i in $(seq ${tries}); do ` +
      `if printf 'GET /hello HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${internet.ip} 8080 | ` +
      `grep -q 'hello from the internet'; then r=REACHED; break; fi; done; echo "egress=$r"`;
    const info = await create(run, {
      name,
      network,
      command: ["sh", "-c", `${probe}; ${SAY_DONE}; exec sleep 600`],
    });
    try {
      assert.match(await outputOf(run, name), new RegExp(`egress=${want}`), name);
      const chain = `eg_${info.ip.replaceAll(".", "_")}`;
      const table = run.scene.network.table;
      const rules = await sh(`nft list chain inet ${table} ${chain}`);
      for (const cidr of cidrs) assert.ok(rules.includes(cidr), `${name}: ${cidr} in ${rules}`);
      await run.scene.cluster.client.deleteSandbox({ name });
      assert.ok(!(await sh(`nft list table inet ${table}`)).includes(chain), `${name}'s chain`);
      assertPath(run, info);
    } finally {
      await remove(run, name);
    }
  }
}];

const MiB = 1024n * 1024n;
/** The sandbox's own cgroup limits as it reads them, on a cgroup v2 host or a v1 one. */
const READ_LIMITS = [
  "cd /sys/fs/cgroup",
  'if [ -f memory.max ]; then echo "memory=$(cat memory.max)"; echo "cpu=$(cat cpu.max)"; ' +
  'echo "pids=$(cat pids.max)"',
  'else echo "memory=$(cat memory/memory.limit_in_bytes)"; ' +
  'echo "cpu=$(cat cpu/cpu.cfs_quota_us) $(cat cpu/cpu.cfs_period_us)"; ' +
  'echo "pids=$(cat pids/pids.max)"; fi',
].join("; ");

/** The same values read from the host, by the container's cgroup path. */
async function hostLimits(run: Run, info: SandboxInfo): Promise<string> {
  const [container] = await containersOf(run, info);
  const cg = JSON.parse(decoder.decode(container.spec!.value)).linux.cgroupsPath as string;
  const read = async (file: string) => (await Deno.readTextFile(`/sys/fs/cgroup/${file}`)).trim();
  const v2 = await Deno.stat("/sys/fs/cgroup/cgroup.controllers").then(() => true, () => false);
  if (v2) {
    return `memory=${await read(`${cg}/memory.max`)}\ncpu=${await read(`${cg}/cpu.max`)}\n` +
      `pids=${await read(`${cg}/pids.max`)}\n`;
  }
  return `memory=${await read(`memory${cg}/memory.limit_in_bytes`)}\n` +
    `cpu=${await read(`cpu${cg}/cpu.cfs_quota_us`)} ${await read(`cpu${cg}/cpu.cfs_period_us`)}\n` +
    `pids=${await read(`pids${cg}/pids.max`)}\n`;
}

const limitsCase: Case = [
  "memory, CPU and pids limits other than the defaults are in force",
  async (run) => {
    const resources = { memoryBytes: 96n * MiB, cpuMillis: 300n, pids: 40n };
    const script = run.scene.oci === "runc" ? `${READ_LIMITS}; ${SAY_DONE}` : SAY_DONE;
    const info = await create(run, {
      name: "limits",
      resources,
      command: ["sh", "-c", `${script}; exec sleep 600`],
    });
    try {
      const out = await outputOf(run, "limits");
      // gVisor shows its guest no cgroup files: its host cgroup is read instead, where the
      // pids limit is scaled to leave gVisor's own tasks room (runscPids in the runtime).
      const pids = run.scene.oci === "runc" ? 40 : 64 + 40 * 12;
      const seen = run.scene.oci === "runc"
        ? out.slice(0, out.indexOf(DONE))
        : await hostLimits(run, info);
      assert.equal(seen, `memory=${96n * MiB}\ncpu=30000 100000\npids=${pids}\n`);
      // runsc cannot change a running sandbox's limits: there a warm request misses.
      if (!(run.scene.oci === "runsc" && run.path === "warm")) assertPath(run, info);
    } finally {
      await remove(run, "limits");
    }
  },
];

/** What a warm sandbox could see of the pool: its root, fds, processes, mounts, cgroup. */
const LOOK = [
  "echo '## root'; ls -a /",
  "echo '## fds'; ls /proc/1/fd",
  "echo '## procs'; ps -o pid,comm",
  "echo '## mounts'; cat /proc/self/mountinfo",
  "echo '## cgroup'; cat /proc/self/cgroup",
  "echo '## helper'; ls -a /.fsb",
  SAY_DONE,
  "exec sleep 600",
].join("; ");

async function look(run: Run, name: string): Promise<Map<string, string>> {
  const info = await create(run, { name, command: ["sh", "-c", LOOK] });
  const out = sections(await outputOf(run, name));
  assertPath(run, info);
  return out;
}

const unseenCase: Case = [
  "nothing of the warm machinery is visible to the process but the read-only helper",
  async (run) => {
    try {
      const seen = await look(run, "look");
      const lines = (k: string) => seen.get(k)!.split("\n").filter((l) => l !== "");
      // The image's own entries (as a cold sandbox lists them) and the helper's directory.
      const root = ". .. .fsb bin dev etc proc root run sys tmp".split(" ");
      assert.deepEqual(lines("root").sort(), root);
      assert.deepEqual(lines("helper").sort(), [".", "..", "busybox"]);
      assert.deepEqual(lines("fds"), ["0", "1", "2"], "PID 1 holds only its stdio");
      const procs = lines("procs").slice(1).map((l) => l.trim().split(/\s+/));
      assert.deepEqual(procs.filter(([pid, comm]) => pid !== "1" && comm !== "ps"), []);
      assert.deepEqual(procs.find(([pid]) => pid === "1"), ["1", "sh"]);
      const { dir, cluster } = run.scene;
      // mountinfo: id parent dev root mountpoint options ... - fstype source superoptions
      for (const line of lines("mounts")) {
        const f = line.split(" ");
        if (line.includes(" - cgroup ")) continue; // the next case
        assert.ok(!/warm|fifo/i.test(line), line);
        assert.ok(!line.includes(dir) && !line.includes(cluster.dataDir), line);
        if (f[4].includes("fsb")) {
          assert.equal(f[4], "/.fsb/busybox", line);
          assert.match(f[5], /^ro\b/, line);
        }
      }
    } finally {
      await remove(run, "look");
    }
  },
];

const cgroupCase: Case = ["its cgroup path names no warm container", async (run) => {
  try {
    const seen = await look(run, "look-cg");
    const cgroupMounts = seen.get("mounts")!.split("\n").filter((l) => l.includes(" - cgroup "));
    for (const line of [...seen.get("cgroup")!.split("\n"), ...cgroupMounts]) {
      assert.ok(!/warm/i.test(line), line);
    }
  } finally {
    await remove(run, "look-cg");
  }
}];

const ALL: Case[] = [
  argvCase,
  exitCase,
  logsCase,
  deleteCase,
  expiryCase,
  portsCase,
  egressCase,
  limitsCase,
];

/** A test running `cases` as steps in one scene whose creates must take `path`. */
function suite(
  oci: Oci,
  path: Path,
  cases: Case[],
  opts: { warm?: Record<string, number>; prepared?: Record<string, number> },
): void {
  Deno.test({
    name: `a create served by the ${path} path (${oci}) is correct end to end`,
    ignore,
  }, async (t) => {
    await withContainerdCluster(oci, async (scene) => {
      const runtime = scene.cluster.agents.get("ctrd")!.runtime as ContainerdRuntime;
      const internet = oci === "runc" ? await startFakeInternet(scene.dir) : undefined;
      try {
        const run: Run = { scene, path, runtime, internet };
        for (const [name, body] of cases) await t.step(name, () => body(run));
      } finally {
        await internet?.stop();
      }
    }, { ...opts, capacity: 8 });
  });
}

suite("runc", "warm", [...ALL, unseenCase, cgroupCase], { warm: { busybox: STOCK } });
suite("runc", "prepared", ALL, { prepared: { busybox: STOCK } });
suite("runc", "cold", ALL, {});
suite("runsc", "warm", [argvCase, exitCase, logsCase, deleteCase, limitsCase, unseenCase], {
  warm: { busybox: STOCK },
});
