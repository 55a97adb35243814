/**
 * The `process` runtime: each sandbox is a plain host process.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Egress, NetworkMode } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../registry/errors.ts";
import { normalizeImage } from "../registry/normalize_image.ts";
import { parseSignal } from "../registry/exec_rules.ts";
import { followLogFile } from "./log_file.ts";
import { DEFAULT_PATH, fileKind, isLive, lookPath, readProcStat } from "./_host_process.ts";
import { type ExecSandbox, ProcessExecs } from "./process_exec.ts";
import type {
  CreateOptions,
  CreateResult,
  ExecOutput,
  ExecProcess,
  ExecRecord,
  ExecSpec,
  LogsOptions,
  Runtime,
  RuntimeSandbox,
} from "./runtime.ts";

/** Options for {@linkcode ProcessRuntime}. */
export interface ProcessRuntimeOptions {
  /** Directory for one state record and one home directory per sandbox; created on first use. */
  readonly stateDir: string;
  /** Images to report as present, so image affinity can be exercised; the runtime never uses them. */
  readonly images?: string[];
}

/** Message of a sandbox found gone, with no exit recorded, when a runtime first looked at it. */
const EXITED_WHILE_DOWN = "exited while the agent was down";
/** Message of an adopted sandbox (not our child, so its status is not ours to read) that ended later. */
const EXITED_UNKNOWN = "exited after an agent restart, exit code unknown";

// The id names a file and a directory, so it must not be able to climb out of stateDir.
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
// Under stateDir, beside one home directory per sandbox; no id can start with "_".
const RECORDS_DIR = "_records";
// After SIGKILL a process is gone within milliseconds; this only bounds a wedged kernel.
const KILL_WAIT_MS = 2000;
// Resolved commands kept; distinct (PATH, command) pairs beyond this start the cache afresh.
const RESOLVED_MAX = 256;

/** What is kept on disk per sandbox, so that a new agent can re-adopt it. */
interface StateRecord {
  /** The spec, as the protobuf JSON mapping. */
  readonly spec: JsonValue;
  readonly logPath: string;
  /** Process id, which is also its process group and session id (it is a session leader). */
  readonly pid: number;
  /**
   * Field 22 of /proc/PID/stat at start (clock ticks since boot): with the pid,
   * it tells our process from a later one that reused the pid.
   */
  readonly startTime: string;
  /** Why it ended (`exit code 0`, `killed by SIGKILL`); absent while running. */
  readonly exit?: string;
}

/** A sandbox process this instance spawned: it is our child, so we get its exit status. */
interface Child {
  readonly process: ChildProcess;
  /** Resolves when the process exits. */
  readonly exited: Promise<void>;
  readonly onExit: (code: number | null, signal: string | null) => void;
}

/** One sandbox as this instance knows it, from its create or from its record after a restart. */
interface Sandbox {
  readonly id: string;
  /** Replaced by updateSpec() (labels, expiry), never in what the process runs by. */
  spec: SandboxSpec;
  readonly logPath: string;
  pid: number;
  startTime: string;
  /** Why it ended; undefined while it runs, or until a look at an adopted one finds it gone. */
  exit: string | undefined;
  /** What list() reports, replaced when the sandbox ends. */
  view: RuntimeSandbox;
  /** Set while this instance is the process's parent; it then learns the exit from the child. */
  child: Child | undefined;
  /** The record as read from disk, for an adopted sandbox: an exit or a new spec is put into it. */
  stored: StateRecord | undefined;
  /** An adopted sandbox this instance has seen running, to tell how its end is reported. */
  seenRunning: boolean;
  /** Set once delete() stops it: its end is then not worth recording. */
  deleting: boolean;
}

