/**
 * The flag parser shared by every fsb command: a thin layer over `node:util`
 * `parseArgs` that adds the common `-v N` and `-h` flags, separates what follows
 * `--`, and turns every problem into a {@linkcode UsageError} that names the flag.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "./usage_error.ts";

/** One flag: `--NAME VALUE` / `--NAME=VALUE` for strings, `--NAME` for booleans. */
export interface FlagDef {
  readonly type: "string" | "boolean";
  /** A one-letter alias, e.g. `"n"` for `-n`. */
  readonly short?: string;
  /** A string flag that may repeat; its values are collected in order. */
  readonly multiple?: boolean;
  /**
   * The words a string flag's value may be, offered by `fsb completion`. The
   * parser does not check them: the command does, in its own words, from the
   * same list.
   */
  readonly choices?: readonly string[];
}

/** The flags a command accepts, keyed by long name (without the dashes). */
export type FlagSpec = Readonly<Record<string, FlagDef>>;

/** Parsed values: booleans default to false, repeatable strings to `[]`. */
export type FlagValues<S extends FlagSpec> = {
  -readonly [K in keyof S]: S[K]["type"] extends "boolean" ? boolean
    : S[K]["multiple"] extends true ? string[]
    : string | undefined;
};

/** The result of {@linkcode parseFlags}. */
export interface ParsedFlags<S extends FlagSpec = FlagSpec> {
  /** One entry per flag of the spec. */
  readonly values: FlagValues<S>;
  /** Arguments that are not flags, before any `--`. */
  readonly positionals: string[];
  /** Everything after the first `--`, untouched (empty when there is no `--`). */
  readonly passthrough: string[];
  /** `-v N`, `-v=N`, `--verbose N`: 0 info, 2 timing breakdowns, 4 debug. */
  readonly verbose: number;
  /** `-h` or `--help` was given. */
  readonly help: boolean;
}

type ParseArgsOptions = Record<string, { type: "string" | "boolean"; short?: string }>;

const COMMON: ParseArgsOptions = {
  verbose: { type: "string", short: "v" },
  help: { type: "boolean", short: "h" },
};

/**
 * Parses `args` against `spec`. Flags may come before, between or after
 * positionals; a short flag's value may be attached (`-nfoo`, `-n=foo`).
 *
 * @throws {UsageError} on an unknown flag, a string flag without a value, a
 * boolean flag given a value, or a `-v` that is not a whole number.
 *
 * @example
 * ```ts
 * const f = parseFlags(["demo", "--image", "busybox", "--", "sleep", "9"], {
 *   image: { type: "string" },
 * });
 * // f.values.image === "busybox", f.positionals == ["demo"], f.passthrough == ["sleep", "9"]
 * ```
 */
export function parseFlags<const S extends FlagSpec>(
  args: readonly string[],
  spec: S,
): ParsedFlags<S> {
  const options: ParseArgsOptions = { ...COMMON };
  const values: Record<string, string | boolean | string[] | undefined> = {};
  for (const [name, def] of Object.entries(spec)) {
    if (Object.hasOwn(COMMON, name) || def.short === "v" || def.short === "h") {
      throw new Error(`Flag spec must not redefine --${name}: -v and -h belong to every command`);
    }
    options[name] = def.short === undefined
      ? { type: def.type }
      : { type: def.type, short: def.short };
    values[name] = def.type === "boolean" ? false : def.multiple ? [] : undefined;
  }
  // Non-strict mode hands back every token, so the checks below can name the
  // flag in our own words instead of passing on Node's messages.
  const { tokens } = parseArgs({
    args: args as string[],
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const positionals: string[] = [];
  let passthrough: string[] = [];
  let verboseRaw: string | undefined;
  let verboseFlag = "-v";
  let help = false;
  for (const token of tokens) {
    if (token.kind === "option-terminator") {
      passthrough = args.slice(token.index + 1);
      break;
    }
    if (token.kind === "positional") {
      positionals.push(token.value);
      continue;
    }
    const { name, rawName } = token;
    if (!Object.hasOwn(options, name)) throw new UsageError(`Unknown flag ${rawName}`);
    if (options[name].type === "boolean") {
      if (token.value !== undefined) throw new UsageError(`Flag ${rawName} takes no value`);
      if (name === "help") help = true;
      else values[name] = true;
      continue;
    }
    let value = token.value;
    // A detached value that looks like a flag means the value was forgotten
    // (`--image --pool p`); a value that really starts with "-" goes after "=".
    if (value === undefined || (!token.inlineValue && value.length > 1 && value[0] === "-")) {
      throw new UsageError(`Flag ${rawName} needs a value`);
    }
    if (token.inlineValue && rawName[1] !== "-" && value[0] === "=") value = value.slice(1);
    if (name === "verbose") {
      verboseRaw = value;
      verboseFlag = rawName;
    } else if (spec[name].multiple) {
      (values[name] as string[]).push(value);
    } else {
      values[name] = value;
    }
  }
  let verbose = 0;
  if (verboseRaw !== undefined) {
    if (!/^\d+$/.test(verboseRaw)) {
      throw new UsageError(`Flag ${verboseFlag} needs a whole number, got "${verboseRaw}"`);
    }
    verbose = Number(verboseRaw);
  }
  return { values: values as FlagValues<S>, positionals, passthrough, verbose, help };
}
