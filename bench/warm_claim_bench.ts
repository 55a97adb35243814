/**
 * Warm claims against cold creates, on one containerd (started by the test
 * fixture, busybox built from the host's busybox-static and imported), each
 * sandbox in a private network namespace on a bridge and /24 of the bench's
 * own, for runc and then gVisor (runsc).
 *
 * Series, per OCI runtime, each sandbox running `sh -c 'echo up; exec sleep 600'`:
 * - `warm`: WarmPool.claim() from a pool of one, full before every claim
 *   (no refill in flight while timed);
 * - `warm + limits` (runc only): the same with limits other than the pool's,
 *   applied at claim through containerd's task update;
 * - `cold`: ContainerdRuntime.create() of the same request on the same
 *   network (its namespace pool full too): the path a warm miss takes today;
 * - `burst`: N claims at once against a pool of N (`--burst`, 0 for none).
 * The series alternate, so all meet the same machine load. Each is timed
 * from the call until it returns (`call`) and until the command's first line
 * is in its log (`running`, seen through inotify on the log directory; for a
 * claim the command starts before the call returns, as the container's
 * record is written meanwhile). Every sandbox is deleted, untimed, after.
 *
 * Run: `deno run -A bench/warm_claim_bench.ts [--n N] [--burst N] [--oci runc,runsc] [--json]`
 * (root, with containerd, runc, runsc for its rows, busybox-static, iproute2
 * and nftables). Everything it makes is removed at the end.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { ContainerdRuntime, importImage } from "../agent/containerd/mod.ts";
import { type Claimed, WarmPool } from "../agent/containerd/warm_pool.ts";
import { BridgeNetwork } from "../agent/network/mod.ts";
import { startContainerd } from "../tests/support/containerd.ts";
import { buildBusyboxImage } from "../tests/support/busybox_image.ts";
import { benchBridge, newId } from "./containerd_bench.ts";
import { summary, table } from "./_support.ts";

const BUSYBOX = "docker.io/library/busybox:latest";
const COMMAND = ["sh", "-c", "echo up; exec sleep 600"];
const WARMUP = 3;
const OUTPUT_TIMEOUT_MS = 20_000;

/** One timed create or claim, in ms from its call. */
interface Timing {
  readonly call: number;
  readonly running: number;
}

/** One runtime's results. */
interface Series {
  readonly oci: string;
  readonly warm: Timing[];
  readonly limited: Timing[];
  readonly cold: Timing[];
  readonly burst: Timing[];
  /** Wall time of the whole burst. */
  readonly burstWall?: number;
  readonly warmStages: Record<string, number[]>;
  readonly error?: string;
}

/** Limits other than the pool's, for the `warm + limits` series. */
const LIMITS = { resources: { memoryBytes: String(256 * 2 ** 20), pids: 512, cpuMillis: 1000 } };

function spec(extra: JsonObject = {}): SandboxSpec {
  return fromJson(SandboxSpecSchema, {
    sandboxId: newId(),
    image: "busybox",
    command: COMMAND,
    ...extra,
  });
}

function sizeOf(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0;
  }
}

/** Times `op`: until it resolves, and until `where.file` (in `where.dir`) first holds output. */
async function timed(
  op: () => Promise<unknown>,
  where: { readonly dir: string; readonly file: string },
): Promise<Timing> {
  const { dir, file } = where;
  const watcher = Deno.watchFs(dir, { recursive: false });
  const t0 = performance.now();
  let running = NaN;
  const seen = () => {
    if (Number.isNaN(running) && sizeOf(file) > 0) running = performance.now() - t0;
    return !Number.isNaN(running);
  };
  const watching = (async () => {
    for await (const _ of watcher) if (seen()) return;
  })();
  try {
    await op();
    const call = performance.now() - t0;
    if (!seen()) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        watching,
        new Promise((resolve) => timer = setTimeout(resolve, OUTPUT_TIMEOUT_MS)),
      ]);
      clearTimeout(timer);
      if (!seen()) throw new Error(`no output in ${file} after ${OUTPUT_TIMEOUT_MS} ms`);
    }
    return { call, running };
  } finally {
    try {
      watcher.close();
    } catch {
      // Closed by the loop's return.
    }
    await watching.catch(() => {});
  }
}

