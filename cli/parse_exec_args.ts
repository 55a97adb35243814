/**
 * Parses the `fsb sandbox` subcommands that work inside a sandbox (shared/DESIGN.md
 * section 14): `exec`, `attach`, `ps`, `kill`, `wait` and `cp`. Like
 * `parse_sandbox_args.ts`, which dispatches to it, it checks syntax only and
 * loads nothing but types.
 *
 * @module
 */
import { CONNECTION_FLAGS, connectionFlags, type ConnectionFlagValues } from "./client_config.ts";
import { type FlagSpec, parseFlags } from "./flags.ts";
import { parseKeyValue } from "./parse_key_value.ts";
import type { CallPlan, OutputFormat } from "./parse_sandbox_args.ts";
import { UsageError } from "./usage_error.ts";

/** The subcommands this module parses. */
export type ExecSubcommand = "exec" | "attach" | "ps" | "kill" | "wait" | "cp";

/** One side of `fsb sandbox cp`. */
export type CopyPlace =
  /** A path on this machine. */
  | { readonly kind: "local"; readonly path: string }
  /** `-`: a tar stream on stdin (as the source) or stdout (as the destination). */
  | { readonly kind: "stdio" }
  /** `NAME:PATH`, a path inside sandbox NAME. */
  | { readonly kind: "sandbox"; readonly name: string; readonly path: string };

/** What every plan of this module names: the sandbox and its namespace. */
interface InSandbox extends CallPlan {
  /** The sandbox's name. */
  readonly name: string;
  /** Its namespace; "" for the default. */
  readonly namespace: string;
}

/** A parsed `exec`, `attach`, `ps`, `kill`, `wait` or `cp` command line. */
export type ExecPlan =
  | InSandbox & {
    readonly kind: "exec";
    /** argv; never empty. */
    readonly command: readonly string[];
    readonly env: Readonly<Record<string, string>>;
    /** "" for the sandbox's own working directory. */
    readonly workingDir: string;
    /** `-i`: forward local stdin. */
    readonly interactive: boolean;
    /** `-t`: run on a pseudo-terminal. */
    readonly tty: boolean;
    /** `-d`: start it, print its id and return. */
    readonly detach: boolean;
  }
  | InSandbox & { readonly kind: "attach"; readonly execId: string }
  | InSandbox & { readonly kind: "ps"; readonly output: OutputFormat }
  | InSandbox & {
    readonly kind: "kill";
    readonly execId: string;
    /** As given (a name, with or without SIG, or a number); "" for the server's default, KILL. */
    readonly signal: string;
  }
  | InSandbox & { readonly kind: "wait" }
  | CallPlan & {
    readonly kind: "cp";
    /** The namespace of the sandbox side; "" for the default. */
    readonly namespace: string;
    readonly source: CopyPlace;
    readonly destination: CopyPlace;
  };

const COMMON = {
  namespace: { type: "string", short: "n" },
  ...CONNECTION_FLAGS,
} as const satisfies FlagSpec;

/** Signal names offered by completion; any name or number is accepted. */
const SIGNALS = ["TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT"];

/**
 * The flags of each subcommand of this module, as the parser takes them (and
 * `fsb completion` offers them). Short flags are Docker's: `-i`, `-t`, `-e`,
 * `-w`, `-d`, `-s`.
 */
export const EXEC_SPECS = {
  exec: {
    ...COMMON,
    interactive: { type: "boolean", short: "i" },
    tty: { type: "boolean", short: "t" },
    env: { type: "string", short: "e", multiple: true },
    workdir: { type: "string", short: "w" },
    detach: { type: "boolean", short: "d" },
  },
  attach: { ...COMMON },
  ps: { ...COMMON, output: { type: "string", short: "o", choices: ["table", "json"] } },
  kill: { ...COMMON, signal: { type: "string", short: "s", choices: SIGNALS } },
  wait: { ...COMMON },
  cp: { ...COMMON },
} as const satisfies Record<ExecSubcommand, FlagSpec>;

/**
 * Parses the arguments that follow `fsb sandbox SUB` for a subcommand of this
 * module; `undefined` when `-h` asks for its help.
 *
 * @throws {UsageError} without a usage line (the caller adds the subcommand's).
 */
