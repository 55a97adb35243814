/**
 * `fsb debug ...`: looks inside a running fsb (shared/DESIGN.md section 16).
 * `profile` fetches a CPU profile or heap snapshot of the controller, or of
 * one agent through it, over the FastPath's admin-only Profile call;
 * `flamegraph` draws a `.cpuprofile` as a searchable SVG flame graph.
 *
 * Parsing is pure and light, as for `fsb sandbox` and `fsb token`: the
 * transport is loaded only once a call is to be made.
 *
 * @module
 */
import type { ProfileRequestInit } from "../proto/fastpath_lite.ts";
import {
  CONNECTION_FLAGS,
  CONNECTION_HELP,
  connectionFlags,
  resolveClientConfig,
} from "./client_config.ts";
import { type FlagSpec, parseFlags } from "./flags.ts";
import { type CallPlan, oneLineUsage } from "./parse_sandbox_args.ts";
import { type CliIo, debugConfig, usageFailure } from "./sandbox_command.ts";
import { UsageError } from "./usage_error.ts";

/** The subcommands of `fsb debug`. */
export type DebugSubcommand = "profile" | "flamegraph";

/** The longest CPU profile the controller takes, in seconds. */
export const MAX_PROFILE_SECONDS = 300;

/** How long a CPU profile samples when `--seconds` is not given. */
export const DEFAULT_PROFILE_SECONDS = 30;

/** Help text per subcommand, plus `debug` for the command group itself. */
export const debugUsage: Readonly<Record<DebugSubcommand | "debug", string>> = {
  debug: `Usage: fsb debug <profile|flamegraph> [flags]

Looks inside a running fsb: CPU profiles and heap snapshots of the controller or
of an agent, and flame graphs drawn from them.

Commands:
  profile -o FILE               fetch a CPU profile (--heap: a heap snapshot); admin token
  flamegraph FILE -o FILE.svg   draw a .cpuprofile as a searchable flame graph (SVG)

Run "fsb debug <command> -h" for a command's flags.
Exit status: 0 ok, 1 the request failed, 2 bad usage.
`,
  profile: `Usage: fsb debug profile -o FILE [--seconds N] [--agent ID] [--heap] [flags]

Samples the controller's CPU for N seconds and writes the V8 CPU profile
(.cpuprofile JSON) to FILE: open it in Chrome DevTools (Performance panel, "Load
profile") or draw it with fsb debug flamegraph. Needs an admin token. Prints a
one-line summary on stderr: bytes, and for a CPU profile samples and duration.

Flags:
  -o, --output FILE      where to write it; - for stdout (required)
      --seconds N        how long to sample, 1 to ${MAX_PROFILE_SECONDS} (default ${DEFAULT_PROFILE_SECONDS})
      --agent ID         profile this agent, through the controller
      --heap             a heap snapshot (.heapsnapshot JSON, DevTools' Memory panel)
                         instead; it holds the process's memory, secrets included
${CONNECTION_HELP}
`,
  flamegraph: `Usage: fsb debug flamegraph FILE.cpuprofile -o FILE.svg [--title TEXT] [--idle]

Draws a V8 CPU profile (- reads it from stdin) as a flame graph: one self-contained
SVG any browser opens. Width is samples, height is stack depth, frames merged by
function and location. Hover a frame for its function, location, samples and
percent; type a regular expression in the search box to highlight frames and see
the share of samples they cover; click a frame to zoom in, Escape to reset.

Flags:
  -o, --output FILE      where to write the SVG; - for stdout (required)
      --title TEXT       the heading (default: "Flame graph: FILE")
      --idle             keep V8's (idle) samples, time spent waiting (left out by default)
  -h, --help             show this help
`,
};

/** A parsed `fsb debug` command line. */
export type DebugPlan =
  | { readonly kind: "help"; readonly text: string }
  | ProfilePlan
  | FlamegraphPlan;

/** `fsb debug profile`: one Profile call, its bytes written to `output`. */
export type ProfilePlan = CallPlan & {
  readonly kind: "profile";
  readonly request: ProfileRequestInit & { readonly kind: "cpu" | "heap" };
  /** A file name, or `-` for stdout. */
  readonly output: string;
};

/** `fsb debug flamegraph`: reads `input`, writes the SVG to `output`. */
export interface FlamegraphPlan {
  readonly kind: "flamegraph";
  /** A `.cpuprofile` file, or `-` for stdin. */
  readonly input: string;
  /** A file name, or `-` for stdout. */
  readonly output: string;
  /** The heading of the SVG. */
  readonly title: string;
  /** Keep `(idle)` samples. */
  readonly idle: boolean;
  /** The `-v` level. */
  readonly verbose: number;
}

const OUTPUT = { output: { type: "string", short: "o" } } as const satisfies FlagSpec;

/** The words `fsb debug` takes for its subcommands (no aliases), for completion. */
export const DEBUG_ALIASES: Readonly<Record<string, DebugSubcommand>> = {
  profile: "profile",
  flamegraph: "flamegraph",
};

/** The flags of each subcommand, besides `-v` and `-h` (for parsing and completion). */
export const DEBUG_SPECS = {
  profile: {
    ...CONNECTION_FLAGS,
    ...OUTPUT,
    seconds: { type: "string" },
    agent: { type: "string" },
    heap: { type: "boolean" },
  },
  flamegraph: {
    ...OUTPUT,
    title: { type: "string" },
    idle: { type: "boolean" },
  },
} as const satisfies Record<DebugSubcommand, FlagSpec>;

