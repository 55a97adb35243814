/**
 * File operations inside a sandbox (shared/DESIGN.md section 14), built only
 * on {@linkcode Runtime.exec} and {@linkcode Runtime.helper}: each runs the
 * sandbox's static busybox (`busybox sh -c SCRIPT`, see `./_file_scripts.ts`)
 * as root inside the sandbox. So they work alike on runc, gVisor and the
 * process runtime, on images without a shell or tar, and every path resolves
 * inside the sandbox's root by the kernel's own rules: a symlink to `/` or to
 * `../..` in the sandbox leads to the sandbox's root, never the host's.
 *
 * @module
 */
import { posix } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  type FileChunk,
  FileChunkSchema,
  type FileInfo,
  type ListDirRequest,
  type ListDirResponse,
  ListDirResponseSchema,
  type MakeDirRequest,
  type ReadFileRequest,
  type RemoveRequest,
  type RemoveResponse,
  RemoveResponseSchema,
  type StatRequest,
  type WriteFileRequest,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  OutOfRangeError,
} from "../registry/errors.ts";
import { checkSandboxPath, readStart, startAgainError } from "../registry/exec_rules.ts";
import * as scripts from "./_file_scripts.ts";
import { type Call, failure } from "./_file_errors.ts";
import { headerOf, HelperRun, parseInfo } from "./_file_helper.ts";
import type { Runtime } from "./runtime.ts";
import { coalesce } from "./_coalesce.ts";

/**
 * Reads go out in chunks of up to 256 KiB (the agent's messages stay under
 * its 1 MiB limit), joined from the helper's pipe reads.
 */
const READ_COALESCE = { maxBytes: 256 * 1024, lingerMs: 1 };

/** The largest write {@linkcode SandboxFiles} takes unless told: 1 GiB. */
export const DEFAULT_MAX_WRITE_BYTES = 1024 * 1024 * 1024;

/** Options for {@linkcode SandboxFiles}. */
export interface SandboxFilesOptions {
  /** The most bytes one write may carry (an archive's bytes, for archives); 1 GiB unless told. */
  readonly maxWriteBytes?: number;
}

/** Options for each file operation. */
export interface FileCallOptions {
  /** Aborting it kills the helper; a write then leaves nothing behind. */
  readonly signal?: AbortSignal;
}

const decoder = new TextDecoder();

/**
 * Reads, writes, lists, stats, makes and removes files in a runtime's
 * sandboxes. Sandbox ids are the runtime's; errors are the registry's typed
 * ones: InvalidArgumentError naming the request's field, NotFoundError for a
 * missing file or sandbox, FailedPreconditionError for a path of the wrong
 * kind or a sandbox that is not running (or has no helper), OutOfRangeError
 * for a read over its `max_bytes`.
 *
 * Paths must be absolute; they are normalized (`//`, `.`, `..` and a
 * trailing `/` go) before use. Names come back decoded as UTF-8: bytes that
 * are not become U+FFFD.
 */
export class SandboxFiles {
  readonly #runtime: Runtime;
  readonly #maxWriteBytes: number;

  /** Works through `runtime`'s exec and helper. */
  constructor(runtime: Runtime, opts: SandboxFilesOptions = {}) {
    this.#runtime = runtime;
    this.#maxWriteBytes = opts.maxWriteBytes ?? DEFAULT_MAX_WRITE_BYTES;
  }

  /**
   * The file's bytes (following symlinks), or with `archive` a tar archive of
   * the path (a file or a directory, named by its last component, symlinks
   * kept as symlinks). The first chunk carries the file's info (lstat, for an
   * archive). With `maxBytes`, a bigger file (or longer archive) is an
   * OutOfRangeError, before any data for a file. A directory without
   * `archive` is a FailedPreconditionError.
   */
  async *readFile(
    id: string,
    req: Pick<ReadFileRequest, "path" | "archive" | "maxBytes">,
    opts: FileCallOptions = {},
  ): AsyncIterable<FileChunk> {
    const path = checkedPath(req.path);
    if (req.maxBytes < 0n) {
      throw new InvalidArgumentError("max_bytes", "must be 0 (no limit) or more");
    }
    const maxBytes = Number(req.maxBytes);
    const call: Call = { id, path, verb: "read", archive: req.archive };
    const script = req.archive ? scripts.READ_ARCHIVE : scripts.READ;
    const run = await this.#start(id, script, [path], { stdin: false, signal: opts.signal });
    let finished = false;
    try {
      const header = await run.header();
      if (header === undefined) throw await failure(run, call, opts.signal);
      const info = parseInfo(header, path);
      const tooBig = (size: bigint | number) =>
        new OutOfRangeError(
          `Cannot read ${path} in sandbox ${id} as it is over max_bytes ${maxBytes}` +
            (req.archive ? " as an archive" : `: ${size} bytes`),
        );
      if (!req.archive && maxBytes > 0 && info.size > BigInt(maxBytes)) throw tooBig(info.size);
      let sent = 0;
      let first = true;
      const chunks = run.data(true)[Symbol.asyncIterator]();
      // The first chunk (what came with the header, maybe nothing) goes at once, with the info.
      const head = await chunks.next();
      if (!head.done) {
        sent += head.value.length;
        if (maxBytes > 0 && sent > maxBytes) throw tooBig(sent);
        yield create(FileChunkSchema, { data: head.value, info });
        first = false;
      }
      for await (const data of coalesce({ [Symbol.asyncIterator]: () => chunks }, READ_COALESCE)) {
        sent += data.length;
        if (maxBytes > 0 && sent > maxBytes) throw tooBig(sent);
        yield create(FileChunkSchema, first ? { data, info } : { data });
        first = false;
      }
      const exit = await run.finish();
      finished = true;
      if (exit.exitCode !== 0) throw await failure(run, call, opts.signal, exit);
    } finally {
      if (!finished) await run.kill();
    }
  }

