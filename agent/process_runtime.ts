/**
 * The `process` runtime: each sandbox is a plain host process.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { dirname, join } from "node:path";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../registry/errors.ts";
import { normalizeImage } from "../registry/normalize_image.ts";
import { followLogFile } from "./log_file.ts";
import type {
  CreateOptions,
  CreateResult,
  LogsOptions,
  Runtime,
  RuntimePhase,
  RuntimeSandbox,
} from "./runtime.ts";

/** Options for {@linkcode ProcessRuntime}. */
export interface ProcessRuntimeOptions {
  /** Directory for one state record (and home directory) per sandbox; created on first use. */
  readonly stateDir: string;
  /** Images to report as present, so image affinity can be exercised; the runtime never uses them. */
  readonly images?: string[];
}

/** Message of a sandbox found gone, with no exit recorded, when a runtime first looked at it. */
const EXITED_WHILE_DOWN = "exited while the agent was down";
/** Message of an adopted sandbox (not our child, so its status is not ours to read) that ended later. */
const EXITED_UNKNOWN = "exited after an agent restart, exit code unknown";

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const STATE_FILE = "state.json";
// The id names a directory, so it must not be able to climb out of stateDir.
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
// After SIGKILL a process is gone within milliseconds; this only bounds a wedged kernel.
const KILL_WAIT_MS = 2000;

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

/** A sandbox this instance spawned: it is our child, so we get its exit status. */
interface Child {
  readonly process: ChildProcess;
  /** Set when the process exits. */
  exit: string | undefined;
  /** Resolves when the process exits. */
  readonly exited: Promise<void>;
  readonly onExit: (code: number | null, signal: string | null) => void;
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
 * the agent dies or restarts. A state record per sandbox under `stateDir`
 * (spec, pid, process start time, exit) lets a new instance re-adopt it.
 * Exit codes are known for processes this instance started; a process that
 * ends while no agent is its parent is `Exited` with the message
 * `exited while the agent was down` (found gone by a new instance) or
 * `exited after an agent restart, exit code unknown` (seen running by a new
 * instance, which is not its parent, so cannot read its status).
 *
 * Spawning goes through `node:child_process`, because in Deno it honours
 * `detached: true` (the child calls setsid, so it is leader of a new session
 * and process group whose id is its pid) and accepts file descriptors in
 * `stdio`. `Deno.Command` offers only piped, inherit or null streams, so the
 * log redirect would need an `sh -c 'exec ... >>log'` wrapper, which turns a
 * missing command into exit code 127 instead of a spawn error. Signals go to
 * the whole group with `Deno.kill(-pgid, signal)`.
 *
 * State records are written synchronously (write then rename): they are tiny,
 * and with no await between reading and writing one, an exit event can never
 * interleave with a delete and resurrect a removed record.
 */
export class ProcessRuntime implements Runtime {
  /** Always `process`. */
  readonly name = "process";
  readonly #dir: string;
  readonly #images: string[];
  readonly #children = new Map<string, Child>();
  readonly #creating = new Map<string, Promise<unknown>>();
  readonly #deleting = new Map<string, Promise<boolean>>();
  /** Adopted sandboxes this instance has seen running, to tell how their end is reported. */
  readonly #seenRunning = new Set<string>();
  #dirMade = false;

  /** Creates the runtime; nothing is touched on disk until it is used. */
  constructor(opts: ProcessRuntimeOptions) {
    this.#dir = opts.stateDir;
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
    const sandboxDir = this.#claim(id);
    const home = join(sandboxDir, "home");
    let logCreated = false;
    let fd = -1;
    let child: Child | undefined;
    try {
      Deno.mkdirSync(home);
      [fd, logCreated] = openLog(opts.logPath);
      const start = performance.now();
      child = this.#spawn(spec, home, fd);
      await spawned(child.process, spec);
      const runtimeStart = performance.now() - start;
      closeSync(fd);
      fd = -1;
      const pid = child.process.pid!;
      opts.signal?.throwIfAborted();
      writeState(sandboxDir, {
        spec: toJson(SandboxSpecSchema, spec),
        logPath: opts.logPath,
        pid,
        // Empty only if the process already ended and was reaped; then the
        // exit event records its status and the pid is never signalled.
        startTime: readProcStat(pid)?.startTime ?? "",
        ...(child.exit === undefined ? {} : { exit: child.exit }),
      });
      this.#children.set(id, child);
      return { stageMs: { runtime_start: runtimeStart } };
    } catch (err) {
      if (fd >= 0) closeSync(fd);
      if (child !== undefined) {
        const pid = child.process.pid;
        if (pid !== undefined && child.exit === undefined) {
          signalGroup(pid, "SIGKILL");
          await waitFor(() => child!.exit !== undefined, KILL_WAIT_MS, child.exited);
        }
      }
      removeQuietly(sandboxDir);
      if (logCreated) removeQuietly(opts.logPath);
      throw err;
    }
  }

