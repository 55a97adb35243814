/**
 * The interface every sandbox runtime implements (shared/DESIGN.md section 8).
 *
 * @module
 */
import type { SandboxSpec } from "../proto/gen/fsb/agent/v1/agent_pb.ts";

/** A sandbox's state as its runtime sees it. */
export type RuntimePhase = "Running" | "Exited" | "Failed";

/** One sandbox the runtime holds, with the spec it was created from. */
export interface RuntimeSandbox {
  readonly spec: SandboxSpec;
  readonly phase: RuntimePhase;
  /** Why it is not running, e.g. `exit code 0` or `OOM killed`; empty while running. */
  readonly message: string;
  /** Its address on the agent's bridge, or "" without a private network. */
  readonly ip?: string;
}

/** Options for {@linkcode Runtime.create}. */
export interface CreateOptions {
  /** File that the sandbox's stdout and stderr are appended to. */
  readonly logPath: string;
  /** Aborts a create in progress; the runtime then undoes what it did. */
  readonly signal?: AbortSignal;
}

/** What a create reports back. */
export interface CreateResult {
  /** Stage name to milliseconds, e.g. `{ snapshot_prepare: 3.1, task_start: 40 }`. */
  readonly stageMs: Record<string, number>;
  /** The sandbox's address on the agent's bridge, or "" without a private network. */
  readonly ip?: string;
  /** What the sandbox should say of itself while it runs (e.g. that it isolates nothing). */
  readonly message?: string;
  /**
   * Which path served the create (shared/DESIGN.md section 13): `warm` (a
   * warm container was claimed), `prepared` (parts made ahead were used) or
   * `cold` (the default when unset).
   */
  readonly path?: "warm" | "prepared" | "cold";
}

/** Options for {@linkcode Runtime.logs}. */
export interface LogsOptions {
  /** Keep streaming new output until the sandbox stops or `signal` aborts. */
  readonly follow: boolean;
  readonly signal?: AbortSignal;
}

/** A command to run in a running sandbox (shared/DESIGN.md section 14). */
export interface ExecSpec {
  /** argv, at least one element; argv[0] is looked up in the sandbox's PATH. */
  readonly argv: readonly string[];
  /** Added to (or overriding) the sandbox's environment. */
  readonly env: Readonly<Record<string, string>>;
  /** Absolute; the sandbox's own working dir when empty. */
  readonly workingDir: string;
  /** Run on a pseudo-terminal (output on stdout only). */
  readonly tty: boolean;
  /** The caller writes stdin; without it the command reads end of file at once. */
  readonly stdin: boolean;
  /**
   * Output goes to log files the runtime keeps (capped like sandbox logs),
   * not to the returned streams, and the process outlives the caller.
   */
  readonly detach: boolean;
  /** The terminal's initial size, with `tty`. */
  readonly cols?: number;
  readonly rows?: number;
  /**
   * Run as this user and group instead of the sandbox's own user (file
   * operations run as root, 0); ignored by runtimes that cannot switch users.
   */
  readonly uid?: number;
  readonly gid?: number;
}

/** How an exec ended (see `ExecExit` in fastpath.proto). */
export interface ExecExitStatus {
  /** Exit code; 128+N for signal N; 126 could not run; 127 not found. */
  readonly exitCode: number;
  /** The signal's name without `SIG` (`KILL`) when one ended it, else "". */
  readonly signal: string;
  /** Why it could not run, else "". */
  readonly message: string;
}

/** One exec the runtime ran or runs. */
export interface ExecRecord {
  readonly execId: string;
  readonly argv: readonly string[];
  readonly tty: boolean;
  readonly detached: boolean;
  /** Unix milliseconds. */
  readonly startedAt: number;
  /** Set once it ended. */
  readonly exit?: ExecExitStatus;
  /** Unix milliseconds; set once it ended. */
  readonly endedAt?: number;
  /** Files a detached exec's output goes to, for the agent to cap like sandbox logs. */
  readonly logFiles?: readonly string[];
}

/** A running exec, as {@linkcode Runtime.exec} returns it. */
export interface ExecProcess {
  readonly execId: string;
  /**
   * The command's stdout (a terminal's whole output with `tty`); empty for a
   * detached exec. Not read, it blocks the command's writes: that is the flow
   * control between a slow caller and the command.
   */
  readonly stdout: AsyncIterable<Uint8Array>;
  /** The command's stderr; empty with `tty` or `detach`. */
  readonly stderr: AsyncIterable<Uint8Array>;
  /** Writes to stdin; resolves once the bytes are in the pipe (backpressure). */
  write(chunk: Uint8Array): Promise<void>;
  /** Closes stdin (end of file); idempotent. */
  closeStdin(): Promise<void>;
  /** Resizes the terminal (with `tty`). */
  resize(cols: number, rows: number): Promise<void>;
  /** Sends signal `signo` to the command. */
  kill(signo: number): Promise<void>;
  /** Files a detached exec's output goes to, for the agent to cap like sandbox logs. */
  readonly logFiles?: readonly string[];
  /**
   * Settles when the command ended and its output streams are drained; a
   * command that could not start resolves with exit code 126 or 127.
   */
  readonly exit: Promise<ExecExitStatus>;
}

