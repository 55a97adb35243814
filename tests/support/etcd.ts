/**
 * Starts a real etcd (the `etcd` binary, 3.4 from Debian's etcd-server) for a
 * test: its own temporary data dir and free loopback ports.
 *
 * @module
 */

/** A running etcd started by {@linkcode startEtcd}. */
export interface EtcdServer {
  /** `127.0.0.1:PORT`, the client endpoint. */
  readonly endpoint: string;
  /** Kills etcd and removes its data dir. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;

/**
 * Starts etcd and resolves once it reports healthy. Ports are picked by
 * binding port 0 and releasing it, so another process may grab one first:
 * a start that fails is retried on fresh ports.
 */
export async function startEtcd(): Promise<EtcdServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce();
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startOnce(): Promise<EtcdServer> {
  const dir = await Deno.makeTempDir({ prefix: "fsb-etcd-" });
  const clientPort = freePort();
  const peerPort = freePort();
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = new Deno.Command("etcd", {
    args: [
      "--name=default",
      `--data-dir=${dir}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=default=${peer}`,
      "--log-level=error",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // etcd logs to stderr; keep draining it (a full pipe would stall etcd) and keep the tail for errors.
  let log = "";
  const drained = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      log = (log + chunk).slice(-4000);
    }
  })();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async () => {
    if (!exited) child.kill("SIGKILL");
    await status;
    await drained;
    await Deno.remove(dir, { recursive: true });
  };
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await healthy(client))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(
        `Cannot start etcd on ${client} as it ${
          exited ? "exited" : "did not become healthy"
        }:\n${log}`,
      );
    }
    // Polling an external process for readiness: there is no clock to inject here.
    await new Promise((r) => setTimeout(r, 25));
  }
  return { endpoint: `127.0.0.1:${clientPort}`, stop };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function healthy(client: string): Promise<boolean> {
  try {
    const res = await fetch(`${client}/health`, { signal: AbortSignal.timeout(1000) });
    const body = await res.json() as { health?: string };
    return body.health === "true";
  } catch {
    return false;
  }
}
