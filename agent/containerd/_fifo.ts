/**
 * Named pipes between the agent and a containerd shim: how an attached exec's
 * stdio flows, with the pipe's own backpressure (a reader that stops reading
 * stops the command's writes once the pipe is full).
 *
 * @module
 */

const CHUNK_BYTES = 64 * 1024;

/** Makes FIFOs at `paths` (mode 0600). Deno has no mkfifo, so this runs coreutils' own. */
export async function makeFifos(paths: readonly string[]): Promise<void> {
  if (paths.length === 0) return;
  const out = await new Deno.Command("mkfifo", {
    args: ["-m", "600", "--", ...paths],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`mkfifo failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/**
 * One end of a FIFO being opened. Opening blocks until the other end is
 * opened too (by the shim); {@linkcode FifoEnd.abandon} ends that wait when
 * the shim never comes (an exec that failed before its IO was set up) by
 * opening the other end itself, and closes the file.
 */
export class FifoEnd {
  readonly path: string;
  readonly #opening: Promise<Deno.FsFile>;
  readonly #write: boolean;
  #file: Deno.FsFile | undefined;
  #closed = false;

  /** Starts opening `path` for reading or writing. */
  constructor(path: string, mode: "read" | "write") {
    this.path = path;
    this.#write = mode === "write";
    this.#opening = Deno.open(path, this.#write ? { write: true } : { read: true });
    this.#opening.then((f) => {
      if (this.#closed) f.close();
      else this.#file = f;
    }, () => {});
  }

  /** The open file, once the other end is open. */
  file(): Promise<Deno.FsFile> {
    return this.#opening;
  }

  /** Closes this end; if it is still waiting for the shim, stops the wait first. */
  async abandon(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#file !== undefined) {
      closeQuietly(this.#file);
      return;
    }
    // Open the other end for a moment: our pending open completes, then closes.
    const other = await Deno.open(this.path, this.#write ? { read: true } : { write: true })
      .catch(() => undefined);
    const mine = await this.#opening.catch(() => undefined);
    if (other !== undefined) closeQuietly(other);
    if (mine !== undefined) closeQuietly(mine);
  }

  /** Closes this end once it is open (the reader then sees end of file). */
  async close(): Promise<void> {
    if (this.#closed) return;
    const file = await this.#opening.catch(() => undefined);
    if (this.#closed) return;
    this.#closed = true;
    if (file !== undefined) closeQuietly(file);
  }

  /** Writes all of `chunk`; false when the reader is gone (the command ended). */
  async writeAll(chunk: Uint8Array): Promise<boolean> {
    const file = await this.#opening;
    let at = 0;
    try {
      while (at < chunk.length) at += await file.write(chunk.subarray(at));
    } catch (err) {
      if (err instanceof Deno.errors.BrokenPipe || this.#closed) return false;
      throw err;
    }
    return true;
  }

  /** Yields what the other end writes, until it closes; closes this end after. */
  async *chunks(): AsyncGenerator<Uint8Array> {
    try {
      const file = await this.#opening;
      while (!this.#closed) {
        const buf = new Uint8Array(CHUNK_BYTES);
        const n = await file.read(buf).catch((err) => {
          if (this.#closed) return null;
          throw err;
        });
        if (n === null) return;
        yield buf.subarray(0, n);
      }
    } finally {
      await this.close();
    }
  }
}

function closeQuietly(file: Deno.FsFile): void {
  try {
    file.close();
  } catch {
    // Already closed.
  }
}
