/**
 * `fsb up`: a controller and a local agent in one process, with zero setup:
 * the runtime is containerd when one answers (busybox seeded into it), else
 * plain processes, and the client config is written for the CLI.
 *
 * It lives with the agent because the agent's wiring already builds on the
 * controller's (logger, metrics, profiler); the controller's wiring knows
 * nothing of agents, and `up` keeps it so.
 *
 * @module
 */
import { UsageError } from "../cli/usage_error.ts";
import {
  createServerLogger,
  DEFAULT_CONTAINERD_SOCKET,
  homeDir,
  loadModule,
  LOG_FLAGS,
  LOG_USAGE,
  metricsRegistry,
  oneOf,
  parseCommandFlags,
  printHelp,
  type ServerIo,
  TLS_FLAGS,
  TLS_USAGE,
  tlsFiles,
  untilSignal,
  wholeNumber,
  withUsage,
} from "../controller/server_command.ts";
import {
  createAgentRuntime,
  ISOLATION_FLAGS,
  ISOLATION_USAGE,
  isolationOptions,
} from "./runtime_setup.ts";

/** The usage line of `fsb up`. */
export const UP_USAGE =
  `Usage: fsb up [--listen ADDR] [--metrics-listen ADDR] [--agent-listen ADDR] [--data-dir DIR] [--runtime process|containerd] [--containerd-socket PATH] [--pool P] [-n NS] [--capacity N] [--mode fast|strong] ${TLS_USAGE} ${ISOLATION_USAGE} ${LOG_USAGE} [-v N]`;

/** The flags of `fsb up`. */
export const UP_FLAGS = {
  listen: { type: "string" },
  "metrics-listen": { type: "string" },
  "agent-listen": { type: "string" },
  "data-dir": { type: "string" },
  runtime: { type: "string" },
  "containerd-socket": { type: "string" },
  pool: { type: "string" },
  namespace: { type: "string", short: "n" },
  capacity: { type: "string" },
  mode: { type: "string" },
  image: { type: "string", multiple: true },
  ...TLS_FLAGS,
  ...LOG_FLAGS,
  ...ISOLATION_FLAGS,
} as const;

/** Whether a containerd answers on `socket`. */
async function containerdAnswers(socket: string): Promise<boolean> {
  try {
    await Deno.stat(socket);
  } catch {
    return false;
  }
  const { ContainerdRuntime } = await loadModule<typeof import("./containerd/mod.ts")>(
    new URL("./containerd/mod.ts", import.meta.url).href,
  );
  // The probe only asks containerd for its version; the state dir is never touched.
  const rt = new ContainerdRuntime({ socket, stateDir: `${homeDir()}/.fsb/agent/containerd` });
  try {
    return await rt.ready();
  } finally {
    await rt.close();
  }
}

/**
 * Writes `~/.fsb/config.json` (mode 0600: it holds a secret) for the CLI, so
 * that after `fsb up` the client commands need no flags. Resolves to its path.
 */
