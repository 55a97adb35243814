/**
 * Exec in containerd sandboxes (shared/DESIGN.md section 14): extra
 * processes in a running task through containerd's task Exec API, on runc
 * and gVisor alike.
 *
 * @module
 */
import { join } from "node:path";
import { Status } from "../../proto/gen/containerd/types/task_pb.ts";
import { FailedPreconditionError, NotFoundError } from "../../registry/errors.ts";
import { signalName } from "../../registry/exec_rules.ts";
import { followLogFile } from "../log_file.ts";
import type { ExecExitStatus, ExecOutput, ExecProcess, ExecRecord, ExecSpec } from "../runtime.ts";
import { type ContainerdClient, isNotFound, unreachable } from "./client.ts";
import { FifoEnd, makeFifos } from "./_fifo.ts";
import { HELPER_PATH } from "./oci_spec.ts";

const PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/** Calls that wait on a process carry no deadline of ours; a year stands for none. */
const NO_DEADLINE_MS = 365 * 24 * 3600_000;
const SIGKILL = 9;
/** Ended attached execs kept for ExecList, per sandbox. */
const KEEP_ENDED = 20;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the exec side needs to know of a sandbox, read once from its container. */
interface SandboxFacts {
  /** The OCI process of the sandbox's own command: the template of every exec. */
  readonly process: Record<string, unknown>;
  /** Where its detached execs keep records and output. */
  readonly execDir: string;
  /** Whether the helper busybox is mounted in it. */
  readonly helper: boolean;
}

interface LiveExec {
  record: ExecRecord;
  readonly done: Promise<ExecExitStatus>;
}

/** Options for {@linkcode ContainerdExecs}. */
export interface ContainerdExecsOptions {
  /** The runtime's current client (it may replace it). */
  readonly client: () => ContainerdClient;
  /** Unix milliseconds; `Date.now` unless told. */
  readonly now?: () => number;
  /** Trouble in background waits. */
  readonly warn?: (obj: object, msg: string) => void;
  /**
   * Signals an exec where containerd's own kill cannot reach it (gVisor: see
   * `killRunscExec`); resolves to false to fall back to containerd's kill.
   */
  readonly kill?: (id: string, execId: string, signo: number) => Promise<boolean>;
  /** Forgets what `kill` keeps of an exec that ended. */
  readonly forget?: (id: string, execId: string) => Promise<void>;
  /**
   * The stdio URI that writes a detached exec's stdout and stderr to the
   * log at `path` (see `_shim_logger.ts`); a `file://` URI the shim writes
   * itself unless told.
   */
  readonly logUri?: (path: string) => Promise<string>;
}

/**
 * The execs of one containerd runtime. Attached execs speak through FIFOs
 * the agent owns (their backpressure is the flow control); detached ones
 * write to `file://` logs that the shim itself appends to, with a JSON record
 * beside them, so an agent restart loses neither output nor exit status:
 * the shim keeps an exited exec's status until the agent reads it and deletes
 * the process.
 */
export class ContainerdExecs {
  readonly #opts: ContainerdExecsOptions;
  readonly #now: () => number;
  readonly #facts = new Map<string, Promise<SandboxFacts>>();
  /** By sandbox id, then exec id: execs this instance started or watches. */
  readonly #live = new Map<string, Map<string, LiveExec>>();

  /** Creates the exec side of a runtime. */
  constructor(opts: ContainerdExecsOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  get #client(): ContainerdClient {
    return this.#opts.client();
  }

  /** Forgets what it knew of sandbox `id` (deleted); its exec dir goes with its log. */
  forget(id: string): void {
    this.#facts.delete(id);
    this.#live.delete(id);
  }

  /** The directory holding sandbox `id`'s detached exec files, given its log path. */
  static execDir(logPath: string): string {
    return `${logPath}.exec`;
  }

