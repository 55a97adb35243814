/**
 * Profiling a running cluster (shared/DESIGN.md section 16): the FastPath's
 * admin-only Profile call for the controller and for an agent through it, the
 * metrics port's `/debug/pprof/*` endpoints, `fsb debug profile` and
 * `fsb debug flamegraph` end to end. The cluster runs in this process, so a
 * profile of "the controller" samples the agents and the client too; the
 * assertions look for the FastPath's own functions among them.
 */
import assert from "node:assert/strict";
import { Code, RpcError } from "../../proto/grpc.ts";
import type { ProfileChunk } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { type CliIo, debugCommand } from "../../cli/mod.ts";
import {
  buildFlameTree,
  type CpuProfile,
  flameGraphSvg,
  type FlameNode,
  parseCpuProfile,
} from "../../cli/flamegraph.ts";
import { findElements, parseXml, textOf } from "../../cli/_xml.ts";
import { type Cluster, startCluster, waitFor } from "../support/cluster.ts";

const decoder = new TextDecoder();

async function collect(stream: AsyncIterable<ProfileChunk>): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk.data);
  return chunks;
}

function text(chunks: readonly Uint8Array[]): string {
  let out = "";
  for (const c of chunks) out += decoder.decode(c, { stream: true });
  return out + decoder.decode();
}

/**
 * Creates sandboxes, four at a time, until `until` settles (deleting them all
 * whenever 40 are up, to make room); resolves to the number created.
 */
async function createLoad(cluster: Cluster, until: Promise<unknown>): Promise<number> {
  let done = false;
  until.then(() => done = true, () => done = true);
  let created = 0;
  let live: string[] = [];
  const drain = async () => {
    await Promise.all(live.map((name) => cluster.client.deleteSandbox({ name })));
    live = [];
  };
  // At least a few dozen, however fast the profile comes back.
  while ((!done || created < 24) && created < 600) {
    const names = [0, 1, 2, 3].map((i) => `load-${created + i}`);
    await Promise.all(
      names.map((name) =>
        cluster.client.createSandbox({ name, image: "busybox", command: ["sleep", "60"] })
      ),
    );
    created += names.length;
    live.push(...names);
    if (live.length >= 40) await drain();
  }
  await drain();
  return created;
}

/** `name (location)` of every frame of the profile's flame graph. */
function frameNames(profile: CpuProfile): Set<string> {
  const names = new Set<string>();
  const stack: FlameNode[] = [buildFlameTree(profile)];
  while (stack.length > 0) {
    const node = stack.pop()!;
    names.add(`${node.name} (${node.location})`);
    stack.push(...node.children);
  }
  return names;
}

function hasFrame(names: Set<string>, name: string, where: RegExp): boolean {
  return [...names].some((n) => n.startsWith(`${name} (`) && where.test(n));
}

/** A CPU profile taken while creates run; asserts it parses, has samples and shows creates. */
async function profileUnderLoad(
  cluster: Cluster,
  request: { agentId?: string },
): Promise<CpuProfile> {
  const capture = collect(cluster.client.profile({ kind: "cpu", seconds: 2, ...request }));
  const created = await createLoad(cluster, capture);
  const chunks = await capture;
  const profile = parseCpuProfile(text(chunks));
  assert.ok(created >= 24, `${created} creates`);
  assert.ok(profile.samples.length > 100, `${profile.samples.length} samples`);
  assert.ok(profile.endTime - profile.startTime >= 1_900_000, "about 2 s sampled");
  return profile;
}

function withCluster(fn: (cluster: Cluster) => Promise<void>): () => Promise<void> {
  return async () => {
    const cluster = await startCluster({ agents: [{ id: "agent-1", capacity: 100 }] });
    try {
      await fn(cluster);
    } finally {
      await cluster.close();
    }
  };
}

async function rejects(p: Promise<unknown>, code: number, message?: RegExp): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RpcError, `expected an RpcError, got ${err}`);
    assert.equal(err.codeName, new RpcError(code, "").codeName, err.message);
    if (message !== undefined) assert.match(err.message, message);
    return;
  }
  assert.fail("expected the call to fail");
}

// The FastPath's own code: the controller's create path, its services and the registry.
const FASTPATH_CODE = /\/(?:controller|registry)\/[^/]+\.ts:\d+:\d+\)$/;

Deno.test(
  "Profile returns a CPU profile of the controller that shows the FastPath's create path",
  withCluster(async (cluster) => {
    const profile = await profileUnderLoad(cluster, {});
    const names = frameNames(profile);
    const ours = [...names].filter((n) => FASTPATH_CODE.test(n));
    assert.ok(hasFrame(names, "createSandbox", /\.ts:\d+:\d+\)$/), [...names].join("\n"));
    assert.ok(ours.length > 0, `no controller or registry frames in:\n${[...names].join("\n")}`);

    // The flame graph of it: well-formed, every frame titled, those functions among them.
    const svg = flameGraphSvg(profile, { title: "Flame graph: controller under load" });
    const doc = parseXml(svg);
    const titles = findElements(doc, (e) => e.name === "title").map(textOf);
    assert.ok(titles.some((t) => t.startsWith("createSandbox (")), "createSandbox in the SVG");
    const fromOurs = titles.filter((t) => FASTPATH_CODE.test(t.slice(0, t.lastIndexOf(": "))));
    assert.ok(fromOurs.length > 0, "controller or registry frames in the SVG");
    assert.equal(
      findElements(doc, (e) => e.name === "g" && e.attributes.class === "f").length,
      titles.length,
    );
  }),
);