async function writeClientConfig(
  config: { endpoint: string; token: string; tlsCa?: string },
): Promise<string> {
  const dir = `${homeDir()}/.fsb`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/config.json`;
  await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
  await Deno.chmod(`${path}.tmp`, 0o600);
  await Deno.rename(`${path}.tmp`, path);
  return path;
}

/**
 * Runs `fsb up` with `args` (what follows `up`): serves until SIGINT or
 * SIGTERM, then closes the agent and the controller and resolves to 0. Bad
 * flags are a UsageError carrying the usage line.
 */
export async function up(args: string[], io: ServerIo): Promise<number> {
  const f = parseCommandFlags(args, UP_FLAGS, UP_USAGE);
  if (f.help) return printHelp(io, UP_USAGE);
  if (f.positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${f.positionals[0]}"`, { usage: UP_USAGE });
  }
  const mode = oneOf("mode", f.values.mode ?? "fast", ["fast", "strong"], UP_USAGE);
  const capacity = wholeNumber("capacity", f.values.capacity ?? "5", UP_USAGE);
  const socket = f.values["containerd-socket"] ?? DEFAULT_CONTAINERD_SOCKET;
  let runtimeKind: "process" | "containerd";
  let why: string;
  if (f.values.runtime !== undefined) {
    runtimeKind = oneOf("runtime", f.values.runtime, ["process", "containerd"], UP_USAGE);
    why = "as asked";
  } else if (await containerdAnswers(socket)) {
    runtimeKind = "containerd";
    why = `containerd answers on ${socket}`;
  } else {
    runtimeKind = "process";
    why =
      `no containerd answers on ${socket}; sandboxes are plain host processes, isolated from nothing`;
  }
  // Read before anything starts, so that a bad flag leaves nothing running.
  const isolation = withUsage(() => isolationOptions(f.values), UP_USAGE);
  if (isolation.warm !== undefined && runtimeKind === "process") {
    throw new UsageError(
      `Flag --warm needs containerd (${why}): the process runtime keeps no warm pools`,
      { usage: UP_USAGE },
    );
  }
  const logger = await createServerLogger(f.verbose, f.values["log-format"], UP_USAGE);
  const dataDir = f.values["data-dir"] ?? `${homeDir()}/.fsb`;
  const registry = await metricsRegistry();
  const tls = await tlsFiles(f.values, UP_USAGE);
  const { startController } = await loadModule<typeof import("../controller/mod.ts")>(
    new URL("../controller/mod.ts", import.meta.url).href,
  );
  const { AgentServer } = await loadModule<typeof import("./mod.ts")>(
    new URL("./mod.ts", import.meta.url).href,
  );
  const handle = await startController({
    listen: f.values.listen ?? "127.0.0.1:9090",
    metricsListen: f.values["metrics-listen"] ?? "127.0.0.1:9091",
    store: "sqlite:",
    dataDir: `${dataDir}/controller`,
    mode,
    agentTimeoutMs: 10_000,
    logger,
    metricsRegistry: registry,
    tls: tls?.cert === undefined ? undefined : { cert: tls.cert, key: tls.key!, ca: tls.ca },
  });
  const { runtime, notes } = await createAgentRuntime({
    kind: runtimeKind,
    dataDir: `${dataDir}/agent`,
    socket,
    images: f.values.image.length > 0 ? f.values.image : ["busybox"],
    logger,
    isolation,
  });
  const agent = new AgentServer({
    controller: handle.address.replace(/^0\.0\.0\.0:/, "127.0.0.1:"),
    listen: f.values["agent-listen"] ?? "127.0.0.1:5758",
    advertise: "127.0.0.1",
    id: `local-${Deno.hostname()}`,
    pool: f.values.pool ?? "default-pool",
    namespace: f.values.namespace ?? "default",
    capacity,
    runtime,
    dataDir: `${dataDir}/agent`,
    logger,
    metricsRegistry: registry,
    logMaxBytes: isolation.logMaxBytes,
    joinToken: (await Deno.readTextFile(`${dataDir}/controller/join-token`)).trim(),
    tls,
    profile: (await loadModule<typeof import("../controller/profiler.ts")>(
      new URL("../controller/profiler.ts", import.meta.url).href,
    )).captureProfile,
  });
  const seeded = runtimeKind === "containerd"
    ? await (await loadModule<typeof import("./containerd/seed_busybox.ts")>(
      new URL("./containerd/seed_busybox.ts", import.meta.url).href,
    )).seedBusybox(runtime, socket)
    : "";
  await agent.start();
  const tlsCa = f.values["tls-ca"];
  const config = await writeClientConfig({
    endpoint: handle.address.replace(/^0\.0\.0\.0:/, "127.0.0.1:"),
    token: (await Deno.readTextFile(`${dataDir}/controller/admin-token`)).trim(),
    ...(tlsCa === undefined ? {} : { tlsCa: await Deno.realPath(tlsCa) }),
  });
  for (const note of notes) io.stderr(`${note}\n`);
  io.stdout(
    seeded +
      `fsb up: controller on ${handle.address}, metrics on http://${handle.metricsAddress}/metrics, ` +
      `agent on ${agent.address}\n` +
      `runtime: ${runtimeKind} (${why}); data in ${dataDir}\n` +
      `client config (endpoint, admin token): ${config}\n` +
      `dashboard: http://${handle.metricsAddress}/dashboard (log in with the admin token)\n` +
      `try: fsb sandbox create demo --image busybox -- sh -c 'echo hello; sleep 60'\n`,
  );
  const sig = await untilSignal();
  logger.info({ signal: sig }, "shutting down");
  await agent.close();
  await handle.close();
  return 0;
}
