/**
 * Where `fsb sandbox cp` puts what it copies, as `docker cp` decides it. Pure:
 * the caller looks at both sides first and does the copy after.
 *
 * @module
 */

/** What a copy's source is. */
export type CopySourceKind = "file" | "dir" | "symlink";

/** What is at a copy's destination; a symlink counts as a file (it is replaced). */
export type CopyTargetKind = "file" | "dir" | "missing";

/**
 * The copy to make: `file` writes the source file or symlink at `to`; `dir`
 * makes directory `to` if missing and copies the source directory's contents
 * into it. `to` is a full path on the destination side.
 */
export type CopyStep =
  | { readonly action: "file"; readonly to: string }
  | { readonly action: "dir"; readonly to: string; readonly create: boolean };

/** A copy that cannot be made; the message says why. */
export class CopyPathError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "CopyPathError";
  }
}

/**
 * Decides a copy from `src` (of kind `srcKind`) to `dst` (where `dstKind` is):
 *
 * - a file (or symlink) to a directory goes into it under its own name; to a
 *   missing path or a file, it is written there (a missing `dst/` is an error:
 *   the directory must exist);
 * - a directory to a missing path is created there; into an existing
 *   directory it goes under its own name, or, when `src` ends in `/.`, its
 *   contents go into that directory; a directory onto a file is an error.
 *
 * @throws {CopyPathError}
 */
export function copyStep(
  src: string,
  srcKind: CopySourceKind,
  dst: string,
  dstKind: CopyTargetKind,
): CopyStep {
  const contents = /(^|\/)\.$/.test(src);
  if (srcKind !== "dir") {
    if (contents || src.endsWith("/")) throw new CopyPathError(`"${src}" is not a directory`);
    if (dstKind === "dir") return { action: "file", to: joinPath(dst, baseName(src)) };
    if (dst.endsWith("/")) {
      throw new CopyPathError(
        dstKind === "missing" ? `Directory "${dst}" does not exist` : `"${dst}" is not a directory`,
      );
    }
    return { action: "file", to: dst };
  }
  if (dstKind === "file") {
    throw new CopyPathError(`Cannot copy directory "${src}" onto file "${dst}"`);
  }
  if (dstKind === "missing") return { action: "dir", to: dst, create: true };
  const base = baseName(src);
  if (contents || base === "" || base === "." || base === "..") {
    return { action: "dir", to: dst, create: false };
  }
  return { action: "dir", to: joinPath(dst, base), create: true };
}

/** The last component of `path`, trailing slashes ignored ("" for `/`). */
export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** The directory of `path` (`.` for a bare name, `/` for a top-level one). */
export function dirName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  const slash = trimmed.lastIndexOf("/");
  if (slash < 0) return ".";
  return slash === 0 ? "/" : trimmed.slice(0, slash);
}

/** `dir/name`, with one slash between them. */
export function joinPath(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, "")}/${name}`;
}
