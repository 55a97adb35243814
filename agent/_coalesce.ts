/**
 * Joining small chunks into bigger ones for the wire.
 *
 * @module
 */
import { concat } from "./_file_helper.ts";

/** Options for {@linkcode coalesce}. */
export interface CoalesceOptions {
  /** A joined chunk is sent once it holds this many bytes. */
  readonly maxBytes: number;
  /** Or once the source has given nothing more for this long. */
  readonly lingerMs: number;
}

/**
 * `src`'s bytes, in order, joined into chunks of up to about `maxBytes`: a
 * pipe gives a few KiB per read, and each message costs about the same to
 * send through two gRPC hops whatever its size (measured: 100 MiB out of a
 * sandbox in 5,617 pipe reads moved at 66 MB/s end to end, against 225 MB/s
 * for the reads alone; joined into 256 KiB, 80-105 MB/s). A source that pauses gets what it has sent so far
 * after `lingerMs`, so nothing waits for a full chunk.
 */
export async function* coalesce(
  src: AsyncIterable<Uint8Array>,
  opts: CoalesceOptions,
): AsyncGenerator<Uint8Array> {
  const it = src[Symbol.asyncIterator]();
  let parts: Uint8Array[] = [];
  let size = 0;
  const flush = (): Uint8Array => {
    const out = concat(parts);
    parts = [];
    size = 0;
    return out;
  };
  let pending: Promise<IteratorResult<Uint8Array>> | undefined;
  try {
    for (;;) {
      pending ??= it.next();
      let result: IteratorResult<Uint8Array> | "late";
      if (size === 0) {
        result = await pending;
      } else {
        let timer: ReturnType<typeof setTimeout> | undefined;
        result = await Promise.race([
          pending,
          new Promise<"late">((resolve) =>
            timer = setTimeout(() => resolve("late"), opts.lingerMs)
          ),
        ]);
        clearTimeout(timer);
      }
      if (result === "late") {
        yield flush();
        continue;
      }
      pending = undefined;
      if (result.done) {
        if (size > 0) yield flush();
        return;
      }
      if (result.value.length === 0) continue;
      parts.push(result.value);
      size += result.value.length;
      if (size >= opts.maxBytes) yield flush();
    }
  } finally {
    if (pending === undefined) await it.return?.();
    else pending.then(() => it.return?.(), () => {});
  }
}
