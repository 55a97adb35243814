import assert from "node:assert/strict";
import {
  defaultSeccomp,
  type OciSeccomp,
  type OciSeccompArg,
} from "../../../agent/containerd/seccomp.ts";
import { DEFAULT_CAPABILITIES } from "../../../agent/containerd/oci_spec.ts";
import profile from "../../../agent/containerd/seccomp_profile.json" with { type: "json" };

const EPERM = 1;
const ENOSYS = 38;
const CLONE_NAMESPACES = {
  CLONE_NEWNS: 0x00020000,
  CLONE_NEWCGROUP: 0x02000000,
  CLONE_NEWUTS: 0x04000000,
  CLONE_NEWIPC: 0x08000000,
  CLONE_NEWUSER: 0x10000000,
  CLONE_NEWPID: 0x20000000,
  CLONE_NEWNET: 0x40000000,
};
// What glibc passes for a thread and for fork: no namespace bits.
const CLONE_THREAD_FLAGS = 0x003d0f00;
const SIGCHLD = 17;

const ACTIONS = new Set([
  "SCMP_ACT_KILL",
  "SCMP_ACT_KILL_PROCESS",
  "SCMP_ACT_KILL_THREAD",
  "SCMP_ACT_TRAP",
  "SCMP_ACT_ERRNO",
  "SCMP_ACT_TRACE",
  "SCMP_ACT_ALLOW",
  "SCMP_ACT_LOG",
  "SCMP_ACT_NOTIFY",
]);
const OPS = new Set([
  "SCMP_CMP_NE",
  "SCMP_CMP_LT",
  "SCMP_CMP_LE",
  "SCMP_CMP_EQ",
  "SCMP_CMP_GE",
  "SCMP_CMP_GT",
  "SCMP_CMP_MASKED_EQ",
]);

// Never allowed without arguments: each would let a sandbox reach past its
// namespaces or the host kernel's defences.
const DANGEROUS = [
  "add_key",
  "bpf",
  "clone3",
  "delete_module",
  "finit_module",
  "init_module",
  "io_uring_setup",
  "kexec_file_load",
  "kexec_load",
  "keyctl",
  "mount",
  "move_mount",
  "open_by_handle_at",
  "perf_event_open",
  "pivot_root",
  "process_vm_writev",
  "ptrace",
  "reboot",
  "request_key",
  "setns",
  "swapoff",
  "swapon",
  "umount2",
  "unshare",
  "userfaultfd",
];

function argMatches(arg: OciSeccompArg, args: readonly number[]): boolean {
  const v = args[arg.index] ?? 0;
  switch (arg.op) {
    case "SCMP_CMP_EQ":
      return v === arg.value;
    case "SCMP_CMP_NE":
      return v !== arg.value;
    case "SCMP_CMP_LT":
      return v < arg.value;
    case "SCMP_CMP_LE":
      return v <= arg.value;
    case "SCMP_CMP_GT":
      return v > arg.value;
    case "SCMP_CMP_GE":
      return v >= arg.value;
    case "SCMP_CMP_MASKED_EQ":
      return ((v & arg.value) >>> 0) === (arg.valueTwo ?? 0);
    default:
      throw new Error(`unknown op ${arg.op}`);
  }
}

/** What the filter does to `name(args)`: "allow", or the errno it fails with. */
function verdict(s: OciSeccomp, name: string, args: readonly number[] = []): "allow" | number {
  for (const rule of s.syscalls) {
    if (!rule.names.includes(name)) continue;
    if (!(rule.args ?? []).every((a) => argMatches(a, args))) continue;
    return rule.action === "SCMP_ACT_ALLOW" ? "allow" : rule.errnoRet ?? s.defaultErrnoRet;
  }
  return s.defaultErrnoRet;
}

function unconditionalAllows(s: OciSeccomp): string[] {
  return s.syscalls
    .filter((r) => r.action === "SCMP_ACT_ALLOW" && (r.args ?? []).length === 0)
    .flatMap((r) => [...r.names]);
}

