/**
 * Running sandboxes under gVisor (`runsc`) through containerd's runc v2 shim
 * (shared/DESIGN.md section 11): the shim runs whatever binary its runc
 * options name instead of `runc`, and runsc speaks runc's command line. A
 * small wrapper script adds the runsc flags the shim knows nothing about.
 *
 * Checked with containerd 1.6.20 and Debian's runsc release-20221219.0 on a
 * cgroup v1 host with Linux 6.18:
 * - runsc's `--network=sandbox` (gVisor's own network stack) cannot work
 *   there: that runsc decides it is in the host's network namespace when
 *   /proc/sys/net/core/rmem_default exists, which recent kernels (Linux
 *   commit 19249c0724f2) show in every namespace, so it refuses every start
 *   ("cannot run with network enabled in root network namespace"). gVisor
 *   changed the check in July 2024 (gVisor commit 19f6b0c07).
 *   Hence `host` for a namespace the agent made and `none` for a sandbox
 *   without network: see {@linkcode runscNetworkFor}.
 * - The spec's cgroup limits land on the host cgroup
 *   `/sys/fs/cgroup/<controller>/<cgroupsPath>`, holding runsc's sandbox and
 *   gofer processes. So the memory and CPU limits also cover gVisor itself,
 *   and the OOM killer ends the whole sandbox (exit 137, `oom_kill` counted
 *   in the cgroup, which stays until the task is deleted). The pids limit
 *   counts host tasks, not the sandbox's processes: see {@linkcode runscFlags}.
 *
 * @module
 */
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema } from "@bufbuild/protobuf/wkt";
import { OptionsSchema } from "../../proto/gen/containerd/runc/v1/options_pb.ts";
import { FailedPreconditionError } from "../../registry/errors.ts";

/**
 * Type URL of the runc shims' options in containerd 1.6. containerd 1.6
 * resolves an Any's type through the gogo/protobuf registry, where the runc
 * options are registered under their bare message name; with a
 * `type.googleapis.com/` prefix (what protobuf-es's `anyPack` writes) the
 * task create fails with "type with url ... not found".
 */
export const RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options";

/**
 * The runc shim's default runtime root: the shim runs the runtime with
 * `--root DEFAULT_RUNC_ROOT/<containerd namespace>`. The shim hard-codes it;
 * it does not follow containerd's `state` directory, so every containerd on
 * the host (a test's private one included) shares it unless the runc
 * options set `root`.
 */
export const DEFAULT_RUNC_ROOT = "/run/containerd/runc";

/** Debian's runsc. */
export const DEFAULT_RUNSC_PATH = "/usr/bin/runsc";

/**
 * How gVisor gives the sandbox a network (runsc's `--network`):
 * - `host`: the application's sockets are host kernel sockets, made by the
 *   sentry inside the spec's network namespace, so the sandbox sees exactly
 *   that namespace's interfaces and routes. Without a network namespace in
 *   the spec that is the agent's own namespace; with one that has no path it
 *   is a new namespace whose `lo` is down (no loopback at all). The sandbox
 *   process stays root in the host's user namespace, with the container's
 *   capabilities.
 * - `none`: gVisor's own loopback and nothing else, in a new namespace,
 *   whatever the spec says; the sandbox process runs as `nobody` in a user
 *   namespace of its own.
 * - `sandbox`: gVisor's own network stack on the interfaces of the spec's
 *   namespace (it moves their addresses into the sandbox). The safest mode,
 *   but Debian's runsc refuses to start with it on recent kernels (see the
 *   module notes).
 */
export type RunscNetwork = "host" | "none" | "sandbox";

/**
 * The network mode for a sandbox whose network namespace is `netns` (the
 * agent network's choice): `host` for a namespace the agent made (`path`)
 * and for the host's own (`host`, development only), `none` for a sandbox
 * without network (`new`), where `host` would leave it without even a
 * loopback.
 */
export function runscNetworkFor(netns: { readonly kind: "path" | "new" | "host" }): RunscNetwork {
  return netns.kind === "new" ? "none" : "host";
}

