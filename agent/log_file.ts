/**
 * Reading a sandbox's log file, optionally following it as it grows. Both
 * runtimes write one append-only file per sandbox (shared/DESIGN.md section 8),
 * so one reader serves both. The agent caps those files by removing their
 * oldest blocks in place (`./log_cap.ts`); the reader keeps its place through
 * that.
 *
 * @module
 */

import { type LogDrops, logDropsPath, NO_LOG_DROPS, readLogDrops } from "./log_cap.ts";

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
  /**
   * How long a cap in progress (an odd `seq` in the log's `.dropped` sidecar,
   * see `./log_cap.ts`) may hold the reader before it gives up with an error,
   * as it would be the trace of an agent that died mid-cap and has not
   * restarted; 30 s unless told.
   */
  readonly pendingTimeoutMs?: number;
}

const CHUNK_BYTES = 64 * 1024;
const DEFAULT_POLL_MS = 50;
const DEFAULT_PENDING_TIMEOUT_MS = 30_000;
/** How often a reader looks again while a cap is in progress (it takes milliseconds). */
const PENDING_POLL_MS = 5;

/**
 * Yields the bytes of the file at `path` from its start, exactly as written.
 * With `follow`, it then waits for appended bytes (polling every `pollMs`),
 * and ends once `isDone()` is true and everything written before that has
 * been yielded, or when `signal` aborts. A missing file yields nothing; in
 * follow mode it is waited for until it appears or `isDone()` is true.
 *
 * A capped file (`LogCap` in `./log_cap.ts` removes or punches out its
 * oldest blocks) starts at the oldest byte it still keeps, and a reader that
 * a cap overtakes skips to that byte. Otherwise every byte is yielded once,
 * in order, however the file shifts under the reader: the log's `.dropped`
 * record is read after each read of the file, and a read that a cap may have
 * overlapped is done again at the right place (a seqlock).
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
    const drops = new DropsReader(
      path,
      opts.pendingTimeoutMs ?? DEFAULT_PENDING_TIMEOUT_MS,
      signal,
    );
    let state = await drops.stable();
    if (state === undefined) return;
    // `pos` counts in stream offsets (everything ever written), the file's
    // own offsets are `pos - state.collapsed`; `at` is where the fd stands.
    let pos = state.dropped;
    let at = 0;
    // Once the writer is done, one more pass to end of file picks up whatever
    // it wrote between our last read and the isDone() answer.
    let draining = false;
    let buf = new Uint8Array(CHUNK_BYTES);
    for (;;) {
      if (pos < state.dropped) pos = state.dropped;
      const want = pos - state.collapsed;
      if (at !== want) {
        await file.seek(want, Deno.SeekMode.Start);
        at = want;
      }
      const n = await file.read(buf);
      if (n !== null) at += n;
      // What was read counts only if no cap began or ended since `state`
      // was read (before this read); else read again where `pos` is now.
      const now = await drops.read();
      if (now.seq !== state.seq) {
        state = now.seq % 2 === 0 ? now : await drops.stable();
        if (state === undefined) return;
        continue;
      }
      if (n === null) {
        if (!follow || draining) return;
        if (await isDone()) {
          draining = true;
          continue;
        }
        if (!(await pause(pollMs, signal))) return;
        continue;
      }
      pos += n;
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

/** Reads a log's drop record for one reader. */
class DropsReader {
  #last: LogDrops = NO_LOG_DROPS;

  constructor(
    readonly path: string,
    readonly pendingTimeoutMs: number,
    readonly signal: AbortSignal | undefined,
  ) {}

  /**
   * The current record. A missing sidecar means nothing dropped yet, or,
   * after one was seen, that the log is being removed (and is no longer
   * capped): the last record then still holds.
   */
  async read(): Promise<LogDrops> {
    const drops = await readLogDrops(this.path);
    if (drops !== undefined) this.#last = drops;
    return this.#last;
  }

  /** The current record once no cap is in progress; undefined if the signal aborted. */
  async stable(): Promise<LogDrops | undefined> {
    let since: number | undefined;
    let seq = -1;
    for (;;) {
      const drops = await this.read();
      if (drops.seq % 2 === 0) return drops;
      if (drops.seq !== seq) {
        seq = drops.seq;
        since = performance.now();
      } else if (performance.now() - since! > this.pendingTimeoutMs) {
        throw new Error(
          `A cap of log ${this.path} has been in progress for over ${this.pendingTimeoutMs} ms ` +
            `(${logDropsPath(this.path)} has seq ${seq}); was its agent stopped during it?`,
        );
      }
      if (!(await pause(Math.min(PENDING_POLL_MS, this.pendingTimeoutMs), this.signal))) {
        return undefined;
      }
    }
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
