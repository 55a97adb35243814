/**
 * Local files into a tar stream, for `fsb sandbox cp` into a sandbox.
 *
 * @module
 */
import { encodeTarHeader, TAR_END, tarPadding } from "./_tar.ts";

/** Options for {@linkcode packTar}. */
export interface PackTarOptions {
  /**
   * The archive name of `path` itself: its entries are `NAME` and `NAME/...`.
   * With "" a directory's contents are archived without it (`dir/.`).
   */
  readonly name: string;
  /** Told about what is left out (sockets, FIFOs, devices). */
  readonly warn?: (message: string) => void;
}

const CHUNK = 64 * 1024;

/**
 * A tar archive of the file, directory or symlink at `path` (a symlink is
 * archived as a link, not followed), streamed: directories are walked in name
 * order and files read as the archive is consumed. Entries keep their
 * permission bits and modification times and are owned by root (uid and gid
 * 0), as `docker cp` makes them in a container.
 */
export async function* packTar(
  path: string,
  opts: PackTarOptions,
): AsyncGenerator<Uint8Array> {
  if (opts.name === "" && !(await Deno.stat(path)).isDirectory) {
    throw new Error(`Cannot archive the contents of ${path}: not a directory`);
  }
  yield* entry(path, opts.name, opts.warn);
  yield TAR_END;
}

async function* entry(
  path: string,
  name: string,
  warn: ((message: string) => void) | undefined,
): AsyncGenerator<Uint8Array> {
  const info = await Deno.lstat(path);
  const mode = (info.mode ?? 0o644) & 0o7777;
  const mtime = Math.floor((info.mtime?.getTime() ?? Date.now()) / 1000);
  if (info.isSymlink) {
    yield encodeTarHeader({
      name,
      type: "symlink",
      mode,
      mtime,
      linkname: await Deno.readLink(path),
    });
  } else if (info.isDirectory) {
    if (name !== "") yield encodeTarHeader({ name, type: "dir", mode, mtime });
    const names: string[] = [];
    for await (const child of Deno.readDir(path)) names.push(child.name);
    names.sort();
    for (const child of names) {
      yield* entry(`${path}/${child}`, name === "" ? child : `${name}/${child}`, warn);
    }
  } else if (info.isFile) {
    yield encodeTarHeader({ name, type: "file", mode, mtime, size: info.size });
    yield* fileData(path, info.size);
    yield tarPadding(info.size);
  } else {
    warn?.(`Skipped ${path}: not a file, directory or symlink`);
  }
}

// Exactly `size` bytes, as the header promised, even if the file changed since.
async function* fileData(path: string, size: number): AsyncGenerator<Uint8Array> {
  using file = await Deno.open(path);
  let left = size;
  while (left > 0) {
    const buf = new Uint8Array(Math.min(CHUNK, left));
    const n = await file.read(buf);
    if (n === null) break;
    left -= n;
    yield buf.subarray(0, n);
  }
  if (left > 0) yield new Uint8Array(left);
}
