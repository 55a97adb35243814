/**
 * Starts a real etcd (the `etcd` binary, 3.4 from Debian's etcd-server) for a
 * test: its own temporary data dir and free loopback ports. Either one member
 * ({@linkcode startEtcd}) or a cluster of several ({@linkcode startEtcdCluster})
 * whose members a test can kill and restart.
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

/** One member of an {@linkcode EtcdCluster}. */
export interface EtcdMember {
  /** The member's name in the cluster, `m0`, `m1`, ... */
  readonly name: string;
  /** `127.0.0.1:PORT`, the member's client endpoint (the same across restarts). */
  readonly endpoint: string;
  /** Whether the member's process runs (false after {@linkcode kill} or {@linkcode stop}). */
  readonly running: boolean;
  /** SIGKILLs the member (a crash); its data dir stays for {@linkcode restart}. */
  kill(): Promise<void>;
  /** SIGTERMs the member and waits for it to exit; its data dir stays for {@linkcode restart}. */
  stop(): Promise<void>;
  /**
   * Starts a stopped or killed member again on its ports and data dir, and
   * resolves once it listens on its client port. It serves requests only once
   * a quorum of members runs, which this member alone cannot bring about.
   */
  restart(): Promise<void>;
}

/** A running etcd cluster started by {@linkcode startEtcdCluster}. */
export interface EtcdCluster {
  /** Every member's client endpoint (`127.0.0.1:PORT`), in member order. */
  readonly endpoints: readonly string[];
  /** The members, to kill and restart one by one. */
  readonly members: readonly EtcdMember[];
  /** Kills every member and removes every data dir. */
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

/**
 * Starts a cluster of `size` etcd members on loopback and resolves once all
 * of them report healthy. Raft runs with a 50 ms heartbeat and a 500 ms
 * election timeout (etcd's defaults are 100 ms and 1 s), so that losing a
 * member is settled well within the 1 to 2 s lease TTLs that tests use, and
 * etcd accepts leases of 1 s (its floor is 1.5 election timeouts).
 */
export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startClusterOnce(size);
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
  const proc = spawnEtcd([
    "--name=default",
    `--data-dir=${dir}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=default=${peer}`,
    "--log-level=error",
  ]);
  const stop = async () => {
    await proc.kill("SIGKILL");
    await Deno.remove(dir, { recursive: true });
  };
  try {
    await waitUntil(client, "health", proc);
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoint: `127.0.0.1:${clientPort}`, stop };
}

interface MemberConfig {
  name: string;
  dir: string;
  client: string;
  args: string[];
}

async function startClusterOnce(size: number): Promise<EtcdCluster> {
  const configs: MemberConfig[] = [];
  for (let i = 0; i < size; i++) {
    const dir = await Deno.makeTempDir({ prefix: `fsb-etcd-m${i}-` });
    const client = `http://127.0.0.1:${freePort()}`;
    const peer = `http://127.0.0.1:${freePort()}`;
    configs.push({ name: `m${i}`, dir, client, args: [peer] });
  }
  const initialCluster = configs.map((c) => `${c.name}=${c.args[0]}`).join(",");
  const token = `fsb-test-${crypto.randomUUID()}`;
  for (const c of configs) {
    const peer = c.args[0];
    c.args = [
      `--name=${c.name}`,
      `--data-dir=${c.dir}`,
      `--listen-client-urls=${c.client}`,
      `--advertise-client-urls=${c.client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${initialCluster}`,
      "--initial-cluster-state=new",
      `--initial-cluster-token=${token}`,
      "--heartbeat-interval=50",
      "--election-timeout=500",
      "--log-level=error",
    ];
  }
  const members = configs.map(clusterMember);
  const stop = async () => {
    await Promise.all(members.map((m) => m.kill()));
    await Promise.all(configs.map((c) => Deno.remove(c.dir, { recursive: true })));
  };
  try {
    // Members wait for each other's peers, so all start before any is awaited.
    await Promise.all(members.map((m) => m.restart()));
    await Promise.all(configs.map((c, i) => waitUntil(c.client, "health", members[i].proc!)));
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoints: members.map((m) => m.endpoint), members, stop };
}

/** A member's handle, plus its current process for the cluster's own start. */
interface ClusterMember extends EtcdMember {
  readonly proc: EtcdProcess | undefined;
}

function clusterMember(config: MemberConfig): ClusterMember {
  let proc: EtcdProcess | undefined;
  const end = async (signal: Deno.Signal) => {
    const current = proc;
    proc = undefined;
    await current?.kill(signal);
  };
  return {
    name: config.name,
    endpoint: config.client.slice("http://".length),
    get running() {
      return proc !== undefined && !proc.exited;
    },
    get proc() {
      return proc;
    },
    kill: () => end("SIGKILL"),
    stop: () => end("SIGTERM"),
    async restart() {
      await end("SIGKILL");
      const started = spawnEtcd(config.args);
      proc = started;
      try {
        await waitUntil(config.client, "listening", started);
      } catch (err) {
        await end("SIGKILL");
        throw err;
      }
    },
  };
}

/** An etcd child process whose stderr is drained into a bounded tail. */
interface EtcdProcess {
  readonly exited: boolean;
  /** The last few KiB etcd logged, for error messages. */
  readonly log: string;
  /** Sends `signal` unless it exited already, then waits for the exit and for stderr to drain. */
  kill(signal: Deno.Signal): Promise<void>;
}

function spawnEtcd(args: string[]): EtcdProcess {
  const child = new Deno.Command("etcd", {
    args,
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
  return {
    get exited() {
      return exited;
    },
    get log() {
      return log;
    },
    async kill(signal: Deno.Signal) {
      if (!exited) child.kill(signal);
      await status;
      await drained;
    },
  };
}

/**
 * Polls `client` until `/health` says healthy or, for `listening`, until its
 * port accepts connections (etcd answers nothing there before it reaches a
 * quorum); fails if etcd exits or takes too long.
 */
async function waitUntil(
  client: string,
  what: "health" | "listening",
  proc: EtcdProcess,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await answers(client, what))) {
    if (proc.exited || Date.now() > deadline) {
      throw new Error(
        `Cannot start etcd on ${client} as it ${
          proc.exited ? "exited" : what === "health" ? "did not become healthy" : "did not listen"
        }:\n${proc.log}`,
      );
    }
    // Polling an external process for readiness: there is no clock to inject here.
    await new Promise((r) => setTimeout(r, 25));
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function answers(client: string, what: "health" | "listening"): Promise<boolean> {
  try {
    if (what === "listening") {
      const url = new URL(client);
      const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
      conn.close();
      return true;
    }
    const res = await fetch(`${client}/health`, { signal: AbortSignal.timeout(1000) });
    const body = await res.json() as { health?: string };
    return body.health === "true";
  } catch {
    return false;
  }
}
