/**
 * The busybox shell scripts behind `./files.ts`. Each runs as
 * `busybox sh -c SCRIPT BUSYBOX ARGS...` inside the sandbox, so `$0` is the
 * busybox to run applets with (`"$0" stat`: never the image's own tools,
 * found on its PATH) and every path or value comes as a positional argument,
 * never as script text. Failures are told by exit code ({@linkcode EXIT}),
 * with the applet's own words on stderr for the rest.
 *
 * Output formats, built so that any file name parses (a name holds any byte
 * but NUL and `/`; a symlink's target any byte but NUL):
 *
 * - header: `MODE UID GID SIZE MTIME\n` (mode in hex, as stat's `%f`), then
 *   a symlink's target, then NUL;
 * - a listing: per entry, `NAME\0` then a header.
 *
 * @module
 */

/** Exit codes of the scripts; anything else is an applet's failure (its message on stderr). */
export const EXIT = {
  notFound: 10,
  notDir: 11,
  isDir: 12,
  exists: 13,
  notEmpty: 15,
  sizeMismatch: 16,
  failed: 17,
  /** Of RECEIVE with an archive: tar's own exit code when it fails. */
  badArchive: 1,
  replacesDir: 19,
} as const;

/** stat's format for a header's first line. */
const STAT_FORMAT = "%f %u %g %s %Y";

const PRELUDE = `umask 022
F='${STAT_FORMAT}'
hdr() {
  "$0" stat -c "$F" -- "$1" || exit ${EXIT.failed}
  if [ -L "$1" ]; then "$0" readlink -n -- "$1"; fi
  printf '\\0'
}
`;

/** Walks up from \`$q\` to the first path that exists (a dangling symlink counts). */
const DEEPEST_EXISTING = `while ! [ -e "$q" ] && ! [ -L "$q" ]; do q=\${q%/*}; q=\${q:-/}; done`;

/** stat (not following a final symlink): a header. Args: path. */
export const STAT = `${PRELUDE}
[ -e "$1" ] || [ -L "$1" ] || exit ${EXIT.notFound}
hdr "$1"`;

/**
 * A directory's entries, in find's order: per entry its name and header.
 * Args: path, then {@linkcode LIST_BATCH} for find to run per batch of names.
 */
export const LIST = `${PRELUDE}
if ! cd -- "$1" 2>/dev/null; then
  [ -e "$1" ] || exit ${EXIT.notFound}
  [ -d "$1" ] || exit ${EXIT.notDir}
  echo "cannot enter $1" >&2
  exit ${EXIT.failed}
fi
exec "$0" find . -mindepth 1 -maxdepth 1 -exec "$0" sh -c "$2" "$0" '{}' +`;

/**
 * One batch of names (`./NAME`) for {@linkcode LIST}: one stat for them all;
 * should one have gone meanwhile (stat then fails), one stat each, skipping
 * the gone.
 */
export const LIST_BATCH = `F='${STAT_FORMAT}'
one() {
  printf '%s\\0%s\\n' "\${1#./}" "$2"
  case $2 in a*) "$0" readlink -n -- "$1";; esac
  printf '\\0'
}
if s=$("$0" stat -c "$F" -- "$@" 2>/dev/null); then
  printf '%s\\n' "$s" | { for n; do IFS= read -r l; one "$n" "$l"; done; }
else
  for n; do s=$("$0" stat -c "$F" -- "$n" 2>/dev/null) && one "$n" "$s"; done
fi
exit 0`;

/** A file's header (following symlinks), then its bytes. Args: path. */
export const READ = `${PRELUDE}
[ -e "$1" ] || exit ${EXIT.notFound}
[ -d "$1" ] && exit ${EXIT.isDir}
s=$("$0" stat -L -c "$F" -- "$1") || exit ${EXIT.failed}
printf '%s\\n\\0' "$s"
exec "$0" cat -- "$1"`;

/** The path's header, then a tar archive of it (named by its last component). Args: path. */
export const READ_ARCHIVE = `${PRELUDE}
[ -e "$1" ] || [ -L "$1" ] || exit ${EXIT.notFound}
hdr "$1"
if [ "$1" = / ]; then exec "$0" tar -c -f - -C / .; fi
d=\${1%/*}
exec "$0" tar -c -f - -C "\${d:-/}" -- "\${1##*/}"`;

/**
 * Receives a write's data into a temporary name: a file `DIR/TMP` (mode 0600
 * until the commit), or for an archive a directory `TMP/x` beside the target
 * (or inside it, when it exists) that the archive is extracted into. Prints
 * the temporary path and NUL before it reads stdin. What reads stdin is
 * exec'd (cat, tar), so that killing the helper's process ends it: a child
 * would live on, holding the pipes. A failed tar exits 1.
 * Args: path, temporary name, parents (1 or 0), archive (1 or 0).
 */
