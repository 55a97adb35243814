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
}

/** Options for {@linkcode Runtime.logs}. */
export interface LogsOptions {
  /** Keep streaming new output until the sandbox stops or `signal` aborts. */
  readonly follow: boolean;
  readonly signal?: AbortSignal;
}

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
   * Stops the sandbox (SIGTERM, up to `graceMs`, SIGKILL) and removes everything
   * it made, its log file included. Resolves to false when it did not exist.
   */
  delete(id: string, graceMs: number): Promise<boolean>;
  /** Every sandbox this runtime holds, including ones created before a restart. */
  list(): Promise<RuntimeSandbox[]>;
  /** The sandbox's stdout and stderr bytes, as written. */
  logs(id: string, opts: LogsOptions): AsyncIterable<Uint8Array>;
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
