/**
 * Exec for the `process` runtime: commands run as host processes beside a
 * sandbox's own (development only: it isolates nothing).
 *
 * @module
 */
import type { SandboxSpec } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { FailedPreconditionError, NotFoundError } from "../registry/errors.ts";
import { checkExecCommand } from "../registry/exec_rules.ts";
import { followLogFile } from "./log_file.ts";
import {
  childOf,
  DEFAULT_PATH,
  isSameProcess,
  lookPath,
  readProcStat,
  signalProcess,
  signalProcessGroup,
} from "./_host_process.ts";
import { drained, empty, merge, tagged } from "./_exec_streams.ts";
import {
  exitOf,
  type Launch,
  resolveCommand,
  signalNameOf,
  spawnFailure,
  spawnInSession,
  userOf,
} from "./_exec_launch.ts";
import {
  detachedDir,
  detachedFiles,
  readExitFile,
  readStoredExec,
  spawnDetached,
  type StoredExec,
  writeStoredExec,
} from "./_detached_exec.ts";
import type {
  ExecExitStatus,
  ExecOutput,
  ExecProcess,
  ExecRecord,
  ExecSpec,
  RuntimePhase,
} from "./runtime.ts";

/** What {@linkcode ProcessExecs} needs to know of a sandbox. */
export interface ExecSandbox {
  readonly id: string;
  readonly spec: SandboxSpec;
  /** The sandbox's HOME, and its working directory unless the spec names one. */
  readonly home: string;
  /** The sandbox's log file; detached execs keep their files beside it. */
  readonly logPath: string;
  /** The sandbox's phase now. */
  phase(): RuntimePhase;
  /** The main process's exit code (128+N for signal N, -1 unknown); undefined while it runs. */
  exitCode(): number | undefined;
}

/** An exec's end, as recorded when its exit code is unknowable. */
const UNKNOWN_EXIT: ExecExitStatus = Object.freeze({
  exitCode: -1,
  signal: "",
  message: "exited while the agent was down, exit code unknown",
});

/** How long a kill waits for a detached exec's wrapper to fork the command. */
const FORK_WAIT_MS = 2000;
/** How often wait() looks at the sandbox. */
const WAIT_POLL_MS = 50;
const EXEC_ID = /^[0-9a-f]{16}$/;

/** One exec as this instance knows it. */
interface Exec {
  readonly execId: string;
  readonly argv: readonly string[];
  readonly detached: boolean;
  readonly startedAt: number;
  /** The command's pid (attached) or its wrapper's (detached); 0 when it never started. */
  pid: number;
  startTime: string;
  exit: ExecExitStatus | undefined;
  endedAt: number | undefined;
  /** Set while this instance is its parent. */
  child: Deno.ChildProcess | undefined;
  /** Resolves once `exit` is set. */
  readonly ended: Promise<void>;
  readonly setEnded: () => void;
}

/** A sandbox's execs. */
interface Execs {
  readonly byId: Map<string, Exec>;
  /** Whether the records of detached execs were read from disk. */
  loaded: boolean;
}

/**
 * The execs of the process runtime's sandboxes.
 *
 * An exec gets the sandbox's environment (PATH, HOME, its envs) plus its own,
 * and runs in its working directory unless it names one. It is started in a
 * session (and process group) of its own, through setsid(1) as the sandbox
 * is. There are no terminals: `tty` is a FailedPreconditionError.
 *
 * An attached exec is the agent's child; its output comes through pipes that
 * only the caller's reads drain, so an unread pipe stalls it. Ended, it is
 * forgotten.
 *
 * A detached exec runs under a tiny busybox shell wrapper
 * (`./_detached_exec.ts`) that appends its output to files beside the
 * sandbox's log, `LOG.execs/ID.stdout` and `.stderr`, and writes its exit
 * code to `.exit`; a record `.json` (argv, start, wrapper pid and start
 * time, exit once known) lets a restarted agent list and attach to it. The
 * exit code file is what survives a restart: from it, a code above 128
 * reads as signal N-128. The output files are not capped here: `logFiles`
 * names them for the agent's LogCap. The host's busybox is needed.
 *
 * Signals go to the command's pid only (the wrapper's child for a detached
 * exec), as containerd's exec kill does; deleting the sandbox kills every
 * exec's whole process group.
 */
