/**
 * `fsb sandbox cp`: files and directories between this machine and a
 * sandbox, through the file calls of {@linkcode FsbFiles}. A single file goes
 * as its bytes (mode kept); a directory or a symlink as a tar archive, which
 * the agent writes or extracts with tar inside the sandbox. Loaded on demand.
 *
 * @module
 */
import { extractTar } from "./_tar_extract.ts";
import { packTar } from "./_tar_pack.ts";
import { Code, type FsbFiles, RpcError } from "./client.ts";
import {
  baseName,
  CopyPathError,
  type CopySourceKind,
  copyStep,
  type CopyTargetKind,
  dirName,
  joinPath,
} from "./cp_paths.ts";
import type { ExecPlan } from "./parse_exec_args.ts";
import type { CliIo } from "./sandbox_command.ts";

/** A parsed `fsb sandbox cp`. */
export type CopyPlan = Extract<ExecPlan, { kind: "cp" }>;

const CHUNK = 64 * 1024;

/**
 * Makes the copy `plan` describes. Resolves once it is complete.
 *
 * @throws {CopyPathError} when the paths do not allow the copy (a directory
 * onto a file, a missing destination directory).
 * @throws {RpcError} when a call fails; the local file system's errors.
 */
export async function copyFiles(plan: CopyPlan, files: FsbFiles, io: CliIo): Promise<void> {
  const { source, destination } = plan;
  const opts = { namespace: plan.namespace, signal: io.signal };
  const warn = (message: string) => io.stderr(`fsb: ${message}\n`);
  if (destination.kind === "sandbox") {
    const { name, path: dst } = destination;
    if (source.kind === "stdio") {
      const info = await remoteKind(files, name, dst, opts);
      if (info !== "dir") throw new CopyPathError(`Directory "${dst}" does not exist`);
      await files.write(name, dst, io.stdin ?? empty(), { ...opts, archive: true });
      return;
    }
    if (source.kind !== "local") throw new Error("unreachable: one side is local");
    const src = source.path;
    const local = await localInfo(src, "lstat");
    if (local === undefined) throw new CopyPathError(`"${src}" does not exist`);
    const dstKind = await remoteKind(files, name, dst, opts);
    const step = copyStep(src, kindOf(local, src), dst, dstKind);
    if (step.action === "dir") {
      if (step.to === dst && dstKind === "missing") {
        const parent = dirName(dst);
        if ((await remoteKind(files, name, parent, opts)) !== "dir") {
          throw new CopyPathError(`Directory "${parent}" does not exist`);
        }
      }
      const archive = packTar(src, { name: ".", warn });
      await files.write(name, step.to, archive, { ...opts, archive: true });
    } else if (local.isSymlink) {
      const archive = packTar(src, { name: baseName(step.to), warn });
      await files.write(name, dirName(step.to), archive, { ...opts, archive: true });
    } else {
      await files.write(name, step.to, fileChunks(src), {
        ...opts,
        mode: (local.mode ?? 0o644) & 0o7777,
        size: local.size,
      });
    }
    return;
  }
  if (source.kind !== "sandbox") throw new Error("unreachable: one side is a sandbox");
  const { name, path: src } = source;
  if (destination.kind === "stdio") {
    for await (const chunk of quiet(files.read(name, src, { ...opts, archive: true }))) {
      const written = io.stdoutBytes(chunk);
      if (written !== undefined) await written;
    }
    return;
  }
  const dst = destination.path;
  const info = await files.stat(name, src, opts);
  if (info.type !== "file" && info.type !== "dir" && info.type !== "symlink") {
    throw new CopyPathError(`"${src}" is not a file, directory or symlink`);
  }
  const local = await localInfo(dst, "stat");
  const dstKind: CopyTargetKind = local === undefined
    ? "missing"
    : local.isDirectory
    ? "dir"
    : "file";
  const step = copyStep(src, info.type, dst, dstKind);
  if (step.action === "dir") {
    if (step.create) await makeDir(step.to);
    const archive = quiet(files.read(name, src, { ...opts, archive: true }));
    await extractTar(archive, step.to, { rename: rooted(""), warn });
  } else if (info.type === "symlink") {
    const archive = quiet(files.read(name, src, { ...opts, archive: true }));
    await extractTar(archive, dirName(step.to), { rename: rooted(baseName(step.to)), warn });
  } else {
    await download(quiet(files.read(name, src, opts)), step.to);
  }
}

