/**
 * Turns `fsb token ...` arguments into a plan: which FastPath call to make
 * with which request, and how to print the answer. Pure and light, like
 * `parse_sandbox_args.ts`.
 *
 * @module
 */
import type { CreateTokenRequestInit, RevokeTokenRequestInit } from "../proto/fastpath_lite.ts";
import { CONNECTION_FLAGS, connectionFlags, type ConnectionFlagValues } from "./client_config.ts";
import { type FlagSpec, parseFlags } from "./flags.ts";
import { parseDuration } from "./parse_duration.ts";
import { type CallPlan, oneLineUsage } from "./parse_sandbox_args.ts";
import { type TokenSubcommand, tokenUsage } from "./token_usage.ts";
import { UsageError } from "./usage_error.ts";

/** A parsed `fsb token` command line. */
export type TokenPlan =
  | { readonly kind: "help"; readonly text: string }
  | CallPlan & {
    readonly kind: "create";
    readonly request: CreateTokenRequestInit;
    /** `secret`: the secret alone and a newline; `json`: id, secret, namespaces, admin, expiry. */
    readonly output: "secret" | "json";
  }
  | CallPlan & {
    readonly kind: "list";
    readonly output: "table" | "json";
  }
  | CallPlan & {
    readonly kind: "revoke";
    readonly request: RevokeTokenRequestInit;
    readonly output: "table" | "json";
  };

/** A plan that makes a call (anything but help). */
export type TokenCallingPlan = Exclude<TokenPlan, { kind: "help" }>;

/** Every word `fsb token` takes for a subcommand, aliases included, and what it stands for. */
export const TOKEN_ALIASES: Readonly<Record<string, TokenSubcommand>> = {
  create: "create",
  list: "list",
  ls: "list",
  revoke: "revoke",
};

// The first of each is the default.
const CREATE_OUTPUTS = ["secret", "json"] as const;
const OUTPUTS = ["table", "json"] as const;

/** The flags of each `fsb token` subcommand, as the parser takes them (and `fsb completion` offers them). */
export const TOKEN_SPECS = {
  create: {
    ...CONNECTION_FLAGS,
    output: { type: "string", short: "o", choices: CREATE_OUTPUTS },
    namespace: { type: "string", short: "n", multiple: true },
    admin: { type: "boolean" },
    ttl: { type: "string" },
    quota: { type: "string" },
  },
  list: { ...CONNECTION_FLAGS, output: { type: "string", short: "o", choices: OUTPUTS } },
  revoke: { ...CONNECTION_FLAGS, output: { type: "string", short: "o", choices: OUTPUTS } },
} as const satisfies Record<TokenSubcommand, FlagSpec>;

/**
 * Parses the arguments that follow `fsb token`. Only syntax is checked: unknown
 * flags, missing values and arguments, a `--ttl` that is not a duration, a
 * `--quota` that is not a whole number, an output format that does not exist,
 * and a create that names neither a namespace nor `--admin`. Namespace names,
 * ids and whether the caller may do this are the controller's to judge.
 *
 * @throws {UsageError} carrying the one-line usage of the (sub)command.
 */
export function parseTokenArgs(args: readonly string[]): TokenPlan {
  const word = args[0];
  if (word === undefined) {
    throw new UsageError("Missing command", { usage: oneLineUsage(tokenUsage.token) });
  }
  if (word === "-h" || word === "--help" || word === "help") {
    return { kind: "help", text: tokenUsage.token };
  }
  const sub = Object.hasOwn(TOKEN_ALIASES, word) ? TOKEN_ALIASES[word] : undefined;
  if (sub === undefined) {
    throw new UsageError(`Unknown command "${word}"`, { usage: oneLineUsage(tokenUsage.token) });
  }
  try {
    return parseSubcommand(sub, args.slice(1));
  } catch (err) {
    if (err instanceof UsageError && err.usage === undefined) {
      throw new UsageError(err.message, { usage: oneLineUsage(tokenUsage[sub]) });
    }
    throw err;
  }
}

function parseSubcommand(sub: TokenSubcommand, args: readonly string[]): TokenPlan {
  switch (sub) {
    case "create": {
      const f = parseFlags(args, TOKEN_SPECS.create);
      if (f.help) return { kind: "help", text: tokenUsage.create };
      noArguments(f.positionals, f.passthrough);
      const { namespace, admin, ttl, quota } = f.values;
      if (namespace.length === 0 && !admin) throw new UsageError("Missing --namespace or --admin");
      return {
        kind: sub,
        ...call(f),
        request: {
          namespaces: namespace,
          admin,
          ttlSeconds: ttl === undefined ? undefined : ttlSeconds(ttl),
          quota: quota === undefined ? undefined : quotaNumber(quota),
        },
        output: oneOf(f.values.output, CREATE_OUTPUTS),
      };
    }
    case "list": {
      const f = parseFlags(args, TOKEN_SPECS.list);
      if (f.help) return { kind: "help", text: tokenUsage.list };
      noArguments(f.positionals, f.passthrough);
      return { kind: sub, ...call(f), output: oneOf(f.values.output, OUTPUTS) };
    }
    case "revoke": {
      const f = parseFlags(args, TOKEN_SPECS.revoke);
      if (f.help) return { kind: "help", text: tokenUsage.revoke };
      const ids = f.positionals.concat(f.passthrough);
      if (ids.length === 0) throw new UsageError("Missing ID");
      if (ids.length > 1) throw new UsageError(`Unexpected argument "${ids[1]}"`);
      return {
        kind: sub,
        ...call(f),
        request: { id: ids[0] },
        output: oneOf(f.values.output, OUTPUTS),
      };
    }
  }
}

function call(f: { values: ConnectionFlagValues; verbose: number }): CallPlan {
  return { ...connectionFlags(f.values), verbose: f.verbose };
}

function noArguments(positionals: readonly string[], passthrough: readonly string[]): void {
  const extra = positionals[0] ?? passthrough[0];
  if (extra !== undefined) throw new UsageError(`Unexpected argument "${extra}"`);
}

// The first choice is the default.
function oneOf<const T extends string>(value: string | undefined, choices: readonly T[]): T {
  if (value === undefined) return choices[0];
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`Flag --output must be ${choices.join(" or ")}, got "${value}"`);
}

// Whole seconds, rounded up: a token never lives shorter than asked.
function ttlSeconds(value: string): bigint {
  return BigInt(Math.ceil(parseDuration(value, { flag: "--ttl" }) / 1000));
}

// Syntax only: any whole number that fits the wire's uint32; 0 is the controller's to judge.
function quotaNumber(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 0xffff_ffff) {
    throw new UsageError(`Flag --quota needs a whole number, got "${value}"`);
  }
  return n;
}
