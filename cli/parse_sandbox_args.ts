/**
 * Turns `fsb sandbox ...` arguments into a plan: which FastPath call to make
 * with which request, and how to print the answer. Pure and light (protobuf-es
 * is imported for types only) so that usage errors and help cost no start-up.
 *
 * @module
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  ConsistencyMode,
  CreateSandboxRequestSchema,
  DeleteSandboxRequestSchema,
  Egress,
  FailurePolicy,
  GetSandboxRequestSchema,
  ListSandboxesRequestSchema,
  NetworkMode,
  NetworkPolicySchema,
  ResourcesSchema,
  StreamLogsRequestSchema,
  UpdateSandboxRequestSchema,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import {
  CONNECTION_FLAGS,
  type ConnectionFlags,
  connectionFlags,
  type ConnectionFlagValues,
} from "./client_config.ts";
import { type FlagSpec, parseFlags } from "./flags.ts";
import { EXEC_SPECS, type ExecPlan, parseExecSubcommand } from "./parse_exec_args.ts";
import { parseExpire } from "./parse_expire.ts";
import { parseKeyValue } from "./parse_key_value.ts";
import { parseSize } from "./parse_size.ts";
import { type SandboxSubcommand, sandboxUsage } from "./sandbox_usage.ts";
import { UsageError } from "./usage_error.ts";

/** How a sandbox is printed. */
export type OutputFormat = "table" | "json";

/** What every call needs besides its request: the connection flags and `-v`. */
export interface CallPlan extends ConnectionFlags {
  /** The `-v` level. */
  readonly verbose: number;
}

/** A parsed `fsb sandbox` command line. `reset` is an UpdateSandbox call with `reset` set. */
export type SandboxPlan =
  | { readonly kind: "help"; readonly text: string }
  | CallPlan & {
    readonly kind: "create";
    readonly request: MessageInitShape<typeof CreateSandboxRequestSchema>;
    readonly output: OutputFormat;
  }
  | CallPlan & {
    readonly kind: "get";
    readonly request: MessageInitShape<typeof GetSandboxRequestSchema>;
    readonly output: OutputFormat;
  }
  | CallPlan & {
    readonly kind: "list";
    readonly request: MessageInitShape<typeof ListSandboxesRequestSchema>;
    readonly output: OutputFormat;
  }
  | CallPlan & {
    readonly kind: "delete";
    readonly requests: MessageInitShape<typeof DeleteSandboxRequestSchema>[];
    readonly output: OutputFormat;
  }
  | CallPlan & {
    readonly kind: "update" | "reset";
    readonly request: MessageInitShape<typeof UpdateSandboxRequestSchema>;
    readonly output: OutputFormat;
  }
  | CallPlan & {
    readonly kind: "logs";
    readonly request: MessageInitShape<typeof StreamLogsRequestSchema>;
  }
  | ExecPlan;

/**
 * A plan that makes one of the sandbox calls of `_sandbox_run.ts` (anything
 * but help and the work inside a sandbox, {@linkcode ExecPlan}).
 */
export type CallingPlan = Exclude<SandboxPlan, { kind: "help" } | ExecPlan>;

export type { CopyPlace, ExecPlan } from "./parse_exec_args.ts";

/** Options for {@linkcode parseSandboxArgs}. */
export interface ParseSandboxArgsOptions {
  /** The current unix time in seconds, for `--expire DURATION`. */
  readonly nowSec: number;
}

// The numbers of fsb.fastpath.v1.ConsistencyMode, FailurePolicy, NetworkMode
// and Egress, written out because a value import of the generated enums would
// load protobuf-es here. tests/cli/parse_sandbox_args_test.ts holds them to the
// generated enums.
const MODES: Readonly<Record<string, ConsistencyMode>> = {
  fast: 1 as ConsistencyMode,
  strong: 2 as ConsistencyMode,
};
const POLICIES: Readonly<Record<string, FailurePolicy>> = {
  manual: 1 as FailurePolicy,
  "auto-recreate": 2 as FailurePolicy,
};
const NETWORK_MODES: Readonly<Record<string, NetworkMode>> = {
  private: 1 as NetworkMode,
  none: 2 as NetworkMode,
};
const EGRESSES: Readonly<Record<string, Egress>> = {
  allow: 1 as Egress,
  deny: 2 as Egress,
};

