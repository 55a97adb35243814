/**
 * One run of the file helper for `./files.ts`: its stdout read as a header
 * then data, its stderr kept for error messages; and the header's format.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type FileInfo, FileInfoSchema } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import type { ExecExitStatus, ExecProcess } from "./runtime.ts";

/** How much of a helper's stderr is kept for an error message. */
const STDERR_KEEP = 16 * 1024;
/** A header is a stat line and at most a symlink's target (PATH_MAX). */
const HEADER_MAX = 64 * 1024;
const decoder = new TextDecoder();

/**
 * One helper process: its stdout read as a header then data, its stderr
 * kept (the first {@linkcode STDERR_KEEP} bytes) for error messages.
 */
export class HelperRun {
  readonly #proc: ExecProcess;
  readonly #out: AsyncIterator<Uint8Array>;
  #leftover: Uint8Array | undefined;
  #outDone = false;
  /** The helper's stderr, once it ended. */
  readonly stderr: Promise<string>;

  constructor(proc: ExecProcess) {
    this.#proc = proc;
    this.#out = proc.stdout[Symbol.asyncIterator]();
    this.stderr = keepText(proc.stderr, STDERR_KEEP);
  }

  /** The bytes before stdout's first NUL; undefined when stdout ended first. */
  async header(): Promise<Uint8Array | undefined> {
    const parts: Uint8Array[] = [];
    let length = 0;
    for (;;) {
      const chunk = await this.#next();
      if (chunk === undefined) return undefined;
      const nul = chunk.indexOf(0);
      if (nul >= 0) {
        parts.push(chunk.subarray(0, nul));
        if (nul + 1 < chunk.length) this.#leftover = chunk.subarray(nul + 1);
        return concat(parts);
      }
      parts.push(chunk);
      length += chunk.length;
      if (length > HEADER_MAX) throw new Error("The file helper's header is too long");
    }
  }

  /** The rest of stdout, chunk by chunk; with `first`, one (maybe empty) chunk at once. */
  async *data(first = false): AsyncIterable<Uint8Array> {
    if (first) yield (await this.#nextNow()) ?? new Uint8Array();
    for (;;) {
      const chunk = await this.#next();
      if (chunk === undefined) return;
      if (chunk.length > 0) yield chunk;
    }
  }

  /** The rest of stdout, whole. */
  async rest(): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for await (const chunk of this.data()) parts.push(chunk);
    return concat(parts);
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.#proc.write(chunk);
  }

  closeStdin(): Promise<void> {
    return this.#proc.closeStdin();
  }

  /** Reads stdout to its end and waits for stderr and the exit. */
  async finish(): Promise<ExecExitStatus> {
    while ((await this.#next()) !== undefined) { /* drained */ }
    await this.stderr;
    return await this.#proc.exit;
  }

  /** Kills the helper and waits for it to end, whatever it was doing. */
  async kill(): Promise<void> {
    await this.#proc.kill(9).catch(() => {});
    if (!this.#outDone) {
      this.#outDone = true;
      await this.#out.return?.();
    }
    await this.stderr;
    await this.#proc.exit.catch(() => {});
  }

  /** What stdout holds without waiting for more: the leftover after a header, or nothing. */
  #nextNow(): Promise<Uint8Array | undefined> {
    const leftover = this.#leftover;
    this.#leftover = undefined;
    return Promise.resolve(leftover);
  }

  async #next(): Promise<Uint8Array | undefined> {
    if (this.#leftover !== undefined) return await this.#nextNow();
    if (this.#outDone) return undefined;
    const next = await this.#out.next();
    if (next.done) {
      this.#outDone = true;
      return undefined;
    }
    return next.value;
  }
}

/** A header (`MODE UID GID SIZE MTIME\n` then a symlink's target) as FileInfo for `path`. */
export function parseInfo(header: Uint8Array, path: string): FileInfo {
  const newline = header.indexOf(10);
  const fields = decoder.decode(newline < 0 ? header : header.subarray(0, newline)).split(" ");
  if (fields.length !== 5 || fields.some((f) => !/^[0-9a-f]+$/.test(f))) {
    throw new Error(`The file helper reported ${JSON.stringify(fields.join(" "))} for ${path}`);
  }
  const [mode, uid, gid, size, mtime] = fields;
  const raw = Number.parseInt(mode, 16);
  return create(FileInfoSchema, {
    path,
    type: TYPES[raw & 0o170000] ?? "other",
    mode: raw & 0o7777,
    size: BigInt(size),
    uid: Number(uid),
    gid: Number(gid),
    mtime: BigInt(mtime),
    linkTarget: newline < 0 ? "" : decoder.decode(header.subarray(newline + 1)),
  });
}

const TYPES: Record<number, string> = { 0o100000: "file", 0o040000: "dir", 0o120000: "symlink" };

/** The header that ends at the output's first NUL. */
export function headerOf(out: Uint8Array): Uint8Array {
  const nul = out.indexOf(0);
  if (nul < 0) throw new Error("The file helper's output has no header");
  return out.subarray(0, nul);
}

/** The stream's bytes as text, keeping the first `max` (reading on, so the writer never stalls). */
async function keepText(stream: AsyncIterable<Uint8Array>, max: number): Promise<string> {
  const parts: Uint8Array[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      if (length < max) parts.push(chunk.subarray(0, max - length));
      length += chunk.length;
    }
  } catch {
    // What was read so far is all the message there is.
  }
  return decoder.decode(concat(parts));
}

export function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