Deno.test("defaultSeccomp() is a valid OCI linux.seccomp that fails unknown syscalls with EPERM", () => {
  for (const arch of ["x86_64", "aarch64"] as const) {
    const s = defaultSeccomp(arch);
    assert.equal(s.defaultAction, "SCMP_ACT_ERRNO");
    assert.equal(s.defaultErrnoRet, EPERM);
    assert.ok(s.syscalls.length > 0);
    for (const rule of s.syscalls) {
      assert.ok(rule.names.length > 0, JSON.stringify(rule));
      for (const name of rule.names) assert.match(name, /^_?[a-z][a-z0-9_]*$/);
      assert.ok(ACTIONS.has(rule.action), rule.action);
      if (rule.errnoRet !== undefined) {
        assert.equal(rule.action, "SCMP_ACT_ERRNO");
        assert.ok(Number.isInteger(rule.errnoRet) && rule.errnoRet > 0);
      }
      for (const arg of rule.args ?? []) {
        assert.ok(Number.isInteger(arg.index) && arg.index >= 0 && arg.index < 6);
        assert.ok(OPS.has(arg.op), arg.op);
        assert.ok(Number.isInteger(arg.value) && arg.value >= 0 && arg.value <= 0xffffffff);
        if (arg.valueTwo !== undefined) assert.equal(arg.op, "SCMP_CMP_MASKED_EQ");
      }
    }
    // Survives the trip to the runtime unchanged.
    assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
  }
});

