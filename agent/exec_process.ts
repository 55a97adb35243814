/**
 * What every runtime's exec shares: the exec ids and the ExecProcess of an
 * exec without streams.
 *
 * @module
 */
import type { ExecExitStatus, ExecProcess } from "./runtime.ts";
import { empty } from "./_exec_streams.ts";

/** A new exec id: 16 lowercase hex digits (64 random bits). */
export function newExecId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The ExecProcess of an exec the caller cannot talk to: one that could not
 * start, or a detached one (its output goes to `logFiles`).
 */
export function streamlessExec(
  execId: string,
  opts: { exit: Promise<ExecExitStatus>; logFiles?: readonly string[] },
): ExecProcess {
  return {
    execId,
    stdout: empty(),
    stderr: empty(),
    write: () => Promise.resolve(),
    closeStdin: () => Promise.resolve(),
    resize: () => Promise.resolve(),
    kill: () => Promise.resolve(),
    ...(opts.logFiles === undefined ? {} : { logFiles: opts.logFiles }),
    exit: opts.exit,
  };
}