export function parseExecSubcommand(
  sub: ExecSubcommand,
  args: readonly string[],
): ExecPlan | undefined {
  switch (sub) {
    case "exec":
      return parseExec(args);
    case "attach": {
      const f = parseFlags(args, EXEC_SPECS.attach);
      if (f.help) return undefined;
      const [name, execId] = words(f.positionals, f.passthrough, ["NAME", "EXEC_ID"]);
      return { kind: sub, ...call(f), name, namespace: f.values.namespace ?? "", execId };
    }
    case "ps": {
      const f = parseFlags(args, EXEC_SPECS.ps);
      if (f.help) return undefined;
      const [name] = words(f.positionals, f.passthrough, ["NAME"]);
      const output = f.values.output ?? "table";
      if (output !== "table" && output !== "json") {
        throw new UsageError(`Flag --output must be table or json, got "${output}"`);
      }
      return { kind: sub, ...call(f), name, namespace: f.values.namespace ?? "", output };
    }
    case "kill": {
      const f = parseFlags(args, EXEC_SPECS.kill);
      if (f.help) return undefined;
      const [name, execId] = words(f.positionals, f.passthrough, ["NAME", "EXEC_ID"]);
      return {
        kind: sub,
        ...call(f),
        name,
        namespace: f.values.namespace ?? "",
        execId,
        signal: f.values.signal ?? "",
      };
    }
    case "wait": {
      const f = parseFlags(args, EXEC_SPECS.wait);
      if (f.help) return undefined;
      const [name] = words(f.positionals, f.passthrough, ["NAME"]);
      return { kind: sub, ...call(f), name, namespace: f.values.namespace ?? "" };
    }
    case "cp": {
      const f = parseFlags(args, EXEC_SPECS.cp);
      if (f.help) return undefined;
      const [src, dst] = words(f.positionals, f.passthrough, ["SRC", "DST"]);
      const source = copyPlace(src);
      const destination = copyPlace(dst);
      if (source.kind === "sandbox" && destination.kind === "sandbox") {
        throw new UsageError("Cannot copy between sandboxes: one side must be a local path or -");
      }
      if (source.kind !== "sandbox" && destination.kind !== "sandbox") {
        throw new UsageError("One side must be NAME:PATH, a path inside a sandbox");
      }
      return {
        kind: sub,
        ...call(f),
        namespace: f.values.namespace ?? "",
        source,
        destination,
      };
    }
  }
}

// `exec NAME CMD ARGS...` works without `--`, as in Docker: flag parsing
// stops at the command, so that its own flags (`ls -l`) are not fsb's.
function parseExec(args: readonly string[]): ExecPlan | undefined {
  const at = commandStart(args, EXEC_SPECS.exec);
  const f = parseFlags(at < 0 ? args : args.slice(0, at), EXEC_SPECS.exec);
  if (f.help) return undefined;
  let command: string[];
  let name: string;
  if (at < 0) {
    if (f.positionals.length === 0) throw new UsageError("Missing NAME");
    if (f.positionals.length > 1) throw new UsageError(`Unexpected argument "${f.positionals[1]}"`);
    name = f.positionals[0];
    command = f.passthrough;
  } else {
    name = f.positionals[0];
    command = args.slice(at);
  }
  if (command.length === 0) throw new UsageError("Missing CMD: give it after NAME or after --");
  const { interactive, tty, detach } = f.values;
  if (detach && (interactive || tty)) {
    throw new UsageError(
      `Flag --detach cannot be combined with ${interactive ? "--interactive" : "--tty"}`,
    );
  }
  const env: Record<string, string> = {};
  for (const value of f.values.env) {
    const [key, val] = parseKeyValue(value, { flag: "--env" });
    env[key] = val;
  }
  return {
    kind: "exec",
    ...call(f),
    name,
    namespace: f.values.namespace ?? "",
    command,
    env,
    workingDir: f.values.workdir ?? "",
    interactive,
    tty,
    detach,
  };
}

/**
 * The index in `args` of the second word that is not a flag nor a flag's
 * value (the command after NAME), or -1 when there is none before `--`.
 * Exported for tests.
 */
export function commandStart(args: readonly string[], spec: FlagSpec): number {
  const takesValue = (name: string) => name === "verbose" || spec[name]?.type === "string";
  const shortTakesValue = (c: string) =>
    c === "v" || Object.values(spec).some((def) => def.short === c && def.type === "string");
  let seen = 0;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") return -1;
    if (arg.startsWith("--")) {
      if (!arg.includes("=") && takesValue(arg.slice(2))) i++;
      continue;
    }
    if (arg.startsWith("-") && arg.length > 1) {
      // A cluster such as -it or -nNS: the first letter that takes a value
      // takes the rest of the word, or else the next word.
      for (let j = 1; j < arg.length; j++) {
        if (shortTakesValue(arg[j])) {
          if (j === arg.length - 1) i++;
          break;
        }
      }
      continue;
    }
    if (++seen === 2) return i;
  }
  return -1;
}

/**
 * `-` is stdio; an absolute path, or one starting with `.`, is local (so
 * `./a:b` names a local file with a colon); else `NAME:PATH` names a
 * sandbox's path when there is a colon, and a local path when there is none.
 * Exported for tests.
 */
export function copyPlace(arg: string): CopyPlace {
  if (arg === "-") return { kind: "stdio" };
  if (arg === "") throw new UsageError("Empty path");
  const colon = arg.indexOf(":");
  if (arg.startsWith("/") || arg.startsWith(".") || colon < 0) return { kind: "local", path: arg };
  if (colon === 0) throw new UsageError(`Missing NAME before ":" in "${arg}"`);
  return { kind: "sandbox", name: arg.slice(0, colon), path: arg.slice(colon + 1) };
}

function call(f: { values: ConnectionFlagValues; verbose: number }): CallPlan {
  return { ...connectionFlags(f.values), verbose: f.verbose };
}

// Exactly the positional words `names` lists, whether before or after `--`.
function words(
  positionals: readonly string[],
  passthrough: readonly string[],
  names: readonly string[],
): string[] {
  const all = positionals.concat(passthrough);
  if (all.length < names.length) throw new UsageError(`Missing ${names[all.length]}`);
  if (all.length > names.length) throw new UsageError(`Unexpected argument "${all[names.length]}"`);
  return all;
}
