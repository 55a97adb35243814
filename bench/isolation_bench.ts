/**
 * What isolation costs a create: cold create latency on one containerd
 * (started by the test fixture, busybox built from the host's busybox-static
 * and imported) for each way of running a sandbox, interleaved round-robin
 * (the order rotating every round) so that every variant sees the same
 * machine load.
 *
 * Variants, each N timed creates of `sleep 60` after warm-ups:
 * - `private`: ContainerdRuntime with a BridgeNetwork (a namespace per
 *   sandbox on a bridge and /24 of the bench's own), its pool full.
 * - `private, pool empty`: the same with `poolSize: 0`, so every create
 *   makes its namespace itself: what a create pays when a burst has drained
 *   the pool.
 * - `host`: the same runtime with HostNetwork (`--network host`): the
 *   baseline, isolating nothing.
 * - `ctr run -d`: wall time of the whole `ctr` process, its own start
 *   included; runc makes a new empty network namespace for it.
 * - `gVisor`: ContainerdRuntime with `ociRuntime: "runsc"` and a
 *   BridgeNetwork of its own. When runsc cannot create (not installed, not
 *   wired, or the sandbox is not actually under runsc), the error is
 *   reported and the other variants carry on.
 *
 * A create is timed from the call to runtime.create() (or ctr's start) until
 * it returns; the sandbox is then deleted, untimed, so that every create
 * meets the same host (one running sandbox at most). Before every create,
 * of any variant, each pool is back to full: a pool miss is not the steady
 * state (that is what the pool-empty variant measures), and a refill running
 * in the background would load the next variant's create.
 *
 * Run: `deno run -A bench/isolation_bench.ts [--n N] [--json]` (root, with
 * containerd, runc, busybox-static, iproute2 and nftables; runsc for the
 * gVisor row). Everything it makes (containers, namespaces, bridges, rules
 * tables, containerd) is removed at the end, also after Ctrl-C.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { ContainerdClient, ContainerdRuntime, importImage } from "../agent/containerd/mod.ts";
import { BridgeNetwork, HostNetwork } from "../agent/network/mod.ts";
import { startContainerd } from "../tests/support/containerd.ts";
import { buildBusyboxImage } from "../tests/support/busybox_image.ts";
import { summary, table } from "./_support.ts";
import {
  benchBridge,
  ctrRun,
  newId,
  removeCtrContainer,
  removeCtrFifos,
  runtimeCreate,
} from "./containerd_bench.ts";

const WARMUP = 3;
/** Namespaces kept ready by the pooled networks: more than one round ever takes. */
const POOL_SIZE = 8;
/** How long a pool may take to refill before the bench gives up. */
const REFILL_TIMEOUT_MS = 15_000;

/** One way of creating a sandbox, and what its creates measured. */
interface Variant {
  readonly key: string;
  readonly label: string;
  /** Creates one sandbox; resolves to its id, latency and stages once create returned. */
  create(): Promise<{ id: string; ms: number; stageMs?: Record<string, number> }>;
  /** Removes a sandbox it created (untimed). */
  remove(id: string): Promise<void>;
  /** Checks the first sandbox (untimed): throws when it is not what the variant claims. */
  verify?(id: string): Promise<void>;
  readonly samples: number[];
  readonly stages: Record<string, number[]>;
  /** Ids created and not removed yet, for the final cleanup. */
  readonly live: Set<string>;
  /** Why the variant stopped, when it failed. */
  error?: string;
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output();
    return new TextDecoder().decode(out.stdout).split("\n")[0].trim();
  } catch {
    return `${cmd}: not found`;
  }
}

async function cpuModel(): Promise<string> {
  const info = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  return /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? "unknown";
}

/** A runtime variant: ContainerdRuntime.create of `sleep 60`, deleted with no grace. */
function runtimeVariant(
  key: string,
  label: string,
  runtime: ContainerdRuntime,
  logDir: string,
): Variant {
  return {
    key,
    label,
    samples: [],
    stages: {},
    live: new Set(),
    create() {
      return runtimeCreate(runtime, logDir);
    },
    async remove(id) {
      await runtime.delete(id, 0);
    },
  };
}

/**
 * Whether some process of the host runs gVisor for container `id`: runsc's
 * sandbox and gofer processes name the container (its id, or its bundle
 * path) on their command line. Under runc none does, as the shared shim is
 * named after its group, not the container.
 */
async function underRunsc(id: string): Promise<boolean> {
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (cmdline.includes("runsc") && cmdline.includes(id)) return true;
  }
  return false;
}

