/**
 * The containerd labels and extension that carry a sandbox's identity, shared
 * by the runtime and its warm pool.
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
