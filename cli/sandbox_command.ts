/**
 * `fsb sandbox ...`: the FastPath client (shared/DESIGN.md section 10).
 *
 * @module
 */
import { type ClientConfig, resolveClientConfig } from "./client_config.ts";
import { parseSandboxArgs, type SandboxPlan } from "./parse_sandbox_args.ts";
import { UsageError } from "./usage_error.ts";

/**
 * Everything a command touches outside itself, so that tests can run it in
 * process. {@linkcode denoCliIo} builds the real one.
 */
export interface CliIo {
  /** Writes text to standard output (tables, JSON, help). */
  readonly stdout: (s: string) => void;
  /** Writes raw bytes to standard output (`logs`); awaited before the next chunk. */
  readonly stdoutBytes: (b: Uint8Array) => Promise<void> | void;
  /** Writes text to standard error (errors, usage, timings). */
  readonly stderr: (s: string) => void;
  /** The process environment (`FSB_ENDPOINT`, `FSB_TOKEN`, `FSB_TLS_CA`). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /**
   * The home directory, for `~/.fsb/config.json`. No config is read from the
   * working directory, so that a cloned repository cannot redirect the CLI.
   */
  readonly home: string;
  /** Cancels the call in flight; ends `logs -f` with status 0. */
  readonly signal?: AbortSignal;
  /** Milliseconds since the epoch; `Date.now` unless given (AGE, `--expire 5m`). */
  readonly now?: () => number;
  /**
   * Writes raw bytes to standard error (`exec`); awaited before the next
   * chunk. Text goes through {@linkcode CliIo.stderr} when absent.
   */
  readonly stderrBytes?: (b: Uint8Array) => Promise<void> | void;
  /** Standard input, read only by `exec -i` and `cp -`; empty when absent. */
  readonly stdin?: AsyncIterable<Uint8Array>;
  /** The terminal fsb runs in, for `exec -t`; absent when there is none. */
  readonly terminal?: CliTerminal;
  /**
   * Calls `handler` on every `signal` the process gets, instead of the
   * default action, until the returned function is called. `exec` forwards
   * Ctrl-C with it and follows the terminal's size; without it, signals keep
   * their default action.
   */
  readonly onSignal?: (signal: CliSignal, handler: () => void) => () => void;
}

/** The process signals fsb handles itself while a command runs in a sandbox. */
export type CliSignal = "SIGINT" | "SIGTERM" | "SIGWINCH";

/** The local terminal, behind an interface so that tests can see what `exec -t` does to it. */
export interface CliTerminal {
  /** Whether stdin is a terminal: raw mode needs one. */
  readonly stdinIsTerminal: boolean;
  /**
   * Raw mode on or off (`Deno.stdin.setRaw`): keys, Ctrl-C included, go to
   * the command as bytes, unechoed. Whoever turns it on turns it off on every
   * way out.
   */
  setRaw(raw: boolean): void;
  /** The terminal's size (`Deno.consoleSize`), or undefined when there is none. */
  size(): { readonly cols: number; readonly rows: number } | undefined;
}

/**
 * Runs `fsb sandbox ARGS...` and resolves to the exit status: 0 ok, 1 the
 * request failed (`fsb: CODE_NAME: message` on stderr), 2 bad usage (the
 * message and a one-line usage on stderr). Help goes to stdout with status 0.
 * `exec`, `attach` and `wait` resolve to the command's exit status instead,
 * and to 125 when the request failed.
 *
 * The gRPC client is loaded only once the command line has been understood, so
 * help and usage errors cost no more than parsing.
 */
export async function sandboxCommand(args: readonly string[], io: CliIo): Promise<number> {
  let plan: SandboxPlan;
  let config: ClientConfig;
  try {
    plan = parseSandboxArgs(args, { nowSec: Math.floor((io.now ?? Date.now)() / 1000) });
    if (plan.kind === "help") {
      io.stdout(plan.text);
      return 0;
    }
    config = resolveClientConfig({ flags: plan, env: io.env, home: io.home });
  } catch (err) {
    return usageFailure(err, io);
  }
  if (plan.verbose >= 4) debugConfig(config, io);
  switch (plan.kind) {
    case "exec":
    case "attach":
    case "ps":
    case "kill":
    case "wait":
    case "cp": {
      const { runExecPlan } = await import("./_exec_run.ts");
      return runExecPlan(plan, config, io);
    }
    default: {
      const { runSandboxPlan } = await import("./_sandbox_run.ts");
      return runSandboxPlan(plan, config, io);
    }
  }
}

/**
 * Prints a {@linkcode UsageError} with its one-line usage and returns 2;
 * rethrows anything else.
 */
export function usageFailure(err: unknown, io: CliIo): number {
  if (!(err instanceof UsageError)) throw err;
  io.stderr(`fsb: ${err.message}\n${err.usage === undefined ? "" : err.usage + "\n"}`);
  return 2;
}

/** `-v 4`: where the endpoint, token and CA came from (never the token itself). */
export function debugConfig(config: ClientConfig, io: CliIo): void {
  const { endpoint, token, tlsCa } = config;
  io.stderr(
    `fsb: endpoint ${endpoint.address} (${endpoint.source}), ${
      token === undefined ? "no token" : `token from ${token.source}`
    }, ${tlsCa === undefined ? "no TLS" : `TLS CA ${tlsCa.path} (${tlsCa.source})`}\n`,
  );
}
