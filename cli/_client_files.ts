/**
 * The file half of `client.ts`: the requests of a WriteFile call (`start`,
 * then the data in message-sized chunks) and a {@linkcode FileRead} over a
 * ReadFile stream.
 *
 * @module
 */
import type { FileChunk, FileInfo } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import type { WriteFileRequestInit, WriteFileStartInit } from "../proto/fastpath_lite.ts";
import { Code, RpcError } from "../proto/rpc.ts";
import type { FileRead, FileWriteOptions } from "./client.ts";
import { chunksOf, prefetch } from "./_client_streams.ts";

const UINT32_MAX = 0xffff_ffff;

/**
 * `n` when it fits a uint32 field (a mode, an owner), so that a bad one fails
 * here, named, and not the call; undefined stays undefined.
 *
 * @throws {RpcError} INVALID_ARGUMENT otherwise.
 */
export function uint32(what: string, n: number | undefined): number | undefined {
  if (n === undefined) return undefined;
  if (!Number.isInteger(n) || n < 0 || n > UINT32_MAX) {
    throw new RpcError(
      Code.INVALID_ARGUMENT,
      `Invalid ${what} ${n}: expected a whole number from 0 to ${UINT32_MAX}`,
    );
  }
  return n;
}

/** What a write sends: bytes, text (as UTF-8) or a stream of bytes. */
export type FileData = Uint8Array | string | AsyncIterable<Uint8Array>;

/**
 * The `start` of a WriteFile call. `size` is the one given, else, for data in
 * memory, its length: the agent then fails a write that got more or less.
 *
 * @throws {RpcError} INVALID_ARGUMENT for a mode, owner or size out of range.
 */
export function writeStart(
  target: { readonly name: string; readonly namespace: string; readonly path: string },
  data: FileData,
  opts: FileWriteOptions,
): WriteFileStartInit {
  let size = opts.size;
  if (size === undefined && typeof data === "string") size = new TextEncoder().encode(data).length;
  if (size === undefined && data instanceof Uint8Array) size = data.length;
  if (size !== undefined && (!Number.isSafeInteger(size) || size < 0)) {
    throw new RpcError(Code.INVALID_ARGUMENT, `Invalid size ${size}: expected a whole number >= 0`);
  }
  const start: WriteFileStartInit = {
    ...target,
    mode: uint32("mode", opts.mode) ?? 0,
    archive: opts.archive ?? false,
    parents: opts.parents ?? false,
  };
  const uid = uint32("uid", opts.uid);
  const gid = uint32("gid", opts.gid);
  if (uid !== undefined) start.uid = uid;
  if (gid !== undefined) start.gid = gid;
  if (size !== undefined) start.size = BigInt(size);
  return start;
}

/** `start`, then `data` in chunks of at most 256 KiB (none for no bytes). */
export async function* writeRequests(
  start: WriteFileStartInit,
  data: FileData,
): AsyncGenerator<WriteFileRequestInit> {
  yield { msg: { case: "start", value: start } };
  if (typeof data === "string" || data instanceof Uint8Array) {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    for (const value of chunksOf(bytes)) yield { msg: { case: "data", value } };
    return;
  }
  for await (const chunk of data) {
    for (const value of chunksOf(chunk)) yield { msg: { case: "data", value } };
  }
}

/** A file's bytes as they come, and its info from the first chunk; see {@linkcode FileRead}. */
class Reader implements FileRead {
  readonly info: Promise<FileInfo>;
  readonly #chunks: AsyncIterator<Uint8Array>;

  constructor(chunks: AsyncIterable<FileChunk>, what: ReadTarget) {
    let resolve!: (info: FileInfo) => void;
    let reject!: (err: unknown) => void;
    this.info = new Promise<FileInfo>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // The caller may never look at it; the failure is thrown where it iterates too.
    this.info.catch(() => {});
    this.#chunks = prefetch(read(chunks, what, resolve, reject));
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.#chunks;
  }
}

/** What is read, for the checks and the words of {@linkcode read}. */
export interface ReadTarget {
  readonly path: string;
  readonly archive: boolean;
  /** The call's signal: once it aborted, the stream's end is no failure. */
  readonly signal: AbortSignal | undefined;
}

async function* read(
  chunks: AsyncIterable<FileChunk>,
  what: ReadTarget,
  resolve: (info: FileInfo) => void,
  reject: (err: unknown) => void,
): AsyncGenerator<Uint8Array> {
  let info: FileInfo | undefined;
  let got = 0n;
  try {
    for await (const chunk of chunks) {
      if (info === undefined) {
        if (chunk.info === undefined) {
          throw new RpcError(Code.INTERNAL, `Reading "${what.path}": the first chunk has no info`);
        }
        info = chunk.info;
        resolve(info);
      }
      got += BigInt(chunk.data.length);
      if (chunk.data.length > 0) yield chunk.data;
    }
    // The transports end a stream quietly when the caller aborts it.
    if (what.signal?.aborted) {
      throw new RpcError(Code.CANCELLED, `Reading "${what.path}" was cancelled`);
    }
    if (info === undefined) {
      // fetch cannot see trailers: the server's status, if it sent one, is lost.
      throw new RpcError(Code.UNKNOWN, `Reading "${what.path}" ended before the file's info`);
    }
    // A server that failed mid-file just ends the stream here; a short file must not pass for whole.
    if (!what.archive && info.type === "file" && got < info.size) {
      throw new RpcError(
        Code.DATA_LOSS,
        `Reading "${what.path}" ended after ${got} of its ${info.size} bytes`,
      );
    }
  } catch (err) {
    reject(err);
    if (what.signal?.aborted && err instanceof RpcError && err.code === Code.CANCELLED) return;
    throw err;
  } finally {
    reject(new RpcError(Code.CANCELLED, `Reading "${what.path}" was left before its info`));
  }
}

/** The bytes of a ReadFile stream, with the file's info; see {@linkcode FileRead}. */
export function fileRead(chunks: AsyncIterable<FileChunk>, what: ReadTarget): FileRead {
  return new Reader(chunks, what);
}
