/**
 * Looking at host files and processes, for the process runtime and its execs.
 *
 * @module
 */
import { resolve } from "node:path";

/** The PATH a process sandbox gets unless its spec sets one. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** What a path is, as far as starting a process goes. */
export type FileKind = "executable" | "file" | "directory" | "missing" | "unreadable";

/** What `path` is, following symlinks. */
export function fileKind(path: string): FileKind {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (err) {
    return err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory
      ? "missing"
      : "unreadable";
  }
  if (info.isDirectory) return "directory";
  // Any execute bit will do: exec itself has the last word, and a wrong
  // guess here only turns a spawn error into an exit code.
  return info.isFile && ((info.mode ?? 0) & 0o111) !== 0 ? "executable" : "file";
}

/**
 * The first executable file named `command` in the directories of `pathVar`,
 * or undefined. Empty and relative entries are taken from `cwd`, the
 * sandbox's working directory, as execvp(3) in the sandbox would take them.
 */
export function lookPath(command: string, pathVar: string, cwd: string): string | undefined {
  for (const dir of pathVar.split(":")) {
    const path = resolve(cwd, dir, command);
    if (fileKind(path) === "executable") return path;
  }
  return undefined;
}

/** The fields of /proc/PID/stat that we use. */
export interface ProcStat {
  /** One letter: R, S, D, Z (zombie), X (dead), ... */
  readonly state: string;
  readonly ppid: number;
  readonly pgrp: number;
  readonly session: number;
  /** Field 22: clock ticks since boot at start; with the pid, it tells a process from a reuse. */
  readonly startTime: string;
}

/** The process's /proc/PID/stat; undefined when there is no such process. */
export function readProcStat(pid: number | string): ProcStat | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself hold spaces
  // or parentheses, so the fixed fields start after the last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return {
    state: fields[0],
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
    session: Number(fields[3]),
    startTime: fields[19],
  };
}

/** Whether the process exists and is neither a zombie nor dead. */
export function isLive(stat: ProcStat | undefined): stat is ProcStat {
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X";
}

/** Whether process `pid` still runs and started at `startTime` (so is not a reuse of its pid). */
export function isSameProcess(pid: number, startTime: string): boolean {
  if (pid <= 0 || startTime === "") return false;
  const stat = readProcStat(pid);
  return isLive(stat) && stat.startTime === startTime;
}

/** A child process of `pid`, or undefined when it has none now. */
export function childOf(pid: number): number | undefined {
  try {
    const first = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(" ")[0];
    return first === "" ? undefined : Number(first);
  } catch {
    // No children file (a kernel without CONFIG_PROC_CHILDREN): look through /proc.
  }
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = readProcStat(entry.name);
    if (isLive(stat) && stat.ppid === pid) return Number(entry.name);
  }
  return undefined;
}

/** Sends `signal` to `pid`; one that has ended is no error. */
export function signalProcess(pid: number, signal: Deno.Signal): void {
  // Never pid 0 or below: kill(0) would signal the agent's own group.
  if (pid <= 0) return;
  try {
    Deno.kill(pid, signal);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/**
 * Signals the process group that `pid` leads or, when the group is not made
 * yet (setsid(1) has not run), the pid alone. With `startTime`, only while
 * the leader is still that process, so that a reused pid is never signalled.
 */
export function signalProcessGroup(pid: number, signal: Deno.Signal, startTime?: string): void {
  // Never pid 0: kill(0) and kill(-0) would signal the agent's own group.
  if (pid <= 0) return;
  if (startTime !== undefined && readProcStat(pid)?.startTime !== startTime) return;
  for (const target of [-pid, pid]) {
    try {
      Deno.kill(target, signal);
      return;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
}
