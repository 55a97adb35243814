/**
 * fsb as a user runs it: each command its own process.
 *
 * @module
 */
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const decoder = new TextDecoder();
/** A HOME of the tests' own: fsb reads and `fsb up` writes `~/.fsb/config.json` there. */
const SCRATCH_HOME = Deno.makeTempDirSync({ prefix: "fsb-home-" });
// Removed when the test process ends: it outlives every test of the file.
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(SCRATCH_HOME, { recursive: true });
  } catch {
    // Already gone.
  }
});
/**
 * Deno's own cache, pinned: it defaults to one under HOME, and a fresh HOME
 * would make every process download the npm packages again.
 */
const DENO_DIR = Deno.env.get("DENO_DIR") ??
  `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/deno`;

/** Options for {@linkcode fsb}. */
export interface FsbOptions {
  /** HOME for the process (a scratch one unless told; never the real one). */
  home?: string;
}

/** Runs `fsb ARGS` as its own process, the way a user does. */
export async function fsb(
  args: string[],
  opts: FsbOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    env: {
      FSB_ENDPOINT: "",
      FSB_TOKEN: "",
      FSB_TLS_CA: "",
      NO_COLOR: "1",
      HOME: opts.home ?? SCRATCH_HOME,
      DENO_DIR,
    },
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
  /** Its HOME, where it wrote the client config (endpoint and admin token). */
  home: string;
}

/** `fsb up` on free ports (plus `extra` flags); resolves once it printed where it listens. */
export async function startUp(dataDir: string, extra: string[] = []): Promise<UpProcess> {
  // A fresh HOME per `fsb up`, as on a new machine.
  const home = `${dataDir}/home`;
  await Deno.mkdir(home, { recursive: true });
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
    env: { HOME: home, DENO_DIR, FSB_ENDPOINT: "", FSB_TOKEN: "" },
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
  return { child, endpoint, metrics, banner: text, home };
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
      "--",
      ...command,
    ], { home: up.home });
    if (created.code === 0 || Date.now() > deadline) return created;
    await new Promise((r) => setTimeout(r, 100));
  }
}