/** Options for {@linkcode writeRunscWrapper}. */
export interface RunscWrapperOptions {
  /** The runsc binary; {@linkcode DEFAULT_RUNSC_PATH} unless told. */
  readonly runscPath?: string;
  /**
   * gVisor platform (`--platform`): `ptrace` unless told, which needs
   * nothing from the host. (`kvm` hung every task create for 30 s on the VM
   * checked, with /dev/kvm present, leaving spinning sandbox processes.)
   */
  readonly platform?: string;
  /** runsc's `--network`; `host` unless told. See {@linkcode RunscNetwork} and {@linkcode runscNetworkFor}. */
  readonly network?: RunscNetwork;
  /** More global runsc flags, each one argument (e.g. `--debug-log=/tmp/runsc/`, `--debug`). */
  readonly extraFlags?: readonly string[];
  /**
   * A directory where `runsc exec` writes each exec's pid inside the
   * sandbox, as `CONTAINER.EXEC.pid`: what {@linkcode killRunscExec} needs.
   * None unless told.
   */
  readonly execPidDir?: string;
}

/**
 * The global runsc flags a wrapper passes, before the shim's own arguments:
 * `--platform`, `--network`, then the extra flags.
 *
 * What is not here, on purpose: `--root`, `--log` and `--log-format`, which
 * the shim passes itself (the root holds the state the shim's later `kill`,
 * `state` and `delete` calls find; the log is where the shim reads a failed
 * create's reason); `--ignore-cgroups`, since the spec's cgroup limits are
 * what bounds a sandbox on the host; `--net-raw`, off by default, which
 * keeps raw sockets out of the sandbox (as dropping `CAP_NET_RAW` does under
 * runc).
 *
 * About the spec's pids limit: runsc applies it to the host cgroup of its
 * own processes, whose tasks are the sentry's threads, the gofer's and, on
 * ptrace, stub processes per guest process; it sets no limit on guest
 * processes. Measured: about 32 host tasks for an idle `sh`, 128 with 10
 * more guest processes, 280 with 30; a limit of 32 made the sentry panic
 * ("error initializing first thread") at the first fork. The limit given to
 * runsc must allow for that.
 */
export function runscFlags(opts: RunscWrapperOptions = {}): string[] {
  return [
    `--platform=${opts.platform ?? "ptrace"}`,
    `--network=${opts.network ?? "host"}`,
    ...(opts.extraFlags ?? []),
  ];
}

/**
 * Writes an executable shell wrapper into `dir` (created if missing) that
 * execs runsc with {@linkcode runscFlags} followed by the arguments it was
 * given, and resolves to its absolute path: the binary to name in
 * {@linkcode runcOptions}. Throws FailedPreconditionError when runsc is not
 * at `runscPath`.
 *
 * The shim has no way to pass extra runtime flags, hence the script; `exec`
 * makes runsc the shim's child itself, so the shim's signals and exit status
 * handling see runsc, not a shell. The file name (`runsc-NETWORK-DIGEST`)
 * carries a digest of the content, so wrappers of different flags never
 * overwrite each other and a container's shim keeps calling the wrapper it
 * was created with; the file is written under a temporary name and renamed,
 * so a shim never runs a half-written script.
 */
export async function writeRunscWrapper(
  dir: string,
  opts: RunscWrapperOptions = {},
): Promise<string> {
  const runsc = opts.runscPath ?? DEFAULT_RUNSC_PATH;
  try {
    await Deno.stat(runsc);
  } catch {
    throw new FailedPreconditionError(
      `Cannot run sandboxes under gVisor as runsc is not at ${runsc} (Debian's package: runsc)`,
    );
  }
  const script = [
    "#!/bin/sh",
    "# Written by fsb: runsc (gVisor) for containerd's runc shim, with fsb's flags.",
    ...(opts.execPidDir === undefined ? [] : execPidLines(opts.execPidDir)),
    `exec ${[runsc, ...runscFlags(opts)].map(shellQuote).join(" ")} "$@"`,
    "",
  ].join("\n");
  if (opts.execPidDir !== undefined) await Deno.mkdir(opts.execPidDir, { recursive: true });
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(script)),
  );
  const hex = Array.from(digest.slice(0, 6), (b) => b.toString(16).padStart(2, "0")).join("");
  await Deno.mkdir(dir, { recursive: true });
  const path = join(await Deno.realPath(dir), `runsc-${opts.network ?? "host"}-${hex}`);
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(tmp, script, { mode: 0o755 });
    // The mode given at creation is filtered by the umask; the shim needs it executable.
    await Deno.chmod(tmp, 0o755);
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  return path;
}