Deno.test("defaultSeccomp() covers the host's native and compat architectures", () => {
  assert.deepEqual(defaultSeccomp("x86_64").architectures, [
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
  ]);
  assert.deepEqual(defaultSeccomp("aarch64").architectures, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
  assert.equal(defaultSeccomp(), defaultSeccomp(Deno.build.arch));
});

Deno.test("defaultSeccomp() builds once and returns the same object every time", () => {
  assert.equal(defaultSeccomp(), defaultSeccomp());
  assert.equal(defaultSeccomp("aarch64"), defaultSeccomp("aarch64"));
  assert.notEqual(defaultSeccomp("x86_64"), defaultSeccomp("aarch64"));
});

Deno.test("defaultSeccomp() names a syscall in one unconditional allow at most, and never also conditionally", () => {
  for (const arch of ["x86_64", "aarch64"] as const) {
    const s = defaultSeccomp(arch);
    const unconditional = unconditionalAllows(s);
    assert.equal(new Set(unconditional).size, unconditional.length, "duplicate allowed names");
    const everywhere = new Set(unconditional);
    for (const rule of s.syscalls) {
      if (rule.action === "SCMP_ACT_ALLOW" && (rule.args ?? []).length === 0) continue;
      for (const name of rule.names) {
        assert.ok(!everywhere.has(name), `${name} is allowed unconditionally and also by a rule`);
      }
    }
    // A name's rules all share one action, so rule order never decides.
    const actionOf = new Map<string, string>();
    for (const rule of s.syscalls) {
      for (const name of rule.names) {
        assert.equal(actionOf.get(name) ?? rule.action, rule.action, name);
        actionOf.set(name, rule.action);
      }
    }
  }
});

Deno.test("defaultSeccomp() allows what ordinary programs need", () => {
  const core = [
    "read",
    "write",
    "openat",
    "close",
    "newfstatat",
    "mmap",
    "mprotect",
    "brk",
    "execve",
    "exit_group",
    "wait4",
    "futex",
    "epoll_wait",
    "epoll_pwait",
    "rt_sigaction",
    "getrandom",
    "setuid",
    "accept4",
    "prctl",
    "rseq",
    "chroot",
  ];
  for (const arch of ["x86_64", "aarch64"] as const) {
    const s = defaultSeccomp(arch);
    for (const name of core) assert.equal(verdict(s, name), "allow", `${arch}: ${name}`);
    assert.equal(verdict(s, "clone", [SIGCHLD]), "allow");
    assert.equal(verdict(s, "socket", [2 /* AF_INET */]), "allow");
  }
  assert.equal(verdict(defaultSeccomp("x86_64"), "arch_prctl"), "allow");
  assert.equal(verdict(defaultSeccomp("aarch64"), "arch_prctl"), EPERM);
  assert.equal(verdict(defaultSeccomp("aarch64"), "set_tls"), "allow");
});

Deno.test("defaultSeccomp() denies clone with namespace flags", () => {
  const s = defaultSeccomp();
  const clones = s.syscalls.filter((r) => r.names.includes("clone"));
  const mask = Object.values(CLONE_NAMESPACES).reduce((a, b) => a | b);
  assert.equal(mask, 0x7e020000);
  assert.deepEqual(clones, [{
    names: ["clone"],
    action: "SCMP_ACT_ALLOW",
    args: [{ index: 0, value: mask, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }],
  }]);
  assert.equal(verdict(s, "clone", [CLONE_THREAD_FLAGS]), "allow");
  for (const [flag, bit] of Object.entries(CLONE_NAMESPACES)) {
    assert.equal(verdict(s, "clone", [SIGCHLD | bit]), EPERM, flag);
  }
});

Deno.test("defaultSeccomp() answers clone3 with ENOSYS so libcs fall back to clone", () => {
  const s = defaultSeccomp();
  assert.equal(verdict(s, "clone3"), ENOSYS);
  assert.deepEqual(s.syscalls.filter((r) => r.names.includes("clone3")), [
    { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS },
  ]);
});

Deno.test("defaultSeccomp() allows personality only for Docker's personas", () => {
  const s = defaultSeccomp();
  for (const persona of [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]) {
    assert.equal(verdict(s, "personality", [persona]), "allow", persona.toString(16));
  }
  // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, PER_BSD: would weaken the process or emulate another OS.
  for (const persona of [0x0040000, 0x0400000, 0x0006]) {
    assert.equal(verdict(s, "personality", [persona]), EPERM, persona.toString(16));
  }
});

Deno.test("defaultSeccomp() denies AF_ALG and AF_VSOCK sockets and no other family", () => {
  const s = defaultSeccomp();
  for (let family = 0; family <= 45; family++) {
    const expected = family === 38 || family === 40 ? EPERM : "allow";
    assert.equal(verdict(s, "socket", [family]), expected, `family ${family}`);
  }
});

Deno.test("defaultSeccomp() does not allow mount, unshare, setns, ptrace, bpf, kexec and the like", () => {
  for (const arch of ["x86_64", "aarch64"] as const) {
    const s = defaultSeccomp(arch);
    const allowed = new Set(unconditionalAllows(s));
    for (const name of DANGEROUS) {
      assert.ok(!allowed.has(name), `${arch}: ${name} allowed unconditionally`);
      assert.notEqual(verdict(s, name), "allow", `${arch}: ${name}`);
    }
  }
});

Deno.test("seccomp_profile.json keeps withheld syscalls out and only needs capabilities sandboxes hold", () => {
  const s = defaultSeccomp();
  const withheld = Object.values(profile.withheld).flat();
  for (const name of withheld) assert.notEqual(verdict(s, name), "allow", name);
  for (const cap of Object.keys(profile.allowWithCapability)) {
    assert.ok(DEFAULT_CAPABILITIES.includes(cap), `${cap} is not a sandbox capability`);
  }
  // Sorted lists keep the data's diffs reviewable.
  const lists = [
    ...Object.values(profile.allow),
    ...Object.values(profile.allowOnArchitecture),
    ...Object.values(profile.allowWithCapability),
    ...Object.values(profile.withheld),
  ];
  for (const list of lists) assert.deepEqual(list, [...list].sort());
});