/** Output of an exec, as {@linkcode Runtime.execAttach} replays it. */
export type ExecOutput =
  | { readonly stream: "stdout" | "stderr"; readonly data: Uint8Array }
  | { readonly stream: "exit"; readonly exit: ExecExitStatus };

/**
 * Runs sandboxes on one host. Every method may be called concurrently for
 * different sandbox ids.
 */
export interface Runtime {
  /** `process` or `containerd`. */
  readonly name: string;
  /** What runs each sandbox: `runc`, `runsc` (gVisor) or `process`. */
  readonly sandboxRuntime: string;
  /** Whether creates can succeed now (e.g. containerd answers). */
  ready(): Promise<boolean>;
  /**
   * Creates and starts the sandbox `spec.sandboxId`. On failure it throws and
   * leaves nothing behind. An image the host lacks is a FailedPreconditionError.
   */
  create(spec: SandboxSpec, opts: CreateOptions): Promise<CreateResult>;
  /**
   * Warm containers ready now per image (normalized name), every image the
   * runtime keeps a pool of, 0 while drained; absent or empty without pools.
   * Read on every report, so it must be cheap.
   */
  warmCounts?(): Record<string, number>;
  /**
   * Root snapshots prepared ahead and ready now per image (normalized name),
   * for creates the warm pool cannot serve; absent or empty when none are
   * kept. Cheap: read on every scrape.
   */
  preparedCounts?(): Record<string, number>;
  /**
   * Starts the runtime's warm pools, if it keeps any: they fill in the
   * background and never hold more than `freeSlots()` (how many more
   * sandboxes the agent may take now) plus their own size.
   */
  startWarm?(opts: { freeSlots: () => number }): Promise<void>;
  /**
   * Stops the sandbox (SIGTERM, up to `graceMs`, SIGKILL) and removes everything
   * it made, its log file included. Resolves to false when it did not exist.
   */
  delete(id: string, graceMs: number): Promise<boolean>;
  /** Every sandbox this runtime holds, including ones created before a restart. */
  list(): Promise<RuntimeSandbox[]>;
  /** The sandbox's stdout and stderr bytes, as written. */
  logs(id: string, opts: LogsOptions): AsyncIterable<Uint8Array>;
  /**
   * Starts `spec` in running sandbox `id`. Throws NotFoundError for an
   * unknown sandbox, FailedPreconditionError for one not running. A command
   * that cannot start still resolves, its `exit` saying 126 or 127.
   * Aborting `opts.signal` kills an attached exec (never a detached one).
   */
  exec(id: string, spec: ExecSpec, opts?: { signal?: AbortSignal }): Promise<ExecProcess>;
  /**
   * A detached exec's output from its start, following until it ends, then
   * its exit. Throws NotFoundError for an unknown sandbox or exec id.
   */
  execAttach(
    id: string,
    execId: string,
    opts?: { signal?: AbortSignal },
  ): AsyncIterable<ExecOutput>;
  /** The sandbox's execs, running and ended (ended attached ones may be forgotten). */
  execList(id: string): Promise<ExecRecord[]>;
  /** Sends `signo` to exec `execId`; NotFoundError when unknown. */
  execKill(id: string, execId: string, signo: number): Promise<ExecRecord>;
  /** Until the sandbox's main process ends; its exit code (128+N for signal N). */
  wait(id: string, opts?: { signal?: AbortSignal }): Promise<number>;
  /**
   * The argv prefix of a static busybox that {@linkcode exec} can run inside
   * the sandbox (e.g. `["/.fsb/busybox"]`), for file operations on images
   * without a shell; undefined when the sandbox has none.
   */
  helper(id: string): Promise<readonly string[] | undefined>;
  /**
   * Replaces the spec kept with sandbox `spec.sandboxId` by `spec`: what
   * {@linkcode list} reports from then on, and what a new instance adopts
   * after a restart. The sandbox itself is untouched (only fields it does not
   * run by, such as labels or expiry, may differ). NotFoundError for an
   * unknown sandbox. Optional: an agent whose runtime lacks it answers the
   * controller's UpdateSandbox with UNIMPLEMENTED.
   */
  updateSpec?(spec: SandboxSpec): Promise<void>;
  /** Normalized references of the images present on the host. */
  images(): Promise<string[]>;
  /**
   * Removes what the runtime holds but cannot account for (no readable spec),
   * once older than its grace window; resolves to the ids removed. Optional:
   * the agent calls it on start and then every minute.
   */
  removeOrphans?(): Promise<string[]>;
  /** Releases connections; sandboxes keep running. */
  close(): Promise<void>;
}