/**
 * Parses the arguments that follow `fsb debug`. Only syntax is checked: unknown
 * flags, missing values and arguments, a missing `-o`, a `--seconds` that is
 * not a whole number from 1 to 300, `--seconds` with `--heap`. Whether the
 * agent exists and whether the caller may profile are the controller's to
 * judge.
 *
 * @throws {UsageError} carrying the one-line usage of the (sub)command.
 */
export function parseDebugArgs(args: readonly string[]): DebugPlan {
  const word = args[0];
  if (word === undefined) {
    throw new UsageError("Missing command", { usage: oneLineUsage(debugUsage.debug) });
  }
  if (word === "-h" || word === "--help" || word === "help") {
    return { kind: "help", text: debugUsage.debug };
  }
  const sub = Object.hasOwn(DEBUG_ALIASES, word) ? DEBUG_ALIASES[word] : undefined;
  if (sub === undefined) {
    throw new UsageError(`Unknown command "${word}"`, { usage: oneLineUsage(debugUsage.debug) });
  }
  try {
    return sub === "profile" ? parseProfile(args.slice(1)) : parseFlamegraph(args.slice(1));
  } catch (err) {
    if (err instanceof UsageError && err.usage === undefined) {
      throw new UsageError(err.message, { usage: oneLineUsage(debugUsage[sub]) });
    }
    throw err;
  }
}

function parseProfile(args: readonly string[]): DebugPlan {
  const f = parseFlags(args, DEBUG_SPECS.profile);
  if (f.help) return { kind: "help", text: debugUsage.profile };
  const extra = f.positionals[0] ?? f.passthrough[0];
  if (extra !== undefined) throw new UsageError(`Unexpected argument "${extra}"`);
  const { seconds, agent, heap } = f.values;
  if (heap && seconds !== undefined) {
    throw new UsageError("Flag --seconds is for CPU profiles: --heap takes a snapshot at once");
  }
  if (agent === "") throw new UsageError("Flag --agent needs an agent ID");
  const request: ProfilePlan["request"] = heap
    ? { kind: "heap" }
    : { kind: "cpu", seconds: seconds === undefined ? DEFAULT_PROFILE_SECONDS : count(seconds) };
  return {
    kind: "profile",
    ...connectionFlags(f.values),
    verbose: f.verbose,
    request: agent === undefined ? request : { ...request, agentId: agent },
    output: output(f.values.output),
  };
}

function count(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_PROFILE_SECONDS) {
    throw new UsageError(
      `Flag --seconds needs a whole number from 1 to ${MAX_PROFILE_SECONDS}, got "${value}"`,
    );
  }
  return n;
}

function output(value: string | undefined): string {
  if (value === undefined) throw new UsageError("Missing -o FILE (- writes to stdout)");
  if (value === "") throw new UsageError("Flag --output needs a file name (- writes to stdout)");
  return value;
}

function parseFlamegraph(args: readonly string[]): DebugPlan {
  const f = parseFlags(args, DEBUG_SPECS.flamegraph);
  if (f.help) return { kind: "help", text: debugUsage.flamegraph };
  const files = f.positionals.concat(f.passthrough);
  if (files.length === 0) throw new UsageError("Missing FILE.cpuprofile");
  if (files.length > 1) throw new UsageError(`Unexpected argument "${files[1]}"`);
  const input = files[0];
  return {
    kind: "flamegraph",
    input,
    output: output(f.values.output),
    title: f.values.title ?? `Flame graph: ${input === "-" ? "stdin" : input}`,
    idle: f.values.idle,
    verbose: f.verbose,
  };
}

/**
 * Runs `fsb debug ARGS...` and resolves to the exit status, as
 * {@linkcode sandboxCommand} does: 0 ok, 1 the request failed (`fsb:
 * CODE_NAME: message` on stderr) or a file could not be read or written, 2
 * bad usage (the message and a one-line usage on stderr). Help goes to stdout
 * with status 0.
 */
export async function debugCommand(args: readonly string[], io: CliIo): Promise<number> {
  let plan: DebugPlan;
  try {
    plan = parseDebugArgs(args);
    if (plan.kind === "help") {
      io.stdout(plan.text);
      return 0;
    }
    if (plan.kind === "flamegraph") return await drawFlamegraph(plan, io);
    const config = resolveClientConfig({ flags: plan, env: io.env, home: io.home });
    if (plan.verbose >= 4) debugConfig(config, io);
    const { runProfilePlan } = await import("./_debug_run.ts");
    return await runProfilePlan(plan, config, io);
  } catch (err) {
    return usageFailure(err, io);
  }
}

async function drawFlamegraph(plan: FlamegraphPlan, io: CliIo): Promise<number> {
  const { flameGraphSvg, parseCpuProfile } = await import("./flamegraph.ts");
  const name = plan.input === "-" ? "stdin" : plan.input;
  let text: string;
  try {
    text = plan.input === "-"
      ? await new Response(Deno.stdin.readable).text()
      : await Deno.readTextFile(plan.input);
  } catch (err) {
    io.stderr(`fsb: Cannot read ${name}: ${(err as Error).message}\n`);
    return 1;
  }
  let svg: string;
  try {
    svg = flameGraphSvg(parseCpuProfile(text), { title: plan.title, idle: plan.idle });
  } catch (err) {
    io.stderr(`fsb: Cannot draw ${name}: ${(err as Error).message}\n`);
    return 1;
  }
  if (plan.output === "-") {
    io.stdout(svg);
    return 0;
  }
  try {
    await Deno.writeTextFile(plan.output, svg);
  } catch (err) {
    io.stderr(`fsb: Cannot write ${plan.output}: ${(err as Error).message}\n`);
    return 1;
  }
  return 0;
}