export class ProcessExecs {
  readonly #sandboxes = new Map<string, Execs>();
  #setsid: string | null | undefined;
  #busybox: string | null | undefined;

  /** Starts `spec` in `sandbox`; see `Runtime.exec`. */
  async exec(
    sandbox: ExecSandbox,
    spec: ExecSpec,
    opts: { signal?: AbortSignal } = {},
  ): Promise<ExecProcess> {
    checkExecCommand({ command: spec.argv, envs: spec.env, workingDir: spec.workingDir });
    const phase = sandbox.phase();
    if (phase !== "Running") {
      throw new FailedPreconditionError(`Cannot exec in sandbox ${sandbox.id} as it is ${phase}`);
    }
    if (spec.tty) {
      throw new FailedPreconditionError(
        `Cannot exec with a terminal in sandbox ${sandbox.id} as the process runtime has no ` +
          "pseudo-terminals; run it without tty",
      );
    }
    const busybox = this.#hostBusybox();
    if (spec.detach && busybox === null) {
      throw new FailedPreconditionError(
        `Cannot exec detached in sandbox ${sandbox.id} as the host has no busybox ` +
          "(install busybox-static), which the process runtime needs to keep exit codes",
      );
    }
    opts.signal?.throwIfAborted();
    const execs = this.#execsOf(sandbox);
    const exec = newExec(spec.argv, spec.detach, execs);
    const env = { PATH: DEFAULT_PATH, HOME: sandbox.home, ...sandbox.spec.envs, ...spec.env };
    const cwd = spec.workingDir || sandbox.spec.workingDir || sandbox.home;
    this.#setsid ??= lookPath("setsid", DEFAULT_PATH, "/") ?? null;
    const launch: Launch = { cwd, env, user: userOf(spec), setsid: this.#setsid };
    const found = resolveCommand(spec.argv[0], env.PATH, cwd);
    if (typeof found !== "string") {
      setExit(exec, found);
      if (!spec.detach) return finished(exec, undefined);
      await this.#store(sandbox, exec);
      return finished(exec, this.#logFiles(sandbox, exec));
    }
    const argv = [found, ...spec.argv.slice(1)];
    if (spec.detach) return await this.#startDetached(sandbox, exec, argv, launch, busybox!);
    return this.#startAttached(exec, execs, argv, launch, { stdin: spec.stdin, ...opts });
  }

  #startAttached(
    exec: Exec,
    execs: Execs,
    argv: readonly string[],
    launch: Launch,
    opts: { stdin: boolean; signal?: AbortSignal },
  ): ExecProcess {
    let child: Deno.ChildProcess;
    try {
      const stdin = opts.stdin ? "piped" : "null";
      child = spawnInSession(argv, launch, { stdin, stdout: "piped", stderr: "piped" });
    } catch (err) {
      setExit(exec, spawnFailure(err, argv[0]));
      return finished(exec, undefined);
    }
    exec.pid = child.pid;
    exec.child = child;
    execs.byId.set(exec.execId, exec);
    const onAbort = () => signalProcessGroup(exec.pid, "SIGKILL");
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const status = child.status.then((status) => {
      opts.signal?.removeEventListener("abort", onAbort);
      exec.child = undefined;
      setExit(exec, exitOf(status));
      // Ended attached execs are not kept: only their caller saw their output.
      execs.byId.delete(exec.execId);
      return exec.exit!;
    });
    const stdout = drained(child.stdout);
    const stderr = drained(child.stderr);
    const stdin = opts.stdin ? child.stdin.getWriter() : undefined;
    let stdinClosed = stdin === undefined;
    return {
      execId: exec.execId,
      stdout: stdout.stream,
      stderr: stderr.stream,
      async write(chunk) {
        if (stdinClosed) return;
        try {
          await stdin!.write(chunk);
        } catch (err) {
          // The command closed its stdin or ended: what it never reads is dropped.
          if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
        }
      },
      async closeStdin() {
        if (stdinClosed) return;
        stdinClosed = true;
        await stdin!.close().catch(() => {});
      },
      resize: () => Promise.resolve(),
      kill: (signo) => Promise.resolve(signalLive(exec, signalNameOf(signo))),
      exit: Promise.all([status, stdout.done, stderr.done]).then(([exit]) => exit),
    };
  }

  async #startDetached(
    sandbox: ExecSandbox,
    exec: Exec,
    argv: readonly string[],
    launch: Launch,
    busybox: string,
  ): Promise<ExecProcess> {
    const files = detachedFiles(detachedDir(sandbox.logPath), exec.execId);
    await Deno.mkdir(detachedDir(sandbox.logPath), { recursive: true });
    // Made before the start so that an attach finds them at once.
    await Deno.writeFile(files.stdout, new Uint8Array());
    await Deno.writeFile(files.stderr, new Uint8Array());
    let child: Deno.ChildProcess;
    try {
      child = spawnDetached(argv, launch, busybox, files);
    } catch (err) {
      setExit(exec, spawnFailure(err, argv[0]));
      await this.#store(sandbox, exec);
      return finished(exec, this.#logFiles(sandbox, exec));
    }
    exec.pid = child.pid;
    exec.child = child;
    // Empty only if the wrapper already ended; its exit is then read from its status.
    exec.startTime = readProcStat(child.pid)?.startTime ?? "";
    this.#execsOf(sandbox).byId.set(exec.execId, exec);
    await this.#store(sandbox, exec);
    child.status.then(async (status) => {
      exec.child = undefined;
      setExit(exec, (await readExitFile(files.exit))?.exit ?? exitOf(status));
      await this.#store(sandbox, exec).catch(() => {
        // Gone with its sandbox, or unwritable: a later look reads the exit file.
      });
    });
    return {
      ...finished(exec, this.#logFiles(sandbox, exec)),
      kill: (signo) => this.#signalDetached(exec, signalNameOf(signo)),
    };
  }

