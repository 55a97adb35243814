/**
 * The real process behind {@linkcode CliIo}.
 *
 * @module
 */
import type { CliIo } from "./sandbox_command.ts";

/** Options for {@linkcode denoCliIo}. */
export interface DenoCliIoOptions {
  /** Passed on as {@linkcode CliIo.signal}, e.g. aborted on SIGINT. */
  readonly signal?: AbortSignal;
}

const encoder = new TextEncoder();

/**
 * A {@linkcode CliIo} on this process's stdout, stderr, environment and
 * `HOME`. Text writes are synchronous so that nothing is lost
 * when the caller exits right after the command returns.
 */
export function denoCliIo(opts: DenoCliIoOptions = {}): CliIo {
  return {
    stdout: (s) => writeAllSync(Deno.stdout, encoder.encode(s)),
    stdoutBytes: (b) => writeAll(Deno.stdout, b),
    stderr: (s) => writeAllSync(Deno.stderr, encoder.encode(s)),
    env: Deno.env.toObject(),
    home: Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? "",
    signal: opts.signal,
  };
}

function writeAllSync(w: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += w.writeSync(bytes.subarray(off));
}

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}
