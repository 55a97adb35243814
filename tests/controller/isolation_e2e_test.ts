/**
 * What a sandbox can reach and use (shared/DESIGN.md section 11), checked
 * from inside real containers on a real containerd, in private network
 * namespaces on a bridge of the test's own. Traffic goes only to loopback,
 * that bridge and a namespace the test makes to stand for the internet.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ContainerdRuntime,
  DEFAULT_CAPABILITIES,
  importImage,
} from "../../agent/containerd/mod.ts";
import { BridgeNetwork } from "../../agent/network/mod.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type CreateSandboxRequestSchema,
  Egress,
  NetworkMode,
  type SandboxInfo,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { buildBusyboxImage } from "../support/busybox_image.ts";
import { type Cluster, startCluster, waitFor } from "../support/cluster.ts";
import { type ContainerdServer, startContainerd } from "../support/containerd.ts";
import {
  type FakeInternet,
  networkLeftovers,
  sh,
  startFakeInternet,
  startTestNetwork,
} from "../support/network.ts";
import { ignoreWithout } from "../support/real_parts.ts";

const ignore = ignoreWithout("containerd", "root");
/** Every check runs on runc and on gVisor. */
const RUNTIMES = ["runc", "runsc"] as const;

function suffix(oci: "runc" | "runsc"): string {
  return oci === "runc" ? "" : " (runsc)";
}
const decoder = new TextDecoder();

interface Scene {
  cluster: Cluster;
  containerd: ContainerdServer;
  network: BridgeNetwork;
  internet: FakeInternet;
  dir: string;
}

type Create = MessageInitShape<typeof CreateSandboxRequestSchema>;
/** What a test adds to a create. */
interface Extra {
  network?: Create["network"];
  resources?: Create["resources"];
  exposedPorts?: number[];
}

function newRuntime(
  s: { containerd: ContainerdServer; network: BridgeNetwork; dir: string },
  ociRuntime: "runc" | "runsc" = "runc",
) {
  return new ContainerdRuntime({
    socket: s.containerd.socket,
    stateDir: join(s.dir, "state"),
    network: s.network,
    ociRuntime,
  });
}

