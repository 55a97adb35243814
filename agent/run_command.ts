/**
 * `fsb agent run`: an agent that registers with a controller and runs
 * sandboxes, from flags to a running agent until SIGINT or SIGTERM.
 *
 * The agent's wiring reaches into the controller's server plumbing (logger,
 * metrics registry, profiler, metrics port) and never the other way round.
 *
 * @module
 */
import { UsageError } from "../cli/usage_error.ts";
import {
  clearTextWarning,
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
  readSecretFile,
  serveAgentMetrics,
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

/** The usage line of `fsb agent run`. */
export const AGENT_USAGE =
  `Usage: fsb agent run --controller ADDR[,ADDR...] [--listen ADDR] [--advertise HOST] [--id ID] [--pool P] [-n NS] [--capacity N] [--runtime process|containerd] [--containerd-socket PATH] [--data-dir DIR] [--image REF]... [--join-token-file FILE] [--metrics-listen ADDR] ${TLS_USAGE} ${ISOLATION_USAGE} ${LOG_USAGE} [-v N]`;

/** The flags of `fsb agent run`. */
export const AGENT_FLAGS = {
  controller: { type: "string" },
  listen: { type: "string" },
  advertise: { type: "string" },
  id: { type: "string" },
  pool: { type: "string" },
  namespace: { type: "string", short: "n" },
  capacity: { type: "string" },
  runtime: { type: "string" },
  "containerd-socket": { type: "string" },
  "data-dir": { type: "string" },
  image: { type: "string", multiple: true },
  "join-token-file": { type: "string" },
  "metrics-listen": { type: "string" },
  ...TLS_FLAGS,
  ...LOG_FLAGS,
  ...ISOLATION_FLAGS,
} as const;

/**
 * Runs `fsb agent run` with `args` (what follows `agent run`): serves until
 * SIGINT or SIGTERM, then closes and resolves to 0. Bad flags are a
 * UsageError carrying the usage line.
 */
export async function agentRun(args: string[], io: ServerIo): Promise<number> {
  const f = parseCommandFlags(args, AGENT_FLAGS, AGENT_USAGE);
  if (f.help) return printHelp(io, AGENT_USAGE);
  if (f.positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${f.positionals[0]}"`, { usage: AGENT_USAGE });
  }
  if (f.values.controller === undefined) {
    throw new UsageError("Flag --controller is required", { usage: AGENT_USAGE });
  }
  const runtimeKind = oneOf(
    "runtime",
    f.values.runtime ?? "containerd",
    ["process", "containerd"],
    AGENT_USAGE,
  );
  const capacity = wholeNumber("capacity", f.values.capacity ?? "5", AGENT_USAGE);
  const logger = await createServerLogger(f.verbose, f.values["log-format"], AGENT_USAGE);
  const dataDir = f.values["data-dir"] ?? `${homeDir()}/.fsb/agent`;
  const isolation = withUsage(() => isolationOptions(f.values), AGENT_USAGE);
  const { runtime, notes } = await createAgentRuntime({
    kind: runtimeKind,
    dataDir,
    socket: f.values["containerd-socket"] ?? DEFAULT_CONTAINERD_SOCKET,
    images: f.values.image,
    logger,
    isolation,
    controller: f.values.controller,
  });
  const { AgentServer } = await loadModule<typeof import("./mod.ts")>(
    new URL("./mod.ts", import.meta.url).href,
  );
  const { captureProfile } = await loadModule<typeof import("../controller/profiler.ts")>(
    new URL("../controller/profiler.ts", import.meta.url).href,
  );
  const registry = await metricsRegistry();
  const agent = new AgentServer({
    controller: f.values.controller,
    listen: f.values.listen ?? "0.0.0.0:5758",
    advertise: f.values.advertise,
    id: f.values.id ?? Deno.hostname(),
    pool: f.values.pool ?? "default-pool",
    namespace: f.values.namespace ?? "default",
    capacity,
    runtime,
    dataDir,
    logger,
    metricsRegistry: registry,
    logMaxBytes: isolation.logMaxBytes,
    joinToken: await readSecretFile(f.values["join-token-file"], AGENT_USAGE),
    tls: await tlsFiles(f.values, AGENT_USAGE),
    profile: captureProfile,
  });
  await agent.start();
  // Off unless asked: /metrics is open, and a fixed port would clash between agents on a host.
  const metricsListen = f.values["metrics-listen"] ?? "";
  const metrics = metricsListen === "" ? undefined : await serveAgentMetrics(metricsListen, {
    registry,
    admit: (headers) => agent.admit(headers),
    profile: captureProfile,
  });
  for (const note of notes) io.stderr(`${note}\n`);
  io.stderr(await clearTextWarning(agent.address, f.values["tls-cert"]));
  io.stdout(
    `fsb agent ${
      f.values.id ?? Deno.hostname()
    } listening on ${agent.address} (runtime ${runtime.name})\n`,
  );
  const sig = await untilSignal();
  logger.info({ signal: sig }, "shutting down");
  await metrics?.close();
  await agent.close();
  return 0;
}
