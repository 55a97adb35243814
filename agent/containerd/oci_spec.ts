/**
 * The OCI runtime spec of a sandbox: the image config plus the request, with
 * the defaults containerd and Docker give a container, on the host network.
 *
 * @module
 */
import type { SandboxSpec } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { FailedPreconditionError } from "../../registry/errors.ts";
import type { ImageRunConfig } from "./image.ts";

/** Options for {@linkcode buildOciSpec}. */
export interface OciSpecOptions {
  /** containerd namespace, for the cgroup path `/NAMESPACE/ID`. */
  readonly namespace: string;
  /** Maximum number of processes in the container. */
  readonly pidsLimit: number;
  /** Host files bind-mounted read-only at the same path (e.g. `/etc/resolv.conf`). */
  readonly hostFiles: readonly string[];
  /** Annotations on the spec (e.g. the shim group). */
  readonly annotations?: Record<string, string>;
}

/** Docker's default capability set: what a non-privileged container keeps. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

const MASKED_PATHS = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
];

const READONLY_PATHS = [
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
];

const STANDARD_MOUNTS = [
  { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
  {
    destination: "/dev",
    type: "tmpfs",
    source: "tmpfs",
    options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
  },
  {
    destination: "/dev/pts",
    type: "devpts",
    source: "devpts",
    options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
  },
  {
    destination: "/dev/shm",
    type: "tmpfs",
    source: "shm",
    options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
  },
  {
    destination: "/dev/mqueue",
    type: "mqueue",
    source: "mqueue",
    options: ["nosuid", "noexec", "nodev"],
  },
  {
    destination: "/sys",
    type: "sysfs",
    source: "sysfs",
    options: ["nosuid", "noexec", "nodev", "ro"],
  },
  {
    destination: "/sys/fs/cgroup",
    type: "cgroup",
    source: "cgroup",
    options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
  },
  {
    destination: "/run",
    type: "tmpfs",
    source: "tmpfs",
    options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
  },
];

/** `entrypoint + cmd` with Docker's rules: a given command drops the image's Cmd too. */
export function processArgs(spec: SandboxSpec, config: ImageRunConfig): string[] {
  const entrypoint = spec.command.length > 0 ? spec.command : config.Entrypoint ?? [];
  const cmd = spec.args.length > 0 ? spec.args : spec.command.length > 0 ? [] : config.Cmd ?? [];
  return [...entrypoint, ...cmd];
}

/** The image's environment with the request's variables set over it. */
export function processEnv(spec: SandboxSpec, config: ImageRunConfig): string[] {
  const env = new Map<string, string>();
  for (const entry of config.Env ?? []) {
    const eq = entry.indexOf("=");
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  for (const [k, v] of Object.entries(spec.envs)) env.set(k, v);
  const out: string[] = [];
  for (const [k, v] of env) out.push(`${k}=${v}`);
  return out;
}

/**
 * The image's user as numbers. Only numeric users (and `root`) are
 * understood: a name would need the image's /etc/passwd.
 */
export function processUser(config: ImageRunConfig, image: string): { uid: number; gid: number } {
  const user = config.User ?? "";
  if (user === "" || user === "root" || user === "root:root") return { uid: 0, gid: 0 };
  const m = /^(\d+)(?::(\d+))?$/.exec(user);
  if (m === null) {
    throw new FailedPreconditionError(
      `Cannot run image "${image}" as its user "${user}" is not numeric (uid[:gid])`,
    );
  }
  const uid = Number(m[1]);
  return { uid, gid: m[2] === undefined ? uid : Number(m[2]) };
}

/**
 * Builds the OCI runtime spec (as a JSON-ready object) for sandbox `spec`
 * from image config `config`. Throws FailedPreconditionError when neither
 * the request nor the image gives a command.
 */
export function buildOciSpec(
  spec: SandboxSpec,
  config: ImageRunConfig,
  opts: OciSpecOptions,
): Record<string, unknown> {
  const args = processArgs(spec, config);
  if (args.length === 0) {
    throw new FailedPreconditionError(
      `Cannot create sandbox ${spec.sandboxId} as image "${spec.image}" has no command and none was given`,
    );
  }
  const user = processUser(config, spec.image);
  const caps = DEFAULT_CAPABILITIES;
  const mounts: unknown[] = [...STANDARD_MOUNTS];
  for (const file of opts.hostFiles) {
    mounts.push({
      destination: file,
      type: "bind",
      source: file,
      options: ["rbind", "ro", "nosuid", "nodev"],
    });
  }
  return {
    ociVersion: "1.0.2-dev",
    process: {
      terminal: false,
      user: { uid: user.uid, gid: user.gid },
      args,
      env: processEnv(spec, config),
      cwd: spec.workingDir || config.WorkingDir || "/",
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: "rootfs" },
    mounts,
    annotations: opts.annotations ?? {},
    linux: {
      resources: {
        devices: [{ allow: false, access: "rwm" }],
        pids: { limit: opts.pidsLimit },
      },
      cgroupsPath: `/${opts.namespace}/${spec.sandboxId}`,
      // No network namespace: sandboxes share the host's network (hence the
      // per-agent port exclusivity in the registry).
      namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }],
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
    },
  };
}
