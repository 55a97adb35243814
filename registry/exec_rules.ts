/**
 * The rules on what an exec or a file call asks for (shared/DESIGN.md section
 * 14), checked alike by the controller, before it forwards a call, and by the
 * agent, which trusts no caller: commands, environments, working dirs, paths
 * inside a sandbox and signals.
 *
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";

/** What an exec asks to run, in the shape of the request's own fields. */
export interface ExecCommand {
  readonly command: readonly string[];
  readonly envs: Readonly<Record<string, string>>;
  readonly workingDir: string;
}

/** The most arguments, and bytes of arguments and environment together, an exec may carry. */
export const MAX_EXEC_ARGS = 4096;
const MAX_EXEC_BYTES = 1024 * 1024;
/** The longest path accepted inside a sandbox (Linux's PATH_MAX). */
export const MAX_PATH_BYTES = 4096;

const encoder = new TextEncoder();

/**
 * Throws InvalidArgumentError, naming the field, unless `req` can be run:
 * a non-empty argv whose first element is not empty, no NUL anywhere
 * (the kernel cuts strings there), env names without `=`, and an absolute
 * working dir when one is given.
 */
export function checkExecCommand(req: ExecCommand): void {
  if (req.command.length === 0) {
    throw new InvalidArgumentError("command", "must name a program to run, got an empty argv");
  }
  if (req.command.length > MAX_EXEC_ARGS) {
    throw new InvalidArgumentError(
      "command",
      `must have at most ${MAX_EXEC_ARGS} arguments, got ${req.command.length}`,
    );
  }
  if (req.command[0] === "") {
    throw new InvalidArgumentError("command[0]", "must name a program, got an empty string");
  }
  let bytes = 0;
  req.command.forEach((arg, i) => {
    if (arg.includes("\0")) throw new InvalidArgumentError(`command[${i}]`, "must not contain NUL");
    bytes += encoder.encode(arg).byteLength + 1;
  });
  for (const [name, value] of Object.entries(req.envs)) {
    if (name === "" || name.includes("=") || name.includes("\0")) {
      throw new InvalidArgumentError(
        `envs["${name}"]`,
        "a name must be non-empty, without '=' or NUL",
      );
    }
    if (value.includes("\0")) {
      throw new InvalidArgumentError(`envs["${name}"]`, "the value must not contain NUL");
    }
    bytes += encoder.encode(name).byteLength + encoder.encode(value).byteLength + 2;
  }
  if (bytes > MAX_EXEC_BYTES) {
    throw new InvalidArgumentError(
      "command",
      `arguments and environment must total at most ${MAX_EXEC_BYTES} bytes, got ${bytes}`,
    );
  }
  if (req.workingDir !== "") checkSandboxPath("working_dir", req.workingDir);
}

/** What an Exec's start asks for, in the request's own fields. */
export interface ExecStartFields extends ExecCommand {
  readonly detach: boolean;
  readonly stdin: boolean;
}

/** {@linkcode checkExecCommand}, and a detached exec takes no stdin. */
export function checkExecStart(start: ExecStartFields): void {
  checkExecCommand(start);
  if (start.detach && start.stdin) {
    throw new InvalidArgumentError("stdin", "a detached exec takes no stdin");
  }
}

/** A request of a stream whose first message is `start` (ExecRequest, WriteFileRequest). */
export interface StartedRequest {
  readonly msg: { readonly case: string | undefined; readonly value?: unknown };
}

/** The value of a stream request's `start` case. */
export type StartOf<R extends StartedRequest> = Extract<R["msg"], { case: "start" }>["value"];

/**
 * Reads the first request of a stream, which must be its `start`, and
 * returns the start; InvalidArgumentError naming `what` (`an exec`, `a
 * write`) otherwise.
 */
export async function readStart<R extends StartedRequest>(
  requests: AsyncIterator<R>,
  what: string,
): Promise<StartOf<R>> {
  const first = await requests.next();
  if (first.done || first.value.msg.case !== "start") {
    throw new InvalidArgumentError("start", `the first request of ${what} must be start`);
  }
  return first.value.msg.value as StartOf<R>;
}

/** The error for a `start` after the first request of a stream. */
export function startAgainError(): InvalidArgumentError {
  return new InvalidArgumentError("start", "comes only once, as the first request");
}

/**
 * Throws InvalidArgumentError unless `path` is an absolute path without NUL
 * and no longer than {@linkcode MAX_PATH_BYTES}. Where it leads is the
 * sandbox's business: it is resolved inside the sandbox's root.
 */
export function checkSandboxPath(field: string, path: string): void {
  if (path.includes("\0")) throw new InvalidArgumentError(field, "must not contain NUL");
  if (!path.startsWith("/")) {
    throw new InvalidArgumentError(field, `must be an absolute path, got "${path}"`);
  }
  const bytes = encoder.encode(path).byteLength;
  if (bytes > MAX_PATH_BYTES) {
    throw new InvalidArgumentError(
      field,
      `must be at most ${MAX_PATH_BYTES} bytes long, got ${bytes}`,
    );
  }
}

/** Linux's signal numbers by name (x86_64 and arm64 agree on these). */
const SIGNALS: Readonly<Record<string, number>> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  TRAP: 5,
  ABRT: 6,
  BUS: 7,
  FPE: 8,
  KILL: 9,
  USR1: 10,
  SEGV: 11,
  USR2: 12,
  PIPE: 13,
  ALRM: 14,
  TERM: 15,
  STKFLT: 16,
  CHLD: 17,
  CONT: 18,
  STOP: 19,
  TSTP: 20,
  TTIN: 21,
  TTOU: 22,
  URG: 23,
  XCPU: 24,
  XFSZ: 25,
  VTALRM: 26,
  PROF: 27,
  WINCH: 28,
  IO: 29,
  PWR: 30,
  SYS: 31,
};

const NAMES: readonly string[] = (() => {
  const out: string[] = [];
  for (const [name, n] of Object.entries(SIGNALS)) out[n] = name;
  return out;
})();

/**
 * The number of signal `text`: a name with or without `SIG`, any case
 * (`TERM`, `sigint`), or a number from 1 to 64. `fallback` when `text` is
 * empty. Throws InvalidArgumentError naming `field` otherwise.
 */
export function parseSignal(field: string, text: string, fallback?: number): number {
  if (text === "" && fallback !== undefined) return fallback;
  if (/^[0-9]+$/.test(text)) {
    const n = Number(text);
    if (n >= 1 && n <= 64) return n;
  } else {
    const name = text.toUpperCase().replace(/^SIG/, "");
    const n = SIGNALS[name];
    if (n !== undefined) return n;
  }
  throw new InvalidArgumentError(
    field,
    `must be a signal name (TERM, INT, KILL, ...) or a number from 1 to 64, got "${text}"`,
  );
}

/** The name of signal `n` without `SIG` (`KILL`), or its number as text when it has none. */
export function signalName(n: number): string {
  return NAMES[n] ?? String(n);
}
