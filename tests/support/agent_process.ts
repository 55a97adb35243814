/**
 * `fsb controller serve` and `fsb agent run` as processes of their own, the
 * way an operator runs them: what a test needs to kill one with SIGKILL and
 * start it again on the same data dir. Each keeps the tail of its stderr (its
 * JSON log) for the test's failure message.
 *
 * @module
 */
const ROOT = new URL("../../", import.meta.url).pathname;
const MAIN = `${ROOT}main.ts`;
const decoder = new TextDecoder();
const STDERR_TAIL_BYTES = 256 * 1024;
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

/**
 * Deno's cache, pinned before any child gets a HOME of its own (the default
 * cache lives under HOME, and a fresh one would fetch every package again).
 */
const DENO_DIR = Deno.env.get("DENO_DIR") ||
  `${Deno.env.get("XDG_CACHE_HOME") || `${Deno.env.get("HOME") ?? ""}/.cache`}/deno`;

/** A running `fsb` server process. */
export interface ServerProcess {
  readonly child: Deno.ChildProcess;
  /** What it wrote on stderr so far (its newest 256 KiB). */
  stderr(): string;
  /** Whether it has exited. */
  readonly exited: boolean;
  /** SIGKILLs it (no shutdown of any kind) and resolves once it is gone. */
  kill(): Promise<Deno.CommandStatus>;
  /**
   * SIGTERM, as an operator stops it, and resolves with its exit once it is
   * gone; SIGKILL if it is still there after 30 s.
   */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Starts `fsb ARGS` (this Deno binary, the repo's main.ts) with HOME `home`
 * and no `FSB_*` variable, and resolves once its stdout shows `marker` (then
 * keeps draining it). Fails with its stderr if it exits first or takes over
 * 60 s; it is killed then.
 */
export async function spawnServer(
  args: readonly string[],
  opts: { home: string; marker: string },
): Promise<ServerProcess> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!k.startsWith("FSB_")) env[k] = v;
  }
  Object.assign(env, { HOME: opts.home, DENO_DIR, NO_COLOR: "1" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd: ROOT,
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let tail = "";
  const reading = (async () => {
    for await (const chunk of child.stderr) {
      tail = (tail + decoder.decode(chunk, { stream: true })).slice(-STDERR_TAIL_BYTES);
    }
  })().catch(() => {});
  let exited = false;
  const status = child.status.then(async (s) => {
    exited = true;
    // Its stderr is read to the end before anyone hears it exited.
    await reading;
    return s;
  });
  const proc: ServerProcess = {
    child,
    stderr: () => tail,
    get exited() {
      return exited;
    },
    kill: () => {
      signal(child, "SIGKILL");
      return status;
    },
    stop: async () => {
      signal(child, "SIGTERM");
      const timer = setTimeout(() => signal(child, "SIGKILL"), STOP_TIMEOUT_MS);
      try {
        return await status;
      } finally {
        clearTimeout(timer);
      }
    },
  };
  const what = `fsb ${args.slice(0, 2).join(" ")}`;
  const timer = setTimeout(() => signal(child, "SIGKILL"), READY_TIMEOUT_MS);
  try {
    await readUntil(child.stdout, opts.marker);
  } catch (err) {
    await proc.kill();
    throw new Error(`${what} did not start: ${(err as Error).message}\n${tail.slice(-8000)}`);
  } finally {
    clearTimeout(timer);
  }
  return proc;
}

/** What {@linkcode startAgentProcess} runs the agent with. */
export interface AgentProcessOptions {
  /** The controller's FastPath address. */
  readonly controller: string;
  /** `--id`: the same across restarts, so the controller sees one agent come back. */
  readonly id: string;
  readonly dataDir: string;
  readonly joinTokenFile: string;
  /** `--metrics-listen`, `127.0.0.1:PORT`: fixed, so that a restarted agent answers there too. */
  readonly metrics: string;
  readonly capacity: number;
  /** The runtime's flags (`--runtime containerd --warm ...`, the network's). */
  readonly args: readonly string[];
  /** HOME for the process. */
  readonly home: string;
}

/**
 * `fsb agent run` on loopback with `opts`; resolves once it listens (it
 * registers with the controller in the background after that: its log says
 * `registered with controller`). Call again with the same options to start
 * it anew on the same state.
 */
export function startAgentProcess(opts: AgentProcessOptions): Promise<ServerProcess> {
  return spawnServer([
    "agent",
    "run",
    "--controller",
    opts.controller,
    "--listen",
    "127.0.0.1:0",
    "--advertise",
    "127.0.0.1",
    "--id",
    opts.id,
    "--capacity",
    String(opts.capacity),
    "--data-dir",
    opts.dataDir,
    "--join-token-file",
    opts.joinTokenFile,
    "--metrics-listen",
    opts.metrics,
    "--log-format",
    "json",
    ...opts.args,
  ], { home: opts.home, marker: `fsb agent ${opts.id} listening on` });
}

function signal(child: Deno.ChildProcess, sig: Deno.Signal): void {
  try {
    child.kill(sig);
  } catch {
    // Already gone.
  }
}

/** Reads `stream` until `marker` shows, then drains the rest in the background. */
async function readUntil(stream: ReadableStream<Uint8Array>, marker: string): Promise<void> {
  const reader = stream.getReader();
  let text = "";
  while (!text.includes(marker)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`it exited before printing "${marker}": ${text}`);
    text += decoder.decode(value, { stream: true });
  }
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })().catch(() => {});
}
