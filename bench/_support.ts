/**
 * What the latency scripts share: percentiles, free ports, fsb processes,
 * and the controller's per-create timing log.
 *
 * @module
 */
import { createServer } from "node:net";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Nearest-rank percentile of ascending `sorted`. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** p50, p99 and mean of `samples`. */
export function summary(samples: readonly number[]): { p50: number; p99: number; mean: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean };
}

/** A loopback port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * `fsb ARGS` as its own process, run by this Deno binary. Extra Deno flags
 * for it (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`) come from the
 * environment variable FSB_BENCH_DENO_FLAGS, for profiling a benchmark.
 */
export function spawnFsb(args: string[], stderr: "piped" | "null" = "null"): Deno.ChildProcess {
  const extra = Deno.env.get("FSB_BENCH_DENO_FLAGS")?.split(" ").filter(Boolean) ?? [];
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...extra, MAIN, ...args],
    stdout: "null",
    stderr,
  }).spawn();
}

/**
 * `fsb controller serve -v 2` on `endpoint`; its timing log lines land in
 * `timings`. Resolves when the log ends (the process exited).
 */
export function spawnController(
  endpoint: string,
  dataDir: string,
  timings: Map<string, CreateTiming>,
): { child: Deno.ChildProcess; logDone: Promise<void> } {
  const child = spawnFsb([
    "controller",
    "serve",
    "--listen",
    endpoint,
    "--metrics-listen",
    "127.0.0.1:0",
    "--data-dir",
    dataDir,
    "-v",
    "2",
  ], "piped");
  return { child, logDone: collectTimings(child.stderr, timings) };
}

/** `fsb agent run` on loopback with `runtime` (plus its flags) and a large capacity. */
export function spawnAgent(
  endpoint: string,
  opts: { id: string; dataDir: string; runtime: string[]; capacity: number },
): Deno.ChildProcess {
  return spawnFsb([
    "agent",
    "run",
    "--controller",
    endpoint,
    "--listen",
    "127.0.0.1:0",
    "--advertise",
    "127.0.0.1",
    "--id",
    opts.id,
    "--capacity",
    String(opts.capacity),
    "--runtime",
    ...opts.runtime,
    "--data-dir",
    opts.dataDir,
  ]);
}

/** Wall time of one whole `fsb ARGS` process, in milliseconds; throws if it fails. */
export async function timeFsb(args: string[]): Promise<number> {
  const start = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - start;
  if (!out.success) {
    throw new Error(`fsb ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return ms;
}

/** Stops a child, tolerating one that has already exited. */
export async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // Already gone.
  }
  await child.status;
}

/** One `create timing` line of the controller's log at `-v 2`. */
export interface CreateTiming {
  sandbox: string;
  ms: Record<string, number>;
}

/** Reads a controller's JSON log, keeping its `create timing` records by sandbox key. */
export async function collectTimings(
  stream: ReadableStream<Uint8Array>,
  into: Map<string, CreateTiming>,
): Promise<void> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.includes('"create timing"')) continue;
      try {
        const rec = JSON.parse(line) as CreateTiming;
        into.set(rec.sandbox, rec);
      } catch {
        // Not a JSON log line.
      }
    }
  }
}

/** Stages that are the runtime's own work (process spawn, or containerd's steps). */
export const RUNTIME_STAGES = [
  "runtime_start",
  "image_resolve",
  "image_unpack",
  "snapshot_prepare",
  "container_create",
  "task_create",
  "task_start",
];

/** Milliseconds of `timing` spent in the runtime itself. */
export function runtimeMs(timing: CreateTiming): number {
  let sum = 0;
  for (const stage of RUNTIME_STAGES) sum += timing.ms[stage] ?? 0;
  return sum;
}

/** Prints a markdown table. */
export function table(header: string[], rows: (string | number)[][]): void {
  console.log(`| ${header.join(" | ")} |`);
  console.log(`|${header.map(() => "---").join("|")}|`);
  for (const row of rows) {
    console.log(`| ${row.map((v) => typeof v === "number" ? v.toFixed(2) : v).join(" | ")} |`);
  }
}