/** Resolves once every pool is full again; throws when one stays short, or once `signal` aborted. */
async function poolsFull(networks: readonly BridgeNetwork[], signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  const deadline = performance.now() + REFILL_TIMEOUT_MS;
  for (const net of networks) {
    while (net.readyCount < POOL_SIZE) {
      signal.throwIfAborted();
      if (performance.now() > deadline) {
        throw new Error(
          `Pool of bridge ${net.bridge} stayed at ${net.readyCount}/${POOL_SIZE} for ${REFILL_TIMEOUT_MS} ms`,
        );
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

function ms(v: number): string {
  return Number.isFinite(v) ? v.toFixed(2) : "n/a";
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      n: { type: "string", default: "30" },
      json: { type: "boolean", default: false },
    },
  });
  const n = Number(values.n);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`--n needs a positive whole number, got ${values.n}`);
  }

  // Ctrl-C ends the run between creates, so that the cleanup below still runs.
  const stopping = new AbortController();
  const onSigint = () => stopping.abort(new Error("interrupted"));
  Deno.addSignalListener("SIGINT", onSigint);

  const dir = await Deno.makeTempDir({ prefix: "fsb_isolation_bench_" });
  const logDir = join(dir, "logs");
  const server = await startContainerd();
  const client = new ContainerdClient(server.socket);
  const networks: BridgeNetwork[] = [];
  const runtimes: ContainerdRuntime[] = [];
  const variants: Variant[] = [];
  const ctrIds: string[] = [];
  let runscWhy: string | undefined;
  try {
    await importImage(await buildBusyboxImage(dir), { socket: server.socket });
    const taken = new Set<string>();
    const network = async (name: string, poolSize: number) => {
      const { bridge, cidr } = await benchBridge(taken);
      taken.add(cidr);
      const net = new BridgeNetwork({ stateDir: join(dir, name), bridge, cidr, poolSize });
      // Pushed first, so that a start failing half-way is still torn down.
      networks.push(net);
      await net.start();
      return net;
    };
    const runtime = (network: BridgeNetwork | HostNetwork, ociRuntime: "runc" | "runsc") => {
      const r = new ContainerdRuntime({
        socket: server.socket,
        stateDir: join(dir, "state"),
        network,
        resources: { pids: 1024 },
        ociRuntime,
      });
      runtimes.push(r);
      return r;
    };
    const privateNet = await network("private", POOL_SIZE);
    const emptyNet = await network("empty", 0);
    const gvisorNet = await network("gvisor", POOL_SIZE);
    const pooled = [privateNet, gvisorNet];

    variants.push(
      runtimeVariant("private", "(a) runc, private network", runtime(privateNet, "runc"), logDir),
      runtimeVariant(
        "empty",
        "(a') runc, private network, pool empty",
        runtime(emptyNet, "runc"),
        logDir,
      ),
      runtimeVariant("host", "(b) runc, host network", runtime(new HostNetwork(), "runc"), logDir),
      {
        key: "ctr",
        label: "(c) ctr run -d",
        samples: [],
        stages: {},
        live: new Set(),
        async create() {
          const id = `ctr-${newId()}`;
          ctrIds.push(id);
          return { id, ms: await ctrRun(server.socket, id) };
        },
        remove: (id) => removeCtrContainer(client, id),
      },
      {
        ...runtimeVariant(
          "gvisor",
          "(d) runsc (gVisor), private network",
          runtime(gvisorNet, "runsc"),
          logDir,
        ),
        async verify(id) {
          if (!(await underRunsc(id))) {
            throw new Error(
              `sandbox ${id} is not running under runsc (no runsc process names it): ociRuntime "runsc" is not in effect`,
            );
          }
        },
      },
    );

    const started = performance.now();
    for (let round = 0; round < WARMUP + n; round++) {
      const measured = round >= WARMUP;
      // Rotated every round, so that no variant always follows the same one.
      const order = variants.map((_, i) => variants[(i + round) % variants.length]);
      for (const v of order) {
        if (v.error !== undefined) continue;
        await poolsFull(pooled, stopping.signal);
        let id: string | undefined;
        try {
          const r = await v.create();
          id = r.id;
          v.live.add(id);
          if (round === 0) await v.verify?.(id);
          if (measured) {
            v.samples.push(r.ms);
            for (const [stage, t] of Object.entries(r.stageMs ?? {})) {
              (v.stages[stage] ??= []).push(t);
            }
          }
        } catch (err) {
          // Only the gVisor variant may fail and let the rest go on: it is being wired.
          if (v.key !== "gvisor") throw err;
          v.error = (err as Error).message ?? String(err);
        }
        if (id !== undefined) {
          await v.remove(id);
          v.live.delete(id);
        }
      }
    }
    const wallS = (performance.now() - started) / 1000;
    runscWhy = variants.find((v) => v.key === "gvisor")?.error;

    const byKey = new Map(variants.map((v) => [v.key, v]));
    const host = summary(byKey.get("host")!.samples);
    const rows = variants.map((v) => ({
      key: v.key,
      variant: v.label,
      creates: v.samples.length,
      error: v.error,
      ...(v.samples.length > 0 ? summary(v.samples) : { p50: NaN, p99: NaN, mean: NaN }),
    }));
    const row = (key: string) => rows.find((r) => r.key === key)!;
    // Rounds pair a private and a host create made moments apart: the
    // median of their differences is less at the mercy of noise than the
    // difference of two medians.
    const paired = (key: string) => {
      const a = byKey.get(key)!.samples;
      const b = byKey.get("host")!.samples;
      const d = a.slice(0, b.length).map((x, i) => x - b[i]);
      return d.length > 0 ? summary(d).p50 : NaN;
    };
    const comparisons = {
      privateMinusHostP50: row("private").p50 - host.p50,
      privateMinusHostPairedP50: paired("private"),
      emptyMinusHostP50: row("empty").p50 - host.p50,
      emptyMinusHostPairedP50: paired("empty"),
      gvisorOverRuncP50: row("gvisor").p50 / row("private").p50,
      gvisorMinusRuncP50: row("gvisor").p50 - row("private").p50,
      gvisorOverRuncP99: row("gvisor").p99 / row("private").p99,
    };
    const stageNames = [
      ...new Set(variants.flatMap((v) => Object.keys(v.stages))),
    ];
    const stageP50 = (key: string, stage: string) => {
      const s = byKey.get(key)!.stages[stage];
      return s === undefined || s.length === 0 ? NaN : summary(s).p50;
    };
    const stageRows = stageNames.map((stage) => ({
      stage,
      private: stageP50("private", stage),
      privateP99: (() => {
        const s = byKey.get("private")!.stages[stage];
        return s === undefined || s.length === 0 ? NaN : summary(s).p99;
      })(),
      empty: stageP50("empty", stage),
      host: stageP50("host", stage),
      gvisor: stageP50("gvisor", stage),
    }));
    const machine = {
      date: new Date().toISOString(),
      nproc: navigator.hardwareConcurrency,
      cpu: await cpuModel(),
      kernel: Deno.osRelease(),
      deno: Deno.version.deno,
      containerd: await firstLine("containerd", ["--version"]),
      runc: await firstLine("runc", ["--version"]),
      runsc: await firstLine("runsc", ["--version"]),
      creates: n,
      warmup: WARMUP,
      poolSize: POOL_SIZE,
      wallSeconds: wallS,
    };
    if (values.json) {
      console.log(JSON.stringify({ machine, rows, comparisons, stageRows }, null, 2));
      return;
    }
    console.log(
      [
        `${machine.date}, ${machine.nproc} CPUs, ${machine.cpu}, Linux ${machine.kernel}, Deno ${machine.deno}`,
        machine.containerd,
        machine.runc,
        machine.runsc,
        `${n} timed creates per variant (after ${WARMUP} warm-up rounds), pool size ${POOL_SIZE}, ` +
        `${wallS.toFixed(0)} s`,
        "",
      ].join("\n"),
    );
    table(
      ["variant", "creates", "p50 ms", "p99 ms", "mean ms", "p50 / host", "p99 / host"],
      rows.map((r) => [
        r.variant,
        String(r.creates),
        ms(r.p50),
        ms(r.p99),
        ms(r.mean),
        ms(r.p50 / host.p50),
        ms(r.p99 / host.p99),
      ]),
    );
    const c = comparisons;
    console.log(
      [
        "",
        `private - host, p50: ${ms(c.privateMinusHostP50)} ms (median of paired differences ${
          ms(c.privateMinusHostPairedP50)
        } ms); target < 2 ms: ${c.privateMinusHostP50 < 2 ? "met" : "not met"}`,
        `private with the pool empty - host, p50: ${ms(c.emptyMinusHostP50)} ms (paired ${
          ms(c.emptyMinusHostPairedP50)
        } ms)`,
        runscWhy === undefined
          ? `gVisor vs runc (both private), p50: ${ms(c.gvisorOverRuncP50)}x, +${
            ms(c.gvisorMinusRuncP50)
          } ms; p99: ${ms(c.gvisorOverRuncP99)}x`
          : `gVisor: failed, not measured: ${runscWhy}`,
        "",
        // The stages around task_create are far less noisy than the total,
        // so their differences show what the network adds more clearly.
        "Stage breakdown, p50 ms (p99 for (a) too; (a) - (b) is the difference of the p50s)",
      ].join("\n"),
    );
    table(
      [
        "stage",
        "(a) p50",
        "(a) p99",
        "(a') pool empty p50",
        "(b) host p50",
        "(a) - (b)",
        "(d) gVisor p50",
      ],
      stageRows.map((r) => [
        r.stage,
        ms(r.private),
        ms(r.privateP99),
        ms(r.empty),
        ms(r.host),
        ms(r.private - r.host),
        ms(r.gvisor),
      ]),
    );
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
    for (const v of variants) {
      for (const id of v.live) {
        await v.remove(id).catch((err) => console.error(`removing ${id} failed: ${err}`));
      }
    }
    for (const id of ctrIds) await removeCtrContainer(client, id);
    client.close();
    await removeCtrFifos(ctrIds);
    // close() also closes each runtime's network; teardown() then removes
    // the namespaces, the rules table and the bridge.
    for (const r of runtimes) await r.close().catch(() => {});
    for (const net of networks) {
      await net.teardown().catch((err) =>
        console.error(`teardown of ${net.bridge} failed: ${err}`)
      );
    }
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