  /**
   * Writes a file (or with `archive`, extracts a tar archive into directory
   * `path`, made if missing, merged into if present). `requests` holds
   * `start` first, then data. The data goes to a temporary name beside the
   * target (mode 0600), and only once it all arrived, with `size` bytes when
   * `size` is given and no abort, is it given its owner and mode (0644 when
   * 0) and renamed over the target, so readers see the old file or the new
   * one. An archive's temporary directory is renamed into place, or merged
   * entry by entry into an existing directory. On any failure (`requests`
   * throws, `opts.signal` aborts, too much or too little data) the helper is
   * killed and the temporary name removed. Resolves to the target's info.
   *
   * A request stream that just ends early cannot be told from a complete one
   * unless `size` is given: the transport must abort `opts.signal` (or make
   * `requests` throw) when the caller goes away.
   */
  async writeFile(
    id: string,
    requests: AsyncIterable<WriteFileRequest>,
    opts: FileCallOptions = {},
  ): Promise<FileInfo> {
    const signal = opts.signal;
    const it = requests[Symbol.asyncIterator]();
    const start = await readStart({ next: () => nextOrAbort(it, signal) }, "a write");
    const path = checkedPath(start.path);
    if (path === "/" && !start.archive) {
      throw new InvalidArgumentError("path", "must name a file, not /");
    }
    const mode = start.mode === 0 ? 0o644 : start.mode;
    if (mode > 0o7777) {
      throw new InvalidArgumentError("mode", `must be at most 0o7777, got 0o${mode.toString(8)}`);
    }
    const size = start.size === undefined ? undefined : Number(start.size);
    const limit = this.#maxWriteBytes;
    if (size !== undefined && (size < 0 || size > limit)) {
      throw new InvalidArgumentError(
        "size",
        `must be within 0..${limit} bytes (the agent's limit), got ${start.size}`,
      );
    }
    const call: Call = { id, path, verb: "write", archive: start.archive, parents: start.parents };
    const tmp = `.fsb-write-${randomHex(8)}`;
    const flags = [start.parents ? "1" : "0", start.archive ? "1" : "0"];
    const run = await this.#start(id, scripts.RECEIVE, [path, tmp, ...flags], {
      stdin: true,
      signal,
    });
    let staged: string | undefined;
    let finished = false;
    try {
      const header = await run.header();
      if (header === undefined) throw await failure(run, call, signal);
      staged = decoder.decode(header);
      let count = 0;
      for (;;) {
        const next = await nextOrAbort(it, signal);
        if (next.done) break;
        const msg = next.value.msg;
        if (msg.case === "start") throw startAgainError();
        if (msg.case !== "data") continue;
        count += msg.value.length;
        if (count > limit) {
          throw new InvalidArgumentError(
            "data",
            `must total at most ${limit} bytes (the agent's limit)`,
          );
        }
        if (size !== undefined && count > size) {
          throw new InvalidArgumentError("size", `is ${size} bytes, but more data came`);
        }
        await run.write(msg.value);
      }
      signal?.throwIfAborted();
      if (size !== undefined && count !== size) {
        throw new InvalidArgumentError("size", `is ${size} bytes, but ${count} came`);
      }
      await run.closeStdin();
      const received = await run.finish();
      finished = true;
      if (received.exitCode !== 0) throw await failure(run, call, signal, received);
      // Not abortable: once all data is in, the write completes or fails on its own.
      const commit = start.archive
        ? await this.#run(id, scripts.COMMIT_ARCHIVE, [staged, path], call)
        : await this.#run(id, scripts.COMMIT_FILE, [
          staged,
          path,
          mode.toString(8),
          start.uid === undefined ? "" : String(start.uid),
          start.gid === undefined ? "" : String(start.gid),
          String(count),
        ], call);
      staged = undefined;
      return parseInfo(headerOf(commit), path);
    } catch (err) {
      if (!finished) await run.kill();
      if (staged !== undefined) {
        await this.#run(id, scripts.CLEANUP, [staged], call).catch(() => {});
      }
      throw err;
    }
  }

  /** The directory's entries (following a symlink to it), sorted by name, with lstat info each. */
  async listDir(
    id: string,
    req: Pick<ListDirRequest, "path">,
    opts: FileCallOptions = {},
  ): Promise<ListDirResponse> {
    const path = checkedPath(req.path);
    const call: Call = { id, path, verb: "list" };
    const out = await this.#run(id, scripts.LIST, [path, scripts.LIST_BATCH], call, opts.signal);
    const entries: { name: Uint8Array; info: FileInfo }[] = [];
    for (let at = 0; at < out.length;) {
      const nameEnd = out.indexOf(0, at);
      const end = nameEnd < 0 ? -1 : out.indexOf(0, nameEnd + 1);
      if (end < 0) {
        throw new Error(`Cannot list ${path} in sandbox ${id}: its listing is cut short`);
      }
      const name = out.subarray(at, nameEnd);
      entries.push({ name, info: parseInfo(out.subarray(nameEnd + 1, end), decoder.decode(name)) });
      at = end + 1;
    }
    entries.sort((a, b) => compareBytes(a.name, b.name));
    return create(ListDirResponseSchema, { entries: entries.map((e) => e.info) });
  }

  /** The path's info, not following a final symlink (which is reported with its target). */
  async stat(
    id: string,
    req: Pick<StatRequest, "path">,
    opts: FileCallOptions = {},
  ): Promise<FileInfo> {
    const path = checkedPath(req.path);
    const out = await this.#run(id, scripts.STAT, [path], { id, path, verb: "stat" }, opts.signal);
    return parseInfo(headerOf(out), path);
  }

  /**
   * Makes a directory with `mode` exactly (0755 when 0). With `parents`,
   * missing parents too (umask 022), and an existing directory is no error;
   * without, an existing path is an AlreadyExistsError.
   */
  async makeDir(
    id: string,
    req: Pick<MakeDirRequest, "path" | "mode" | "parents">,
    opts: FileCallOptions = {},
  ): Promise<FileInfo> {
    const path = checkedPath(req.path);
    const mode = req.mode === 0 ? 0o755 : req.mode;
    if (mode > 0o7777) {
      throw new InvalidArgumentError("mode", `must be at most 0o7777, got 0o${mode.toString(8)}`);
    }
    const call: Call = { id, path, verb: "make directory", parents: req.parents };
    const args = [path, mode.toString(8), req.parents ? "1" : "0"];
    return parseInfo(
      headerOf(await this.#run(id, scripts.MAKE_DIR, args, call, opts.signal)),
      path,
    );
  }

  /**
   * Removes a file, a symlink (never what it points at) or an empty
   * directory; with `recursive`, a directory and everything under it.
   * `existed` is false when nothing was there.
   */
  async remove(
    id: string,
    req: Pick<RemoveRequest, "path" | "recursive">,
    opts: FileCallOptions = {},
  ): Promise<RemoveResponse> {
    const path = checkedPath(req.path);
    if (path === "/") throw new InvalidArgumentError("path", "must not be the sandbox's root /");
    const args = [path, req.recursive ? "1" : "0"];
    const out = await this.#run(
      id,
      scripts.REMOVE,
      args,
      { id, path, verb: "remove" },
      opts.signal,
    );
    return create(RemoveResponseSchema, { existed: decoder.decode(out) === "1" });
  }

  /** Runs a script to its end: its stdout; its failure as a typed error. */
  async #run(
    id: string,
    script: string,
    args: string[],
    call: Call,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    const run = await this.#start(id, script, args, { stdin: false, signal });
    let out: Uint8Array;
    try {
      out = await run.rest();
    } catch (err) {
      await run.kill();
      throw err;
    }
    const exit = await run.finish();
    if (exit.exitCode !== 0) throw await failure(run, call, signal, exit);
    return out;
  }

  async #start(
    id: string,
    script: string,
    args: string[],
    opts: { stdin: boolean; signal?: AbortSignal },
  ): Promise<HelperRun> {
    const helper = await this.#runtime.helper(id);
    if (helper === undefined || helper.length === 0) {
      throw new FailedPreconditionError(
        `Cannot work with files in sandbox ${id} as it has no file helper (busybox)`,
      );
    }
    const proc = await this.#runtime.exec(id, {
      // `$0` is the busybox itself, which the scripts run their applets with.
      argv: [...helper, "sh", "-c", script, helper[0], ...args],
      env: {},
      workingDir: "/",
      tty: false,
      stdin: opts.stdin,
      detach: false,
      uid: 0,
      gid: 0,
    }, { signal: opts.signal });
    return new HelperRun(proc);
  }
}
/** Checks a request's path (field `path`) and normalizes it. */
function checkedPath(path: string): string {
  checkSandboxPath("path", path);
  const normal = posix.normalize(path);
  return normal.length > 1 && normal.endsWith("/") ? normal.slice(0, -1) : normal;
}

/** The iterator's next item, or the abort's reason as soon as `signal` aborts. */
function nextOrAbort<T>(
  it: AsyncIterator<T>,
  signal: AbortSignal | undefined,
): Promise<IteratorResult<T>> {
  if (signal === undefined) return it.next();
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    it.next().then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}
