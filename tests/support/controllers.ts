/**
 * Several `fsb controller serve` processes on one etcd cluster, and a
 * process-runtime agent that knows them all: the scene of the
 * multi-controller tests and the failover benchmark.
 *
 * @module
 */
import { connect, type FsbClient } from "../../cli/client.ts";
import { Code, RpcError } from "../../proto/rpc.ts";
import { type EtcdCluster, startEtcdCluster } from "./etcd.ts";
import { freePort } from "./registry.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

/** One controller process. */
export interface ControllerProcess {
  /** `127.0.0.1:PORT`, its FastPath address, also what it advertises. */
  readonly address: string;
  readonly dataDir: string;
  /** Whether its process runs (false after {@linkcode kill}). */
  readonly running: boolean;
  /** SIGKILLs it and waits for it to be gone. */
  kill(): Promise<void>;
  /** Sends SIGSTOP or SIGCONT. */
  signal(sig: "SIGSTOP" | "SIGCONT"): void;
  /** Starts it again on the same port and data dir; resolves once it serves. */
  restart(): Promise<void>;
}

/** A scene from {@linkcode startControllers}. */
export interface ControllerScene {
  readonly etcd: EtcdCluster;
  readonly controllers: readonly ControllerProcess[];
  /** Every controller's address, in order. */
  readonly endpoints: readonly string[];
  /** The cluster's admin token (the same in every controller's data dir). */
  readonly adminToken: string;
  /** A client over every controller's address, with the admin token. */
  client(endpoints?: readonly string[]): FsbClient;
  /**
   * The controller that leads now, found by asking each: the leader answers,
   * the others name it. Polls until one leads, at most `timeoutMs`.
   */
  leader(timeoutMs?: number): Promise<ControllerProcess>;
  /** Starts a process-runtime agent registered with every controller. */
  startAgent(opts?: { capacity?: number }): Promise<void>;
  /** What every process started so far wrote on stderr (the newest 256 KiB each). */
  logs(): string;
  /** Runs `fn`, printing {@linkcode logs} if it fails, then {@linkcode stop}s. */
  run(fn: () => Promise<void>): Promise<void>;
  /** Deletes every sandbox, stops the agent and the controllers, then etcd, and removes the dirs. */
  stop(): Promise<void>;
}

/** The tail of a child's stderr, kept as it runs. */
class StderrTail {
  text = "";

  constructor(child: Deno.ChildProcess, limit = 256 * 1024) {
    (async () => {
      for await (const chunk of child.stderr) {
        this.text = (this.text + decoder.decode(chunk)).slice(-limit);
      }
    })().catch(() => {});
  }
}

/** Reads `child`'s stdout until `marker` shows, then keeps draining it. */
async function readUntil(
  child: Deno.ChildProcess,
  marker: string,
  what: string,
  stderr: StderrTail,
): Promise<string> {
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes(marker)) {
    const { value, done } = await reader.read();
    if (done) {
      throw new Error(`${what} exited before it served: ${text}${stderr.text.slice(-4000)}`);
    }
    text += decoder.decode(value);
  }
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })().catch(() => {});
  return text;
}

function spawnFsb(args: string[], home: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { HOME: home, FSB_ENDPOINT: "", FSB_TOKEN: "", NO_COLOR: "1" },
  }).spawn();
}

/**
 * Starts a 3-member etcd cluster and `count` controllers on it, each on its
 * own loopback port and data dir, with the election lease at `leaseTtl`.
 */
