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
    stderrBytes: (b) => writeAll(Deno.stderr, b),
    env: Deno.env.toObject(),
    home: Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? "",
    signal: opts.signal,
    stdin: readStdin(),
    terminal: {
      get stdinIsTerminal() {
        return Deno.stdin.isTerminal();
      },
      setRaw: (raw) => Deno.stdin.setRaw(raw),
      size: () => {
        try {
          const { columns, rows } = Deno.consoleSize();
          return { cols: columns, rows };
        } catch {
          // Neither stdout nor stdin is a terminal.
          return undefined;
        }
      },
    },
    onSignal: (signal, handler) => {
      try {
        Deno.addSignalListener(signal, handler);
      } catch {
        // Not on this platform (SIGWINCH on Windows): nothing to follow.
        return () => {};
      }
      return () => Deno.removeSignalListener(signal, handler);
    },
  };
}

// Lazy: nothing reads stdin until a command iterates it.
async function* readStdin(): AsyncGenerator<Uint8Array> {
  while (true) {
    const buf = new Uint8Array(64 * 1024);
    const n = await Deno.stdin.read(buf);
    if (n === null) return;
    yield buf.subarray(0, n);
  }
}

function writeAllSync(w: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += w.writeSync(bytes.subarray(off));
}

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}
