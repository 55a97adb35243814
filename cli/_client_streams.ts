/**
 * What the client's exec and file streams (`_client_exec.ts`,
 * `_client_files.ts`) share: data cut into message-sized chunks, and a
 * stream started at once with its first item fetched ahead.
 *
 * @module
 */

/**
 * The most bytes one stdin or file data message carries. The agent takes
 * gRPC messages of up to 1 MiB; a quarter of that leaves room for framing and
 * keeps a slow reader's backlog small.
 */
export const CHUNK_BYTES = 256 * 1024;

/** `data` in views of at most {@linkcode CHUNK_BYTES} (none for no bytes). */
export function* chunksOf(data: Uint8Array): Generator<Uint8Array> {
  for (let at = 0; at < data.length; at += CHUNK_BYTES) {
    yield data.subarray(at, Math.min(at + CHUNK_BYTES, data.length));
  }
}

/**
 * Starts `gen` at once and keeps its first result for the first `next()`, so
 * that a stream's call is made, and what its first answer settles (an exec's
 * id, a file's info) settles, without waiting for the caller to iterate. The
 * rest is pulled only as the caller iterates; `return()` ends the stream.
 */
export function prefetch<T>(gen: AsyncGenerator<T>): AsyncIterator<T> {
  let first: Promise<IteratorResult<T>> | undefined = gen.next();
  // Its failure is also the stream's (id, info, exit): nobody need await this one.
  first.catch(() => {});
  return {
    next: () => {
      const result = first ?? gen.next();
      first = undefined;
      return result;
    },
    return: (value?: unknown) => {
      first = undefined;
      return gen.return(value as T);
    },
  };
}
