/**
 * The containerd labels and extension that carry a sandbox's identity, shared
 * by the runtime and its warm pool, and how logs the shim writes are read.
 *
 * @module
 */

/** Container labels that carry a sandbox's identity. */
export const LABELS = {
  name: "fsb.io/name",
  namespace: "fsb.io/namespace",
  pool: "fsb.io/pool",
  /** The full SandboxSpec, protobuf JSON. */
  spec: "fsb.io/spec",
  /** The log file the task writes. */
  log: "fsb.io/log",
} as const;

/** Container extension holding the spec (binary) when it is too big for a label. */
export const SPEC_EXTENSION = "fsb.io/spec";

/**
 * How long a follower of a `file://` log waits for the file to stop growing
 * after the task (or exec) has ended: the shim copies the output into the
 * file on its own time, and its last bytes can land after the exit is seen.
 */
export const SHIM_SETTLE_MS = 200;