export async function startControllers(
  count: number,
  opts: { leaseTtl?: string; agentTimeout?: string } = {},
): Promise<ControllerScene> {
  const etcd = await startEtcdCluster(3);
  const root = await Deno.makeTempDir({ prefix: "fsb-controllers-" });
  const store = `etcd://${etcd.endpoints.join(",")}`;
  const controllers: ControllerProcess[] = [];
  let agent: Deno.ChildProcess | undefined;
  const logs: { name: string; tail: StderrTail }[] = [];
  try {
    const starting = [];
    for (let i = 0; i < count; i++) {
      const address = `127.0.0.1:${await freePort()}`;
      const dataDir = `${root}/c${i}`;
      await Deno.mkdir(dataDir, { recursive: true });
      let child: Deno.ChildProcess | undefined;
      const start = async () => {
        child = spawnFsb([
          "controller",
          "serve",
          "--store",
          store,
          "--listen",
          address,
          "--advertise",
          address,
          "--metrics-listen",
          "127.0.0.1:0",
          "--data-dir",
          dataDir,
          "--lease-ttl",
          opts.leaseTtl ?? "2s",
          "--agent-timeout",
          opts.agentTimeout ?? "10s",
          "--log-format",
          "json",
        ], root);
        const tail = new StderrTail(child);
        logs.push({ name: `controller ${address}`, tail });
        await readUntil(child, "fsb controller listening on", `controller ${address}`, tail);
      };
      controllers.push({
        address,
        dataDir,
        get running() {
          return child !== undefined;
        },
        async kill() {
          const c = child;
          child = undefined;
          if (c === undefined) return;
          try {
            c.kill("SIGKILL");
          } catch {
            // Already gone.
          }
          await c.status;
        },
        signal(sig) {
          try {
            child?.kill(sig);
          } catch {
            // Exited already.
          }
        },
        restart: start,
      });
      starting.push(start());
    }
    await Promise.all(starting);
    const adminToken = (await Deno.readTextFile(`${controllers[0].dataDir}/admin-token`)).trim();
    const endpoints = controllers.map((c) => c.address);
    const client = (list: readonly string[] = endpoints) =>
      connect({ endpoint: [...list], token: adminToken });
    return {
      etcd,
      controllers,
      endpoints,
      adminToken,
      client,
      async leader(timeoutMs = 20_000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          for (const c of controllers) {
            if (!c.running) continue;
            const one = client([c.address]);
            try {
              if (await leads(one)) return c;
            } finally {
              one.close();
            }
          }
          if (Date.now() > deadline) throw new Error(`No controller led within ${timeoutMs} ms`);
          await new Promise((r) => setTimeout(r, 100));
        }
      },
      async startAgent(agentOpts = {}) {
        agent = spawnFsb([
          "agent",
          "run",
          "--runtime",
          "process",
          "--controller",
          endpoints.join(","),
          "--listen",
          "127.0.0.1:0",
          "--metrics-listen",
          "",
          "--data-dir",
          `${root}/agent`,
          "--capacity",
          String(agentOpts.capacity ?? 100),
          "--join-token-file",
          `${controllers[0].dataDir}/join-token`,
          "--log-format",
          "json",
        ], root);
        const tail = new StderrTail(agent);
        logs.push({ name: "agent", tail });
        await readUntil(agent, "listening", "agent", tail);
        // Serving is not registered: wait until a sandbox can be placed on it.
        const probe = client();
        try {
          const deadline = Date.now() + 30_000;
          for (;;) {
            try {
              await probe.sandboxes.create({
                name: "agent-probe",
                image: "busybox",
                command: ["true"],
              });
              await probe.sandboxes.delete("agent-probe");
              return;
            } catch (err) {
              if (Date.now() > deadline) throw err;
              await new Promise((r) => setTimeout(r, 100));
            }
          }
        } finally {
          probe.close();
        }
      },
      logs: logsText,
      async run(fn) {
        try {
          await fn();
        } catch (err) {
          // What the processes logged is the only account of what they did.
          console.error(logsText());
          throw err;
        } finally {
          await stopAll();
        }
      },
      async stop() {
        await stopAll();
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }

  function logsText(): string {
    return logs.map(({ name, tail }) => `----- ${name}\n${tail.text}`).join("\n");
  }

  async function stopAll(): Promise<void> {
    if (agent !== undefined) {
      // Sandboxes of the process runtime are host processes: delete them through the API first.
      await deleteEverything(controllers).catch(() => {});
      try {
        agent.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      await agent.status;
      agent = undefined;
    }
    for (const c of controllers) {
      c.signal("SIGCONT");
      await c.kill();
    }
    await etcd.stop();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

/**
 * Whether the controller behind `client` leads: it answers, or says it is
 * recovering (only a leader recovers); a follower names the leader or none.
 */
export async function leads(client: FsbClient): Promise<boolean> {
  try {
    await client.sandboxes.list({ allNamespaces: true, timeoutMs: 2_000 });
    return true;
  } catch (err) {
    if (!(err instanceof RpcError) || err.code !== Code.UNAVAILABLE) throw err;
    return err.message.includes("recovering");
  }
}

/** Deletes every sandbox through whichever controller leads. */
async function deleteEverything(controllers: ControllerProcess[]): Promise<void> {
  const live = controllers.filter((c) => c.running).map((c) => c.address);
  if (live.length === 0) return;
  const token = (await Deno.readTextFile(`${controllers[0].dataDir}/admin-token`)).trim();
  const client = connect({ endpoint: live, token });
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const all = await client.sandboxes.list({ allNamespaces: true }).catch(() => undefined);
      if (all !== undefined && all.length === 0) return;
      for (const s of all ?? []) {
        await client.sandboxes.delete(s.name, { namespace: s.namespace }).catch(() => {});
      }
      if (Date.now() > deadline) return;
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    client.close();
  }
}