  /** See {@linkcode Runtime.helper}. */
  async helper(id: string): Promise<readonly string[] | undefined> {
    return (await this.#factsOf(id)).helper ? [HELPER_PATH] : undefined;
  }

  /** See {@linkcode Runtime.exec}. */
  async exec(
    id: string,
    spec: ExecSpec,
    opts: { signal?: AbortSignal } = {},
  ): Promise<ExecProcess> {
    const facts = await this.#factsOf(id);
    await this.#mustRun(id);
    const execId = newExecId();
    const client = this.#client;
    const base = join(facts.execDir, execId);
    await Deno.mkdir(facts.execDir, { recursive: true, mode: 0o700 });
    const started = this.#now();
    let stdin: FifoEnd | undefined;
    let stdout: FifoEnd | undefined;
    let stderr: FifoEnd | undefined;
    const paths = { stdin: "", stdout: "", stderr: "" };
    const logFiles: string[] = [];
    if (spec.detach) {
      // stdout and stderr go to one log, interleaved as written.
      paths.stdout = await this.#opts.logUri?.(`${base}.log`) ?? `file://${base}.log`;
      paths.stderr = paths.stdout;
      logFiles.push(`${base}.log`);
    } else {
      const fifos = [`${base}.1`];
      if (!spec.tty) fifos.push(`${base}.2`);
      if (spec.stdin) fifos.push(`${base}.0`);
      await makeFifos(fifos);
      stdout = new FifoEnd(`${base}.1`, "read");
      paths.stdout = stdout.path;
      if (!spec.tty) {
        stderr = new FifoEnd(`${base}.2`, "read");
        paths.stderr = stderr.path;
      }
      if (spec.stdin) {
        stdin = new FifoEnd(`${base}.0`, "write");
        paths.stdin = stdin.path;
      }
    }
    const record: ExecRecord = {
      execId,
      argv: [...spec.argv],
      tty: spec.tty,
      detached: spec.detach,
      startedAt: started,
      ...(logFiles.length > 0 ? { logFiles } : {}),
    };
    if (spec.detach) await writeRecord(base, record);
    const cleanupFifos = async () => {
      await Promise.all([stdin?.abandon(), stdout?.abandon(), stderr?.abandon()]);
      for (const suffix of [".0", ".1", ".2"]) await Deno.remove(base + suffix).catch(() => {});
    };
    try {
      await client.tasks.exec({
        containerId: id,
        execId,
        stdin: paths.stdin,
        stdout: paths.stdout,
        stderr: paths.stderr,
        terminal: spec.tty,
        spec: {
          $typeName: "google.protobuf.Any",
          typeUrl: PROCESS_TYPE_URL,
          value: encoder.encode(JSON.stringify(processOf(facts.process, spec))),
        },
      });
    } catch (err) {
      await cleanupFifos();
      if (spec.detach) await removeExecFiles(base);
      throw this.#notRunning(id, err);
    }
    try {
      await client.tasks.start({ containerId: id, execId });
    } catch (err) {
      await client.tasks.deleteProcess({ containerId: id, execId }).catch(() => {});
      await cleanupFifos();
      const exit = startFailure(err);
      if (exit === undefined) {
        if (spec.detach) await removeExecFiles(base);
        throw this.#notRunning(id, err);
      }
      const ended = { ...record, exit, endedAt: this.#now() };
      if (spec.detach) await writeRecord(base, ended);
      this.#remember(id, { record: ended, done: Promise.resolve(exit) });
      return ended.detached ? detachedProcess(execId, exit, logFiles) : failedProcess(execId, exit);
    }
    if (spec.tty && spec.cols && spec.rows) {
      await client.tasks.resizePty({
        containerId: id,
        execId,
        width: spec.cols,
        height: spec.rows,
      }).catch(() => {});
    }
    const waited = this.#waitExec(id, execId);
    if (spec.detach) {
      const ended = waited.then(async (exit) => {
        const final = { ...record, exit, endedAt: this.#now() };
        await writeRecord(base, final);
        await client.tasks.deleteProcess({ containerId: id, execId }).catch(() => {});
        await this.#opts.forget?.(id, execId);
        return final;
      });
      const done = ended.then((final) => final.exit);
      const live: LiveExec = { record, done };
      ended.then((final) => live.record = final, () => {});
      this.#remember(id, live);
      done.catch((err) =>
        this.#opts.warn?.({ err: String(err), id, execId }, "detached exec wait failed")
      );
      return detachedProcess(execId, undefined, logFiles, done);
    }
    // Attached: the caller going away kills it.
    const kill = () => {
      this.#kill(id, execId, SIGKILL).catch(() => {});
    };
    if (opts.signal?.aborted) kill();
    opts.signal?.addEventListener("abort", kill, { once: true });
    const outDone = Promise.withResolvers<void>();
    const errDone = Promise.withResolvers<void>();
    if (stderr === undefined) errDone.resolve();
    const drained = (it: AsyncGenerator<Uint8Array>, done: PromiseWithResolvers<void>) =>
      (async function* () {
        try {
          yield* it;
        } finally {
          done.resolve();
        }
      })();
    const exit = (async () => {
      try {
        const status = await waited;
        await Promise.all([outDone.promise, errDone.promise]);
        return status;
      } finally {
        opts.signal?.removeEventListener("abort", kill);
        await stdin?.abandon();
        await client.tasks.deleteProcess({ containerId: id, execId }).catch(() => {});
        await this.#opts.forget?.(id, execId);
        for (const suffix of [".0", ".1", ".2"]) await Deno.remove(base + suffix).catch(() => {});
      }
    })();
    const live: LiveExec = { record, done: exit };
    this.#remember(id, live);
    exit.then((status) => {
      live.record = { ...record, exit: status, endedAt: this.#now() };
    }, () => {});
    return {
      execId,
      stdout: drained(stdout!.chunks(), outDone),
      stderr: stderr === undefined ? empty() : drained(stderr.chunks(), errDone),
      logFiles: [],
      write: async (chunk) => {
        if (stdin === undefined) return;
        await stdin.writeAll(chunk);
      },
      closeStdin: async () => {
        if (stdin === undefined) return;
        await stdin.close();
        await client.tasks.closeIO({ containerId: id, execId, stdin: true }).catch(() => {});
      },
      resize: async (cols, rows) => {
        if (!spec.tty) return;
        await client.tasks.resizePty({ containerId: id, execId, width: cols, height: rows })
          .catch(ignoreGone);
      },
      kill: (signo) => this.#kill(id, execId, signo),
      exit,
    };
  }

  /** See {@linkcode Runtime.execAttach}. */
  async *execAttach(
    id: string,
    execId: string,
    opts: { signal?: AbortSignal } = {},
  ): AsyncGenerator<ExecOutput> {
    const facts = await this.#factsOf(id);
    const base = join(facts.execDir, execId);
    const record = this.#settle(id, await readRecord(base, id, execId));
    if (!record.detached) {
      throw new FailedPreconditionError(
        `Cannot attach to exec ${execId} of sandbox ${id} as it is attached to the call that started it`,
      );
    }
    let ended = record.exit !== undefined;
    const live = this.#live.get(id)?.get(execId);
    const done = live?.done ?? (ended ? Promise.resolve(record.exit!) : this.#watch(id, record));
    done.then(() => ended = true, () => ended = true);
    const isDone = () => ended;
    // One log holds stdout and stderr interleaved as written (see exec()).
    for await (
      const data of followLogFile(`${base}.log`, { follow: true, isDone, signal: opts.signal })
    ) {
      yield { stream: "stdout", data };
    }
    if (opts.signal?.aborted) return;
    yield { stream: "exit", exit: await done };
  }

  /** See {@linkcode Runtime.execList}. */
  async execList(id: string): Promise<ExecRecord[]> {
    const facts = await this.#factsOf(id);
    const out = new Map<string, ExecRecord>();
    for (const live of this.#live.get(id)?.values() ?? []) out.set(live.record.execId, live.record);
    let names: string[] = [];
    try {
      for await (const e of Deno.readDir(facts.execDir)) names.push(e.name);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    names = names.filter((n) => n.endsWith(".json")).map((n) => n.slice(0, -5));
    for (const execId of names) {
      if (out.has(execId)) continue;
      const record = await readRecord(join(facts.execDir, execId), id, execId).catch(() =>
        undefined
      );
      if (record !== undefined) out.set(execId, this.#settle(id, record));
    }
    return [...out.values()].sort((a, b) => a.startedAt - b.startedAt);
  }

  /** See {@linkcode Runtime.execKill}. */
  async execKill(id: string, execId: string, signo: number): Promise<ExecRecord> {
    const record = (await this.execList(id)).find((r) => r.execId === execId);
    if (record === undefined) {
      throw new NotFoundError(`Exec ${execId} not found in sandbox ${id}`);
    }
    if (record.exit !== undefined) return record;
    await this.#kill(id, execId, signo);
    return record;
  }

  async #kill(id: string, execId: string, signo: number): Promise<void> {
    if (await this.#opts.kill?.(id, execId, signo)) return;
    await this.#client.tasks.kill({ containerId: id, execId, signal: signo }).catch(ignoreGone);
  }

  /** See {@linkcode Runtime.wait}. */
  async wait(id: string, opts: { signal?: AbortSignal } = {}): Promise<number> {
    await this.#factsOf(id);
    try {
      const res = await this.#client.tasks.wait({ containerId: id }, {
        timeoutMs: NO_DEADLINE_MS,
        signal: opts.signal,
      });
      return res.exitStatus;
    } catch (err) {
      if (isNotFound(err)) {
        throw new FailedPreconditionError(`Cannot wait for sandbox ${id} as it has no process`);
      }
      throw unreachable(err, this.#client.address);
    }
  }

  #remember(id: string, live: LiveExec): void {
    let execs = this.#live.get(id);
    if (execs === undefined) this.#live.set(id, execs = new Map());
    execs.set(live.record.execId, live);
    if (execs.size <= KEEP_ENDED) return;
    // Forget the oldest ended attached ones: detached ones stay on disk anyway.
    for (const [execId, other] of execs) {
      if (execs.size <= KEEP_ENDED) break;
      if (other.record.exit !== undefined) execs.delete(execId);
    }
  }

  /** A record from disk with its exit filled in when the shim says it ended. */
  #settle(id: string, record: ExecRecord): ExecRecord {
    const live = this.#live.get(id)?.get(record.execId);
    if (live !== undefined) return live.record;
    if (record.exit !== undefined) return record;
    this.#watch(id, record);
    return this.#live.get(id)?.get(record.execId)?.record ?? record;
  }

  /** Waits in the background for a detached exec this instance did not start (a restart). */
  #watch(id: string, record: ExecRecord): Promise<ExecExitStatus> {
    const existing = this.#live.get(id)?.get(record.execId);
    if (existing !== undefined) return existing.done;
    const base = this.#facts.get(id)!.then((f) => join(f.execDir, record.execId));
    const client = this.#client;
    const ended = (async () => {
      let exit: ExecExitStatus;
      try {
        exit = await this.#waitExec(id, record.execId);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        exit = {
          exitCode: -1,
          signal: "",
          message: "its exit status was lost (the sandbox's task ended or was replaced)",
        };
      }
      const final = { ...record, exit, endedAt: this.#now() };
      await writeRecord(await base, final);
      await client.tasks.deleteProcess({ containerId: id, execId: record.execId }).catch(
        () => {},
      );
      return final;
    })();
    const done = ended.then((final) => final.exit);
    const live: LiveExec = { record, done };
    ended.then((final) => live.record = final, () => {});
    this.#remember(id, live);
    done.catch((err) =>
      this.#opts.warn?.({ err: String(err), id, execId: record.execId }, "exec wait failed")
    );
    return done;
  }

  async #waitExec(id: string, execId: string): Promise<ExecExitStatus> {
    const res = await this.#client.tasks.wait({ containerId: id, execId }, {
      timeoutMs: NO_DEADLINE_MS,
    });
    return exitOf(res.exitStatus);
  }

  #factsOf(id: string): Promise<SandboxFacts> {
    let facts = this.#facts.get(id);
    if (facts === undefined) {
      facts = this.#readFacts(id);
      this.#facts.set(id, facts);
      facts.catch(() => this.#facts.delete(id));
    }
    return facts;
  }

  async #readFacts(id: string): Promise<SandboxFacts> {
    let container;
    try {
      ({ container } = await this.#client.containers.get({ id }));
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`Sandbox ${id} not found`);
      throw unreachable(err, this.#client.address);
    }
    const logPath = container?.labels["fsb.io/log"];
    if (container === undefined || logPath === undefined || container.spec === undefined) {
      throw new NotFoundError(`Sandbox ${id} not found`);
    }
    const oci = JSON.parse(decoder.decode(container.spec.value)) as {
      process?: Record<string, unknown>;
      mounts?: { destination?: string }[];
    };
    return {
      process: oci.process ?? {},
      execDir: ContainerdExecs.execDir(logPath),
      helper: (oci.mounts ?? []).some((m) => m.destination === HELPER_PATH),
    };
  }

  /** Throws FailedPreconditionError unless the sandbox's task runs. */
  async #mustRun(id: string): Promise<void> {
    let process;
    try {
      ({ process } = await this.#client.tasks.get({ containerId: id }));
    } catch (err) {
      if (!isNotFound(err)) throw unreachable(err, this.#client.address);
    }
    if (process === undefined || process.status !== Status.RUNNING) {
      const phase = process === undefined || process.status === Status.STOPPED
        ? "Exited"
        : Status[process.status];
      throw new FailedPreconditionError(`Cannot exec in sandbox ${id} as it is ${phase}`);
    }
  }

  /** An Exec the shim refused: the sandbox stopped meanwhile, or containerd is away. */
  #notRunning(id: string, err: unknown): unknown {
    const text = (err as Error).message ?? String(err);
    if (isNotFound(err) || /not running|process already finished|stopped/i.test(text)) {
      return new FailedPreconditionError(`Cannot exec in sandbox ${id} as it is Exited`);
    }
    return unreachable(err, this.#client.address);
  }
}

/** The OCI process of an exec: the sandbox's own, with the exec's argv, env, dir and terminal. */
function processOf(template: Record<string, unknown>, spec: ExecSpec): Record<string, unknown> {
  const env = new Map<string, string>();
  for (const entry of (template.env as string[] | undefined) ?? []) {
    const i = entry.indexOf("=");
    env.set(i < 0 ? entry : entry.slice(0, i), i < 0 ? "" : entry.slice(i + 1));
  }
  for (const [k, v] of Object.entries(spec.env)) env.set(k, v);
  const user = { ...(template.user as Record<string, unknown> | undefined) };
  if (spec.uid !== undefined) {
    user.uid = spec.uid;
    user.gid = spec.gid ?? spec.uid;
    delete user.additionalGids;
  }
  const out: Record<string, unknown> = {
    ...template,
    terminal: spec.tty,
    user,
    args: [...spec.argv],
    env: [...env].map(([k, v]) => `${k}=${v}`),
    cwd: spec.workingDir || (template.cwd as string | undefined) || "/",
  };
  if (spec.tty && spec.cols && spec.rows) out.consoleSize = { width: spec.cols, height: spec.rows };
  else delete out.consoleSize;
  return out;
}

/** An exit status as containerd reports it: 128+N when signal N ended the process. */
export function exitOf(status: number): ExecExitStatus {
  const signal = status > 128 && status <= 128 + 64 ? signalName(status - 128) : "";
  return { exitCode: status, signal, message: "" };
}

/**
 * How a Start that failed reads as an exit (127 not found, 126 cannot run),
 * or undefined when the failure is not the command's (the sandbox stopped,
 * containerd is away).
 */
function startFailure(err: unknown): ExecExitStatus | undefined {
  const text = (err as Error).message ?? String(err);
  // containerd wraps runc's words: "OCI runtime exec failed: exec failed: unable to start ...".
  const message = text.replace(/^.*?OCI runtime exec failed: /, "").trim();
  if (/executable file not found|no such file or directory|not found/i.test(text)) {
    return { exitCode: 127, signal: "", message };
  }
  if (/permission denied|exec format error|is a directory|not a directory/i.test(text)) {
    return { exitCode: 126, signal: "", message };
  }
  if (/OCI runtime exec failed|exec failed|unable to start/i.test(text)) {
    return { exitCode: 126, signal: "", message };
  }
  return undefined;
}

function newExecId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function writeRecord(base: string, record: ExecRecord): Promise<void> {
  // A temporary name of its own: two writers of one record (the instance that started the exec
  // and one that adopted it after a restart) may both write its end, and both must land whole.
  const tmp = `${base}.json.${newExecId()}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(record), { mode: 0o600 });
  await Deno.rename(tmp, `${base}.json`);
}

async function readRecord(base: string, id: string, execId: string): Promise<ExecRecord> {
  if (!/^[0-9a-f]{16}$/.test(execId)) {
    throw new NotFoundError(`Exec ${execId} not found in sandbox ${id}`);
  }
  try {
    return JSON.parse(await Deno.readTextFile(`${base}.json`)) as ExecRecord;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new NotFoundError(`Exec ${execId} not found in sandbox ${id}`);
    }
    throw err;
  }
}

async function removeExecFiles(base: string): Promise<void> {
  for (const suffix of [".json", ".log"]) {
    await Deno.remove(base + suffix).catch(() => {});
  }
}

function ignoreGone(err: unknown): void {
  if (!isNotFound(err) && !/process already finished|not found/i.test(String(err))) throw err;
}

async function* empty(): AsyncGenerator<Uint8Array> {}

function failedProcess(execId: string, exit: ExecExitStatus): ExecProcess {
  return {
    execId,
    stdout: empty(),
    stderr: empty(),
    write: () => Promise.resolve(),
    closeStdin: () => Promise.resolve(),
    resize: () => Promise.resolve(),
    kill: () => Promise.resolve(),
    exit: Promise.resolve(exit),
  };
}

function detachedProcess(
  execId: string,
  exit: ExecExitStatus | undefined,
  logFiles: readonly string[],
  done?: Promise<ExecExitStatus>,
): ExecProcess {
  return {
    ...failedProcess(execId, exit ?? { exitCode: 0, signal: "", message: "" }),
    logFiles,
    exit: done ?? Promise.resolve(exit!),
  };
}
