/**
 * `fsb`: the one program. Each command loads only what it needs, so the
 * client stays quick to start.
 *
 * @module
 */
import { type FlagSpec, type ParsedFlags, parseFlags } from "./cli/flags.ts";
import { parseDuration } from "./cli/parse_duration.ts";
import { UsageError } from "./cli/usage_error.ts";
import {
  createAgentRuntime,
  ISOLATION_FLAGS,
  ISOLATION_USAGE,
  isolationOptions,
} from "./agent/runtime_setup.ts";
import type { Logger } from "pino";
import { logDestination, resolveLogFormat } from "./cli/log_format.ts";

/** The version printed by `fsb version`. */
export const VERSION = "0.1.0";

const USAGE = `Usage: fsb <command> [flags]

Commands:
  up                  controller and a local agent in one process (zero setup)
  controller serve    the FastPath API, registry, store and lifecycle loop
  agent run           an agent: registers with a controller and runs sandboxes
  sandbox ...         create|get|list|delete|update|reset|logs sandboxes;
                      exec|attach|ps|kill|cp|wait inside them
  token ...           create|list|revoke access tokens (admin)
  debug ...           profile|flamegraph: CPU profiles and heap snapshots (admin)
  completion SHELL    print a bash or zsh completion script
  image import FILE   import an OCI archive into the agent's containerd
  image pull REF      pull an image from a registry into the agent's containerd
  version             print the version
  help                print this help

Run "fsb <command> --help" for a command's flags.`;

const TLS_USAGE = "[--tls-cert FILE --tls-key FILE] [--tls-ca FILE]";
const LOG_USAGE = "[--log-format json|pretty]";

const SHORT_USAGE =
  `Usage: fsb <up|controller serve|agent run|sandbox|token|image import|image pull|debug|completion|version|help> [flags]`;

const UP_USAGE =
  `Usage: fsb up [--listen ADDR] [--metrics-listen ADDR] [--agent-listen ADDR] [--data-dir DIR] [--runtime process|containerd] [--containerd-socket PATH] [--pool P] [-n NS] [--capacity N] [--mode fast|strong] ${TLS_USAGE} ${ISOLATION_USAGE} ${LOG_USAGE} [-v N]`;
const SERVE_USAGE =
  `Usage: fsb controller serve [--listen ADDR] [--metrics-listen ADDR] [--store sqlite:PATH|etcd://H:P,...] [--data-dir DIR] [--mode fast|strong] [--agent-timeout DURATION] [--delete-grace DURATION] [--auth token|none] ${TLS_USAGE} ${LOG_USAGE} [-v N]`;
const AGENT_USAGE =
  `Usage: fsb agent run --controller ADDR [--listen ADDR] [--advertise HOST] [--id ID] [--pool P] [-n NS] [--capacity N] [--runtime process|containerd] [--containerd-socket PATH] [--data-dir DIR] [--image REF]... [--join-token-file FILE] [--metrics-listen ADDR] ${TLS_USAGE} ${ISOLATION_USAGE} ${LOG_USAGE} [-v N]`;
const IMAGE_USAGE = `Usage: fsb image import FILE.tar [--containerd-socket PATH] [-v N]`;

const DEFAULT_SOCKET = "/run/containerd/containerd.sock";

/**
 * Imports a server-side module. The specifier goes through a variable so that
 * Deno does not resolve the servers' module graph (grpc-js, prom-client,
 * pino) on every start of the client; `deno task compile` names these
 * modules with --include instead.
 */
function load<T>(specifier: string): Promise<T> {
  return import(specifier);
}

/** Where a command writes, and what it may read of its environment. */
interface Io {
  stdout(s: string): void;
  stderr(s: string): void;
}

const io: Io = {
  stdout: (s) => Deno.stdout.writeSync(new TextEncoder().encode(s)),
  stderr: (s) => Deno.stderr.writeSync(new TextEncoder().encode(s)),
};

function home(): string {
  return Deno.env.get("HOME") ?? Deno.cwd();
}

/**
 * pino on stderr: `-v` 0 info, 2 timing breakdowns, 4 debug, 5+ trace;
 * `--log-format json|pretty` (default: pretty on a terminal, JSON otherwise).
 */
async function createLogger(
  verbose: number,
  logFormat: string | undefined,
  usage: string,
): Promise<Logger<"timing">> {
  const format = resolveLogFormat(logFormat, Deno.stderr.isTerminal(), usage);
  const { pino } = await load<typeof import("pino")>("pino");
  const level = verbose >= 5 ? "trace" : verbose >= 4 ? "debug" : verbose >= 2 ? "timing" : "info";
  return pino(
    { level, customLevels: { timing: 25 }, base: { pid: Deno.pid } },
    logDestination(format, pino.destination({ fd: 2, sync: false }), {
      color: Deno.stderr.isTerminal() && Deno.env.get("NO_COLOR") === undefined,
    }),
  );
}