async function until(what: string, check: () => boolean, ms = 120_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function measure(
  oci: "runc" | "runsc",
  opts: { socket: string; dir: string; n: number; burst: number },
): Promise<Series> {
  const dir = join(opts.dir, oci);
  const logDir = join(dir, "logs");
  await Deno.mkdir(logDir, { recursive: true });
  const network = new BridgeNetwork({
    stateDir: join(dir, "net"),
    ...await benchBridge(),
    poolSize: 2,
    logger: { warn: (obj: object, msg: string) => console.error(`network: ${msg}`, obj) },
  });
  await network.start();
  const stateDir = join(dir, "state");
  const runtime = new ContainerdRuntime({
    socket: opts.socket,
    stateDir,
    network,
    ociRuntime: oci,
  });
  const logger = { warn: (obj: object, msg: string) => console.error(msg, obj) };
  const poolOpts = { socket: opts.socket, stateDir, logDir, network, ociRuntime: oci, logger };
  const pools: WarmPool[] = [];
  const live: string[] = [];
  const out: Series = { oci, warm: [], limited: [], cold: [], burst: [], warmStages: {} };
  // The network's namespace pool full too, for at most a second (its refill
  // stops at an error, which it reports, until the next create).
  const quiet = async () => {
    const deadline = performance.now() + 1000;
    while (network.readyCount < 2 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  try {
    const pool = new WarmPool({ ...poolOpts, images: { busybox: 1 } });
    pools.push(pool);
    await pool.start();
    // Claims one sandbox of `request` from the pool, timed; it is deleted after, untimed.
    const claimOne = async (request: SandboxSpec, keep: boolean) => {
      await until("a full pool", () => pool.counts()[BUSYBOX] === 1);
      await quiet();
      const file = join(logDir, `${request.sandboxId}.log`);
      let claimed: Claimed | undefined;
      const timing = await timed(async () => {
        claimed = await pool.claim(request, { logPath: file });
        if (claimed === undefined) throw new Error("a claim missed");
      }, { dir: logDir, file });
      await runtime.delete(claimed!.containerId, 0);
      if (keep) {
        for (const [stage, ms] of Object.entries(claimed!.stageMs)) {
          (out.warmStages[stage] ??= []).push(ms);
        }
      }
      return timing;
    };
    for (let i = 0; i < WARMUP + opts.n; i++) {
      const keep = i >= WARMUP;
      const warm = await claimOne(spec(), keep);
      // Limits other than the pool's, applied at claim (runc only: runsc has no update).
      const limited = oci === "runc" ? await claimOne(spec(LIMITS), keep) : undefined;
      await quiet();
      const c = spec();
      const file = join(logDir, `${c.sandboxId}.log`);
      const cold = await timed(() => runtime.create(c, { logPath: file }), { dir: logDir, file });
      await runtime.delete(c.sandboxId, 0);
      if (keep) {
        out.warm.push(warm);
        if (limited !== undefined) out.limited.push(limited);
        out.cold.push(cold);
      }
    }
    await pool.close();
    if (opts.burst > 0) {
      const big = new WarmPool({ ...poolOpts, images: { busybox: opts.burst } });
      pools.push(big);
      await big.start();
      await until(
        `${opts.burst} warm containers`,
        () => big.counts()[BUSYBOX] === opts.burst,
        opts.burst * 10_000,
      );
      const specs = Array.from({ length: opts.burst }, spec);
      const t0 = performance.now();
      const timings = await Promise.all(specs.map((s) => {
        const logPath = join(logDir, `${s.sandboxId}.log`);
        return timed(async () => {
          const claimed = await big.claim(s, { logPath });
          if (claimed === undefined) throw new Error("a burst claim missed");
          live.push(claimed.containerId);
        }, { dir: logDir, file: logPath });
      }));
      (out as { burstWall?: number }).burstWall = performance.now() - t0;
      out.burst.push(...timings);
    }
  } catch (err) {
    return { ...out, error: String(err) };
  } finally {
    for (const pool of pools) await pool.close().catch(() => {});
    for (const id of live) await runtime.delete(id, 0).catch(() => {});
    await runtime.close();
    await network.teardown();
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      n: { type: "string", default: "30" },
      burst: { type: "string", default: "50" },
      oci: { type: "string", default: "runc,runsc" },
      json: { type: "boolean", default: false },
    },
  });
  const n = Number(values.n);
  const burst = Number(values.burst);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(burst) || burst < 0) {
    throw new Error("--n must be a whole number from 1, --burst one from 0");
  }
  const ocis = values.oci.split(",").filter((o): o is "runc" | "runsc" =>
    o === "runc" || o === "runsc"
  );
  const dir = await Deno.makeTempDir({ prefix: "fsb_warm_bench_" });
  const server = await startContainerd();
  const results: Series[] = [];
  try {
    await importImage(await buildBusyboxImage(dir), { socket: server.socket });
    for (const oci of ocis) {
      results.push(await measure(oci, { socket: server.socket, dir, n, burst }));
    }
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
  report(results, { n, burst, json: values.json });
}

function report(results: Series[], opts: { n: number; burst: number; json: boolean }): void {
  const rows: (string | number)[][] = [];
  const json: Record<string, unknown>[] = [];
  for (const r of results) {
    if (r.error !== undefined) console.error(`${r.oci}: failed: ${r.error}`);
    const add = (series: string, timings: Timing[], count: string) => {
      if (timings.length === 0) return;
      const call = summary(timings.map((t) => t.call));
      const running = summary(timings.map((t) => t.running));
      rows.push([r.oci, series, count, call.p50, call.p99, running.p50, running.p99]);
      json.push({ oci: r.oci, series, count, call, running });
    };
    add("warm claim", r.warm, String(r.warm.length));
    add("warm claim + limits", r.limited, String(r.limited.length));
    add("cold create", r.cold, String(r.cold.length));
    add(
      `burst of ${r.burst.length} on a pool of ${r.burst.length}`,
      r.burst,
      String(r.burst.length),
    );
    if (r.burstWall !== undefined) {
      const perSecond = (r.burst.length / r.burstWall) * 1000;
      rows.push([r.oci, "burst: claims/s", "", perSecond, "", "", ""]);
      json.push({ oci: r.oci, series: "burst claims/s", value: perSecond });
    }
    for (const [stage, ms] of Object.entries(r.warmStages)) {
      const s = summary(ms);
      json.push({ oci: r.oci, series: `warm stage ${stage}`, p50: s.p50, p99: s.p99 });
    }
  }
  if (opts.json) {
    console.log(JSON.stringify(json, null, 2));
    return;
  }
  console.log(
    `Warm claim vs cold create, ${opts.n} each after ${WARMUP} warm-ups (ms; running = first output in the log)`,
  );
  table(["oci", "series", "n", "call p50", "call p99", "running p50", "running p99"], rows);
  console.log("\nClaim stages of both warm series, p50 / p99 (ms; warm_limits only with limits)");
  table(
    ["oci", "stage", "p50", "p99"],
    results.flatMap((r) =>
      Object.entries(r.warmStages).map(([stage, ms]) => {
        const s = summary(ms);
        return [r.oci, stage, s.p50, s.p99];
      })
    ),
  );
}

if (import.meta.main) await main();