/** Options for {@linkcode runcOptions}. */
export interface RuncOptionsOptions {
  /**
   * The runtime root's parent (the shim appends the containerd namespace);
   * {@linkcode DEFAULT_RUNC_ROOT} when unset.
   */
  readonly root?: string;
}

/**
 * The runc shim options that make `io.containerd.runc.v2` run `binaryName`
 * (e.g. a {@linkcode writeRunscWrapper} script) instead of runc, as the
 * `Any` to set as the container's `runtime.options`.
 *
 * containerd also takes them as `CreateTaskRequest.options`, which then win
 * over the container's; the container record is the better home, as it
 * outlives an agent restart and is what containerd reads when it cleans up
 * after a dead shim. The shim reads them per container, also when one shim
 * serves many containers.
 */
export function runcOptions(binaryName: string, opts: RuncOptionsOptions = {}): Any {
  const options = create(OptionsSchema, { binaryName, root: opts.root ?? "" });
  return create(AnySchema, {
    typeUrl: RUNC_OPTIONS_TYPE_URL,
    value: toBinary(OptionsSchema, options),
  });
}

/**
 * The runc shim options that run sandboxes under runsc: one wrapper per
 * gVisor network mode, written into `dir` on first use (`dir/exec-pids`
 * for exec pids, see {@linkcode killRunscExec}). The runtime and the warm
 * pool each keep one, so warm and cold sandboxes run the same wrappers.
 */
export class RunscWrappers {
  readonly #dir: string;
  readonly #written = new Map<RunscNetwork, Promise<string>>();