/** containerd with busybox, a test network, a fake internet, and a cluster whose one agent uses them. */
async function withScene(
  fn: (s: Scene) => Promise<void>,
  ociRuntime: "runc" | "runsc" = "runc",
  logMaxBytes?: number,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_iso_" });
  const containerd = await startContainerd();
  let network: BridgeNetwork | undefined;
  let internet: FakeInternet | undefined;
  let cluster: Cluster | undefined;
  try {
    await importImage(await buildBusyboxImage(dir), { socket: containerd.socket });
    network = await startTestNetwork(join(dir, "net"));
    internet = await startFakeInternet(dir);
    const scene = { containerd, network, internet, dir } as Scene;
    cluster = await startCluster({
      agents: [{ id: "iso", runtime: newRuntime(scene, ociRuntime), logMaxBytes }],
    });
    scene.cluster = cluster;
    await fn(scene);
    // Every sandbox deleted and the agent closed: nothing of the network may remain.
    await cluster.close();
    cluster = undefined;
    assert.deepEqual(await networkLeftovers(network.bridge, network.table), []);
  } finally {
    await cluster?.close();
    await internet?.stop();
    await network?.teardown();
    await containerd.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

async function logsOf(cluster: Cluster, name: string): Promise<string> {
  let out = "";
  for await (const chunk of cluster.client.streamLogs({ name })) out += decoder.decode(chunk.data);
  return out;
}

/** Runs `script` in a new sandbox and returns its output once it printed DONE. */
async function run(s: Scene, name: string, script: string, extra: Extra = {}) {
  const info = await s.cluster.client.createSandbox({
    name,
    image: "busybox",
    command: ["sh", "-c", `${script}; echo DONE`],
    ...extra,
  });
  let out = "";
  await waitFor(async () => (out = await logsOf(s.cluster, name)).includes("DONE"), 30_000);
  return { info, out };
}

/** Whether `url` answers from the host within 3 s. */
async function hostFetch(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    return await res.text();
  } catch {
    return undefined;
  }
}

/**
 * A shell line fetching `http://ip:port/path` with busybox nc, printing the
 * response then REACHED, or BLOCKED. (busybox-static's wget resolves the
 * service name through glibc's NSS, which a static binary in an image with
 * no libc cannot load: it crashes.)
 */
function httpGet(ip: string, port: number, path: string): string {
  return `if printf 'GET ${path} HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${ip} ${port}; then echo REACHED; else echo BLOCKED; fi`;
}

/**
 * A sandbox serving `body` as /x with busybox httpd on a free port it
 * publishes, after running `before` (e.g. another server).
 */
async function startWebSandbox(s: Scene, name: string, body: string, before = "true") {
  const free = Deno.listen({ port: 0 });
  const published = free.addr.port;
  free.close();
  const info = await s.cluster.client.createSandbox({
    name,
    image: "busybox",
    exposedPorts: [published],
    command: [
      "sh",
      "-c",
      `mkdir /tmp/w; echo ${body} > /tmp/w/x; ${before}; exec httpd -f -p ${published} -h /tmp/w`,
    ],
  });
  return { info, published };
}

/**
 * A shell line printing REACHED when the fake internet's page comes back
 * within three tries, else BLOCKED: on a loaded host one connect may time out.
 */
function internetGet(s: Scene): string {
  return `ok=BLOCKED; for i in 1 2 3; do ${httpGet(s.internet.ip, 8080, "/hello")} | ` +
    `grep -q "hello from the internet" && { ok=REACHED; break; }; done; echo $ok`;
}

function port(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

for (const oci of RUNTIMES) {
  Deno.test({
    name: `a sandbox has a network namespace of its own with one address on the agent's bridge${
      suffix(oci)
    }`,
    ignore,
  }, async () => {
    await withScene(async (s) => {
      const { info, out } = await run(s, "own-net", "ip -o -4 addr; ip -o link | wc -l");
      assert.match(info.ip, /^10\.2[1-3]\d\.\d+\.\d+$/);
      assert.match(out, new RegExp(`eth0\\s+inet ${info.ip.replaceAll(".", "\\.")}/24`));
      assert.match(out, /lo\s+inet 127\.0\.0\.1/);
      assert.match(out, /^2$/m, "only lo and eth0");
      assert.equal(info.runtime, oci);
      const listed = await s.cluster.client.getSandbox({ name: "own-net" });
      assert.equal(listed.ip, info.ip);
      await s.cluster.client.deleteSandbox({ name: "own-net" });
    }, oci);
  });

  Deno.test({
    name:
      `from inside a sandbox no address of the host answers, while the outside world does; the rules drop 169.254.0.0/16${
        suffix(oci)
      }`,
    ignore,
  }, async () => {
    await withScene(async (s) => {
      const agent = [...s.cluster.agents.values()][0].server;
      const ports = [port(s.cluster.controller.address), port(agent.address)];
      const hostAddrs = new Set(["127.0.0.1", s.network.gateway, s.internet.hostIp]);
      for (const ni of Deno.networkInterfaces()) {
        if (ni.family === "IPv4") hostAddrs.add(ni.address);
      }
      // A listener on every host address: the host has a service there for sure. What it
      // accepts is the ground truth of what got through.
      const probe = Deno.listen({ hostname: "0.0.0.0", port: 0 });
      ports.push(probe.addr.port);
      const accepted: string[] = [];
      const accepting = (async () => {
        for await (const conn of probe) {
          accepted.push(JSON.stringify(conn.remoteAddr));
          conn.close();
        }
      })().catch(() => {});
      const targets: string[] = [];
      for (const a of hostAddrs) for (const p of ports) targets.push(`${a} ${p}`);
      // The outside world first: the positive control, before the probes of the host.
      const script = `${internetGet(s)}\n` + targets.map((t) =>
        `(if nc -w 2 ${t} </dev/null >/dev/null 2>&1; then echo "OPEN ${t}"; else echo "SHUT ${t}"; fi) &`
      ).join("\n") + "\nwait";
      const { out } = await run(s, "probe-host", script);
      probe.close();
      await accepting;
      assert.deepEqual(accepted, [], "the host's listener accepted a connection from the sandbox");
      // gVisor's host network mode (runsc 20221219) now and then reports a connect to a
      // black-holed address as made when nc's timeout fires, though no packet got through
      // (the listener above saw none): there nc's word alone is not evidence.
      if (oci === "runc") {
        assert.doesNotMatch(out, /OPEN/, out);
      }
      assert.equal(out.match(/SHUT|OPEN/g)?.length, targets.length, out);
      assert.match(
        out,
        /REACHED/,
        `the outside world answers (the probe works): ${out}`,
      );
      const rules = await sh(`nft list table inet ${s.network.table}`);
      const br = s.network.bridge;
      assert.match(rules, new RegExp(`iifname "${br}" ip daddr 169\\.254\\.0\\.0/16 drop`));
      assert.match(rules, new RegExp(`iifname "${br}" drop`));
      await s.cluster.client.deleteSandbox({ name: "probe-host" });
    }, oci);
  });

  Deno.test({
    name: `a sandbox cannot reach another sandbox's address, which the host can${suffix(oci)}`,
    ignore,
  }, async () => {
    await withScene(async (s) => {
      const server = await s.cluster.client.createSandbox({
        name: "server",
        image: "busybox",
        command: [
          "sh",
          "-c",
          "mkdir /tmp/w; echo b-here > /tmp/w/x; exec httpd -f -p 8000 -h /tmp/w",
        ],
      });
      await waitFor(
        async () => (await hostFetch(`http://${server.ip}:8000/x`)) === "b-here\n",
        10_000,
      );
      const { out } = await run(
        s,
        "client",
        httpGet(server.ip, 8000, "/x"),
      );
      assert.match(out, /BLOCKED/);
      assert.doesNotMatch(out, /b-here/);
      for (const name of ["server", "client"]) await s.cluster.client.deleteSandbox({ name });
    }, oci);
  });

  Deno.test({
    name:
      `egress: allowed by default, closed by DENY or a matching deny CIDR, reopened by an allow CIDR${
        suffix(oci)
      }`,
    ignore,
  }, async () => {
    await withScene(async (s) => {
      const get = internetGet(s);
      const cases: [string, Create["network"], string][] = [
        ["default", undefined, "REACHED"],
        ["deny-all", { egress: Egress.DENY }, "BLOCKED"],
        ["deny-cidr", { denyCidrs: [s.internet.cidr] }, "BLOCKED"],
        ["deny-but-allow", { egress: Egress.DENY, allowCidrs: [s.internet.cidr] }, "REACHED"],
      ];
      for (const [name, network, want] of cases) {
        const { out } = await run(s, name, get, network === undefined ? {} : { network });
        assert.match(out, new RegExp(want), `${name}: ${out}`);
        await s.cluster.client.deleteSandbox({ name });
      }
    }, oci);
  });

  Deno.test({
    name: `network mode NONE gives a sandbox only its loopback${suffix(oci)}`,
    ignore,
  }, async () => {
    await withScene(async (s) => {
      const { info, out } = await run(s, "offline", "ip -o link", {
        network: { mode: NetworkMode.NONE },
      });
      assert.equal(info.ip, "");
      assert.match(out, /lo:/);
      assert.equal(out.trim().split("\n").filter((l) => /^\d+:/.test(l)).length, 1, out);
      await s.cluster.client.deleteSandbox({ name: "offline" });
    }, oci);
  });

  Deno.test({
    name:
      `a published port reaches the process from the host and from outside; an unpublished one does not${
        suffix(oci)
      }`,
    ignore,
  }, async () => {
    await withScene(async (s) => {
      const { info, published } = await startWebSandbox(
        s,
        "web",
        "web-here",
        "httpd -p 9999 -h /tmp/w",
      );
      assert.deepEqual(info.endpoints, [`127.0.0.1:${published}`]);
      await waitFor(
        async () => (await hostFetch(`http://${info.endpoints[0]}/x`)) === "web-here\n",
        10_000,
      );
      // From the fake internet, through the host's address on its link.
      const ns = s.internet.netns;
      const outside = await sh(
        `timeout 5 ip netns exec ${ns} wget -q -T 3 -O - http://${s.internet.hostIp}:${published}/x || echo FAILED`,
      );
      assert.equal(outside, "web-here\n");
      // Port 9999 is served inside but not published: neither the host's address nor, routed, the sandbox's own.
      await sh(`ip -n ${ns} route add ${info.ip}/32 via ${s.internet.hostIp}`);
      const unpublished = await sh(
        `timeout 5 ip netns exec ${ns} wget -q -T 2 -O - http://${s.internet.hostIp}:9999/x || echo FAILED; ` +
          `timeout 5 ip netns exec ${ns} wget -q -T 2 -O - http://${info.ip}:9999/x || echo FAILED`,
      );
      assert.equal(unpublished, "FAILED\nFAILED\n");
      await s.cluster.client.deleteSandbox({ name: "web" });
      assert.equal(await hostFetch(`http://127.0.0.1:${published}/x`), undefined);
    }, oci);
  });

  Deno.test({
    name: `a sandbox runs without CAP_NET_RAW, under the seccomp profile, with no new privileges${
      suffix(oci)
    }`,
    ignore,
  }, async () => {
    await withScene(async (s) => {
      const { out } = await run(
        s,
        "hardened",
        "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs)' /proc/self/status; unshare -n true 2>&1; echo unshare=$?",
      );
      const want = capMask(DEFAULT_CAPABILITIES);
      assert.match(out, new RegExp(`CapEff:\\s+${want}`));
      assert.match(out, new RegExp(`CapBnd:\\s+${want}`));
      // runsc applies no OCI seccomp filter without --oci-seccomp, which this runsc build
      // mishandles (errnoRet): gVisor's own system call layer stands in its place.
      if (oci === "runc") assert.match(out, /Seccomp:\s+2/);
      // gVisor's /proc does not show NoNewPrivs; runsc still passes the flag to its sandbox.
      if (oci === "runc") assert.match(out, /NoNewPrivs:\s+1/);
      assert.match(out, /Operation not permitted/);
      assert.match(out, /unshare=1/);
      await s.cluster.client.deleteSandbox({ name: "hardened" });
    }, oci);
  });

  Deno.test({
    name:
      `memory, process and CPU limits are enforced; an OOM kill ends the sandbox Exited, OOM killed${
        suffix(oci)
      }`,
    ignore,
  }, async () => {
    await withScene(async (s) => {
      await s.cluster.client.createSandbox({
        name: "hog",
        image: "busybox",
        resources: { memoryBytes: 32n * 1024n * 1024n },
        command: ["sh", "-c", "x=0123456789abcdef; while true; do x=$x$x; done"],
      });
      let info: SandboxInfo | undefined;
      await waitFor(async () => {
        await s.cluster.heartbeatAll();
        info = await s.cluster.client.getSandbox({ name: "hog" });
        return info.phase === "Exited";
      }, 30_000);
      assert.equal(info?.message, "OOM killed");

      // The fork loop runs in a subshell: ash gives up on "can't fork", and the parent goes on.
      const { info: forker } = await run(
        s,
        "forker",
        // Under gVisor a fork beyond the host-task bound fails inside gVisor itself, which
        // ends the whole sandbox: there only the cgroup settings are checked.
        oci === "runc"
          ? "(i=0; while [ $i -lt 64 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; echo DONE; exec sleep 30"
          : "echo DONE; exec sleep 30",
        { resources: { pids: 32n, cpuMillis: 250n } },
      );
      const cg = `fsb/${forker.sandboxId}`;
      // Under gVisor the cgroup counts gVisor's host tasks, so its limit is scaled (see runscPids).
      const pidsMax = oci === "runc" ? 32 : 64 + 32 * 12;
      assert.equal(Number(await Deno.readTextFile(`/sys/fs/cgroup/pids/${cg}/pids.max`)), pidsMax);
      const procs = Number(await Deno.readTextFile(`/sys/fs/cgroup/pids/${cg}/pids.current`));
      assert.ok(procs > (oci === "runc" ? 16 : 1) && procs <= pidsMax, `${procs} tasks`);
      assert.equal(
        (await Deno.readTextFile(`/sys/fs/cgroup/cpu/${cg}/cpu.cfs_quota_us`)).trim(),
        "25000",
      );
      for (const name of ["hog", "forker"]) await s.cluster.client.deleteSandbox({ name });
    }, oci);
  });

  Deno.test({
    name:
      `after an agent restart sandboxes keep their addresses and published ports, and no address is handed out twice${
        suffix(oci)
      }`,
    ignore,
  }, async () => {
    await withScene(async (s) => {
      const { info: first, published } = await startWebSandbox(s, "keeper", "kept");
      await waitFor(
        async () => (await hostFetch(`http://127.0.0.1:${published}/x`)) === "kept\n",
        10_000,
      );
      await s.cluster.stopAgent("iso");
      // A new network object and runtime on the same state: what a restarted agent makes.
      const network = new BridgeNetwork({
        stateDir: join(s.dir, "net"),
        bridge: s.network.bridge,
        cidr: `${s.network.gateway.replace(/\.1$/, ".0")}/24`,
        poolSize: 2,
      });
      await network.start();
      s.network = network;
      const restarted = await s.cluster.addAgent({ id: "iso", runtime: newRuntime(s, oci) });
      // The old registration answers addAgent's wait at once; wait for the new one.
      await waitFor(() =>
        s.cluster.controller.controller.registry.getAgentById("iso")?.address ===
          restarted.server.address
      );
      assert.equal(network.ipOf(first.sandboxId), first.ip);
      // As before the restart: answered within the wait (one 3 s try was short on a loaded CI machine).
      await waitFor(
        async () => (await hostFetch(`http://127.0.0.1:${published}/x`)) === "kept\n",
      );
      const second = await s.cluster.client.createSandbox({
        name: "newcomer",
        image: "busybox",
        command: ["sleep", "30"],
      });
      assert.notEqual(second.ip, first.ip);
      await s.cluster.heartbeatAll();
      assert.equal((await s.cluster.client.getSandbox({ name: "keeper" })).ip, first.ip);
      for (const name of ["keeper", "newcomer"]) await s.cluster.client.deleteSandbox({ name });
    }, oci);
  });
}

Deno.test({
  name:
    "under gVisor (runsc) a sandbox runs on gVisor's kernel in its private namespace, egress rules in force",
  ignore,
}, async () => {
  await withScene(async (s) => {
    // What the host does not let through is checked above for runsc too.
    const script = `uname -r; dmesg | head -n 1; ip -o -4 addr; ${internetGet(s)}`;
    const { info, out } = await run(s, "gvisor", script);
    assert.equal(info.runtime, "runsc");
    assert.match(out, /gVisor/, out);
    assert.match(out, new RegExp(`eth0\\s+inet ${info.ip.replaceAll(".", "\\.")}/24`), out);
    assert.match(out, /REACHED/, out);
    await s.cluster.client.deleteSandbox({ name: "gvisor" });
    const denied = await run(s, "gvisor-deny", internetGet(s), {
      network: { egress: Egress.DENY },
    });
    assert.match(denied.out, /BLOCKED/);
    await s.cluster.client.deleteSandbox({ name: "gvisor-deny" });
  }, "runsc");
});

Deno.test({
  name: "a sandbox's log is capped at --log-max-bytes, keeping the newest output in order",
  ignore,
}, async () => {
  const max = 256 * 1024;
  await withScene(
    async (s) => {
      // About 1.9 MB of numbered lines, then a last line, then quiet.
      await s.cluster.client.createSandbox({
        name: "chatty",
        image: "busybox",
        command: ["sh", "-c", "seq 1 300000; echo LAST; exec sleep 60"],
      });
      // A read that a cap overtakes may skip what the cap dropped before the reader got there,
      // so the log is judged once two reads in a row agree: no cap ran in between.
      let out = "";
      let previous = "";
      await waitFor(async () => {
        previous = out;
        out = await logsOf(s.cluster, "chatty");
        return out === previous && out.endsWith("LAST\n") && out.length <= max;
      }, 30_000);
      const lines = out.split("\n");
      // The first line may be cut mid-way; every line after it follows the one before.
      const numbers = lines.slice(1, -2).map(Number);
      assert.ok(numbers.length > 10_000, `${numbers.length} lines kept`);
      for (let i = 1; i < numbers.length; i++) assert.equal(numbers[i], numbers[i - 1] + 1);
      assert.equal(numbers.at(-1), 300000, "the newest line is kept");
      await s.cluster.client.deleteSandbox({ name: "chatty" });
    },
    "runc",
    max,
  );
});

/** The /proc/PID/status hex mask of a capability set. */
function capMask(caps: readonly string[]): string {
  const bits: Record<string, number> = {
    CAP_CHOWN: 0,
    CAP_DAC_OVERRIDE: 1,
    CAP_FOWNER: 3,
    CAP_FSETID: 4,
    CAP_KILL: 5,
    CAP_SETGID: 6,
    CAP_SETUID: 7,
    CAP_SETPCAP: 8,
    CAP_NET_BIND_SERVICE: 10,
    CAP_NET_RAW: 13,
    CAP_SYS_CHROOT: 18,
    CAP_MKNOD: 27,
    CAP_AUDIT_WRITE: 29,
    CAP_SETFCAP: 31,
  };
  let mask = 0n;
  for (const c of caps) mask |= 1n << BigInt(bits[c]);
  return mask.toString(16).padStart(16, "0");
}