/**
 * Runs each sandbox's command as a host process in its own session and
 * process group.
 *
 * **For development and tests only: it isolates nothing.** The command runs
 * as the agent's user, sees the host's file system, network and processes,
 * and the image is ignored.
 *
 * Each process writes its stdout and stderr straight into the log file (opened
 * `O_APPEND` and handed over as its fds), so it keeps running and logging when
 * the agent dies or restarts. A state record per sandbox (spec, pid, process
 * start time, exit), `stateDir/_records/ID.json`, lets a new instance re-adopt
 * it; `stateDir/ID` is the sandbox's home directory.
 * Exit codes are known for processes this instance started; a process that
 * ends while no agent is its parent is `Exited` with the message
 * `exited while the agent was down` (found gone by a new instance) or
 * `exited after an agent restart, exit code unknown` (seen running by a new
 * instance, which is not its parent, so cannot read its status).
 *
 * Spawning goes through `node:child_process`, which accepts file descriptors
 * in `stdio` (`Deno.Command` offers only piped, inherit or null). The process
 * is started as `setsid -- /resolved/command args...`: setsid(1) calls
 * setsid(2) and then execs the command in the same process (it forks only
 * when it is a process group leader, which a fresh child is not), so the
 * command is leader of a new session and process group whose id is its pid.
 * That costs a third of `detached: true`, with which Deno forks the whole
 * agent to call setsid(2) in the child instead of using posix_spawn (2.3
 * against 0.8 ms, measured in a 100 MB agent with 300 children); `detached`
 * remains the fallback on a host without setsid(1). As setsid(1) is what gets
 * exec'd, a missing command or working directory would not fail the spawn,
 * so both are checked first, and the command is resolved on the spec's PATH
 * as execvp(3) would, to an absolute path that becomes argv[0] (as with
 * Deno's own lookup). For its first moments the process is setsid(1), still
 * in the agent's group, so a signal that finds no group goes to the pid.
 * Otherwise signals go to the whole group with `Deno.kill(-pgid, signal)`.
 *
 * Sandboxes are kept in memory once created or read: a new instance reads the
 * records once, on first use, and list() reads /proc only for adopted
 * sandboxes still running. Records are written synchronously: they are tiny,
 * and with no await between checking a sandbox and writing its record, an
 * exit event can never interleave with a delete and resurrect a removed one.
 */
export class ProcessRuntime implements Runtime {
  /** Always `process`. */
  readonly name = "process";
  /** Always `process`. */
  readonly sandboxRuntime = "process";
  readonly #dir: string;
  readonly #records: string;
  readonly #images: string[];
  readonly #sandboxes = new Map<string, Sandbox>();
  readonly #creating = new Map<string, Promise<unknown>>();
  readonly #deleting = new Map<string, Promise<boolean>>();
  /** `PATH\0command` to the executable it resolved to, for PATHs of absolute directories only. */
  readonly #resolved = new Map<string, string>();
  readonly #execs = new ProcessExecs();
  /** setsid(1)'s path; null when the host has none; undefined until looked for. */
  #setsid: string | null | undefined;
  #dirsMade = false;
  #loaded = false;

  /** Creates the runtime; nothing is touched on disk until it is used. */
  constructor(opts: ProcessRuntimeOptions) {
    this.#dir = opts.stateDir;
    this.#records = join(opts.stateDir, RECORDS_DIR);
    this.#images = (opts.images ?? []).map(normalizeImage);
  }

  /** Always true: a host can always start processes. */
  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  /**
   * Starts `[...spec.command, ...spec.args]` with only `PATH`, `HOME` (the
   * sandbox's own directory under `stateDir`) and `spec.envs` in its
   * environment, in `spec.workingDir` or else that directory.
   *
   * Throws InvalidArgumentError for an empty command or an id that cannot name
   * a directory, AlreadyExistsError for an id in use, and
   * FailedPreconditionError when the process cannot be started (command or
   * working directory missing, not executable). On any failure nothing is left
   * behind: no process, no state record, and no log file unless it existed before.
   */
  create(spec: SandboxSpec, opts: CreateOptions): Promise<CreateResult> {
    const id = spec.sandboxId;
    if (!ID_PATTERN.test(id)) {
      return Promise.reject(
        new InvalidArgumentError(
          "sandbox_id",
          "must be 1-128 of [A-Za-z0-9_.-], not starting with . _ or -",
        ),
      );
    }
    if (spec.command.length + spec.args.length === 0) {
      return Promise.reject(
        new InvalidArgumentError("command", "is required by the process runtime"),
      );
    }
    const unenforceable = unenforceableRule(spec);
    if (unenforceable !== undefined) {
      return Promise.reject(
        new FailedPreconditionError(
          `Cannot create sandbox ${id} with ${unenforceable} as the process runtime cannot enforce it: it isolates nothing`,
        ),
      );
    }
    if (this.#creating.has(id)) {
      return Promise.reject(
        new AlreadyExistsError(`Cannot create sandbox ${id} as it already exists`),
      );
    }
    const creating = this.#create(spec, opts).finally(() => this.#creating.delete(id));
    this.#creating.set(id, creating);
    return creating;
  }