  /** Makes the sandbox's directory; its existence is what reserves the id. */
  #claim(id: string): string {
    if (!this.#dirMade) {
      Deno.mkdirSync(this.#dir, { recursive: true });
      this.#dirMade = true;
    }
    const sandboxDir = join(this.#dir, id);
    try {
      Deno.mkdirSync(sandboxDir);
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) {
        throw new AlreadyExistsError(`Cannot create sandbox ${id} as it already exists`);
      }
      throw err;
    }
    return sandboxDir;
  }

  #spawn(spec: SandboxSpec, home: string, fd: number): Child {
    const argv = [...spec.command, ...spec.args];
    let proc: ChildProcess;
    try {
      proc = spawn(argv[0], argv.slice(1), {
        cwd: spec.workingDir || home,
        env: { PATH: DEFAULT_PATH, HOME: home, ...spec.envs },
        detached: true,
        stdio: ["ignore", fd, fd],
      });
    } catch (err) {
      // Synchronous throws are argument checks, e.g. a NUL byte in an argument.
      throw new FailedPreconditionError(
        `Cannot start sandbox ${spec.sandboxId}: ${(err as Error).message}`,
      );
    }
    let resolveExited!: () => void;
    const exited = new Promise<void>((resolve) => resolveExited = resolve);
    const id = spec.sandboxId;
    const child: Child = {
      process: proc,
      exit: undefined,
      exited,
      onExit: (code, signal) => {
        const message = code !== null ? `exit code ${code}` : `killed by ${signal}`;
        child.exit = message;
        resolveExited();
        if (this.#children.get(id) === child) recordExit(join(this.#dir, id), message);
      },
    };
    // Attached before any await so that not even an instant exit is missed.
    proc.on("exit", child.onExit);
    // An unheard "error" event would throw; spawn failures are read in spawned().
    proc.on("error", () => {});
    return child;
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
    const sandboxDir = join(this.#dir, id);
    const record = readState(sandboxDir);
    if (record === undefined) {
      // A directory without a record is what a create cut short by a crash leaves.
      removeQuietly(sandboxDir);
      return false;
    }
    const child = this.#children.get(id);
    await stopGroup(record, child, graceMs);
    if (child !== undefined) child.process.off("exit", child.onExit);
    this.#children.delete(id);
    this.#seenRunning.delete(id);
    removeQuietly(sandboxDir);
    removeQuietly(record.logPath);
    return true;
  }

  /** Every sandbox with a state record under `stateDir`, whichever instance created it. */
  list(): Promise<RuntimeSandbox[]> {
    try {
      return Promise.resolve(this.#list());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #list(): RuntimeSandbox[] {
    const out: RuntimeSandbox[] = [];
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync(this.#dir);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return out;
      throw err;
    }
    for (const entry of entries) {
      if (!entry.isDirectory || !ID_PATTERN.test(entry.name)) continue;
      const record = readState(join(this.#dir, entry.name));
      if (record === undefined) continue;
      const [phase, message] = this.#phase(entry.name, record);
      // Tolerant of fields a newer agent wrote, so a downgrade still re-adopts.
      const spec = fromJson(SandboxSpecSchema, record.spec, { ignoreUnknownFields: true });
      out.push({ spec, phase, message });
    }
    return out;
  }

  #phase(id: string, record: StateRecord): [RuntimePhase, string] {
    if (record.exit !== undefined) return ["Exited", record.exit];
    const child = this.#children.get(id);
    if (child !== undefined) {
      return child.exit === undefined ? ["Running", ""] : ["Exited", child.exit];
    }
    if (isOurs(record)) {
      this.#seenRunning.add(id);
      return ["Running", ""];
    }
    const message = this.#seenRunning.has(id) ? EXITED_UNKNOWN : EXITED_WHILE_DOWN;
    recordExit(join(this.#dir, id), message);
    return ["Exited", message];
  }

  /**
   * The sandbox's log from its start; with `follow`, until the process has
   * exited (or the sandbox is deleted) and the log is drained. Throws
   * NotFoundError, on first iteration, for an unknown id.
   */
  async *logs(id: string, opts: LogsOptions): AsyncIterable<Uint8Array> {
    const sandboxDir = join(this.#dir, id);
    const record = ID_PATTERN.test(id) ? readState(sandboxDir) : undefined;
    if (record === undefined) {
      throw new NotFoundError(`Cannot read logs of sandbox ${id} as it does not exist`);
    }
    const isDone = () => {
      const current = readState(sandboxDir);
      return current === undefined || this.#phase(id, current)[0] !== "Running";
    };
    yield* followLogFile(record.logPath, { follow: opts.follow, signal: opts.signal, isDone });
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
    for (const child of this.#children.values()) {
      child.process.off("exit", child.onExit);
      child.process.unref();
    }
    this.#children.clear();
    return Promise.resolve();
  }
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

function spawnError(err: Error & { code?: string }, spec: SandboxSpec): FailedPreconditionError {
  const id = spec.sandboxId;
  const command = spec.command[0] ?? spec.args[0];
  if (err.code === "ENOENT") {
    // The kernel says ENOENT for a missing working directory too.
    if (spec.workingDir !== "" && !exists(spec.workingDir)) {
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

/** The fields of /proc/PID/stat that we use; undefined when there is no such process. */
interface ProcStat {
  /** One letter: R, S, D, Z (zombie), X (dead), ... */
  readonly state: string;
  readonly pgrp: number;
  readonly session: number;
  readonly startTime: string;
}

function readProcStat(pid: number | string): ProcStat | undefined {
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
    pgrp: Number(fields[2]),
    session: Number(fields[3]),
    startTime: fields[19],
  };
}

function isLive(stat: ProcStat | undefined): stat is ProcStat {
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X";
}

/** Whether the record's process still runs: same pid and same start time, so not a reuse. */
function isOurs(record: StateRecord): boolean {
  const stat = readProcStat(record.pid);
  return isLive(stat) && record.startTime !== "" && stat.startTime === record.startTime;
}

/**
 * Whether any live process remains in the record's process group. While one
 * does, the kernel cannot hand the group's id to a new process; once a process
 * with that pid but another start time exists, the group is someone else's.
 */
function groupLives(record: StateRecord): boolean {
  const pgid = record.pid;
  const leader = readProcStat(pgid);
  if (isLive(leader)) return leader.startTime === record.startTime;
  for (const entry of Deno.readDirSync("/proc")) {
    const c = entry.name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const stat = readProcStat(entry.name);
    if (isLive(stat) && stat.pgrp === pgid && stat.session === pgid) return true;
  }
  return false;
}

/** SIGTERM, grace, SIGKILL, for the whole group; resolves once nothing of it runs. */
async function stopGroup(
  record: StateRecord,
  child: Child | undefined,
  graceMs: number,
): Promise<void> {
  // A child's own exit event is quicker than /proc, but the group may outlive it.
  const gone = () => (child === undefined || child.exit !== undefined) && !groupLives(record);
  if (child === undefined && !groupLives(record)) return;
  signalGroup(record.pid, "SIGTERM");
  if (await waitFor(gone, graceMs, child?.exited)) return;
  if (!groupLives(record) && child === undefined) return;
  signalGroup(record.pid, "SIGKILL");
  await waitFor(gone, KILL_WAIT_MS, child?.exited);
}

function signalGroup(pgid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(-pgid, signal);
  } catch (err) {
    // Gone already: nothing to stop.
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

function readState(sandboxDir: string): StateRecord | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(join(sandboxDir, STATE_FILE))) as StateRecord;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

/** Writes atomically, so a crash leaves the old record or the new one, never half of one. */
function writeState(sandboxDir: string, record: StateRecord): void {
  const path = join(sandboxDir, STATE_FILE);
  Deno.writeTextFileSync(`${path}.tmp`, JSON.stringify(record));
  Deno.renameSync(`${path}.tmp`, path);
}

/** Adds the exit to the record, unless it is gone (deleted) or has one already. */
function recordExit(sandboxDir: string, message: string): void {
  const record = readState(sandboxDir);
  if (record === undefined || record.exit !== undefined) return;
  try {
    writeState(sandboxDir, { ...record, exit: message });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
