/**
 * Reading a sandbox's log file, optionally following it as it grows. Both
 * runtimes write one append-only file per sandbox (shared/DESIGN.md section 8),
 * so one reader serves both.
 *
 * @module
 */

/** Options for {@linkcode followLogFile}. */
export interface FollowLogFileOptions {
  /** Keep yielding bytes appended later, until `isDone()` and the file is drained. */
  readonly follow: boolean;
  /** Ends the iteration early, without an error. */
  readonly signal?: AbortSignal;
  /** Whether the writer has finished; asked only when the reader has caught up. */
  readonly isDone: () => boolean | Promise<boolean>;
  /** How long to wait before looking for new bytes again; 50 ms unless told. */
  readonly pollMs?: number;
}

const CHUNK_BYTES = 64 * 1024;
const DEFAULT_POLL_MS = 50;

/**
 * Yields the bytes of the file at `path` from its start, exactly as written.
 * With `follow`, it then waits for appended bytes (polling every `pollMs`),
 * and ends once `isDone()` is true and everything written before that has
 * been yielded, or when `signal` aborts. A missing file yields nothing; in
 * follow mode it is waited for until it appears or `isDone()` is true.
 *
 * Each yielded array is the caller's to keep: it is never reused.
 *
 * @example
 * ```ts
 * for await (const chunk of followLogFile("/var/log/x.log", { follow: false, isDone: () => true })) {
 *   await Deno.stdout.write(chunk);
 * }
 * ```
 */
export async function* followLogFile(
  path: string,
  opts: FollowLogFileOptions,
): AsyncIterable<Uint8Array> {
  const { follow, signal, isDone } = opts;
  const pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
  if (signal?.aborted) return;
  const file = await openWhenPresent(path, follow, isDone, pollMs, signal);
  if (file === undefined) return;
  try {
    // Once the writer is done, one more pass to end of file picks up whatever
    // it wrote between our last read and the isDone() answer.
    let draining = false;
    let buf = new Uint8Array(CHUNK_BYTES);
    for (;;) {
      const n = await file.read(buf);
      if (n === null) {
        if (!follow || draining) return;
        if (await isDone()) {
          draining = true;
          continue;
        }
        if (!(await pause(pollMs, signal))) return;
        continue;
      }
      const chunk = buf.subarray(0, n);
      // A short read leaves most of the buffer unused; hand the caller a
      // right-sized copy and keep the big buffer instead of allocating anew.
      if (n < CHUNK_BYTES / 4) {
        yield chunk.slice();
      } else {
        buf = new Uint8Array(CHUNK_BYTES);
        yield chunk;
      }
      if (signal?.aborted) return;
    }
  } finally {
    file.close();
  }
}

async function openWhenPresent(
  path: string,
  follow: boolean,
  isDone: () => boolean | Promise<boolean>,
  pollMs: number,
  signal: AbortSignal | undefined,
): Promise<Deno.FsFile | undefined> {
  for (;;) {
    // Asked before trying to open, so a file created just before the writer
    // finished is still read once.
    const done = follow ? await isDone() : true;
    try {
      return await Deno.open(path, { read: true });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    if (done) return undefined;
    if (!(await pause(pollMs, signal))) return undefined;
  }
}

/** Waits `ms`; resolves false at once, or as soon as, `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal === undefined) {
    return new Promise((resolve) => setTimeout(resolve, ms, true));
  }
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