type Opts = { namespace: string; signal: AbortSignal | undefined };

// What is at `path` in the sandbox; a symlink counts as a file (it is replaced).
async function remoteKind(
  files: FsbFiles,
  name: string,
  path: string,
  opts: Opts,
): Promise<CopyTargetKind> {
  try {
    return (await files.stat(name, path, opts)).type === "dir" ? "dir" : "file";
  } catch (err) {
    // A sandbox that does not exist is NOT_FOUND too: the next call says so.
    if (err instanceof RpcError && err.code === Code.NOT_FOUND) return "missing";
    throw err;
  }
}

async function localInfo(path: string, how: "stat" | "lstat"): Promise<Deno.FileInfo | undefined> {
  try {
    return how === "stat" ? await Deno.stat(path) : await Deno.lstat(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    // A dangling symlink as the destination is replaced, like a file.
    return how === "stat" ? await localInfo(path, "lstat") : undefined;
  }
}

function kindOf(info: Deno.FileInfo, path: string): CopySourceKind {
  if (info.isSymlink) return "symlink";
  if (info.isDirectory) return "dir";
  if (info.isFile) return "file";
  throw new CopyPathError(`"${path}" is not a file, directory or symlink`);
}

async function makeDir(path: string): Promise<void> {
  try {
    await Deno.mkdir(path);
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      if ((await Deno.stat(path)).isDirectory) return;
      throw new CopyPathError(`Cannot copy a directory onto file "${path}"`);
    }
    if (err instanceof Deno.errors.NotFound) {
      throw new CopyPathError(`Directory "${dirName(path)}" does not exist`);
    }
    throw err;
  }
}

/**
 * Maps an archive's top entry to `to` (relative to where it is extracted),
 * whatever it is named: the agent's archive of `/a/b` is rooted at `b`, or at
 * `.` for the contents of a directory. Entries outside the top one are left out.
 */
function rooted(to: string): (name: string) => string | undefined {
  let root: string | undefined;
  const join = (rest: string) => to === "" ? rest : rest === "" ? to : `${to}/${rest}`;
  return (name) => {
    root ??= name === "" ? "" : name.split("/")[0];
    if (root === "") return join(name);
    if (name === root) return join("");
    return name.startsWith(`${root}/`) ? join(name.slice(root.length + 1)) : undefined;
  };
}

// A sandbox file's bytes to `to`, through a temporary file beside it, so that
// a failed copy leaves nothing half-written; then its mode and mtime.
async function download(
  read: ReturnType<FsbFiles["read"]>,
  to: string,
): Promise<void> {
  const tmp = joinPath(
    dirName(to),
    `.${baseName(to)}.fsb-${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`,
  );
  let file: Deno.FsFile;
  try {
    file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new CopyPathError(`Directory "${dirName(to)}" does not exist`);
    }
    throw err;
  }
  try {
    try {
      for await (const chunk of read) {
        let off = 0;
        while (off < chunk.length) off += await file.write(chunk.subarray(off));
      }
    } finally {
      file.close();
    }
    const info = await read.info;
    await Deno.chmod(tmp, info.mode & 0o1777);
    const mtime = Number(info.mtime);
    await Deno.utime(tmp, mtime, mtime);
    await Deno.rename(tmp, to);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}

// A read whose info is not awaited: its failure comes out of the iteration,
// and must not also surface as an unhandled rejection.
function quiet<T extends ReturnType<FsbFiles["read"]>>(read: T): T {
  read.info.catch(() => {});
  return read;
}

async function* fileChunks(path: string): AsyncGenerator<Uint8Array> {
  using file = await Deno.open(path);
  while (true) {
    const buf = new Uint8Array(CHUNK);
    const n = await file.read(buf);
    if (n === null) return;
    yield buf.subarray(0, n);
  }
}

async function* empty(): AsyncGenerator<Uint8Array> {}
