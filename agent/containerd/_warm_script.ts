/**
 * The shell that a warm container runs as PID 1, and the script a claim
 * hands it (shared/DESIGN.md section 13). Private to the warm pool.
 *
 * PID 1 of a warm container is the host's static busybox `sh`, bind-mounted
 * read-only at `/.fsb/busybox`, reading commands from its stdin: a pipe the
 * runc shim feeds from a FIFO on the host. It blocks in that read until a
 * claim writes the script below, which `exec`s the user's command: the
 * command becomes PID 1 with the requested argv, env and working dir.
 *
 * Why stdin and not a FIFO in a bind-mounted run directory: the shim opens
 * the host's FIFO itself, on the host, so the same path works under gVisor,
 * and nothing of it is mounted in the container: once the script has swapped
 * stdin for `/dev/null`, only the helper mount remains. (Checked here with
 * Debian's runsc 20221219: a host FIFO in a bind-mounted directory cannot
 * even be listed inside the sandbox, `Operation not permitted`, and a host
 * writer finds no reader, ENXIO; under runc it works.)
 *
 * Why the script is careful:
 * - busybox here is built to prefer its applets (`exec ls` runs busybox's
 *   `ls`, even where the image has another), so the script looks the command
 *   up in PATH itself, as runc does, and execs the path it found, with
 *   `exec -a` keeping argv[0] exactly as asked;
 * - the shell exports `PWD`, `OLDPWD` and `SHLVL` of its own and resets
 *   `IFS`, `OPTIND` and `PPID`, so the script unsets or re-exports them to
 *   give the command the environment runc would have given it;
 * - the script is one `{ ... }` group: the shell parses all of it before
 *   running any of it, so a script cut short (an agent that died mid-write)
 *   runs nothing;
 * - runc creates a working dir the image lacks, so the script does too;
 * - stderr goes to stdout from the first line on: the shim writes both of a
 *   warm container's streams to one `file://` log, and containerd 1.6's shim
 *   may drop what stderr wrote last (see `_shim_logger.ts`); one stream
 *   loses nothing, and the log interleaves them as before.
 *
 * @module
 */

/** What a claim asks of a warm container, with the image's defaults applied. */
export interface ClaimRequest {
  /** The command and its arguments (Docker's rules already applied). */
  readonly argv: readonly string[];
  /** The whole environment the command must get, `NAME=value` each. */
  readonly env: readonly string[];
  /** Absolute working dir. */
  readonly cwd: string;
}

/** What the warm container's shell started with. */
export interface WarmStart {
  /** Its environment as given in the OCI spec, `NAME=value` each (runc may add HOME). */
  readonly env: readonly string[];
  /** Its working dir. */
  readonly cwd: string;
  /** Where the helper busybox is inside the container. */
  readonly helper: string;
}

/**
 * Variables the shell sets, resets or exports of its own accord (it exports
 * a default PATH when it had none), whatever its environment said, and the
 * one the script's PATH search assigns: re-exported or unset by every script.
 */
const SHELL_OWNED = ["PWD", "OLDPWD", "SHLVL", "IFS", "OPTIND", "PPID", "PATH", "d"];
/** Variables whose value the shell computes on each read: they cannot be passed through it. */
const SHELL_DYNAMIC = new Set(["LINENO", "RANDOM", "SECONDS"]);
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** PID 1 of a warm container: the helper's shell, reading its commands from stdin. */
export function startArgv(helper: string): string[] {
  return [helper, "sh", "-s"];
}

/** `value` as one single-quoted shell word: every byte kept, `'` written as `'\''`. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * Why `env` cannot pass through the warm shell unchanged, or undefined when
 * it can: a name the shell cannot hold, or one whose value it computes.
 */
export function envProblem(env: readonly string[]): string | undefined {
  for (const entry of env) {
    const eq = entry.indexOf("=");
    const name = eq < 0 ? entry : entry.slice(0, eq);
    if (!NAME.test(name)) return `env name "${name}" is not a shell name`;
    if (SHELL_DYNAMIC.has(name)) return `env name ${name} is the shell's own`;
  }
  return undefined;
}

/**
 * The script that turns the warm shell into `req`'s command. `req.env` must
 * pass {@linkcode envProblem}; `req.argv` must not be empty.
 *
 * Its steps, in order: stderr onto stdout; the working dir; the command's
 * path (before any variable changes, so the request's env cannot disturb the
 * search); the environment; the exec.
 */
export function claimScript(req: ClaimRequest, start: WarmStart): string {
  const target = envMap(req.env);
  const initial = envMap(start.env);
  const lines = ["{", "exec 2>&1"];
  if (req.cwd !== start.cwd) {
    const dir = shellQuote(req.cwd);
    lines.push(
      `cd -- ${dir} 2>/dev/null || { ${
        shellQuote(start.helper)
      } mkdir -p -- ${dir} && cd -- ${dir}; } || exit 126`,
    );
  }
  lines.push(...lookupLines(req.argv[0], target.get("PATH")));
  const unset = [
    ...SHELL_OWNED.filter((name) => !target.has(name)),
    ...[...initial.keys()].filter((name) => !target.has(name) && !SHELL_OWNED.includes(name)),
  ];
  if (unset.length > 0) lines.push(`unset ${unset.join(" ")}`);
  for (const [name, value] of target) {
    if (initial.get(name) === value && !SHELL_OWNED.includes(name)) continue;
    lines.push(`export ${name}=${shellQuote(value)}`);
  }
  const args = req.argv.slice(1).map((a) => ` ${shellQuote(a)}`).join("");
  lines.push(`exec -a ${shellQuote(req.argv[0])} "$1"${args} </dev/null`, "}", "");
  return lines.join("\n");
}

/**
 * Finds argv[0] as runc does and leaves its path in `$1`: as given when it
 * holds a `/`, else the first regular executable file of that name in PATH's
 * absolute directories. When there is none it says so on stderr, in runc's
 * words, and exits 127.
 */
function lookupLines(name: string, path: string | undefined): string[] {
  if (name.includes("/")) return [`set -- ${shellQuote(name)}`];
  const dirs = (path ?? "").split(":").filter((d) => d.startsWith("/"));
  const lines: string[] = [];
  if (dirs.length > 0) {
    const file = `"$d"/${shellQuote(name)}`;
    lines.push(
      `for d in ${dirs.map(shellQuote).join(" ")}; do`,
      `if [ -f ${file} ] && [ -x ${file} ]; then set -- ${file}; break; fi`,
      "done",
    );
  }
  const missing = `exec: "${name}": executable file not found in $PATH`;
  lines.push(`[ $# -gt 0 ] || { echo ${shellQuote(missing)} >&2; exit 127; }`);
  return lines;
}

/** `NAME=value` entries by name, the last of a name winning (as in a process's env). */
function envMap(env: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of env) {
    const eq = entry.indexOf("=");
    if (eq > 0) out.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return out;
}
