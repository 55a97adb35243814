/**
 * What the latency scripts share: percentiles, free ports, fsb processes,
 * the controller's tokens, and the controller's per-create timing log.
 *
 * @module
 */
import { createServer } from "node:net";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/**
 * The most sandboxes one agent may hold (`--capacity`), as the agent enforces
 * it (agent/agent.ts `MAX_AGENT_CAPACITY`; not imported, so that a benchmark
 * does not load the agent). A benchmark that keeps more sandboxes alive needs
 * more agents, or deletes between its timed parts.
 */
export const MAX_AGENT_CAPACITY = 100;

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

/** A running `fsb controller serve`: the process, its log reader, and the log's end. */
export interface ControllerProc {
  child: Deno.ChildProcess;
  /** Resolves when the log ends (the process exited). */
  logDone: Promise<void>;
  /** The last few KiB of its log, for saying why it failed. */
  tail(): string;
}

/**
 * `fsb controller serve -v 2` on `endpoint` with token auth (the default);
 * its timing log lines land in `timings`. {@linkcode readTokens} then gives
 * the admin and join tokens it writes into `dataDir` before it listens.
 */
export function spawnController(
  endpoint: string,
  dataDir: string,
  timings: Map<string, CreateTiming>,
): ControllerProc {
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
  const log = { tail: "" };
  return { child, logDone: collectTimings(child.stderr, timings, log), tail: () => log.tail };
}

/** The secrets a controller writes into its data dir, and the join token's file for agents. */
export interface Tokens {
  /** The admin token's secret, for clients. */
  admin: string;
  /** The join token's secret. */
  join: string;
  /** The file holding the join token, for `fsb agent run --join-token-file`. */
  joinFile: string;
}

/**
 * Waits for the `admin-token` and `join-token` files that `fsb controller
 * serve --data-dir DATADIR` writes (each atomically, before it listens) and
 * reads them. Fails if `controller` exits first or after `timeoutMs`.
 */
export async function readTokens(
  dataDir: string,
  controller: ControllerProc,
  timeoutMs = 60_000,
): Promise<Tokens> {
  let exited = false;
  controller.child.status.then(() => exited = true);
  const files = { admin: `${dataDir}/admin-token`, join: `${dataDir}/join-token` };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const [admin, join] = await Promise.all([
        Deno.readTextFile(files.admin),
        Deno.readTextFile(files.join),
      ]);
      return { admin: admin.trim(), join: join.trim(), joinFile: files.join };
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    if (exited || Date.now() > deadline) {
      throw new Error(
        `the controller did not write ${files.admin} and ${files.join}` +
          `${exited ? " (it exited)" : ""}:\n${controller.tail()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The call metadata that carries `secret`: `{ authorization: "Bearer SECRET" }`. */
export function bearer(secret: string): Record<string, string> {
  return { authorization: `Bearer ${secret}` };
}

/**
 * `fsb agent run` on loopback with `runtime` (plus its flags), joining with
 * the controller's join token file. `capacity` is at most
 * {@linkcode MAX_AGENT_CAPACITY} (checked here: the agent's own refusal would
 * only show as an agent that never registers).
 */
export function spawnAgent(
  endpoint: string,
  opts: {
    id: string;
    dataDir: string;
    runtime: string[];
    capacity: number;
    joinTokenFile: string;
  },
): Deno.ChildProcess {
  if (
    !Number.isInteger(opts.capacity) || opts.capacity < 0 || opts.capacity > MAX_AGENT_CAPACITY
  ) {
    throw new RangeError(
      `agent capacity must be a whole number from 0 to ${MAX_AGENT_CAPACITY}, got ${opts.capacity}`,
    );
  }
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
    "--join-token-file",
    opts.joinTokenFile,
  ]);
}

/**
 * This process's Deno cache directory, where the `fsb` children must look
 * so that nothing is downloaded again: `DENO_DIR`, else the default under
 * `XDG_CACHE_HOME` or `HOME/.cache`, read before any child's HOME changes.
 */
export function denoDir(): string {
  const set = Deno.env.get("DENO_DIR");
  if (set) return set;
  const cache = Deno.env.get("XDG_CACHE_HOME") || `${Deno.env.get("HOME") ?? ""}/.cache`;
  return `${cache}/deno`;
}

/**
 * The environment of a `fsb` client process: this one's, without any `FSB_*`
 * variable, with `HOME` set to `home` (so that it never reads the user's
 * `~/.fsb/config.json`), `DENO_DIR` pinned to {@linkcode denoDir}, and
 * `FSB_TOKEN` set to `token` if given.
 */
export function clientEnv(home: string, token?: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!k.startsWith("FSB_")) env[k] = v;
  }
  env.HOME = home;
  env.DENO_DIR = denoDir();
  if (token !== undefined) env.FSB_TOKEN = token;
  return env;
}

/**
 * Wall time of one whole `fsb ARGS` process, in milliseconds; throws if it
 * fails. The process runs in {@linkcode clientEnv}: `opts.token` as
 * `FSB_TOKEN`, and `opts.home` as HOME, else a fresh empty directory made
 * (and removed) around the call, outside the timing.
 */
export async function timeFsb(
  args: string[],
  opts: { token?: string; home?: string } = {},
): Promise<number> {
  const home = opts.home ?? await Deno.makeTempDir({ prefix: "fsb-bench-home-" });
  try {
    const command = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...args],
      clearEnv: true,
      env: clientEnv(home, opts.token),
      stdout: "null",
      stderr: "piped",
    });
    const start = performance.now();
    const out = await command.output();
    const ms = performance.now() - start;
    if (!out.success) {
      throw new Error(`fsb ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
    }
    return ms;
  } finally {
    if (opts.home === undefined) await Deno.remove(home, { recursive: true }).catch(() => {});
  }
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

/**
 * Reads a controller's JSON log, keeping its `create timing` records by
 * sandbox key, and the log's last 4,000 characters in `log.tail` if given.
 */
export async function collectTimings(
  stream: ReadableStream<Uint8Array>,
  into: Map<string, CreateTiming>,
  log?: { tail: string },
): Promise<void> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    const text = decoder.decode(chunk, { stream: true });
    if (log !== undefined) log.tail = (log.tail + text).slice(-4000);
    buf += text;
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