/** Every word `fsb sandbox` takes for a subcommand, aliases included, and what it stands for. */
export const SANDBOX_ALIASES: Readonly<Record<string, SandboxSubcommand>> = {
  create: "create",
  get: "get",
  list: "list",
  ls: "list",
  delete: "delete",
  rm: "delete",
  update: "update",
  reset: "reset",
  logs: "logs",
  exec: "exec",
  attach: "attach",
  ps: "ps",
  kill: "kill",
  wait: "wait",
  cp: "cp",
};

const COMMON = {
  namespace: { type: "string", short: "n" },
  ...CONNECTION_FLAGS,
} as const satisfies FlagSpec;

const OUTPUT_FORMATS: readonly OutputFormat[] = ["table", "json"];

const OUTPUT = {
  output: { type: "string", short: "o", choices: OUTPUT_FORMATS },
} as const satisfies FlagSpec;

const CHANGES = {
  expire: { type: "string" },
  "failure-policy": { type: "string", choices: Object.keys(POLICIES) },
  label: { type: "string", short: "l", multiple: true },
} as const satisfies FlagSpec;

/**
 * The flags of each `fsb sandbox` subcommand, as the parser takes them (and
 * `fsb completion` offers them). Short flags follow Docker's where it has
 * one: `-e` env, `-p` port, `-w` workdir, `-l` label, `-f` follow.
 */
export const SANDBOX_SPECS = {
  create: {
    ...COMMON,
    ...OUTPUT,
    ...CHANGES,
    image: { type: "string" },
    pool: { type: "string" },
    port: { type: "string", short: "p", multiple: true },
    env: { type: "string", short: "e", multiple: true },
    workdir: { type: "string", short: "w" },
    mode: { type: "string", choices: Object.keys(MODES) },
    network: { type: "string", choices: Object.keys(NETWORK_MODES) },
    egress: { type: "string", choices: Object.keys(EGRESSES) },
    allow: { type: "string", multiple: true },
    deny: { type: "string", multiple: true },
    cpus: { type: "string" },
    memory: { type: "string" },
    pids: { type: "string" },
  },
  get: { ...COMMON, ...OUTPUT },
  list: { ...COMMON, ...OUTPUT, "all-namespaces": { type: "boolean", short: "A" } },
  delete: { ...COMMON, ...OUTPUT },
  update: { ...COMMON, ...OUTPUT, ...CHANGES },
  reset: { ...COMMON, ...OUTPUT },
  logs: { ...COMMON, follow: { type: "boolean", short: "f" } },
  ...EXEC_SPECS,
} as const satisfies Record<SandboxSubcommand, FlagSpec>;

/** The first line of a help text: the one-line usage. */
export function oneLineUsage(text: string): string {
  const nl = text.indexOf("\n");
  return nl < 0 ? text : text.slice(0, nl);
}

/**
 * Parses the arguments that follow `fsb sandbox`. Only syntax is checked
 * (shared/DESIGN.md section 10): unknown flags, missing values and arguments,
 * ports, CPUs, sizes and pid counts that are not numbers, words outside an
 * enum's vocabulary. Ranges, names, times and CIDRs are the controller's to
 * judge.
 *
 * @throws {UsageError} carrying the one-line usage of the (sub)command.
 */
export function parseSandboxArgs(
  args: readonly string[],
  opts: ParseSandboxArgsOptions,
): SandboxPlan {
  const word = args[0];
  if (word === undefined) {
    throw new UsageError("Missing command", { usage: oneLineUsage(sandboxUsage.sandbox) });
  }
  if (word === "-h" || word === "--help" || word === "help") {
    return { kind: "help", text: sandboxUsage.sandbox };
  }
  const sub = Object.hasOwn(SANDBOX_ALIASES, word) ? SANDBOX_ALIASES[word] : undefined;
  if (sub === undefined) {
    throw new UsageError(`Unknown command "${word}"`, {
      usage: oneLineUsage(sandboxUsage.sandbox),
    });
  }
  try {
    return parseSubcommand(sub, args.slice(1), opts.nowSec);
  } catch (err) {
    if (err instanceof UsageError && err.usage === undefined) {
      throw new UsageError(err.message, { usage: oneLineUsage(sandboxUsage[sub]) });
    }
    throw err;
  }
}

