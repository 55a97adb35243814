/**
 * The OCI runtime spec of a sandbox: the image config plus the request, with
 * the defaults containerd and Docker give a container, hardened (no
 * CAP_NET_RAW, a seccomp profile, no new privileges), limited, and in the
 * network namespace the agent's network chose.
 *
 * @module
 */
import type { SandboxSpec } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { FailedPreconditionError } from "../../registry/errors.ts";
import type { NetnsChoice } from "../network/mod.ts";
import type { ImageRunConfig } from "./image.ts";

/** A sandbox's limits, with the agent's defaults already applied. */
export interface ResourceLimits {
  /** Thousandths of a CPU; undefined for no limit. */
  readonly cpuMillis?: number;
  /** Bytes of memory; undefined for no limit. */
  readonly memoryBytes?: number;
  /** Most processes and threads at once. */
  readonly pids: number;
}

/** Options for {@linkcode buildOciSpec}. */
export interface OciSpecOptions {
  /** containerd namespace, for the cgroup path `/NAMESPACE/ID`. */
  readonly namespace: string;
  /** The sandbox's limits. */
  readonly resources: ResourceLimits;
  /** Which network namespace the container joins. */
  readonly netns: NetnsChoice;
  /** The `linux.seccomp` section, or undefined for none. */
  readonly seccomp?: Record<string, unknown>;
  /** Host files bind-mounted read-only at the same path (e.g. `/etc/resolv.conf`). */
  readonly hostFiles: readonly string[];
  /**
   * A static busybox on the host, bind-mounted read-only at
   * {@linkcode HELPER_PATH} so that file operations work in images without a
   * shell or tar; none when undefined.
   */
  readonly helper?: string;
  /** Annotations on the spec (e.g. the shim group). */
  readonly annotations?: Record<string, string>;
}

/**
 * Docker's default capability set minus CAP_NET_RAW (raw sockets forge
 * packets and spoof addresses on the bridge): what a sandbox keeps.
 */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/** Where a sandbox sees the agent's helper busybox (read-only, see `OciSpecOptions.helper`). */
export const HELPER_PATH = "/.fsb/busybox";

// containerd's default masked and read-only paths.
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
  "/sys/devices/virtual/powercap",
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
  if (opts.helper !== undefined) {
    mounts.push({
      destination: HELPER_PATH,
      type: "bind",
      source: opts.helper,
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
      resources: limits(opts.resources),
      cgroupsPath: `/${opts.namespace}/${spec.sandboxId}`,
      namespaces: linuxNamespaces(opts.netns),
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      ...(opts.seccomp === undefined ? {} : { seccomp: opts.seccomp }),
    },
  };
}

/** The OCI `linux.resources` limits. */
function limits(r: ResourceLimits): Record<string, unknown> {
  const out: Record<string, unknown> = {
    devices: [{ allow: false, access: "rwm" }],
    pids: { limit: r.pids },
  };
  // No swap limit: cgroup v1 hosts without swap accounting refuse one.
  if (r.memoryBytes !== undefined) out.memory = { limit: r.memoryBytes };
  if (r.cpuMillis !== undefined) {
    out.cpu = { quota: r.cpuMillis * (CPU_PERIOD_US / 1000), period: CPU_PERIOD_US };
  }
  return out;
}

const CPU_PERIOD_US = 100_000;

/**
 * The namespaces a sandbox gets: its own PID, IPC, UTS and mount namespaces,
 * and the network namespace chosen for it (none listed: the host's).
 */
function linuxNamespaces(netns: NetnsChoice): Record<string, string>[] {
  const out: Record<string, string>[] = [
    { type: "pid" },
    { type: "ipc" },
    { type: "uts" },
    { type: "mount" },
  ];
  if (netns.kind === "path") out.push({ type: "network", path: netns.path });
  else if (netns.kind === "new") out.push({ type: "network" });
  return out;
}