  /** A detached exec's output and then its exit; see `Runtime.execAttach`. */
  async *attach(
    sandbox: ExecSandbox,
    execId: string,
    opts: { signal?: AbortSignal } = {},
  ): AsyncIterable<ExecOutput> {
    const exec = await this.#find(sandbox, execId);
    if (!exec.detached) {
      throw new FailedPreconditionError(
        `Cannot attach to exec ${execId} in sandbox ${sandbox.id} as it is not detached`,
      );
    }
    const files = detachedFiles(detachedDir(sandbox.logPath), execId);
    const stop = new AbortController();
    const signal = opts.signal === undefined
      ? stop.signal
      : AbortSignal.any([opts.signal, stop.signal]);
    const isDone = () => this.#look(sandbox, exec);
    const follow = (stream: "stdout" | "stderr") =>
      tagged(stream, followLogFile(files[stream], { follow: true, signal, isDone }));
    yield* merge([follow("stdout"), follow("stderr")], stop);
    if (opts.signal?.aborted) return;
    await exec.ended;
    yield { stream: "exit", exit: exec.exit! };
  }

  /** The sandbox's execs, oldest first: running ones, and detached ones that ended. */
  async list(sandbox: ExecSandbox): Promise<ExecRecord[]> {
    const execs = await this.#load(sandbox);
    const out: ExecRecord[] = [];
    for (const exec of execs.byId.values()) {
      await this.#look(sandbox, exec);
      out.push(this.#record(sandbox, exec));
    }
    return out.sort((a, b) => a.startedAt - b.startedAt || a.execId.localeCompare(b.execId));
  }

  /** Sends `signo` to the exec's command; an exec that ended is left be. */
  async kill(sandbox: ExecSandbox, execId: string, signo: number): Promise<ExecRecord> {
    const signal = signalNameOf(signo);
    const exec = await this.#find(sandbox, execId);
    if (!(await this.#look(sandbox, exec))) {
      if (exec.detached) await this.#signalDetached(exec, signal);
      else signalLive(exec, signal);
    }
    return this.#record(sandbox, exec);
  }

  /** Until the sandbox's main process ends; its exit code. Rejects when `signal` aborts. */
  async wait(sandbox: ExecSandbox, opts: { signal?: AbortSignal } = {}): Promise<number> {
    for (;;) {
      opts.signal?.throwIfAborted();
      const code = sandbox.exitCode();
      if (code !== undefined) return code;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          opts.signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, WAIT_POLL_MS);
        opts.signal?.addEventListener("abort", done, { once: true });
      });
    }
  }

  /** The host's busybox, which the process runtime's file operations run; undefined when none. */
  helper(): readonly string[] | undefined {
    const busybox = this.#hostBusybox();
    return busybox === null ? undefined : [busybox];
  }

  /**
   * Kills every exec of the sandbox (its whole process group) and removes
   * their files; for the sandbox's delete.
   */
  async removeAll(sandbox: ExecSandbox): Promise<void> {
    const execs = await this.#load(sandbox);
    const waits: Promise<unknown>[] = [];
    for (const exec of execs.byId.values()) {
      if (exec.exit !== undefined || exec.pid <= 0) continue;
      const child = exec.child;
      // Not our child: only while the leader is still the process we started.
      signalProcessGroup(exec.pid, "SIGKILL", child === undefined ? exec.startTime : undefined);
      if (child !== undefined) waits.push(child.status);
    }
    await Promise.allSettled(waits);
    this.#sandboxes.delete(sandbox.id);
    // An exec not started by this instance is not waited for: its wrapper may still write its
    // exit file while the directory goes, which makes the removal fail as not empty. Again, then.
    for (let attempt = 1;; attempt++) {
      try {
        await Deno.remove(detachedDir(sandbox.logPath), { recursive: true });
        return;
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return;
        const notEmpty = err instanceof Error && /not empty|os error 39/i.test(err.message);
        if (!notEmpty || attempt >= 20) throw err;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }
  }

  /** Lets the agent exit while detached execs run; a later instance adopts them. */
  close(): void {
    for (const execs of this.#sandboxes.values()) {
      for (const exec of execs.byId.values()) {
        if (exec.detached) exec.child?.unref();
      }
    }
  }

  #hostBusybox(): string | null {
    this.#busybox ??= lookPath("busybox", DEFAULT_PATH, "/") ?? null;
    return this.#busybox;
  }

  #execsOf(sandbox: ExecSandbox): Execs {
    let execs = this.#sandboxes.get(sandbox.id);
    if (execs === undefined) {
      execs = { byId: new Map(), loaded: false };
      this.#sandboxes.set(sandbox.id, execs);
    }
    return execs;
  }

  /** The sandbox's execs, with the records of detached ones that earlier instances started. */
  async #load(sandbox: ExecSandbox): Promise<Execs> {
    const execs = this.#execsOf(sandbox);
    if (execs.loaded) return execs;
    const dir = detachedDir(sandbox.logPath);
    const ids: string[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) {
        const id = entry.name.slice(0, -".json".length);
        if (entry.isFile && entry.name.endsWith(".json") && EXEC_ID.test(id)) ids.push(id);
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    for (const execId of ids) {
      if (execs.byId.has(execId)) continue;
      const stored = await readStoredExec(detachedFiles(dir, execId).record);
      if (stored === undefined || stored.execId !== execId) continue;
      const exec = newExec(stored.argv, true, execs, stored);
      exec.pid = stored.pid;
      exec.startTime = stored.startTime;
      if (stored.exit !== undefined) setExit(exec, stored.exit, stored.endedAt);
      execs.byId.set(execId, exec);
    }
    execs.loaded = true;
    return execs;
  }

  async #find(sandbox: ExecSandbox, execId: string): Promise<Exec> {
    const exec = EXEC_ID.test(execId) ? (await this.#load(sandbox)).byId.get(execId) : undefined;
    if (exec === undefined) {
      throw new NotFoundError(`Exec ${execId} not found in sandbox ${sandbox.id}`);
    }
    return exec;
  }

  /**
   * Whether the exec has ended. A detached one that this instance did not
   * start ends when its wrapper is gone; its exit code is then read from the
   * exit file and recorded.
   */
  async #look(sandbox: ExecSandbox, exec: Exec): Promise<boolean> {
    if (exec.exit !== undefined) return true;
    if (exec.child !== undefined || !exec.detached) return false;
    if (isSameProcess(exec.pid, exec.startTime)) return false;
    const files = detachedFiles(detachedDir(sandbox.logPath), exec.execId);
    const ended = await readExitFile(files.exit);
    if (exec.exit !== undefined) return true;
    setExit(exec, ended?.exit ?? UNKNOWN_EXIT, ended?.at);
    await this.#store(sandbox, exec).catch(() => {});
    return true;
  }

  /** Signals a detached exec's command: its wrapper's child, waited for while the wrapper forks it. */
  async #signalDetached(exec: Exec, signal: Deno.Signal): Promise<void> {
    const deadline = performance.now() + FORK_WAIT_MS;
    const running = () =>
      exec.exit === undefined &&
      (exec.child !== undefined || isSameProcess(exec.pid, exec.startTime));
    while (running()) {
      const pid = childOf(exec.pid);
      if (pid !== undefined) return signalProcess(pid, signal);
      if (performance.now() > deadline) return;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  #record(sandbox: ExecSandbox, exec: Exec): ExecRecord {
    return {
      execId: exec.execId,
      argv: exec.argv,
      tty: false,
      detached: exec.detached,
      startedAt: exec.startedAt,
      ...(exec.exit === undefined ? {} : { exit: exec.exit, endedAt: exec.endedAt }),
      ...(exec.detached ? { logFiles: this.#logFiles(sandbox, exec) } : {}),
    };
  }

  /** Writes a detached exec's record. */
  async #store(sandbox: ExecSandbox, exec: Exec): Promise<void> {
    const stored: StoredExec = {
      execId: exec.execId,
      argv: exec.argv,
      startedAt: exec.startedAt,
      pid: exec.pid,
      startTime: exec.startTime,
      ...(exec.exit === undefined ? {} : { exit: exec.exit, endedAt: exec.endedAt }),
    };
    const dir = detachedDir(sandbox.logPath);
    await Deno.mkdir(dir, { recursive: true });
    await writeStoredExec(detachedFiles(dir, exec.execId).record, stored);
  }

  #logFiles(sandbox: ExecSandbox, exec: Exec): string[] {
    const files = detachedFiles(detachedDir(sandbox.logPath), exec.execId);
    return [files.stdout, files.stderr];
  }
}