Deno.test(
  "Profile with agent_id returns the agent's CPU profile through the controller",
  withCluster(async (cluster) => {
    const profile = await profileUnderLoad(cluster, { agentId: "agent-1" });
    const names = frameNames(profile);
    // The agent's side of a create: its service and the runtime that starts the process.
    assert.ok(hasFrame(names, "createSandbox", /\/agent\/agent\.ts:/), [...names].join("\n"));
    await rejects(
      collect(cluster.client.profile({ kind: "cpu", seconds: 1, agentId: "ghost" })),
      Code.NOT_FOUND,
      /ghost/,
    );
  }),
);

Deno.test(
  "Profile takes heap snapshots of the controller, in chunks",
  withCluster(async (cluster) => {
    const chunks = await collect(cluster.client.profile({ kind: "heap" }));
    assert.ok(chunks.length > 1, `${chunks.length} chunks`);
    const snapshot = JSON.parse(text(chunks));
    assert.ok(snapshot.snapshot.node_count > 1000);
    assert.ok(Array.isArray(snapshot.snapshot.meta.node_fields));
    assert.ok(Array.isArray(snapshot.strings) && snapshot.strings.length > 0);
  }),
);

Deno.test(
  "Profile is for admins: PERMISSION_DENIED for a namespace token, UNAUTHENTICATED without one",
  withCluster(async (cluster) => {
    const { secret } = await cluster.client.createToken({ namespaces: ["default"] });
    const team = cluster.clientFor(secret);
    const nobody = cluster.clientFor(undefined);
    for (const request of [{ kind: "cpu", seconds: 1 }, { kind: "heap" }, { agentId: "agent-1" }]) {
      await rejects(collect(team.profile(request)), Code.PERMISSION_DENIED);
      await rejects(collect(nobody.profile(request)), Code.UNAUTHENTICATED);
    }
    await rejects(
      collect(cluster.client.profile({ kind: "wall" })),
      Code.INVALID_ARGUMENT,
      /kind/,
    );
    await rejects(
      collect(cluster.client.profile({ kind: "cpu", seconds: 301 })),
      Code.INVALID_ARGUMENT,
      /seconds/,
    );
  }),
);

Deno.test(
  "the metrics port serves profiles to admins only; /metrics and /healthz stay open",
  withCluster(async (cluster) => {
    const base = `http://${cluster.controller.metricsAddress}`;
    const { secret } = await cluster.client.createToken({ namespaces: ["default"] });
    const get = async (path: string, token?: string) => {
      const res = await fetch(`${base}${path}`, {
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      });
      return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
    };
    for (const path of ["/debug/pprof/profile?seconds=1", "/debug/pprof/heap"]) {
      assert.equal((await get(path)).status, 401, path);
      assert.equal((await get(path, "not-a-token")).status, 401, path);
      assert.equal((await get(path, secret)).status, 403, path);
    }
    assert.equal((await get("/debug/pprof/profile?seconds=0", cluster.adminToken)).status, 400);
    assert.equal((await get("/debug/pprof/profile?seconds=x", cluster.adminToken)).status, 400);

    const cpu = await get("/debug/pprof/profile?seconds=1", cluster.adminToken);
    assert.equal(cpu.status, 200);
    assert.equal(cpu.type, "application/json");
    const profile = parseCpuProfile(cpu.body);
    assert.ok(profile.samples.length > 0);
    assert.ok(profile.endTime - profile.startTime >= 900_000);

    const heap = await get("/debug/pprof/heap", cluster.adminToken);
    assert.equal(heap.status, 200);
    assert.ok(JSON.parse(heap.body).snapshot.node_count > 1000);

    assert.equal((await get("/healthz")).status, 200);
    const metrics = await get("/metrics");
    assert.equal(metrics.status, 200);
  }),
);

function capture(): { io: CliIo; stderr: () => string } {
  let err = "";
  return {
    io: {
      stdout: () => {},
      stdoutBytes: () => {},
      stderr: (s) => err += s,
      env: {},
      home: "",
    },
    stderr: () => err,
  };
}

