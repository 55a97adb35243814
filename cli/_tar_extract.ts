/**
 * A tar stream into a local directory, for `fsb sandbox cp` out of a sandbox.
 * The archive comes from inside a sandbox, so it is not trusted: nothing may
 * land outside the destination.
 *
 * @module
 */
import { readTar, type TarHeader } from "./_tar.ts";

/** Options for {@linkcode extractTar}. */
export interface ExtractTarOptions {
  /**
   * Where an entry goes, relative to the destination ("" is the destination
   * itself), given its archive path cleaned of `./` and trailing `/`;
   * undefined leaves it out. Entries go where they are named when absent.
   */
  readonly rename?: (name: string) => string | undefined;
  /** Told about what is left out (devices, FIFOs, entries `rename` drops). */
  readonly warn?: (message: string) => void;
}

/**
 * An archive entry that would be written outside the destination: an
 * absolute path, a `..` component, or a path through a symlink (one the
 * archive made, or one already there).
 */
export class UnsafeTarEntryError extends Error {
  /** The entry's path as the archive names it. */
  readonly entry: string;

  /** Creates the error; `reason` completes "Refusing to extract ENTRY: ". */
  constructor(entry: string, reason: string) {
    super(`Refusing to extract "${entry}": ${reason}`);
    this.name = "UnsafeTarEntryError";
    this.entry = entry;
  }
}

interface DeferredDir {
  readonly path: string;
  readonly mode: number;
  readonly mtime: number;
}

/**
 * Extracts the tar archive `source` streams into the existing directory
 * `dest`: directories, files (permission bits and modification time kept,
 * setuid and setgid dropped, owned by whoever runs this), symlinks and hard
 * links; missing parent directories are made. What is already there is
 * replaced, except that a directory is never replaced by something else.
 * Directory modes are applied last, so that a read-only directory can still
 * be filled.
 *
 * @throws {UnsafeTarEntryError} before writing an entry that would land
 * outside `dest`; entries before it stay extracted.
 * @throws {TarFormatError} on an archive that cannot be read.
 */
export async function extractTar(
  source: AsyncIterable<Uint8Array>,
  dest: string,
  opts: ExtractTarOptions = {},
): Promise<void> {
  const rename = opts.rename ?? ((name: string) => name);
  // Directories known to be real directories inside dest (not symlinks).
  const safe = new Set<string>([""]);
  const deferred: DeferredDir[] = [];

  // The local path of archive path `name`, after every check on the way there.
  async function place(name: string): Promise<string | undefined> {
    const rel = rename(clean(name));
    if (rel === undefined) {
      opts.warn?.(`Skipped "${name}": outside what is copied`);
      return undefined;
    }
    const parts = rel === "" ? [] : rel.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (safe.has(dir)) continue;
      const path = `${dest}/${dir}`;
      const info = await lstatOrUndefined(path);
      if (info === undefined) await Deno.mkdir(path, { mode: 0o755 });
      else if (info.isSymlink) {
        throw new UnsafeTarEntryError(name, `its path goes through the symlink "${dir}"`);
      } else if (!info.isDirectory) {
        throw new Error(`Cannot extract "${name}": "${dir}" is not a directory`);
      }
      safe.add(dir);
    }
    return rel === "" ? dest : `${dest}/${rel}`;
  }

  for await (const { header, body } of readTar(source)) {
    const path = await place(header.name);
    if (path === undefined) continue;
    switch (header.type) {
      case "dir": {
        const info = await lstatOrUndefined(path);
        if (info !== undefined && !info.isDirectory) await Deno.remove(path);
        if (info === undefined || !info.isDirectory) await Deno.mkdir(path, { mode: 0o700 });
        if (path !== dest) safe.add(path.slice(dest.length + 1));
        // The top entry ("." or the copied directory) gives dest its mode too, as tar does.
        deferred.push({ path, mode: header.mode, mtime: header.mtime });
        break;
      }
      case "file":
        await replaceable(path, header);
        await writeFile(path, body, header);
        break;
      case "symlink":
        await replaceable(path, header);
        await Deno.symlink(header.linkname, path);
        break;
      case "hardlink": {
        const target = await place(header.linkname);
        if (target === undefined) break;
        await replaceable(path, header);
        await Deno.link(target, path);
        break;
      }
      case "other":
        opts.warn?.(
          `Skipped "${header.name}": type ${header.typeflag} is not a file, directory or link`,
        );
        break;
    }
  }
  // Innermost first, so that a read-only directory does not stop its parent's chmod.
  for (const dir of deferred.reverse()) {
    await Deno.chmod(dir.path, dir.mode & 0o1777);
    await Deno.utime(dir.path, dir.mtime, dir.mtime);
  }
}

// Archive path to a relative path: "./a//b/" is "a/b", "." is "".
function clean(name: string): string {
  if (name.startsWith("/")) throw new UnsafeTarEntryError(name, "its path is absolute");
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new UnsafeTarEntryError(name, 'its path contains ".."');
  return parts.join("/");
}

// Clears the way for a file or link: never over a directory, and never
// through what is there (a symlink left in place would be written through).
async function replaceable(path: string, header: TarHeader): Promise<void> {
  const info = await lstatOrUndefined(path);
  if (info === undefined) return;
  if (info.isDirectory) {
    throw new Error(`Cannot extract "${header.name}": a directory is in the way`);
  }
  await Deno.remove(path);
}

async function writeFile(
  path: string,
  body: AsyncIterable<Uint8Array>,
  header: TarHeader,
): Promise<void> {
  // createNew: nobody slipped a symlink in since replaceable().
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  try {
    for await (const chunk of body) {
      let off = 0;
      while (off < chunk.length) off += await file.write(chunk.subarray(off));
    }
  } finally {
    file.close();
  }
  await Deno.chmod(path, header.mode & 0o1777);
  await Deno.utime(path, header.mtime, header.mtime);
}

async function lstatOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}