export const RECEIVE = `${PRELUDE}
p=$1 t=$2
d=\${p%/*}; d=\${d:-/}
if [ "$3" = 1 ] && ! [ -d "$d" ]; then
  q=$d; ${DEEPEST_EXISTING}
  [ -d "$q" ] || exit ${EXIT.notDir}
  "$0" mkdir -p -- "$d" || exit ${EXIT.failed}
fi
if ! [ -d "$d" ]; then
  [ -e "$d" ] && exit ${EXIT.notDir}
  exit ${EXIT.notFound}
fi
if [ "$4" = 1 ]; then
  if [ -e "$p" ]; then
    [ -d "$p" ] || exit ${EXIT.notDir}
    s=$p/$t
  else
    s=$d/$t
  fi
  "$0" mkdir -m 700 -- "$s" || exit ${EXIT.failed}
  "$0" mkdir -- "$s/x" || exit ${EXIT.failed}
  printf '%s\\0' "$s"
  exec "$0" tar -x -f - -C "$s/x"
fi
[ -d "$p" ] && exit ${EXIT.isDir}
f=$d/$t
umask 077
set -C
: >"$f" || exit ${EXIT.failed}
printf '%s\\0' "$f"
exec "$0" cat >>"$f"`;

/**
 * Moves a received file into place: checks its size, sets owner, group and
 * mode, renames it over the target (never into a directory); then the
 * target's header. Removes the temporary file on failure.
 * Args: temporary path, path, mode (octal), uid or "", gid or "", size.
 */
export const COMMIT_FILE = `${PRELUDE}
t=$1 p=$2
fail() { "$0" rm -f -- "$t"; exit "$1"; }
s=$("$0" stat -c %s -- "$t") || fail ${EXIT.failed}
[ "$s" = "$6" ] || fail ${EXIT.sizeMismatch}
if [ -n "$4" ]; then "$0" chown -h -- "$4" "$t" || fail ${EXIT.failed}; fi
if [ -n "$5" ]; then "$0" chgrp -h -- "$5" "$t" || fail ${EXIT.failed}; fi
"$0" chmod -- "$3" "$t" || fail ${EXIT.failed}
[ -d "$p" ] && fail ${EXIT.isDir}
"$0" mv -f -T -- "$t" "$p" || fail ${EXIT.failed}
hdr "$p"`;

/**
 * Moves an extracted archive into place: renames it to the target when that
 * does not exist, else merges it in entry by entry (each a rename; a
 * directory onto a directory merges deeper, nothing replaces a directory).
 * Removes the staging directory either way; then the target's header.
 * Args: staging directory, path.
 */
export const COMMIT_ARCHIVE = `${PRELUDE}
s=$1 p=$2
merge() {
  local e n
  for e in "$1"/* "$1"/.*; do
    n=\${e##*/}
    case $n in .|..) continue;; esac
    [ -e "$e" ] || [ -L "$e" ] || continue
    if [ -d "$2/$n" ] && ! [ -L "$2/$n" ]; then
      if [ -d "$e" ] && ! [ -L "$e" ]; then
        merge "$e" "$2/$n" || return
      else
        echo "$2/$n is a directory" >&2
        return ${EXIT.replacesDir}
      fi
    else
      "$0" mv -f -T -- "$e" "$2/$n" || return ${EXIT.failed}
    fi
  done
}
if [ -e "$p" ] || [ -L "$p" ]; then
  merge "$s/x" "$p"
  r=$?
  "$0" rm -rf -- "$s"
  [ "$r" = 0 ] || exit "$r"
else
  "$0" mv -T -- "$s/x" "$p" || { "$0" rm -rf -- "$s"; exit ${EXIT.failed}; }
  "$0" rmdir -- "$s"
fi
hdr "$p"`;

/**
 * Makes a directory with exactly `mode`; with parents, also what is missing
 * above it, and an existing directory is fine. Then its header.
 * Args: path, mode (octal), parents (1 or 0).
 */
export const MAKE_DIR = `${PRELUDE}
p=$1
if [ "$3" = 1 ]; then
  if ! [ -d "$p" ]; then
    [ -e "$p" ] || [ -L "$p" ] && exit ${EXIT.exists}
    q=$p; ${DEEPEST_EXISTING}
    [ -d "$q" ] || exit ${EXIT.notDir}
    "$0" mkdir -p -m "$2" -- "$p" || exit ${EXIT.failed}
  fi
else
  [ -e "$p" ] || [ -L "$p" ] && exit ${EXIT.exists}
  d=\${p%/*}; d=\${d:-/}
  if ! [ -d "$d" ]; then
    [ -e "$d" ] && exit ${EXIT.notDir}
    exit ${EXIT.notFound}
  fi
  "$0" mkdir -m "$2" -- "$p" || exit ${EXIT.failed}
fi
hdr "$p"`;

/**
 * Removes a file, a symlink (not what it points at) or an empty directory;
 * with recursive, a directory and all under it. Prints 1, or 0 when nothing
 * was there. Args: path, recursive (1 or 0).
 */
export const REMOVE = `${PRELUDE}
p=$1
if ! [ -e "$p" ] && ! [ -L "$p" ]; then printf 0; exit 0; fi
if [ -d "$p" ] && ! [ -L "$p" ]; then
  if [ "$2" = 1 ]; then
    "$0" rm -rf -- "$p" || exit ${EXIT.failed}
  else
    [ -z "$("$0" ls -A -- "$p")" ] || exit ${EXIT.notEmpty}
    "$0" rmdir -- "$p" || exit ${EXIT.failed}
  fi
else
  "$0" rm -f -- "$p" || exit ${EXIT.failed}
fi
printf 1`;

/** Removes what a write left behind. Args: path. */
export const CLEANUP = `"$0" rm -rf -- "$1"`;
