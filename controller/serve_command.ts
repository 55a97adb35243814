/**
 * `fsb controller serve`: the FastPath API, registry, store and lifecycle
 * loop, from flags to a running controller until SIGINT or SIGTERM.
 *
 * @module
 */
import { UsageError } from "../cli/usage_error.ts";
import { hostPortProblem } from "../proto/host_port.ts";
import {
  clearTextWarning,
  createServerLogger,
  durationFlag,
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
} from "./server_command.ts";

/** The usage line of `fsb controller serve`. */
export const SERVE_USAGE =
  `Usage: fsb controller serve [--listen ADDR] [--metrics-listen ADDR] [--store sqlite:PATH|etcd://H:P,...] [--advertise HOST:PORT] [--lease-ttl DURATION] [--data-dir DIR] [--mode fast|strong] [--agent-timeout DURATION] [--delete-grace DURATION] [--auth token|none] ${TLS_USAGE} ${LOG_USAGE} [-v N]`;

/** The flags of `fsb controller serve`. */
export const SERVE_FLAGS = {
  listen: { type: "string" },
  "metrics-listen": { type: "string" },
  store: { type: "string" },
  advertise: { type: "string" },
  "lease-ttl": { type: "string" },
  "data-dir": { type: "string" },
  mode: { type: "string" },
  "agent-timeout": { type: "string" },
  "delete-grace": { type: "string" },
  auth: { type: "string" },
  ...TLS_FLAGS,
  ...LOG_FLAGS,
} as const;

/**
 * Runs `fsb controller serve` with `args` (what follows `controller serve`):
 * serves until SIGINT or SIGTERM, then closes and resolves to 0. Bad flags
 * are a UsageError carrying the usage line.
 */
export async function controllerServe(args: string[], io: ServerIo): Promise<number> {
  const f = parseCommandFlags(args, SERVE_FLAGS, SERVE_USAGE);
  if (f.help) return printHelp(io, SERVE_USAGE);
  if (f.positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${f.positionals[0]}"`, { usage: SERVE_USAGE });
  }
  const mode = oneOf("mode", f.values.mode ?? "fast", ["fast", "strong"], SERVE_USAGE);
  const agentTimeoutMs = durationFlag(
    "agent-timeout",
    f.values["agent-timeout"] ?? "10s",
    SERVE_USAGE,
  );
  const deleteGraceMs = durationFlag(
    "delete-grace",
    f.values["delete-grace"] ?? "10s",
    SERVE_USAGE,
  );
  const advertise = f.values.advertise;
  if (advertise !== undefined) {
    const problem = hostPortProblem(advertise);
    if (problem !== undefined) {
      throw new UsageError(`Flag --advertise must be HOST:PORT: ${problem}, got "${advertise}"`, {
        usage: SERVE_USAGE,
      });
    }
  }
  const leaseMs = durationFlag("lease-ttl", f.values["lease-ttl"] ?? "2s", SERVE_USAGE);
  if (leaseMs < 2_000 || leaseMs % 1_000 !== 0) {
    throw new UsageError(
      `Flag --lease-ttl must be whole seconds, at least 2s (etcd's floor), got "${
        f.values["lease-ttl"]
      }"`,
      { usage: SERVE_USAGE },
    );
  }
  const auth = oneOf("auth", f.values.auth ?? "token", ["token", "none"], SERVE_USAGE);
  const tls = await tlsFiles(f.values, SERVE_USAGE);
  if (tls !== undefined && tls.cert === undefined) {
    throw new UsageError("Flag --tls-ca needs --tls-cert and --tls-key on a controller", {
      usage: SERVE_USAGE,
    });
  }
  const logger = await createServerLogger(f.verbose, f.values["log-format"], SERVE_USAGE);
  const { startController } = await loadModule<typeof import("./mod.ts")>(
    new URL("./mod.ts", import.meta.url).href,
  );
  const dataDir = f.values["data-dir"] ?? `${homeDir()}/.fsb/controller`;
  const handle = await startController({
    listen: f.values.listen ?? "0.0.0.0:9090",
    metricsListen: f.values["metrics-listen"] ?? "0.0.0.0:9091",
    store: f.values.store ?? "sqlite:",
    advertise,
    leaseSeconds: leaseMs / 1_000,
    dataDir,
    mode,
    agentTimeoutMs,
    deleteGraceMs,
    logger,
    metricsRegistry: await metricsRegistry(),
    auth,
    tls: tls === undefined ? undefined : { cert: tls.cert!, key: tls.key!, ca: tls.ca },
  });
  io.stderr(await clearTextWarning(handle.address, tls));
  io.stdout(
    `fsb controller listening on ${handle.address} (metrics on ${handle.metricsAddress})\n` +
      (auth === "token"
        ? `admin token: ${dataDir}/admin-token; agents join with --join-token-file ${dataDir}/join-token\n`
        : "warning: --auth none: every call is accepted without a token\n"),
  );
  const sig = await untilSignal();
  logger.info({ signal: sig }, "shutting down");
  await handle.close();
  return 0;
}