  async #create(spec: SandboxSpec, opts: CreateOptions): Promise<CreateResult> {
    opts.signal?.throwIfAborted();
    const id = spec.sandboxId;
    const home = this.#claim(id);
    const sandbox: Sandbox = {
      id,
      spec,
      logPath: opts.logPath,
      pid: 0,
      startTime: "",
      exit: undefined,
      view: { spec, phase: "Running", message: ISOLATES_NOTHING },
      child: undefined,
      stored: undefined,
      seenRunning: false,
      deleting: false,
    };
    let logCreated = false;
    let fd = -1;
    try {
      const argv = spec.command.length > 0 ? [...spec.command, ...spec.args] : spec.args;
      const cwd = spec.workingDir || home;
      const command = this.#resolve(spec, argv, cwd);
      [fd, logCreated] = openLog(opts.logPath);
      const start = performance.now();
      const child = this.#spawn(sandbox, argv, { command, cwd, home, fd });
      await spawned(child.process, spec);
      const runtimeStart = performance.now() - start;
      closeSync(fd);
      fd = -1;
      opts.signal?.throwIfAborted();
      // Empty only if the process already ended and was reaped; then the
      // exit event records its status and the pid is never signalled.
      sandbox.startTime = readProcStat(sandbox.pid)?.startTime ?? "";
      // Written once and directly: until it exists there is no sandbox to
      // re-adopt, so a torn first write is no worse than none.
      Deno.writeTextFileSync(this.#recordPath(id), JSON.stringify(recordOf(sandbox)));
      this.#sandboxes.set(id, sandbox);
      return { stageMs: { runtime_start: runtimeStart }, message: ISOLATES_NOTHING };
    } catch (err) {
      if (fd >= 0) closeSync(fd);
      const child = sandbox.child;
      if (child !== undefined && sandbox.pid > 0 && sandbox.exit === undefined) {
        signalGroup(sandbox, "SIGKILL");
        await waitFor(() => sandbox.exit !== undefined, KILL_WAIT_MS, child.exited);
      }
      removeQuietly(home);
      if (logCreated) removeQuietly(opts.logPath);
      throw err;
    }
  }

  /** Makes the sandbox's home directory; its existence is what reserves the id. */
  #claim(id: string): string {
    if (!this.#dirsMade) {
      Deno.mkdirSync(this.#records, { recursive: true });
      this.#dirsMade = true;
    }
    const home = join(this.#dir, id);
    try {
      Deno.mkdirSync(home);
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) {
        throw new AlreadyExistsError(`Cannot create sandbox ${id} as it already exists`);
      }
      throw err;
    }
    return home;
  }

  #recordPath(id: string): string {
    return join(this.#records, `${id}.json`);
  }

