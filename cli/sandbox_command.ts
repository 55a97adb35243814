/**
 * `fsb sandbox ...`: the FastPath client (shared/DESIGN.md section 10).
 *
 * @module
 */
import { type ResolvedEndpoint, resolveEndpoint } from "./endpoint.ts";
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
  /** The process environment (`FSB_ENDPOINT`). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The working directory, for `./.fsb/config.json`. */
  readonly cwd: string;
  /** The home directory, for `~/.fsb/config.json`. */
  readonly home: string;
  /** Cancels the call in flight; ends `logs -f` with status 0. */
  readonly signal?: AbortSignal;
  /** Milliseconds since the epoch; `Date.now` unless given (AGE, `--expire 5m`). */
  readonly now?: () => number;
}

/**
 * Runs `fsb sandbox ARGS...` and resolves to the exit status: 0 ok, 1 the
 * request failed (`fsb: CODE_NAME: message` on stderr), 2 bad usage (the
 * message and a one-line usage on stderr). Help goes to stdout with status 0.
 *
 * The gRPC client is loaded only once the command line has been understood, so
 * help and usage errors cost no more than parsing.
 */
export async function sandboxCommand(args: readonly string[], io: CliIo): Promise<number> {
  let plan: SandboxPlan;
  let endpoint: ResolvedEndpoint;
  try {
    plan = parseSandboxArgs(args, { nowSec: Math.floor((io.now ?? Date.now)() / 1000) });
    if (plan.kind === "help") {
      io.stdout(plan.text);
      return 0;
    }
    endpoint = resolveEndpoint({ flag: plan.endpoint, env: io.env, cwd: io.cwd, home: io.home });
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr(`fsb: ${err.message}\n${err.usage === undefined ? "" : err.usage + "\n"}`);
    return 2;
  }
  if (plan.verbose >= 4) io.stderr(`fsb: endpoint ${endpoint.address} (${endpoint.source})\n`);
  const { runSandboxPlan } = await import("./_sandbox_run.ts");
  return runSandboxPlan(plan, endpoint, io);
}
