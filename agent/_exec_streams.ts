/**
 * Stream plumbing for the process runtime's execs.
 *
 * @module
 */

/**
 * A stream as an async iterable, with a promise that settles once it is read
 * to its end or its reader stops early (which cancels it). Unread, the
 * stream is not pulled, so its writer stalls once the pipe is full.
 */
export function drained(stream: ReadableStream<Uint8Array>): {
  stream: AsyncIterable<Uint8Array>;
  done: Promise<void>;
} {
  let markDone!: () => void;
  const done = new Promise<void>((resolve) => markDone = resolve);
  async function* read(): AsyncIterable<Uint8Array> {
    const reader = stream.getReader();
    let ended = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          ended = true;
          return;
        }
        yield value;
      }
    } finally {
      if (!ended) await reader.cancel().catch(() => {});
      reader.releaseLock();
      markDone();
    }
  }
  return { stream: read(), done };
}

/** An iterable that yields nothing. */
export async function* empty(): AsyncIterable<Uint8Array> {}

/** Each chunk as `{ stream, data }`. */
export async function* tagged<S extends string>(
  stream: S,
  chunks: AsyncIterable<Uint8Array>,
): AsyncIterable<{ stream: S; data: Uint8Array }> {
  for await (const data of chunks) yield { stream, data };
}

/**
 * Interleaves `sources` as their items arrive, asking each for its next item
 * only once the last one was taken, so a slow consumer holds back every
 * source. Stopping early aborts `stop`, which must end the sources' pending
 * reads, and then waits for them.
 */
export async function* merge<T>(
  sources: AsyncIterable<T>[],
  stop: AbortController,
): AsyncIterable<T> {
  const iterators = sources.map((source) => source[Symbol.asyncIterator]());
  const pending = new Map<number, Promise<{ i: number; r: IteratorResult<T> }>>();
  const pull = (i: number) => pending.set(i, iterators[i].next().then((r) => ({ i, r })));
  iterators.forEach((_, i) => pull(i));
  try {
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values());
      pending.delete(i);
      if (r.done) continue;
      yield r.value;
      pull(i);
    }
  } finally {
    stop.abort();
    // An async generator's return waits for its pending next, which the abort ends.
    await Promise.allSettled(
      [...pending.keys()].map((i) => pending.get(i)!.then(() => iterators[i].return?.())),
    );
  }
}
