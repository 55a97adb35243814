/**
 * The default seccomp filter of every sandbox, as the OCI runtime spec's
 * `linux.seccomp`. The policy itself is data (`seccomp_profile.json`, the
 * syscalls Docker's default profile allows a container with our
 * capabilities); this module only turns it into OCI form. The JSON is
 * imported, not read, so `deno compile` embeds it.
 *
 * @module
 */
import profile from "./seccomp_profile.json" with { type: "json" };

/** A host architecture, as `Deno.build.arch` names it. */
export type SeccompHostArch = typeof Deno.build.arch;

/** One comparison of a syscall argument, in OCI form (`LinuxSeccompArg`). */
export type OciSeccompArg = {
  /** Which argument, from 0. */
  readonly index: number;
  /** The operand; for `SCMP_CMP_MASKED_EQ`, the mask. */
  readonly value: number;
  /** For `SCMP_CMP_MASKED_EQ` only: what `arg & value` must equal. */
  readonly valueTwo?: number;
  /** `SCMP_CMP_EQ`, `SCMP_CMP_LT`, `SCMP_CMP_MASKED_EQ`, ... */
  readonly op: string;
};

/** One rule, in OCI form (`LinuxSyscall`): all of `args` must hold for `action` to apply. */
export type OciSeccompRule = {
  /** Syscall names; names the host's libseccomp does not know are skipped by runc. */
  readonly names: readonly string[];
  /** `SCMP_ACT_ALLOW` or `SCMP_ACT_ERRNO`. */
  readonly action: string;
  /** With `SCMP_ACT_ERRNO`: the errno the call fails with. */
  readonly errnoRet?: number;
  /** Argument comparisons, all of which must hold. */
  readonly args?: readonly OciSeccompArg[];
};

/**
 * The OCI runtime spec's `linux.seccomp`. Typed as an object type (not an
 * interface) so it also fits where a spec is a `Record<string, unknown>`.
 */
export type OciSeccomp = {
  /** What every syscall no rule matches gets: always `SCMP_ACT_ERRNO`. */
  readonly defaultAction: string;
  /** The errno of `defaultAction` (EPERM). */
  readonly defaultErrnoRet: number;
  /** The host's native architecture and its compat ones (32-bit code runs too). */
  readonly architectures: readonly string[];
  /** The rules; OCI runtimes allow a call when any matching rule allows it. */
  readonly syscalls: readonly OciSeccompRule[];
};

/** The shape of `seccomp_profile.json`; assigning the import to it type-checks the data. */
type ArgCondition = {
  arg: number;
  op: string;
  /** A number or a `0x` hex string, what the argument is compared with. */
  value: number | string;
  /** For `MASKED_EQ`: the bits of the argument that are compared. */
  mask?: number | string;
};

type ProfileData = {
  defaultErrno: string;
  architectures: Record<SeccompHostArch, string[]>;
  allow: Record<string, string[]>;
  allowOnArchitecture: Record<SeccompHostArch, string[]>;
  allowWithCapability: Record<string, string[]>;
  allowIfArguments: { syscall: string; anyOf: ArgCondition[] }[];
  refuse: { syscalls: string[]; errno: string }[];
};

const data: ProfileData = profile;

// Errno names the profile may use. EPERM and ENOSYS have the same numbers on
// x86_64 and aarch64 (asm-generic), the two architectures Deno runs on.
const ERRNO: Readonly<Record<string, number>> = { EPERM: 1, ENOSYS: 38 };

const OPS = new Set(["NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ"]);

const built = new Map<SeccompHostArch, OciSeccomp>();

function errno(name: string): number {
  const n = ERRNO[name];
  if (n === undefined) throw new Error(`seccomp_profile.json: unknown errno ${name}`);
  return n;
}

// Flag values are written in hex in the JSON (JSON has no hex numbers).
function operand(value: number | string, syscall: string): number {
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) {
    throw new Error(`seccomp_profile.json: bad argument value ${value} for ${syscall}`);
  }
  return n;
}

function argRule(syscall: string, cond: ArgCondition): OciSeccompRule {
  if (!OPS.has(cond.op)) throw new Error(`seccomp_profile.json: unknown op ${cond.op}`);
  const value = operand(cond.value, syscall);
  // OCI (like libseccomp) puts the mask in `value` and the expected bits in `valueTwo`.
  const arg: OciSeccompArg = cond.op === "MASKED_EQ"
    ? {
      index: cond.arg,
      value: operand(cond.mask ?? Number.NaN, syscall),
      valueTwo: value,
      op: "SCMP_CMP_MASKED_EQ",
    }
    : { index: cond.arg, value, op: `SCMP_CMP_${cond.op}` };
  return { names: [syscall], action: "SCMP_ACT_ALLOW", args: [arg] };
}

function build(arch: SeccompHostArch): OciSeccomp {
  // One unconditional rule keeps the filter small: the capabilities listed
  // in allowWithCapability are ones every sandbox holds.
  const allowed = [
    ...Object.values(data.allow).flat(),
    ...data.allowOnArchitecture[arch],
    ...Object.values(data.allowWithCapability).flat(),
  ].sort();
  const syscalls: OciSeccompRule[] = [{ names: allowed, action: "SCMP_ACT_ALLOW" }];
  // OCI ANDs the args of one rule, so each alternative is a rule of its own.
  for (const rule of data.allowIfArguments) {
    for (const cond of rule.anyOf) syscalls.push(argRule(rule.syscall, cond));
  }
  for (const rule of data.refuse) {
    syscalls.push({ names: rule.syscalls, action: "SCMP_ACT_ERRNO", errnoRet: errno(rule.errno) });
  }
  return {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: errno(data.defaultErrno),
    architectures: data.architectures[arch],
    syscalls,
  };
}

/**
 * The default `linux.seccomp` of a sandbox on a host of architecture `arch`
 * (this host's by default): Docker's default profile for a container with
 * Docker's default capabilities minus CAP_NET_RAW. Everything else fails
 * with EPERM, `clone3` with ENOSYS so libcs fall back to the checkable `clone`.
 *
 * Built once per architecture and shared by every spec, as it is embedded
 * in each: callers must not modify it (the types are read-only).
 */
export function defaultSeccomp(arch: SeccompHostArch = Deno.build.arch): OciSeccomp {
  let seccomp = built.get(arch);
  if (seccomp === undefined) {
    seccomp = build(arch);
    built.set(arch, seccomp);
  }
  return seccomp;
}
