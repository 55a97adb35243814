/**
 * Starts a real containerd (Debian's 1.6 package) for a test, with a config of
 * its own: root, state and sockets under a fresh temporary directory, the CRI
 * plugin off. Never touches /var/lib/containerd or /run/containerd's socket.
 *
 * @module
 */
import { join } from "node:path";
import { ContainerdClient } from "../../agent/containerd/mod.ts";

/** A running containerd started by {@linkcode startContainerd}. */
export interface ContainerdServer {
  /** Path of its gRPC socket. */
  readonly socket: string;
  /** The temporary directory holding its root, state, sockets and log. */
  readonly root: string;
  /** containerd's own log so far (stdout and stderr), for failure messages. */
  log(): Promise<string>;
  /**
   * Kills every task in every namespace, stops containerd, kills any shim it
   * leaves, unmounts what is mounted under `root`, and removes `root`.
   */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

/** Starts containerd and resolves once its Version service answers. */
export async function startContainerd(): Promise<ContainerdServer> {
  // Short, because unix socket paths are limited to 107 bytes.
  const root = await Deno.makeTempDir({ prefix: "fsb-ctrd-" });
  const socket = join(root, "c.sock");
  const config = join(root, "config.toml");
  const logPath = join(root, "containerd.log");
  await Deno.writeTextFile(
    config,
    [
      "version = 2",
      `root = "${join(root, "root")}"`,
      `state = "${join(root, "state")}"`,
      `disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
      "[grpc]",
      `  address = "${socket}"`,
      "[ttrpc]",
      `  address = "${socket}.ttrpc"`,
      "[debug]",
      `  address = ""`,
      `  level = "info"`,
      "[metrics]",
      `  address = ""`,
      `[plugins."io.containerd.internal.v1.opt"]`,
      `  path = "${join(root, "opt")}"`,
      "",
    ].join("\n"),
  );
  // exec keeps containerd's pid, so killing the child kills containerd itself.
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec containerd --config "$1" >"$2" 2>&1', "sh", config, logPath],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const server: ContainerdServer = {
    socket,
    root,
    log: () => Deno.readTextFile(logPath).catch(() => ""),
    stop: () => stop(child, { socket, root }),
  };
  try {
    await waitReady(socket, child);
  } catch (err) {
    const log = await server.log();
    await server.stop();
    throw new Error(`containerd did not start: ${(err as Error).message}\n${log.slice(-3000)}`);
  }
  return server;
}

async function waitReady(socket: string, child: Deno.ChildProcess): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited) throw new Error("containerd exited");
    if (await exists(socket)) {
      const client = new ContainerdClient(socket);
      try {
        await client.version.version({}, { timeoutMs: 1000 });
        return;
      } catch {
        // Not serving yet.
      } finally {
        client.close();
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no answer on ${socket} within ${READY_TIMEOUT_MS} ms`);
}

async function stop(
  child: Deno.ChildProcess,
  { socket, root }: { socket: string; root: string },
): Promise<void> {
  await killTasks(socket).catch(() => {});
  try {
    child.kill("SIGTERM");
  } catch {
    // Already gone.
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, STOP_TIMEOUT_MS);
  await child.status;
  clearTimeout(timer);
  await killShims(socket);
  await unmountUnder(root);
  await Deno.remove(root, { recursive: true }).catch(() => {});
}

/** Kills and deletes every task and container, so shims exit and runc state goes. */
async function killTasks(socket: string): Promise<void> {
  const admin = new ContainerdClient(socket, { timeoutMs: 5000 });
  try {
    const { namespaces } = await admin.namespaces.list({});
    for (const { name } of namespaces) {
      const client = new ContainerdClient(socket, { namespace: name, timeoutMs: 5000 });
      try {
        const { tasks } = await client.tasks.list({});
        await Promise.all(tasks.map(async (task) => {
          // containerd names a task by its container's id in `id`.
          const containerId = task.containerId || task.id;
          await client.tasks.kill({ containerId, signal: 9, all: true }).catch(() => {});
          await client.tasks.wait({ containerId }).catch(() => {});
          await client.tasks.delete({ containerId }).catch(() => {});
        }));
        const { containers } = await client.containers.list({});
        for (const c of containers) await client.containers.delete({ id: c.id }).catch(() => {});
      } finally {
        client.close();
      }
    }
  } finally {
    admin.close();
  }
}

/** SIGKILLs shims started for this containerd (their command line names its socket) and their children. */
async function killShims(socket: string): Promise<void> {
  const procs = await processes();
  const shims = procs.filter((p) =>
    p.cmdline.includes("containerd-shim") && p.cmdline.includes(socket)
  );
  const doomed = new Set(shims.map((p) => p.pid));
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of procs) {
      if (!doomed.has(p.pid) && doomed.has(p.ppid)) {
        doomed.add(p.pid);
        grew = true;
      }
    }
  }
  for (const pid of doomed) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

async function processes(): Promise<{ pid: number; ppid: number; cmdline: string }[]> {
  const out: { pid: number; ppid: number; cmdline: string }[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmdline = (await Deno.readTextFile(`/proc/${entry.name}/cmdline`)).replaceAll(
        "\0",
        " ",
      );
      out.push({ pid: Number(entry.name), ppid, cmdline });
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

/** Unmounts (lazily, deepest first) every mount point under `root`. */
async function unmountUnder(root: string): Promise<void> {
  const text = await Deno.readTextFile("/proc/self/mountinfo");
  const points = text.split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p) => p !== undefined && (p === root || p.startsWith(`${root}/`)))
    .sort((a, b) => b.length - a.length);
  for (const point of points) {
    await new Deno.Command("umount", { args: ["-l", point], stdout: "null", stderr: "null" })
      .output();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
