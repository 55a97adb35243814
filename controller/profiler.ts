/**
 * Profiles of the running process through `node:inspector` (shared/DESIGN.md
 * section 16): a V8 CPU profile (`.cpuprofile` JSON) sampled for a while, or
 * a heap snapshot (`.heapsnapshot` JSON). The controller serves them, and the
 * agent is handed this module by its wiring so both processes profile alike.
 *
 * @module
 */
import { Session } from "node:inspector";

/** What to capture. */
export interface ProfileOptions {
  /** `cpu` or `heap`. */
  readonly kind: "cpu" | "heap";
  /** How long a CPU profile samples, in seconds (1 to 300). */
  readonly seconds: number;
  /** Ends a CPU profile early (its samples so far are returned). */
  readonly signal?: AbortSignal;
}

/** The longest CPU profile taken, in seconds. */
export const MAX_PROFILE_SECONDS = 300;

const encoder = new TextEncoder();
/** One inspector session at a time: V8 profiles one client per process well. */
let busy: Promise<unknown> = Promise.resolve();

function post<T>(session: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => {
    session.post(method, params ?? {}, (err: Error | null, result?: unknown) => {
      if (err) reject(err);
      else resolve(result as T);
    });
  });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Captures a profile of this process and yields it as JSON bytes in chunks.
 * Profiles are taken one at a time; a second caller waits for the first.
 */
export async function* captureProfile(opts: ProfileOptions): AsyncGenerator<Uint8Array> {
  let release!: () => void;
  const previous = busy;
  busy = new Promise<void>((resolve) => release = resolve);
  await previous;
  const session = new Session();
  session.connect();
  try {
    if (opts.kind === "cpu") {
      await post(session, "Profiler.enable");
      // 1 ms sampling: fine enough for a FastPath call of a few ms, light enough to leave on.
      await post(session, "Profiler.setSamplingInterval", { interval: 1000 });
      await post(session, "Profiler.start");
      await sleep(opts.seconds * 1000, opts.signal);
      const { profile } = await post<{ profile: unknown }>(session, "Profiler.stop");
      await post(session, "Profiler.disable");
      yield encoder.encode(JSON.stringify(profile));
      return;
    }
    const chunks: string[] = [];
    session.on("HeapProfiler.addHeapSnapshotChunk", (m: { params: { chunk: string } }) => {
      chunks.push(m.params.chunk);
    });
    await post(session, "HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    for (const chunk of chunks) yield encoder.encode(chunk);
  } finally {
    session.disconnect();
    release();
  }
}