  /** Writes nothing until asked. */
  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Where the wrappers record each exec's pid inside its sandbox. */
  get execPidDir(): string {
    return join(this.#dir, "exec-pids");
  }

  /** The shim options for a sandbox in network namespace `netns`. */
  async options(netns: { readonly kind: "path" | "new" | "host" }): Promise<Any> {
    const network = runscNetworkFor(netns);
    let wrapper = this.#written.get(network);
    if (wrapper === undefined) {
      wrapper = writeRunscWrapper(this.#dir, { network, execPidDir: this.execPidDir });
      this.#written.set(network, wrapper);
      wrapper.catch(() => this.#written.delete(network));
    }
    return runcOptions(await wrapper);
  }
}

/**
 * The pids cgroup limit for a runsc sandbox asking for `pids` processes.
 * gVisor's guest processes are not host tasks: the cgroup counts the
 * sentry's and gofer's threads (about 30 for an idle shell, about 10 more
 * per guest process, measured), so the limit is scaled to leave gVisor room.
 * It bounds the sandbox's host tasks, not exactly its guest processes.
 */
export function runscPids(pids: number): number {
  return 64 + pids * 12;
}

/**
 * The `--root` the runc shim gives the runtime for containers of containerd
 * namespace `namespace`: `ROOT/NAMESPACE`, ROOT being the options' `root` or
 * {@linkcode DEFAULT_RUNC_ROOT}. This is where {@linkcode forceDeleteRunsc}
 * must look.
 */
export function runscRoot(namespace: string, root?: string): string {
  return join(root || DEFAULT_RUNC_ROOT, namespace);
}

/** Options for {@linkcode forceDeleteRunsc}. */
export interface ForceDeleteRunscOptions {
  /** The runsc binary; {@linkcode DEFAULT_RUNSC_PATH} unless told. */
  readonly runscPath?: string;
  /** Gives up (killing runsc) after this long; 10 s unless told. */
  readonly timeoutMs?: number;
}

/**
 * Runs `runsc --root ROOT delete --force ID`, for a runsc task whose start
 * failed, before containerd's task delete. Such a task stays `created`, its
 * sandbox and gofer processes alive: containerd's kill fails ("cannot signal
 * container in state created"), and its task delete, which runs runsc's
 * delete without `--force`, took 2.0-2.2 s each time measured; with this
 * first, about 130 ms plus 45 ms. `root` is {@linkcode runscRoot}'s.
 *
 * runsc succeeds for an id it does not know, so this is safe to call
 * whenever a start failed. It cannot help a create that never finished (no
 * state written, only a lock file): those processes must be killed. Throws
 * with runsc's output when runsc fails or takes longer than the timeout.
 */
export async function forceDeleteRunsc(
  root: string,
  id: string,
  opts: ForceDeleteRunscOptions = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const signal = AbortSignal.timeout(timeoutMs);
  const out = await new Deno.Command(opts.runscPath ?? DEFAULT_RUNSC_PATH, {
    args: ["--root", root, "delete", "--force", id],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal,
  }).output();
  if (out.success) return;
  const decoder = new TextDecoder();
  const text = (decoder.decode(out.stderr) + decoder.decode(out.stdout)).trim();
  const why = signal.aborted ? `took over ${timeoutMs} ms` : `failed (exit ${out.code})`;
  throw new Error(`runsc --root ${root} delete --force ${id} ${why}: ${text}`);
}

/**
 * Shell lines that add `--internal-pid-file DIR/CONTAINER.EXEC.pid` after an
 * `exec` subcommand. The runc shim signals an exec by the host pid runsc
 * leaves in `--pid-file` (BUNDLE/EXEC.pid), which is runsc's own waiting
 * process: a signal there never reaches the process inside gVisor (checked:
 * KILL and TERM both left `sleep` running). The pid inside the sandbox lets
 * {@linkcode killRunscExec} signal it through `runsc kill --pid`.
 */
function execPidLines(dir: string): string[] {
  return [
    'sub=""; prev=""; pidfile=""',
    'for a in "$@"; do',
    '  if [ -z "$sub" ] && [ "$a" = exec ]; then sub=exec; fi',
    '  if [ "$prev" = --pid-file ]; then pidfile="$a"; fi',
    '  prev="$a"',
    "done",
    'if [ "$sub" = exec ] && [ -n "$pidfile" ]; then',
    '  bundle="${pidfile%/*}"; name="${pidfile##*/}"',
    `  internal=${shellQuote(dir)}/"\${bundle##*/}.\${name}"`,
    '  n=$#; added=""',
    '  for a in "$@"; do',
    '    if [ -z "$added" ] && [ "$a" = exec ]; then',
    '      set -- "$@" exec --internal-pid-file "$internal"; added=1',
    '    else set -- "$@" "$a"; fi',
    "  done",
    '  shift "$n"',
    "fi",
  ];
}

/**
 * Sends `opts.signo` to exec `execId` of runsc container `id` through `runsc kill
 * --pid`, with the pid a wrapper made with `execPidDir` recorded. Resolves
 * to false when that pid is unknown (no such exec, or a wrapper without
 * `execPidDir`); throws with runsc's words when runsc fails.
 */
export async function killRunscExec(
  id: string,
  execId: string,
  opts: { root: string; execPidDir: string; signo: number; runscPath?: string },
): Promise<boolean> {
  const signo = opts.signo;
  let pid: string;
  try {
    pid = (await Deno.readTextFile(join(opts.execPidDir, `${id}.${execId}.pid`))).trim();
  } catch {
    return false;
  }
  if (!/^\d+$/.test(pid)) return false;
  const out = await new Deno.Command(opts.runscPath ?? DEFAULT_RUNSC_PATH, {
    args: ["--root", opts.root, "kill", "--pid", pid, id, String(signo)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).output();
  if (out.success) return true;
  const text = new TextDecoder().decode(out.stderr).trim();
  // A process that already ended is not an error for a kill.
  if (/no such process|not found|doesn't exist/i.test(text)) return true;
  throw new Error(`runsc kill --pid ${pid} ${id} ${signo} failed: ${text}`);
}

/** Removes the pid record of a runsc exec that ended. */
export async function forgetRunscExec(
  id: string,
  execId: string,
  opts: { execPidDir: string },
): Promise<void> {
  await Deno.remove(join(opts.execPidDir, `${id}.${execId}.pid`)).catch(() => {});
}

/** `arg` as one shell word: as is when plainly safe, else single-quoted. */
function shellQuote(arg: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}