Deno.test(
  "fsb debug profile and fsb debug flamegraph work against a real controller",
  withCluster(async (cluster) => {
    const dir = await Deno.makeTempDir({ prefix: "fsb-profile-test-" });
    try {
      const connect = ["--endpoint", cluster.controller.address, "--token", cluster.adminToken];
      const file = `${dir}/controller.cpuprofile`;
      const c = capture();
      const profiling = debugCommand(["profile", "--seconds", "1", "-o", file, ...connect], c.io);
      await createLoad(cluster, profiling);
      assert.equal(await profiling, 0, c.stderr());
      assert.match(
        c.stderr(),
        new RegExp(
          `^CPU profile of the controller: \\d+ samples over 1\\.\\d\\d s, \\d+ bytes written to ${file}\\n$`,
        ),
      );
      const profile = parseCpuProfile(await Deno.readTextFile(file));
      assert.ok(profile.samples.length > 0);

      const a = capture();
      const agentFile = `${dir}/agent.cpuprofile`;
      const args = ["profile", "--agent", "agent-1", "--seconds", "1", "-o", agentFile];
      assert.equal(await debugCommand([...args, ...connect], a.io), 0, a.stderr());
      assert.match(a.stderr(), /^CPU profile of agent "agent-1": \d+ samples over 1\.\d\d s, /);

      const h = capture();
      const heapFile = `${dir}/controller.heapsnapshot`;
      assert.equal(await debugCommand(["profile", "--heap", "-o", heapFile, ...connect], h.io), 0);
      assert.match(h.stderr(), /^Heap snapshot of the controller: \d+ bytes written to /);
      assert.ok(JSON.parse(await Deno.readTextFile(heapFile)).snapshot.node_count > 1000);

      const f = capture();
      const svg = `${dir}/flame.svg`;
      assert.equal(await debugCommand(["flamegraph", file, "-o", svg], f.io), 0, f.stderr());
      const doc = parseXml(await Deno.readTextFile(svg));
      const titles = findElements(doc, (e) => e.name === "title").map(textOf);
      assert.ok(titles.some((t) => t.startsWith("createSandbox (")), "createSandbox in the SVG");

      const denied = capture();
      const { secret } = await cluster.client.createToken({ namespaces: ["default"] });
      const team = ["--endpoint", cluster.controller.address, "--token", secret];
      assert.equal(await debugCommand(["profile", "-o", `${dir}/x`, ...team], denied.io), 1);
      assert.match(denied.stderr(), /^fsb: PERMISSION_DENIED: /);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
);

Deno.test(
  "fsb debug profile ended early (Ctrl-C) leaves no file, and the next profile is taken",
  withCluster(async (cluster) => {
    const dir = await Deno.makeTempDir({ prefix: "fsb-profile-test-" });
    try {
      const abort = new AbortController();
      const c = capture();
      const io = { ...c.io, signal: abort.signal };
      const args = ["profile", "--seconds", "30", "-o", `${dir}/p.cpuprofile`];
      const connect = ["--endpoint", cluster.controller.address, "--token", cluster.adminToken];
      const started = performance.now();
      const running = debugCommand([...args, ...connect], io);
      setTimeout(() => abort.abort(), 300);
      assert.equal(await running, 1);
      assert.ok(performance.now() - started < 5_000, "ended at once, not after 30 s");
      assert.equal(c.stderr(), `fsb: Cancelled; ${dir}/p.cpuprofile not written\n`);
      assert.deepEqual([...Deno.readDirSync(dir)], []);
      // The controller ended that capture: the next one is not held up behind it.
      const next = performance.now();
      const profile = parseCpuProfile(
        text(await collect(cluster.client.profile({ kind: "cpu", seconds: 1 }))),
      );
      assert.ok(profile.samples.length > 0);
      assert.ok(performance.now() - next < 10_000);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
);

/** Deno's cache, pinned: it defaults to one under HOME, and the child gets a fresh HOME. */
const DENO_DIR = Deno.env.get("DENO_DIR") ??
  `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/deno`;

Deno.test(
  "Ctrl-C on fsb debug profile cancels the capture and leaves no file behind",
  withCluster(async (cluster) => {
    const dir = await Deno.makeTempDir({ prefix: "fsb-profile-test-" });
    try {
      const out = `${dir}/out`;
      await Deno.mkdir(out);
      await Deno.mkdir(`${dir}/home`);
      const main = new URL("../../main.ts", import.meta.url).pathname;
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          main,
          "debug",
          "profile",
          "--seconds",
          "60",
          "-o",
          `${out}/p.cpuprofile`,
          "--endpoint",
          cluster.controller.address,
          "--token",
          cluster.adminToken,
        ],
        env: { HOME: `${dir}/home`, DENO_DIR, NO_COLOR: "1", FSB_ENDPOINT: "", FSB_TOKEN: "" },
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const stderr = new Response(child.stderr).text();
      // The temporary file appears once the command listens for SIGINT.
      await waitFor(
        () => [...Deno.readDirSync(out)].some((e) => e.name.endsWith(".partial")),
        30_000,
      );
      const started = performance.now();
      child.kill("SIGINT");
      const { code } = await child.status;
      assert.equal(code, 1, await stderr);
      assert.equal(await stderr, `fsb: Cancelled; ${out}/p.cpuprofile not written\n`);
      assert.ok(performance.now() - started < 10_000);
      assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
);
