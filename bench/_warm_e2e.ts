/**
 * What bench/warm_bench.ts needs beyond bench/_support.ts: an agent with a
 * warm pool and a metrics port whose log stays readable, the pool's size as
 * the agent reports it, and a sandbox's first line of output read through
 * the API.
 *
 * @module
 */
import type { FsbClient } from "../cli/client.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** The busybox image's full reference, as containerd and the agent's metrics name it. */
const BUSYBOX = "docker.io/library/busybox:latest";

/** A running `fsb agent run`: the process, its log's end, and the log's last few KiB. */
export interface AgentProc {
  child: Deno.ChildProcess;
  /** Resolves when the log ends (the process exited). */
  logDone: Promise<void>;
  /** The last few KiB of its log, for saying why it failed. */
  tail(): string;
}

/**
 * `fsb agent run --runtime containerd ARGS... -v 2` on loopback, with its
 * metrics on `opts.metrics` (`/metrics` there tells the pool's size), its
 * log kept for {@linkcode AgentProc.tail}. `opts.args` carries the runtime's
 * flags (`--warm`, `--oci-runtime`, the network's). Extra Deno flags come
 * from FSB_BENCH_DENO_FLAGS, as for bench/_support.ts's processes.
 */
export function spawnWarmAgent(
  endpoint: string,
  opts: {
    dataDir: string;
    joinTokenFile: string;
    metrics: string;
    capacity: number;
    args: string[];
  },
): AgentProc {
  const extra = Deno.env.get("FSB_BENCH_DENO_FLAGS")?.split(" ").filter(Boolean) ?? [];
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...extra,
      MAIN,
      "agent",
      "run",
      "--controller",
      endpoint,
      "--listen",
      "127.0.0.1:0",
      "--advertise",
      "127.0.0.1",
      "--id",
      "bench",
      "--capacity",
      String(opts.capacity),
      "--data-dir",
      opts.dataDir,
      "--join-token-file",
      opts.joinTokenFile,
      "--metrics-listen",
      opts.metrics,
      "--runtime",
      "containerd",
      ...opts.args,
      "-v",
      "2",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log = { tail: "" };
  const logDone = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      log.tail = (log.tail + decoder.decode(chunk, { stream: true })).slice(-4000);
    }
  })();
  return { child, logDone, tail: () => log.tail };
}

/**
 * The agent's `fsb_agent_warm_containers` for `image` (its full reference)
 * from its metrics port `address` (or its gauge `opts.gauge`, e.g.
 * `fsb_agent_prepared_snapshots`); 0 when it is not there yet or the port
 * does not answer.
 */
export async function warmCount(
  address: string,
  image: string,
  opts: { gauge?: string } = {},
): Promise<number> {
  let text: string;
  try {
    const res = await fetch(`http://${address}/metrics`);
    text = await res.text();
  } catch {
    return 0;
  }
  const prefix = `${opts.gauge ?? "fsb_agent_warm_containers"}{image="${image}"} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  return line === undefined ? 0 : Number(line.slice(prefix.length));
}

/**
 * The first line of sandbox `name`'s output, read through the API
 * (`logs(name, { follow: true })`); throws after `timeoutMs` without one.
 */
export async function firstLogLine(
  fsb: FsbClient,
  name: string,
  timeoutMs: number,
): Promise<string> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  const decoder = new TextDecoder();
  let text = "";
  try {
    for await (const chunk of fsb.logs(name, { follow: true, signal: abort.signal })) {
      text += decoder.decode(chunk, { stream: true });
      const nl = text.indexOf("\n");
      if (nl >= 0) return text.slice(0, nl);
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  throw new Error(`no line of output from sandbox ${name} in ${timeoutMs} ms`);
}

/**
 * Waits until the agent's `/metrics` (at `metrics`) says `want` warm busybox
 * containers are ready; throws, with the agent's log, after `timeoutMs`.
 */
export async function waitWarm(
  metrics: string,
  want: number,
  agent: AgentProc,
  timeoutMs: number,
  opts: { gauge?: string } = {},
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let have = -1;
  while ((have = await warmCount(metrics, BUSYBOX, opts)) < want) {
    if (performance.now() > deadline) {
      const what = opts.gauge ?? "the pool";
      throw new Error(`${what} holds ${have} of ${want} after ${timeoutMs} ms\n${agent.tail()}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * `ctr run -d --log-uri file://LOG [EXTRA...] busybox ID COMMAND...`: the
 * whole process's wall time, and from its start until LOG holds a whole line
 * (polled every millisecond), which must be `up`. LOG is removed after.
 */
export async function ctrRun(
  socket: string,
  id: string,
  opts: { log: string; command: readonly string[]; extra: readonly string[]; timeoutMs: number },
): Promise<{ process: number; tti: number }> {
  const args = ["-a", socket, "-n", "fsb", "run", "-d", "--log-uri", `file://${opts.log}`];
  const t0 = performance.now();
  const out = await new Deno.Command("ctr", {
    args: [...args, ...opts.extra, BUSYBOX, id, ...opts.command],
    stdout: "null",
    stderr: "piped",
  }).output();
  const process = performance.now() - t0;
  if (!out.success) throw new Error(`ctr run failed: ${new TextDecoder().decode(out.stderr)}`);
  const deadline = t0 + opts.timeoutMs;
  for (;;) {
    const text = await Deno.readTextFile(opts.log).catch(() => "");
    if (text.includes("\n")) {
      const tti = performance.now() - t0;
      if (text.split("\n")[0] !== "up") throw new Error(`ctr ${id} printed "${text}"`);
      await Deno.remove(opts.log).catch(() => {});
      return { process, tti };
    }
    if (performance.now() > deadline) throw new Error(`no output from ctr ${id} in its log`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** The first line `cmd ARGS` prints, or that it is not there. */
export async function version(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output()
    .catch(() => undefined);
  return out === undefined
    ? `${cmd}: not found`
    : new TextDecoder().decode(out.stdout).split("\n")[0].trim();
}
