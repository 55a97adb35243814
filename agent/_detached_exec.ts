/**
 * What the process runtime keeps of a detached exec, beside its sandbox's
 * log `LOG`: in `LOG.execs/`, per exec id, `.stdout` and `.stderr` (its
 * output), `.exit` (its exit code, written by its wrapper) and `.json` (its
 * record); and the wrapper that writes the exit code.
 *
 * @module
 */
import { signalName } from "../registry/exec_rules.ts";
import { type Launch, spawnInSession } from "./_exec_launch.ts";
import type { ExecExitStatus } from "./runtime.ts";

/** A detached exec's files. */
export interface DetachedFiles {
  readonly record: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly exit: string;
}

/** The directory of a sandbox's detached execs, beside its log. */
export function detachedDir(logPath: string): string {
  return `${logPath}.execs`;
}

/** The files of exec `execId` in `dir`. */
export function detachedFiles(dir: string, execId: string): DetachedFiles {
  const base = `${dir}/${execId}`;
  return {
    record: `${base}.json`,
    stdout: `${base}.stdout`,
    stderr: `${base}.stderr`,
    exit: `${base}.exit`,
  };
}

/** A detached exec's record, `.json`. */
export interface StoredExec {
  readonly execId: string;
  readonly argv: readonly string[];
  readonly startedAt: number;
  /** The wrapper's pid: leader of the exec's session and process group. */
  readonly pid: number;
  /** Field 22 of the wrapper's /proc/PID/stat, to tell it from a reuse of its pid. */
  readonly startTime: string;
  readonly exit?: ExecExitStatus;
  readonly endedAt?: number;
}

/** Writes a record atomically (a crash leaves the old one or the new). */
export async function writeStoredExec(path: string, stored: StoredExec): Promise<void> {
  await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(stored));
  await Deno.rename(`${path}.tmp`, path);
}

/** The record at `path`; undefined when it is gone or cannot be read as one. */
export async function readStoredExec(path: string): Promise<StoredExec | undefined> {
  try {
    const stored = JSON.parse(await Deno.readTextFile(path)) as StoredExec;
    const valid = typeof stored.execId === "string" && Array.isArray(stored.argv) &&
      Number.isSafeInteger(stored.startedAt) && Number.isSafeInteger(stored.pid) &&
      typeof stored.startTime === "string";
    return valid ? stored : undefined;
  } catch {
    // Gone meanwhile, or torn by a crash while first written: nothing to adopt.
    return undefined;
  }
}

/**
 * The exit code the wrapper wrote, and when; undefined until written. A
 * shell reports signal N as 128+N, so such a code reads back as that signal
 * (an `exit 143` looks the same).
 */
export async function readExitFile(
  path: string,
): Promise<{ exit: ExecExitStatus; at: number } | undefined> {
  let text: string;
  let at: number;
  try {
    text = await Deno.readTextFile(path);
    at = (await Deno.stat(path)).mtime?.getTime() ?? Date.now();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  if (!/^\d+\n?$/.test(text)) return undefined;
  const code = Number.parseInt(text, 10);
  const signal = code > 128 && code <= 128 + 64 ? signalName(code - 128) : "";
  return { exit: { exitCode: code, signal, message: "" }, at };
}

/**
 * Runs the command and writes its exit code to a file, so the code survives
 * an agent restart. Its own environment is only `FSB_N` and `FSB_0`... (the
 * command's `NAME=VALUE` pairs): a shell changes the environment it passes
 * on (drops names that are no identifiers, sets IFS, PWD, SHLVL), so the
 * command gets its pairs from `busybox env -i` instead, and they stay out of
 * the command line that `ps` shows everyone. The command runs in a
 * subshell, so that the shell's own note of a signal's kill (`Killed`) goes
 * to its stderr (nowhere) rather than to the exec's.
 * Arguments: busybox, stdout file, stderr file, exit file, command...
 */
const WRAPPER = `b=$1 o=$2 e=$3 x=$4
shift 4
n=$FSB_N
while [ "$n" -gt 0 ]; do n=$((n - 1)); eval "set -- \\"\\$FSB_$n\\" \\"\\$@\\""; done
(exec "$b" env -i -- "$@") </dev/null >>"$o" 2>>"$e"
echo "$?" >"$x"`;

/**
 * Starts `argv` (argv[0] an absolute path) under the wrapper, in a session of
 * its own, with stdin empty and output appended to `files`. Throws what the
 * spawn throws.
 */
export function spawnDetached(
  argv: readonly string[],
  launch: Launch,
  busybox: string,
  files: DetachedFiles,
): Deno.ChildProcess {
  const pairs = Object.entries(launch.env).map(([name, value]) => `${name}=${value}`);
  const env: Record<string, string> = { FSB_N: String(pairs.length) };
  pairs.forEach((pair, i) => env[`FSB_${i}`] = pair);
  // `env` takes every leading argument with a "=" for a variable, so a
  // command path with one goes through `setpriv --`, which with no options
  // only execs it.
  const command = argv[0].includes("=") ? [busybox, "setpriv", "--", ...argv] : argv;
  const wrapper = [busybox, "sh", "-c", WRAPPER, "fsb-exec", busybox];
  return spawnInSession(
    [...wrapper, files.stdout, files.stderr, files.exit, ...command],
    { ...launch, env },
    { stdin: "null", stdout: "null", stderr: "null" },
  );
}