function newExecId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function newExec(
  argv: readonly string[],
  detached: boolean,
  execs: Execs,
  stored?: StoredExec,
): Exec {
  let execId = stored?.execId ?? newExecId();
  while (stored === undefined && execs.byId.has(execId)) execId = newExecId();
  let setEnded!: () => void;
  const ended = new Promise<void>((resolve) => setEnded = resolve);
  return {
    execId,
    argv: [...argv],
    detached,
    startedAt: stored?.startedAt ?? Date.now(),
    pid: 0,
    startTime: "",
    exit: undefined,
    endedAt: undefined,
    child: undefined,
    ended,
    setEnded,
  };
}

function setExit(exec: Exec, exit: ExecExitStatus, at = Date.now()): void {
  if (exec.exit !== undefined) return;
  exec.exit = exit;
  exec.endedAt = at;
  exec.setEnded();
}

/** Signals an exec's own process while it runs. */
function signalLive(exec: Exec, signal: Deno.Signal): void {
  if (exec.exit === undefined) signalProcess(exec.pid, signal);
}

/** The ExecProcess of an exec with no streams: one that could not start, or a detached one. */
function finished(exec: Exec, logFiles: string[] | undefined): ExecProcess {
  return {
    execId: exec.execId,
    stdout: empty(),
    stderr: empty(),
    write: () => Promise.resolve(),
    closeStdin: () => Promise.resolve(),
    resize: () => Promise.resolve(),
    kill: () => Promise.resolve(),
    ...(logFiles === undefined ? {} : { logFiles }),
    exit: exec.ended.then(() => exec.exit!),
  };
}
