/**
 * The error a store write throws when its compare-and-set fails.
 *
 * @module
 */

/**
 * A conditional put or delete found the key at another revision than expected
 * (0 meaning "absent" on both sides); nothing was written. Callers catch it to
 * re-read and retry, or to detect that someone else created the key first.
 */
export class RevisionConflictError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "ABORTED";
  /** The key that was written. */
  readonly key: string;
  /** The revision the caller expected; 0 = must not exist. */
  readonly expected: number;
  /** The revision the key was at; 0 = it did not exist. */
  readonly actual: number;

  /**
   * Creates the error for operation `op` on `key`. Messages read e.g.
   * `Cannot put "k" at revision 5 as it is at revision 7`.
   */
  constructor(op: "put" | "delete", key: string, revisions: { expected: number; actual: number }) {
    const { expected, actual } = revisions;
    const reason = expected === 0
      ? `as it already exists at revision ${actual}`
      : actual === 0
      ? `at revision ${expected} as it does not exist`
      : `at revision ${expected} as it is at revision ${actual}`;
    super(`Cannot ${op} "${key}" ${reason}`);
    this.name = "RevisionConflictError";
    this.key = key;
    this.expected = expected;
    this.actual = actual;
  }
}
