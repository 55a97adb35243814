/**
 * The program the runc shim starts to write a task's or a detached exec's
 * output to its log (a `binary://` stdio URI), instead of the shim writing a
 * `file://` log itself. Private to the folder.
 *
 * Why not `file://`: containerd 1.6's shim (`pkg/process/io.go`,
 * `copyPipes`) writes stdout and stderr of a `file://` URI to one file, but
 * hands the stdout copier the file itself and only the stderr copier the
 * wrapper meant to close it after both: when stdout reaches its end first,
 * the file is closed under the stderr copier, and what the process wrote to
 * stderr last is dropped. A command that writes to stderr just before it
 * exits lost those lines now and then (seen in tests on every path, runc and
 * gVisor alike).
 *
 * The logger is a script for the host's static busybox: one `cat` per
 * stream, each appending to the log (`O_APPEND`, so neither overwrites the
 * other), both children of the shim, so logs go on without the agent, as
 * they did. The shim waits for fd 5 to close before it starts the process.
 * It cannot serve a process that reads stdin (the shim then connects none):
 * warm containers keep `file://` and send stderr to stdout instead.
 *
 * @module
 */
import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

const SCRIPT_NAME = "fsb-shim-log";
const FILE_SCHEME = "file://";
const BINARY_SCHEME = "binary://";

/**
 * The logger script for `busybox`: the shim runs it as `SCRIPT log PATH`,
 * with the stdout pipe at fd 3, the stderr pipe at fd 4 and its readiness
 * pipe at fd 5.
 */
export function shimLoggerScript(busybox: string): string {
  const cat = `'${busybox.replaceAll("'", `'\\''`)}' cat`;
  return [
    `#!${busybox} sh`,
    "# Written by fsb: appends a task's stdout (fd 3) and stderr (fd 4) to $2.",
    "exec 5>&-",
    `${cat} <&4 3<&- 4<&- >>"$2" &`,
    `exec ${cat} <&3 3<&- 4<&- >>"$2"`,
    "",
  ].join("\n");
}

/**
 * Writes the logger script into `dir` (replacing one an earlier run left,
 * which may name another busybox) and resolves to its path.
 */
export async function writeShimLogger(dir: string, busybox: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, SCRIPT_NAME);
  const tmp = `${path}.${crypto.randomUUID()}`;
  await writeFile(tmp, shimLoggerScript(busybox), { mode: 0o755 });
  await rename(tmp, path);
  return path;
}

/** The stdio URI that makes the shim run `logger` for the log at `logPath`. */
export function shimLoggerUri(logger: string, logPath: string): string {
  return `${BINARY_SCHEME}${encodeURI(logger)}?log=${encodeURIComponent(logPath)}`;
}

/** The log a task's stdout URI writes to (`file://` or this logger's), or undefined. */
export function logPathOfUri(uri: string | undefined): string | undefined {
  if (uri === undefined) return undefined;
  if (uri.startsWith(FILE_SCHEME)) return uri.slice(FILE_SCHEME.length);
  if (!uri.startsWith(BINARY_SCHEME)) return undefined;
  const query = uri.indexOf("?");
  if (query < 0) return undefined;
  return new URLSearchParams(uri.slice(query + 1)).get("log") ?? undefined;
}