function parseSubcommand(
  sub: SandboxSubcommand,
  args: readonly string[],
  nowSec: number,
): SandboxPlan {
  switch (sub) {
    case "exec":
    case "attach":
    case "ps":
    case "kill":
    case "wait":
    case "cp":
      return parseExecSubcommand(sub, args) ?? help(sub);
    case "create":
      return parseCreate(args, nowSec);
    case "get": {
      const f = parseFlags(args, SANDBOX_SPECS.get);
      if (f.help) return help(sub);
      const name = oneName(f.positionals, f.passthrough);
      return {
        kind: sub,
        ...call(f),
        request: { name, namespace: f.values.namespace ?? "" },
        output: outputFormat(f.values.output),
      };
    }
    case "list": {
      const f = parseFlags(args, SANDBOX_SPECS.list);
      if (f.help) return help(sub);
      noNames(f.positionals, f.passthrough);
      return {
        kind: sub,
        ...call(f),
        request: {
          namespace: f.values.namespace ?? "",
          allNamespaces: f.values["all-namespaces"],
        },
        output: outputFormat(f.values.output),
      };
    }
    case "delete": {
      const f = parseFlags(args, SANDBOX_SPECS.delete);
      if (f.help) return help(sub);
      const names = f.positionals.concat(f.passthrough);
      if (names.length === 0) throw new UsageError("Missing NAME");
      const namespace = f.values.namespace ?? "";
      return {
        kind: sub,
        ...call(f),
        requests: names.map((name) => ({ name, namespace })),
        output: outputFormat(f.values.output),
      };
    }
    case "update": {
      const f = parseFlags(args, SANDBOX_SPECS.update);
      if (f.help) return help(sub);
      const name = oneName(f.positionals, f.passthrough);
      const { expire } = f.values;
      return {
        kind: sub,
        ...call(f),
        request: {
          name,
          namespace: f.values.namespace ?? "",
          // Absent leaves the expiry alone; 0 clears it.
          expireTime: expire === undefined ? undefined : BigInt(parseExpire(expire, nowSec)),
          failurePolicy: failurePolicy(f.values["failure-policy"]),
          labels: keyValues(f.values.label, "--label"),
        },
        output: outputFormat(f.values.output),
      };
    }
    case "reset": {
      const f = parseFlags(args, SANDBOX_SPECS.reset);
      if (f.help) return help(sub);
      const name = oneName(f.positionals, f.passthrough);
      return {
        kind: sub,
        ...call(f),
        request: { name, namespace: f.values.namespace ?? "", reset: true },
        output: outputFormat(f.values.output),
      };
    }
    case "logs": {
      const f = parseFlags(args, SANDBOX_SPECS.logs);
      if (f.help) return help(sub);
      const name = oneName(f.positionals, f.passthrough);
      return {
        kind: sub,
        ...call(f),
        request: { name, namespace: f.values.namespace ?? "", follow: f.values.follow },
      };
    }
  }
}

function parseCreate(args: readonly string[], nowSec: number): SandboxPlan {
  const f = parseFlags(args, SANDBOX_SPECS.create);
  if (f.help) return help("create");
  if (f.positionals.length > 1) throw new UsageError(`Unexpected argument "${f.positionals[1]}"`);
  const { image, expire, mode } = f.values;
  if (image === undefined) throw new UsageError("Missing --image");
  if (mode !== undefined && !Object.hasOwn(MODES, mode)) {
    throw new UsageError(`Flag --mode must be ${either(MODES)}, got "${mode}"`);
  }
  return {
    kind: "create",
    ...call(f),
    request: {
      name: f.positionals[0] ?? "",
      namespace: f.values.namespace ?? "",
      image,
      pool: f.values.pool ?? "",
      // The controller runs command and args as one argv, so the whole tail
      // after "--" goes to command and args stays empty.
      command: f.passthrough,
      envs: keyValues(f.values.env, "--env"),
      workingDir: f.values.workdir ?? "",
      exposedPorts: f.values.port.map(port),
      consistencyMode: mode === undefined ? undefined : MODES[mode],
      expireTime: expire === undefined ? undefined : BigInt(parseExpire(expire, nowSec)),
      failurePolicy: failurePolicy(f.values["failure-policy"]),
      labels: keyValues(f.values.label, "--label"),
      network: networkPolicy(f.values),
      resources: resources(f.values),
    },
    output: outputFormat(f.values.output),
  };
}

interface NetworkFlags {
  readonly network: string | undefined;
  readonly egress: string | undefined;
  readonly allow: readonly string[];
  readonly deny: readonly string[];
}