/** Log flags of every server command. */
const LOG_FLAGS = { "log-format": { type: "string" } } as const;

function parse<const S extends FlagSpec>(args: string[], spec: S, usage: string): ParsedFlags<S> {
  try {
    return parseFlags(args, spec);
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(err.message, { usage });
    throw err;
  }
}

function oneOf<T extends string>(
  flag: string,
  value: string,
  allowed: readonly T[],
  usage: string,
): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`Flag --${flag} must be one of ${allowed.join(", ")}, got "${value}"`, {
    usage,
  });
}

function count(flag: string, value: string, usage: string): number {
  if (!/^\d+$/.test(value)) {
    throw new UsageError(`Flag --${flag} needs a whole number, got "${value}"`, { usage });
  }
  return Number(value);
}

/** The secret in `path` (trimmed), or undefined when no path is given. */
async function readSecretFile(
  path: string | undefined,
  usage: string,
): Promise<string | undefined> {
  if (path === undefined) return undefined;
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (err) {
    throw new UsageError(`Cannot read ${path}: ${(err as Error).message}`, { usage });
  }
}

/**
 * Writes `~/.fsb/config.json` (mode 0600: it holds a secret) for the CLI, so
 * that after `fsb up` the client commands need no flags. Resolves to its path.
 */
async function writeClientConfig(
  config: { endpoint: string; token: string; tlsCa?: string },
): Promise<string> {
  const dir = `${home()}/.fsb`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/config.json`;
  await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
  await Deno.chmod(`${path}.tmp`, 0o600);
  await Deno.rename(`${path}.tmp`, path);
  return path;
}

/** Runs `fn`, giving a UsageError it throws the command's usage line. */
function withUsage<T>(fn: () => T, usage: string): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof UsageError && err.usage === undefined) {
      throw new UsageError(err.message, { usage });
    }
    throw err;
  }
}

function duration(flag: string, value: string, usage: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new UsageError(`Flag --${flag}: ${(err as Error).message}`, { usage });
  }
}

/** Resolves on the first SIGINT or SIGTERM. */
function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: Deno.Signal) => () => resolve(sig);
    Deno.addSignalListener("SIGINT", on("SIGINT"));
    Deno.addSignalListener("SIGTERM", on("SIGTERM"));
  });
}

async function metricsRegistry() {
  const { processMetricsRegistry } = await load<typeof import("./controller/metrics.ts")>(
    "./controller/metrics.ts",
  );
  return processMetricsRegistry();
}

/** TLS flags of every server command. */
const TLS_FLAGS = {
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-ca": { type: "string" },
} as const;

/** Reads the TLS flags' files; cert and key go together. */
async function tlsFiles(
  values: { "tls-cert"?: string; "tls-key"?: string; "tls-ca"?: string },
  usage: string,
): Promise<{ cert?: string; key?: string; ca?: string } | undefined> {
  const certPath = values["tls-cert"];
  const keyPath = values["tls-key"];
  if ((certPath === undefined) !== (keyPath === undefined)) {
    throw new UsageError("Flags --tls-cert and --tls-key go together", { usage });
  }
  if (certPath === undefined && values["tls-ca"] === undefined) return undefined;
  const read = async (path: string | undefined) =>
    path === undefined ? undefined : await Deno.readTextFile(path).catch((err) => {
      throw new UsageError(`Cannot read ${path}: ${(err as Error).message}`, { usage });
    });
  return { cert: await read(certPath), key: await read(keyPath), ca: await read(values["tls-ca"]) };
}

/** A warning for a listener that is not on loopback and carries tokens in clear. */
async function clearTextWarning(address: string, tls: unknown): Promise<string> {
  const { isLoopback } = await load<typeof import("./controller/_http.ts")>(
    "./controller/_http.ts",
  );
  return tls !== undefined || isLoopback(address)
    ? ""
    : `warning: ${address} is not on loopback and has no TLS (--tls-cert, --tls-key): tokens travel in clear\n`;
}

const SERVE_FLAGS = {
  listen: { type: "string" },
  "metrics-listen": { type: "string" },
  store: { type: "string" },
  "data-dir": { type: "string" },
  mode: { type: "string" },
  "agent-timeout": { type: "string" },
  "delete-grace": { type: "string" },
  auth: { type: "string" },
  ...TLS_FLAGS,
  ...LOG_FLAGS,
} as const;

async function controllerServe(args: string[]): Promise<number> {
  const f = parse(args, SERVE_FLAGS, SERVE_USAGE);
  if (f.help) return help(SERVE_USAGE);
  if (f.positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${f.positionals[0]}"`, { usage: SERVE_USAGE });
  }
  const mode = oneOf("mode", f.values.mode ?? "fast", ["fast", "strong"], SERVE_USAGE);
  const agentTimeoutMs = duration("agent-timeout", f.values["agent-timeout"] ?? "10s", SERVE_USAGE);
  const deleteGraceMs = duration("delete-grace", f.values["delete-grace"] ?? "10s", SERVE_USAGE);
  const auth = oneOf("auth", f.values.auth ?? "token", ["token", "none"], SERVE_USAGE);
  const tls = await tlsFiles(f.values, SERVE_USAGE);
  if (tls !== undefined && tls.cert === undefined) {
    throw new UsageError("Flag --tls-ca needs --tls-cert and --tls-key on a controller", {
      usage: SERVE_USAGE,
    });
  }
  const logger = await createLogger(f.verbose, f.values["log-format"], SERVE_USAGE);
  const { startController } = await load<typeof import("./controller/mod.ts")>(
    "./controller/mod.ts",
  );
  const dataDir = f.values["data-dir"] ?? `${home()}/.fsb/controller`;
  const handle = await startController({
    listen: f.values.listen ?? "0.0.0.0:9090",
    metricsListen: f.values["metrics-listen"] ?? "0.0.0.0:9091",
    store: f.values.store ?? "sqlite:",
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

const AGENT_FLAGS = {
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

/** Whether a containerd answers on `socket`. */
async function containerdAnswers(socket: string): Promise<boolean> {
  try {
    await Deno.stat(socket);
  } catch {
    return false;
  }
  const { ContainerdRuntime } = await load<typeof import("./agent/containerd/mod.ts")>(
    "./agent/containerd/mod.ts",
  );
  // The probe only asks containerd for its version; the state dir is never touched.
  const rt = new ContainerdRuntime({ socket, stateDir: `${home()}/.fsb/agent/containerd` });
  try {
    return await rt.ready();
  } finally {
    await rt.close();
  }
}

async function agentRun(args: string[]): Promise<number> {
  const f = parse(args, AGENT_FLAGS, AGENT_USAGE);
  if (f.help) return help(AGENT_USAGE);
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
  const capacity = count("capacity", f.values.capacity ?? "5", AGENT_USAGE);
  const logger = await createLogger(f.verbose, f.values["log-format"], AGENT_USAGE);
  const dataDir = f.values["data-dir"] ?? `${home()}/.fsb/agent`;
  const isolation = withUsage(() => isolationOptions(f.values), AGENT_USAGE);
  const { runtime, notes } = await createAgentRuntime({
    kind: runtimeKind,
    dataDir,
    socket: f.values["containerd-socket"] ?? DEFAULT_SOCKET,
    images: f.values.image,
    logger,
    isolation,
    controller: f.values.controller,
  });
  const { AgentServer } = await load<typeof import("./agent/mod.ts")>("./agent/mod.ts");
  const { captureProfile } = await load<typeof import("./controller/profiler.ts")>(
    "./controller/profiler.ts",
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
  const { serveAgentMetrics } = await load<typeof import("./controller/_http.ts")>(
    "./controller/_http.ts",
  );
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

const UP_FLAGS = {
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

async function up(args: string[]): Promise<number> {
  const f = parse(args, UP_FLAGS, UP_USAGE);
  if (f.help) return help(UP_USAGE);
  if (f.positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${f.positionals[0]}"`, { usage: UP_USAGE });
  }
  const mode = oneOf("mode", f.values.mode ?? "fast", ["fast", "strong"], UP_USAGE);
  const capacity = count("capacity", f.values.capacity ?? "5", UP_USAGE);
  const socket = f.values["containerd-socket"] ?? DEFAULT_SOCKET;
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
  const logger = await createLogger(f.verbose, f.values["log-format"], UP_USAGE);
  const dataDir = f.values["data-dir"] ?? `${home()}/.fsb`;
  const registry = await metricsRegistry();
  const tls = await tlsFiles(f.values, UP_USAGE);
  const { startController } = await load<typeof import("./controller/mod.ts")>(
    "./controller/mod.ts",
  );
  const { AgentServer } = await load<typeof import("./agent/mod.ts")>("./agent/mod.ts");
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
  const isolation = withUsage(() => isolationOptions(f.values), UP_USAGE);
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
    profile: (await load<typeof import("./controller/profiler.ts")>("./controller/profiler.ts"))
      .captureProfile,
  });
  const seeded = runtimeKind === "containerd" ? await seedBusybox(runtime, socket) : "";
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

/**
 * No registry is needed to try fsb: when containerd lacks busybox, `fsb up`
 * builds the image from the host's static busybox and imports it.
 */
async function seedBusybox(
  runtime: { images(): Promise<string[]> },
  socket: string,
): Promise<string> {
  const busybox = "docker.io/library/busybox:latest";
  if ((await runtime.images()).includes(busybox)) return "";
  try {
    await Deno.stat("/usr/bin/busybox");
  } catch {
    return `note: containerd has no busybox image and /usr/bin/busybox is missing; import one with fsb image import\n`;
  }
  const { buildBusyboxImage, importImage } = await load<typeof import("./agent/containerd/mod.ts")>(
    "./agent/containerd/mod.ts",
  );
  const dir = await Deno.makeTempDir({ prefix: "fsb-busybox-" });
  try {
    await importImage(await buildBusyboxImage(dir), { socket, namespace: "fsb" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return `imported ${busybox}, built from /usr/bin/busybox\n`;
}

const IMAGE_FLAGS = { "containerd-socket": { type: "string" } } as const;

async function imageImport(args: string[]): Promise<number> {
  const f = parse(args, IMAGE_FLAGS, IMAGE_USAGE);
  if (f.help) return help(IMAGE_USAGE);
  if (f.positionals.length !== 1) {
    throw new UsageError("Expected one FILE.tar", { usage: IMAGE_USAGE });
  }
  const { importImage } = await load<typeof import("./agent/containerd/mod.ts")>(
    "./agent/containerd/mod.ts",
  );
  const names = await importImage(f.positionals[0], {
    socket: f.values["containerd-socket"] ?? DEFAULT_SOCKET,
    namespace: "fsb",
  });
  for (const name of names) io.stdout(`imported ${name}\n`);
  return 0;
}

function help(text: string): number {
  io.stdout(`${text}\n`);
  return 0;
}

/** Runs `fsb` with `args`; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  const [command, sub, ...rest] = args;
  try {
    switch (command) {
      case "sandbox": {
        const { sandboxCommand, denoCliIo } = await import("./cli/mod.ts");
        return await sandboxCommand(args.slice(1), denoCliIo());
      }
      case "controller":
        if (sub === "serve") return await controllerServe(rest);
        if (sub === "-h" || sub === "--help") return help(SERVE_USAGE);
        throw new UsageError(`Unknown command "controller ${sub ?? ""}"`, { usage: SERVE_USAGE });
      case "agent":
        if (sub === "run") return await agentRun(rest);
        if (sub === "-h" || sub === "--help") return help(AGENT_USAGE);
        throw new UsageError(`Unknown command "agent ${sub ?? ""}"`, { usage: AGENT_USAGE });
      case "up":
        return await up(args.slice(1));
      case "debug": {
        const { debugCommand, denoCliIo } = await import("./cli/mod.ts");
        return await debugCommand(args.slice(1), denoCliIo());
      }
      case "completion": {
        const { completionCommand, DEBUG_SPECS, denoCliIo } = await import("./cli/mod.ts");
        // Only this command reads the pull flags, so only it loads their module.
        const { IMAGE_PULL_FLAGS } = await load<
          typeof import("./agent/containerd/pull_command.ts")
        >(
          "./agent/containerd/pull_command.ts",
        );
        return await completionCommand(args.slice(1), denoCliIo(), {
          up: { flags: UP_FLAGS },
          controller: { commands: { serve: { flags: SERVE_FLAGS } } },
          agent: { commands: { run: { flags: AGENT_FLAGS } } },
          image: {
            commands: {
              import: { flags: IMAGE_FLAGS, args: "files" },
              pull: { flags: IMAGE_PULL_FLAGS },
            },
          },
          debug: {
            commands: {
              profile: { flags: DEBUG_SPECS.profile },
              flamegraph: { flags: DEBUG_SPECS.flamegraph, args: "files" },
            },
          },
          version: {},
          help: {},
        });
      }
      case "token": {
        const { tokenCommand, denoCliIo } = await import("./cli/mod.ts");
        return await tokenCommand(args.slice(1), denoCliIo());
      }
      case "image":
        if (sub === "import") return await imageImport(rest);
        if (sub === "pull") {
          const { imagePull } = await load<typeof import("./agent/containerd/mod.ts")>(
            "./agent/containerd/mod.ts",
          );
          return await imagePull(rest, io);
        }
        if (sub === "-h" || sub === "--help") return help(IMAGE_USAGE);
        throw new UsageError(`Unknown command "image ${sub ?? ""}"`, { usage: IMAGE_USAGE });
      case "version":
      case "--version":
        io.stdout(`fsb ${VERSION} (deno ${Deno.version.deno})\n`);
        return 0;
      case "help":
      case "-h":
      case "--help":
      case undefined:
        return help(USAGE);
      default:
        throw new UsageError(`Unknown command "${command}"`, { usage: SHORT_USAGE });
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`fsb: ${err.message}\n${err.usage ?? SHORT_USAGE}\n`);
      return 2;
    }
    io.stderr(`fsb: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