  /**
   * The absolute path of the command: a name with a slash is taken relative to
   * `cwd`, one without is looked up on the spec's PATH, where only executable
   * files count. Throws the FailedPreconditionError that the spawn itself would
   * have caused.
   */
  #resolve(spec: SandboxSpec, argv: readonly string[], cwd: string): string {
    const id = spec.sandboxId;
    // No exec could take these; said before a lookup would call it "not found".
    if (argv.some((arg) => arg.includes("\0"))) {
      throw new FailedPreconditionError(
        `Cannot start sandbox ${id} as its command line holds a NUL byte`,
      );
    }
    if (spec.workingDir !== "") {
      const kind = fileKind(spec.workingDir);
      if (kind === "missing") {
        throw new FailedPreconditionError(
          `Cannot start sandbox ${id} as working directory "${spec.workingDir}" does not exist`,
        );
      }
      // An unreadable one is left for the spawn to report.
      if (kind !== "directory" && kind !== "unreadable") {
        throw new FailedPreconditionError(
          `Cannot start sandbox ${id} as working directory "${spec.workingDir}" is not a directory`,
        );
      }
    }
    const command = argv[0];
    if (command.includes("/")) {
      const path = resolve(cwd, command);
      const kind = fileKind(path);
      if (kind === "executable") return path;
      throw new FailedPreconditionError(
        kind === "missing"
          ? `Cannot start sandbox ${id} as command "${command}" was not found`
          : `Cannot start sandbox ${id} as command "${command}" is not executable`,
      );
    }
    const pathVar = spec.envs.PATH ?? DEFAULT_PATH;
    const key = `${pathVar}\0${command}`;
    const known = this.#resolved.get(key);
    // Checked again: the file may have gone since; then the search runs anew.
    if (known !== undefined && fileKind(known) === "executable") return known;
    const found = lookPath(command, pathVar, cwd);
    if (found === undefined) {
      throw new FailedPreconditionError(
        `Cannot start sandbox ${id} as command "${command}" was not found`,
      );
    }
    // A PATH with relative entries resolves differently per working directory.
    if (pathVar.split(":").every((dir) => dir.startsWith("/"))) {
      if (this.#resolved.size >= RESOLVED_MAX) this.#resolved.clear();
      this.#resolved.set(key, found);
    }
    return found;
  }

