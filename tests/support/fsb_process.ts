/**
 * fsb as a user runs it: each command its own process.
 *
 * @module
 */
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

/** Runs `fsb ARGS` as its own process, the way a user does. */
export async function fsb(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { FSB_ENDPOINT: "", NO_COLOR: "1" },
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** A running `fsb up` and where it listens. */
export interface UpProcess {
  child: Deno.ChildProcess;
  /** FastPath address. */
  endpoint: string;
  /** `http://HOST:PORT/metrics`. */
  metrics: string;
  /** What it printed on start. */
  banner: string;
}

/** `fsb up` on free ports (plus `extra` flags); resolves once it printed where it listens. */
export async function startUp(dataDir: string, extra: string[] = []): Promise<UpProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "up",
      ...extra,
      "--listen",
      "127.0.0.1:0",
      "--metrics-listen",
      "127.0.0.1:0",
      "--agent-listen",
      "127.0.0.1:0",
      "--data-dir",
      dataDir,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("try:")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`fsb up exited early: ${text}`);
    text += decoder.decode(value);
  }
  // Keep draining so the child never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  const endpoint = /controller on (\S+),/.exec(text)![1];
  const metrics = /metrics on (http:\/\/\S+),/.exec(text)![1];
  return { child, endpoint, metrics, banner: text };
}

/**
 * `fsb sandbox create NAME --image busybox -- COMMAND` against `up`, retried
 * until it succeeds: the agent registers just after the banner is printed.
 */
export async function createWhenReady(
  up: UpProcess,
  name: string,
  command: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const created = await fsb([
      "sandbox",
      "create",
      name,
      "--image",
      "busybox",
      "--endpoint",
      up.endpoint,
      "--",
      ...command,
    ]);
    if (created.code === 0 || Date.now() > deadline) return created;
    await new Promise((r) => setTimeout(r, 100));
  }
}