// Undefined when no network flag is given, so that no `network` is sent; in
// the message, only what a flag set. CIDRs go as written: the controller
// judges them.
function networkPolicy(
  f: NetworkFlags,
): MessageInitShape<typeof NetworkPolicySchema> | undefined {
  const { network, egress, allow, deny } = f;
  if (network === undefined && egress === undefined && allow.length === 0 && deny.length === 0) {
    return undefined;
  }
  const policy: MessageInitShape<typeof NetworkPolicySchema> = {};
  if (network !== undefined) {
    if (!Object.hasOwn(NETWORK_MODES, network)) {
      throw new UsageError(`Flag --network must be ${either(NETWORK_MODES)}, got "${network}"`);
    }
    policy.mode = NETWORK_MODES[network];
  }
  if (egress !== undefined) {
    if (!Object.hasOwn(EGRESSES, egress)) {
      throw new UsageError(`Flag --egress must be ${either(EGRESSES)}, got "${egress}"`);
    }
    policy.egress = EGRESSES[egress];
  }
  if (allow.length > 0) policy.allowCidrs = allow.slice();
  if (deny.length > 0) policy.denyCidrs = deny.slice();
  return policy;
}

interface ResourceFlags {
  readonly cpus: string | undefined;
  readonly memory: string | undefined;
  readonly pids: string | undefined;
}

// Undefined when no limit is given, so that no `resources` is sent; in the
// message, only the limits given (an absent one takes the agent's default).
// Zero and negative numbers go through: the controller judges them.
function resources(f: ResourceFlags): MessageInitShape<typeof ResourcesSchema> | undefined {
  const { cpus, memory, pids } = f;
  if (cpus === undefined && memory === undefined && pids === undefined) return undefined;
  const limits: MessageInitShape<typeof ResourcesSchema> = {};
  if (cpus !== undefined) limits.cpuMillis = cpuMillis(cpus);
  if (memory !== undefined) limits.memoryBytes = BigInt(parseSize(memory, { flag: "--memory" }));
  if (pids !== undefined) limits.pids = pidCount(pids);
  return limits;
}

const DECIMAL = /^-?(?:\d+(?:\.\d+)?|\.\d+)$/;

// CPUs as a decimal number (0.5, 2, .25) into thousandths of a CPU, rounded.
function cpuMillis(value: string): bigint {
  const millis = DECIMAL.test(value) ? Math.round(Number(value) * 1000) : NaN;
  if (!Number.isSafeInteger(millis)) {
    throw new UsageError(`Flag --cpus needs a number, got "${value}"`);
  }
  // Math.round(-0.4) is -0, which BigInt() takes as 0.
  return BigInt(millis);
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// Syntax only, as for ports: any whole number that fits the wire's int64.
function pidCount(value: string): bigint {
  const n = /^-?\d+$/.test(value) ? BigInt(value) : undefined;
  if (n === undefined || n < INT64_MIN || n > INT64_MAX) {
    throw new UsageError(`Flag --pids needs a whole number, got "${value}"`);
  }
  return n;
}

function help(sub: SandboxSubcommand): SandboxPlan {
  return { kind: "help", text: sandboxUsage[sub] };
}

function call(f: { values: ConnectionFlagValues; verbose: number }): CallPlan {
  return { ...connectionFlags(f.values), verbose: f.verbose };
}

function oneName(positionals: readonly string[], passthrough: readonly string[]): string {
  const names = passthrough.length === 0 ? positionals : positionals.concat(passthrough);
  if (names.length === 0) throw new UsageError("Missing NAME");
  if (names.length > 1) throw new UsageError(`Unexpected argument "${names[1]}"`);
  return names[0];
}

function noNames(positionals: readonly string[], passthrough: readonly string[]): void {
  const extra = positionals[0] ?? passthrough[0];
  if (extra !== undefined) throw new UsageError(`Unexpected argument "${extra}"`);
}

function outputFormat(value: string | undefined): OutputFormat {
  if (value === undefined) return "table";
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  throw new UsageError(`Flag --output must be ${OUTPUT_FORMATS.join(" or ")}, got "${value}"`);
}

// "fast or strong": the words of a vocabulary, as messages list them.
function either(words: Readonly<Record<string, unknown>>): string {
  return Object.keys(words).join(" or ");
}

function failurePolicy(value: string | undefined): FailurePolicy | undefined {
  if (value === undefined) return undefined;
  if (Object.hasOwn(POLICIES, value)) return POLICIES[value];
  throw new UsageError(`Flag --failure-policy must be ${either(POLICIES)}, got "${value}"`);
}

// Syntax only: any whole number that fits the wire's uint32 passes, so that
// 0 and 70000 reach the controller and get its INVALID_ARGUMENT.
function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 0xffff_ffff) {
    throw new UsageError(`Flag --port needs a number, got "${value}"`);
  }
  return n;
}

function keyValues(values: readonly string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const [key, val] = parseKeyValue(value, { flag });
    out[key] = val;
  }
  return out;
}