  /** Starts `argv` with its first word replaced by `how.command`, the resolved path. */
  #spawn(
    sandbox: Sandbox,
    argv: readonly string[],
    how: { command: string; cwd: string; home: string; fd: number },
  ): Child {
    const spec = sandbox.spec;
    this.#setsid ??= lookPath("setsid", DEFAULT_PATH, "/") ?? null;
    const setsid = this.#setsid;
    const args = setsid === null ? [] : ["--", how.command];
    for (let i = 1; i < argv.length; i++) args.push(argv[i]);
    let proc: ChildProcess;
    try {
      proc = spawn(setsid ?? how.command, args, {
        cwd: how.cwd,
        env: { PATH: DEFAULT_PATH, HOME: how.home, ...spec.envs },
        detached: setsid === null,
        stdio: ["ignore", how.fd, how.fd],
      });
    } catch (err) {
      // Synchronous throws are argument checks, e.g. a NUL byte in an environment variable.
      throw new FailedPreconditionError(
        `Cannot start sandbox ${spec.sandboxId}: ${(err as Error).message}`,
      );
    }
    let resolveExited!: () => void;
    const exited = new Promise<void>((resolve) => resolveExited = resolve);
    const child: Child = {
      process: proc,
      exited,
      onExit: (code, signal) => {
        const message = code !== null ? `exit code ${code}` : `killed by ${signal}`;
        setExit(sandbox, message);
        resolveExited();
        if (this.#sandboxes.get(sandbox.id) !== sandbox || sandbox.deleting) return;
        try {
          this.#recordExit(sandbox);
        } catch {
          // Nobody to tell from an event handler; the record then lacks the
          // exit, and a later instance reports it exited while the agent was down.
        }
      },
    };
    sandbox.child = child;
    sandbox.pid = proc.pid ?? 0;
    // Attached before any await so that not even an instant exit is missed.
    proc.on("exit", child.onExit);
    // An unheard "error" event would throw; spawn failures are read in spawned().
    proc.on("error", () => {});
    return child;
  }

  /** Adds the exit to the record on disk, atomically, so a crash leaves the old record or the new one. */
  #recordExit(sandbox: Sandbox): void {
    try {
      this.#rewriteRecord(sandbox.id, recordOf(sandbox));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }

  /** Replaces the sandbox's record on disk by `record`: a crash leaves the old one or the new one. */
  #rewriteRecord(id: string, record: StateRecord): void {
    const path = this.#recordPath(id);
    Deno.writeTextFileSync(`${path}.tmp`, JSON.stringify(record));
    Deno.renameSync(`${path}.tmp`, path);
  }

  /**
   * Replaces the sandbox's spec in its state record, which a later instance
   * adopts, and in what list() reports; the process is untouched. The record
   * is written first: one that cannot be written changes nothing.
   */
  updateSpec(spec: SandboxSpec): Promise<void> {
    try {
      this.#load();
      const id = spec.sandboxId;
      const sandbox = ID_PATTERN.test(id) ? this.#sandboxes.get(id) : undefined;
      // One being deleted is as good as gone: a record written now would outlive it.
      if (sandbox === undefined || sandbox.deleting) {
        throw new NotFoundError(`Cannot update sandbox ${id} as it does not exist`);
      }
      const record: StateRecord = { ...recordOf(sandbox), spec: toJson(SandboxSpecSchema, spec) };
      this.#rewriteRecord(id, record);
      sandbox.spec = spec;
      sandbox.view = { ...sandbox.view, spec };
      if (sandbox.stored !== undefined) sandbox.stored = { ...sandbox.stored, spec: record.spec };
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Stops the sandbox's process group: SIGTERM, then SIGKILL once the group
   * has not ended within `graceMs`; then removes its state record, home
   * directory and log file. Resolves as soon as the group is gone, and to
   * false for an id it has no record of.
   */
  delete(id: string, graceMs: number): Promise<boolean> {
    if (!ID_PATTERN.test(id)) return Promise.resolve(false);
    const pending = this.#deleting.get(id);
    if (pending !== undefined) return pending;
    const deleting = this.#delete(id, graceMs).finally(() => this.#deleting.delete(id));
    this.#deleting.set(id, deleting);
    return deleting;
  }

  async #delete(id: string, graceMs: number): Promise<boolean> {
    const creating = this.#creating.get(id);
    if (creating !== undefined) await creating.catch(() => {});
    this.#load();
    const home = join(this.#dir, id);
    const sandbox = this.#sandboxes.get(id);
    if (sandbox === undefined) {
      // A home without a readable record is what a create cut short by a crash leaves.
      removeQuietly(this.#recordPath(id));
      removeQuietly(home);
      return false;
    }
    sandbox.deleting = true;
    try {
      await stopGroup(sandbox, graceMs);
    } catch (err) {
      sandbox.deleting = false;
      throw err;
    }
    const child = sandbox.child;
    if (child !== undefined) child.process.off("exit", child.onExit);
    await this.#execs.removeAll(this.#execSandbox(sandbox));
    this.#sandboxes.delete(id);
    removeQuietly(this.#recordPath(id));
    removeQuietly(home);
    removeQuietly(sandbox.logPath);
    return true;
  }

  /** Every sandbox with a state record under `stateDir`, whichever instance created it. */
  list(): Promise<RuntimeSandbox[]> {
    try {
      this.#load();
      const out: RuntimeSandbox[] = [];
      for (const sandbox of this.#sandboxes.values()) {
        if (sandbox.exit === undefined && sandbox.child === undefined) this.#look(sandbox);
        out.push(sandbox.view);
      }
      return Promise.resolve(out);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Reads the records of sandboxes that earlier instances created, once. */
  #load(): void {
    if (this.#loaded) return;
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync(this.#records);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      this.#loaded = true;
      return;
    }
    for (const entry of entries) {
      if (!entry.isFile || !entry.name.endsWith(".json")) continue;
      const id = entry.name.slice(0, -".json".length);
      if (!ID_PATTERN.test(id) || this.#sandboxes.has(id)) continue;
      const sandbox = readSandbox(id, join(this.#records, entry.name));
      if (sandbox !== undefined) this.#sandboxes.set(id, sandbox);
    }
    this.#loaded = true;
  }

  /** Whether an adopted sandbox still runs; when it does not, records how it is reported. */
  #look(sandbox: Sandbox): boolean {
    if (isOurs(sandbox)) {
      sandbox.seenRunning = true;
      return true;
    }
    setExit(sandbox, sandbox.seenRunning ? EXITED_UNKNOWN : EXITED_WHILE_DOWN);
    if (!sandbox.deleting) this.#recordExit(sandbox);
    return false;
  }

  #running(sandbox: Sandbox): boolean {
    if (sandbox.exit !== undefined) return false;
    return sandbox.child !== undefined || this.#look(sandbox);
  }

  /**
   * The sandbox's log from its start; with `follow`, until the process has
   * exited (or the sandbox is deleted) and the log is drained. Throws
   * NotFoundError, on first iteration, for an unknown id.
   */
  async *logs(id: string, opts: LogsOptions): AsyncIterable<Uint8Array> {
    this.#load();
    const sandbox = ID_PATTERN.test(id) ? this.#sandboxes.get(id) : undefined;
    if (sandbox === undefined) {
      throw new NotFoundError(`Cannot read logs of sandbox ${id} as it does not exist`);
    }
    const isDone = () => this.#sandboxes.get(id) !== sandbox || !this.#running(sandbox);
    yield* followLogFile(sandbox.logPath, { follow: opts.follow, signal: opts.signal, isDone });
  }

  /**
   * Runs `spec` beside the sandbox's process, as the same kind of host
   * process: with its environment and in its working directory unless `spec`
   * says otherwise (see `./process_exec.ts`). No `tty`: a
   * FailedPreconditionError.
   */
  async exec(id: string, spec: ExecSpec, opts?: { signal?: AbortSignal }): Promise<ExecProcess> {
    return await this.#execs.exec(this.#find(id, "exec in"), spec, opts);
  }

  /** A detached exec's output so far, then as it comes, then its exit. */
  async *execAttach(
    id: string,
    execId: string,
    opts?: { signal?: AbortSignal },
  ): AsyncIterable<ExecOutput> {
    yield* this.#execs.attach(this.#find(id, "attach to an exec in"), execId, opts);
  }

  /** The sandbox's running execs and its detached ones that ended, oldest first. */
  async execList(id: string): Promise<ExecRecord[]> {
    return await this.#execs.list(this.#find(id, "list the execs of"));
  }

  /** Sends `signo` to the exec's command. */
  async execKill(id: string, execId: string, signo: number): Promise<ExecRecord> {
    return await this.#execs.kill(this.#find(id, "kill an exec in"), execId, signo);
  }

  /**
   * Until the sandbox's process ends: its exit code, 128+N for signal N, or
   * -1 when it ended while no agent was its parent.
   */
  async wait(id: string, opts?: { signal?: AbortSignal }): Promise<number> {
    return await this.#execs.wait(this.#find(id, "wait for"), opts);
  }

  /** The host's busybox (`/usr/bin/busybox`), when the host has one. */
  helper(id: string): Promise<readonly string[] | undefined> {
    try {
      this.#find(id, "use files of");
      return Promise.resolve(this.#execs.helper());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The sandbox as execs see it; NotFoundError saying `Cannot VERB sandbox ID ...`. */
  #find(id: string, verb: string): ExecSandbox {
    this.#load();
    const sandbox = ID_PATTERN.test(id) ? this.#sandboxes.get(id) : undefined;
    if (sandbox === undefined) {
      throw new NotFoundError(`Cannot ${verb} sandbox ${id} as it does not exist`);
    }
    return this.#execSandbox(sandbox);
  }

  #execSandbox(sandbox: Sandbox): ExecSandbox {
    return {
      id: sandbox.id,
      spec: sandbox.spec,
      home: join(this.#dir, sandbox.id),
      logPath: sandbox.logPath,
      phase: () => this.#running(sandbox) ? "Running" : sandbox.view.phase,
      exitCode: () => this.#running(sandbox) ? undefined : exitCodeOf(sandbox.exit),
    };
  }

  /** The configured images, normalized. */
  images(): Promise<string[]> {
    return Promise.resolve([...this.#images]);
  }

  /**
   * Stops watching the processes and lets the agent exit while they run; a
   * later instance on the same `stateDir` re-adopts them.
   */
  close(): Promise<void> {
    this.#execs.close();
    for (const sandbox of this.#sandboxes.values()) {
      const child = sandbox.child;
      if (child === undefined) continue;
      child.process.off("exit", child.onExit);
      child.process.unref();
      sandbox.child = undefined;
      sandbox.seenRunning = sandbox.exit === undefined;
    }
    return Promise.resolve();
  }
}

/** The exit code that an exit message (`exit code 3`, `killed by SIGKILL`) tells; -1 when none. */
function exitCodeOf(message: string | undefined): number {
  const code = /^exit code (\d+)$/.exec(message ?? "");
  if (code !== null) return Number(code[1]);
  const signal = /^killed by (SIG[A-Z0-9]+)$/.exec(message ?? "");
  return signal === null ? -1 : 128 + parseSignal("signal", signal[1]);
}

function setExit(sandbox: Sandbox, message: string): void {
  sandbox.exit = message;
  sandbox.view = { spec: sandbox.spec, phase: "Exited", message };
}

function recordOf(sandbox: Sandbox): StateRecord {
  const exit = sandbox.exit === undefined ? {} : { exit: sandbox.exit };
  // An adopted record is rewritten as read, so fields a newer agent wrote survive.
  if (sandbox.stored !== undefined) return { ...sandbox.stored, ...exit };
  return {
    spec: toJson(SandboxSpecSchema, sandbox.spec),
    logPath: sandbox.logPath,
    pid: sandbox.pid,
    startTime: sandbox.startTime,
    ...exit,
  };
}

/** The sandbox a record on disk describes; undefined when it cannot be read as one. */
function readSandbox(id: string, path: string): Sandbox | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  let stored: StateRecord;
  let spec: SandboxSpec;
  try {
    stored = JSON.parse(text) as StateRecord;
    // Tolerant of fields a newer agent wrote, so a downgrade still re-adopts.
    spec = fromJson(SandboxSpecSchema, stored.spec, { ignoreUnknownFields: true });
  } catch {
    // Torn by a crash while first written, or not a spec: nothing to adopt.
    return undefined;
  }
  if (
    !Number.isSafeInteger(stored.pid) || stored.pid <= 0 ||
    typeof stored.logPath !== "string" || typeof stored.startTime !== "string"
  ) {
    return undefined;
  }
  const sandbox: Sandbox = {
    id,
    spec,
    logPath: stored.logPath,
    pid: stored.pid,
    startTime: stored.startTime,
    exit: undefined,
    view: { spec, phase: "Running", message: ISOLATES_NOTHING },
    child: undefined,
    stored,
    seenRunning: false,
    deleting: false,
  };
  if (stored.exit !== undefined) setExit(sandbox, stored.exit);
  return sandbox;
}

/** Opens the log for appending; says whether this call created it, so a failed create can remove it. */
function openLog(path: string): [number, boolean] {
  for (let attempt = 0;; attempt++) {
    try {
      return [openSync(path, "ax"), true];
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "EEXIST") return [openSync(path, "a"), false];
      if (code !== "ENOENT" || attempt > 0) throw err;
      Deno.mkdirSync(dirname(path), { recursive: true });
    }
  }
}

/** Resolves once the process runs; rejects with a FailedPreconditionError when it could not start. */
function spawned(proc: ChildProcess, spec: SandboxSpec): Promise<void> {
  return new Promise((resolve, reject) => {
    const onSpawn = () => {
      proc.off("error", onError);
      resolve();
    };
    const onError = (err: Error & { code?: string }) => {
      proc.off("spawn", onSpawn);
      reject(spawnError(err, spec));
    };
    proc.once("spawn", onSpawn);
    proc.once("error", onError);
  });
}

/** For what the checks before the spawn could not see, e.g. a directory removed in between. */
function spawnError(err: Error & { code?: string }, spec: SandboxSpec): FailedPreconditionError {
  const id = spec.sandboxId;
  const command = spec.command[0] ?? spec.args[0];
  if (err.code === "ENOENT") {
    // The kernel says ENOENT for a missing working directory too.
    if (spec.workingDir !== "" && fileKind(spec.workingDir) === "missing") {
      return new FailedPreconditionError(
        `Cannot start sandbox ${id} as working directory "${spec.workingDir}" does not exist`,
      );
    }
    return new FailedPreconditionError(
      `Cannot start sandbox ${id} as command "${command}" was not found`,
    );
  }
  if (err.code === "EACCES") {
    return new FailedPreconditionError(
      `Cannot start sandbox ${id} as command "${command}" is not executable`,
    );
  }
  return new FailedPreconditionError(`Cannot start sandbox ${id}: ${err.message}`);
}

/** Whether the sandbox's process still runs: same pid and same start time, so not a reuse. */
function isOurs(sandbox: Sandbox): boolean {
  const stat = readProcStat(sandbox.pid);
  return isLive(stat) && sandbox.startTime !== "" && stat.startTime === sandbox.startTime;
}

/**
 * Whether any live process remains in the sandbox's process group. While one
 * does, the kernel cannot hand the group's id to a new process; once a process
 * with that pid but another start time exists, the group is someone else's.
 */
function groupLives(sandbox: Sandbox): boolean {
  const pgid = sandbox.pid;
  // Signal 0 fails once the group has no process at all, zombies included:
  // the usual answer, for one syscall instead of a walk over /proc.
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    if ((err as { code?: string }).code === "ESRCH") return false;
  }
  const leader = readProcStat(pgid);
  if (isLive(leader)) return leader.startTime === sandbox.startTime;
  for (const entry of Deno.readDirSync("/proc")) {
    const c = entry.name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const stat = readProcStat(entry.name);
    if (isLive(stat) && stat.pgrp === pgid && stat.session === pgid) return true;
  }
  return false;
}

/** SIGTERM, grace, SIGKILL, for the whole group; resolves once nothing of it runs. */
async function stopGroup(sandbox: Sandbox, graceMs: number): Promise<void> {
  const child = sandbox.child;
  // A child's own exit event is quicker than /proc, but the group may outlive it.
  const gone = () => (child === undefined || sandbox.exit !== undefined) && !groupLives(sandbox);
  if (child === undefined && !groupLives(sandbox)) return;
  signalGroup(sandbox, "SIGTERM");
  if (await waitFor(gone, graceMs, child?.exited)) return;
  if (!groupLives(sandbox) && child === undefined) return;
  signalGroup(sandbox, "SIGKILL");
  await waitFor(gone, KILL_WAIT_MS, child?.exited);
}

function signalGroup(sandbox: Sandbox, signal: Deno.Signal): void {
  // Never pid 0: kill(0) and kill(-0) would signal the agent's own group.
  if (sandbox.pid <= 0) return;
  try {
    Deno.kill(-sandbox.pid, signal);
    return;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  // No such group: it has ended, or setsid(1) has not yet made it (for its
  // first moments the process is setsid(1) itself, alone, in our group).
  const alive = sandbox.child !== undefined ? sandbox.exit === undefined : isOurs(sandbox);
  if (!alive) return;
  try {
    Deno.kill(sandbox.pid, signal);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/**
 * Polls `done` (5 ms, growing to 25 ms) until it holds or `ms` pass; `wake`
 * settling triggers one early look. Resolves to whether `done` held.
 */
async function waitFor(done: () => boolean, ms: number, wake?: Promise<void>): Promise<boolean> {
  const deadline = performance.now() + ms;
  let interval = 5;
  let early = wake;
  for (;;) {
    if (done()) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = new Promise<"tick">((resolve) => {
      timer = setTimeout(resolve, Math.min(interval, left), "tick");
    });
    const woke = await (early === undefined ? tick : Promise.race([tick, early]));
    clearTimeout(timer);
    // Once settled, `wake` would end every later wait at once: poll from then on.
    if (woke !== "tick") early = undefined;
    interval = Math.min(interval * 2, 25);
  }
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** What every running process sandbox says of itself. */
const ISOLATES_NOTHING = "process runtime: a host process that isolates nothing";

/** The first rule in `spec` that a host process cannot be held to, named for the error; else undefined. */
function unenforceableRule(spec: SandboxSpec): string | undefined {
  const r = spec.resources;
  if (r?.cpuMillis !== undefined) return "resources.cpu_millis";
  if (r?.memoryBytes !== undefined) return "resources.memory_bytes";
  if (r?.pids !== undefined) return "resources.pids";
  const n = spec.network;
  if (n === undefined) return undefined;
  if (n.mode !== NetworkMode.UNSPECIFIED) return "network.mode";
  if (n.egress !== Egress.UNSPECIFIED) return "network.egress";
  if (n.allowCidrs.length > 0) return "network.allow_cidrs";
  if (n.denyCidrs.length > 0) return "network.deny_cidrs";
  return undefined;
}
