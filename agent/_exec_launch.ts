/**
 * Starting the process runtime's execs: resolving the command as execvp(3)
 * would, spawning it in a session of its own, and reading how it ended.
 *
 * @module
 */
import { resolve } from "node:path";
import { InvalidArgumentError } from "../registry/errors.ts";
import { parseSignal, signalName } from "../registry/exec_rules.ts";
import { fileKind, lookPath } from "./_host_process.ts";
import type { ExecExitStatus, ExecSpec } from "./runtime.ts";

/** Where and as whom a command starts. */
export interface Launch {
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  readonly user: { readonly uid?: number; readonly gid?: number };
  /** setsid(1), to make the process leader of a session and group of its own; null when missing. */
  readonly setsid: string | null;
}

/**
 * Spawns `argv` (argv[0] an absolute path) as `setsid -- argv...`: setsid(1)
 * execs it in the same process once it made a new session, so the pid is the
 * command's and leads its own group (see ./process_runtime.ts). Without
 * setsid(1), Deno's `detached` does the same at a higher cost. Throws what
 * Deno.Command's spawn throws.
 */
export function spawnInSession(
  argv: readonly string[],
  launch: Launch,
  stdio: Pick<Deno.CommandOptions, "stdin" | "stdout" | "stderr">,
): Deno.ChildProcess {
  const setsid = launch.setsid;
  return new Deno.Command(setsid ?? argv[0], {
    args: setsid === null ? argv.slice(1) : ["--", ...argv],
    cwd: launch.cwd,
    env: { ...launch.env },
    clearEnv: true,
    detached: setsid === null,
    ...stdio,
    ...launch.user,
  }).spawn();
}

/**
 * uid and gid to switch to, left out where they are the agent's own already,
 * and all of them when the agent is not root: it could not switch, and a
 * development runtime is better off running the command as it can.
 */
export function userOf(spec: ExecSpec): { uid?: number; gid?: number } {
  const user: { uid?: number; gid?: number } = {};
  if (Deno.uid() !== 0) return user;
  if (spec.uid !== undefined && spec.uid !== Deno.uid()) user.uid = spec.uid;
  if (spec.gid !== undefined && spec.gid !== Deno.gid()) user.gid = spec.gid;
  return user;
}

/**
 * The absolute path `command` runs, looked up as execvp(3) would; or the exit
 * of an exec that cannot start (127 not found, 126 not runnable).
 */
export function resolveCommand(
  command: string,
  pathVar: string,
  cwd: string,
): string | ExecExitStatus {
  const dir = fileKind(cwd);
  if (dir !== "directory") {
    const why = dir === "missing" ? "does not exist" : "is not a directory";
    return { exitCode: 126, signal: "", message: `working directory "${cwd}" ${why}` };
  }
  if (command.includes("/")) {
    const kind = fileKind(resolve(cwd, command));
    if (kind === "executable") return resolve(cwd, command);
    return kind === "missing"
      ? { exitCode: 127, signal: "", message: `command "${command}" not found` }
      : { exitCode: 126, signal: "", message: `command "${command}" is not executable` };
  }
  return lookPath(command, pathVar, cwd) ??
    { exitCode: 127, signal: "", message: `command "${command}" not found in PATH` };
}

/** The exit of a spawn that failed after resolveCommand, e.g. a file removed in between. */
export function spawnFailure(err: unknown, command: string): ExecExitStatus {
  if (err instanceof Deno.errors.NotFound) {
    return { exitCode: 127, signal: "", message: `command "${command}" not found` };
  }
  const why = err instanceof Error ? err.message : String(err);
  return { exitCode: 126, signal: "", message: `command "${command}" could not start: ${why}` };
}

/** The name Deno.kill takes for signal `signo`; InvalidArgumentError for one it cannot send. */
export function signalNameOf(signo: number): Deno.Signal {
  const name = signalName(signo);
  if (/^[0-9]+$/.test(name)) {
    throw new InvalidArgumentError(
      "signal",
      `must be a signal the process runtime can send (1 to 31), got ${signo}`,
    );
  }
  return `SIG${name}` as Deno.Signal;
}

/** A child's status as an exec's exit: 128+N for signal N, with its name without SIG. */
export function exitOf(status: Deno.CommandStatus): ExecExitStatus {
  if (status.signal !== null) {
    const signo = parseSignal("signal", status.signal);
    return { exitCode: 128 + signo, signal: signalName(signo), message: "" };
  }
  return { exitCode: status.code, signal: "", message: "" };
}
