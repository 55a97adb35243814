/**
 * What the server commands (`fsb controller serve`, `fsb agent run`,
 * `fsb up`) share: their log and TLS flags, flag checks that carry the
 * command's usage line, the logger, the metrics registry and the wait for a
 * signal.
 *
 * This module loads nothing heavy when imported: `fsb completion` reads the
 * flag specs through it, and pino, prom-client and the HTTP server load only
 * when a server starts.
 *
 * @module
 */
import type { Logger } from "pino";
import { type FlagSpec, type ParsedFlags, parseFlags } from "../cli/flags.ts";
import { logDestination, resolveLogFormat } from "../cli/log_format.ts";
import { parseDuration } from "../cli/parse_duration.ts";
import { UsageError } from "../cli/usage_error.ts";
import type { HttpHandle } from "./_http.ts";
import type { Registry } from "prom-client";

/** Where a server command writes. */
export interface ServerIo {
  stdout(s: string): void;
  stderr(s: string): void;
}

/** The usage text of {@linkcode TLS_FLAGS}. */
export const TLS_USAGE = "[--tls-cert FILE --tls-key FILE] [--tls-ca FILE]";

/** The usage text of {@linkcode LOG_FLAGS}. */
export const LOG_USAGE = "[--log-format json|pretty]";

/** TLS flags of every server command. */
export const TLS_FLAGS = {
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-ca": { type: "string" },
} as const;

/** Log flags of every server command. */
export const LOG_FLAGS = { "log-format": { type: "string" } } as const;

/** The containerd socket when `--containerd-socket` is not given. */
export const DEFAULT_CONTAINERD_SOCKET = "/run/containerd/containerd.sock";

/**
 * Imports a server-side module. The specifier goes through a variable so that
 * Deno does not resolve the servers' module graph (grpc-js, prom-client,
 * pino) before a server starts; `deno task compile` names these modules with
 * --include instead. A relative specifier resolves against this file: pass
 * `new URL(path, import.meta.url).href` from elsewhere.
 */
export function loadModule<T>(specifier: string): Promise<T> {
  return import(specifier);
}

/** The user's home directory (the working directory when HOME is unset). */
export function homeDir(): string {
  return Deno.env.get("HOME") ?? Deno.cwd();
}

/** Prints `text` as a command's help; resolves to exit code 0. */
export function printHelp(io: ServerIo, text: string): number {
  io.stdout(`${text}\n`);
  return 0;
}

/** Parses `args` against `spec`; a UsageError carries `usage`. */
export function parseCommandFlags<const S extends FlagSpec>(
  args: string[],
  spec: S,
  usage: string,
): ParsedFlags<S> {
  try {
    return parseFlags(args, spec);
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(err.message, { usage });
    throw err;
  }
}

/** `value` when it is one of `allowed`, else a UsageError naming `--flag`. */
export function oneOf<T extends string>(
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

/** `value` as a whole number, else a UsageError naming `--flag`. */
export function wholeNumber(flag: string, value: string, usage: string): number {
  if (!/^\d+$/.test(value)) {
    throw new UsageError(`Flag --${flag} needs a whole number, got "${value}"`, { usage });
  }
  return Number(value);
}

/** `value` as milliseconds, else a UsageError naming `--flag`. */
export function durationFlag(flag: string, value: string, usage: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new UsageError(`Flag --${flag}: ${(err as Error).message}`, { usage });
  }
}

/** Runs `fn`, giving a UsageError it throws the command's usage line. */
export function withUsage<T>(fn: () => T, usage: string): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof UsageError && err.usage === undefined) {
      throw new UsageError(err.message, { usage });
    }
    throw err;
  }
}

/** The secret in `path` (trimmed), or undefined when no path is given. */
export async function readSecretFile(
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

/** Reads the TLS flags' files; cert and key go together. */
export async function tlsFiles(
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

/**
 * pino on stderr: `-v` 0 info, 2 timing breakdowns, 4 debug, 5+ trace;
 * `--log-format json|pretty` (default: pretty on a terminal, JSON otherwise).
 */
export async function createServerLogger(
  verbose: number,
  logFormat: string | undefined,
  usage: string,
): Promise<Logger<"timing">> {
  const format = resolveLogFormat(logFormat, Deno.stderr.isTerminal(), usage);
  const { pino } = await loadModule<typeof import("pino")>("pino");
  const level = verbose >= 5 ? "trace" : verbose >= 4 ? "debug" : verbose >= 2 ? "timing" : "info";
  return pino(
    { level, customLevels: { timing: 25 }, base: { pid: Deno.pid } },
    logDestination(format, pino.destination({ fd: 2, sync: false }), {
      color: Deno.stderr.isTerminal() && Deno.env.get("NO_COLOR") === undefined,
    }),
  );
}

/** The process-wide metrics registry (with the process metrics). */
export async function metricsRegistry(): Promise<Registry> {
  const { processMetricsRegistry } = await loadModule<typeof import("./metrics.ts")>(
    "./metrics.ts",
  );
  return processMetricsRegistry();
}

/** A warning for a listener that is not on loopback and carries tokens in clear. */
export async function clearTextWarning(address: string, tls: unknown): Promise<string> {
  const { isLoopback } = await loadModule<typeof import("./_http.ts")>("./_http.ts");
  return tls !== undefined || isLoopback(address)
    ? ""
    : `warning: ${address} is not on loopback and has no TLS (--tls-cert, --tls-key): tokens travel in clear\n`;
}

/** Serves an agent's `/metrics` and profiles on `listen` (see `--metrics-listen`). */
export async function serveAgentMetrics(
  listen: string,
  opts: Parameters<typeof import("./_http.ts").serveAgentMetrics>[1],
): Promise<HttpHandle> {
  const http = await loadModule<typeof import("./_http.ts")>("./_http.ts");
  return await http.serveAgentMetrics(listen, opts);
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: Deno.Signal) => () => resolve(sig);
    Deno.addSignalListener("SIGINT", on("SIGINT"));
    Deno.addSignalListener("SIGTERM", on("SIGTERM"));
  });
}
