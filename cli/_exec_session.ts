/**
 * The attached half of `fsb sandbox exec` and `attach`: copies an
 * {@linkcode ExecSession}'s output to fsb's stdout and stderr, handles
 * Ctrl-C, SIGTERM and terminal resizes, and puts the terminal back as it was
 * on every way out. Loaded on demand.
 *
 * @module
 */
import type { ExecExit, ExecSession } from "./client.ts";
import type { CliIo, CliSignal } from "./sandbox_command.ts";

/** Options for {@linkcode pumpSession}. */
export interface PumpOptions {
  /** Put the local terminal in raw mode meanwhile (`exec -it`). */
  readonly raw: boolean;
  /** Pass the local terminal's size changes on (`exec -t`). */
  readonly resize: boolean;
  /**
   * What the first Ctrl-C does: `forward` sends the command SIGINT (a
   * second one stops); `stop` stops at once (`attach`: the exec runs on).
   */
  readonly interrupt: "forward" | "stop";
}

/** How a session ended for fsb. */
export type PumpResult =
  /** The command ended; its exit. */
  | { readonly kind: "exit"; readonly exit: ExecExit }
  /** fsb stopped it on a signal; `code` is 128 + the signal's number. */
  | { readonly kind: "stopped"; readonly code: number }
  /** Whoever reads fsb's output went away (`| head`). */
  | { readonly kind: "closed" }
  /** The call or a write failed. */
  | { readonly kind: "failed"; readonly error: unknown };

const SIGINT_EXIT = 130;
const SIGTERM_EXIT = 143;

/**
 * Writes `session`'s stdout and stderr to `io`'s, byte for byte, until it
 * ends. SIGINT is forwarded or stops, SIGTERM and an aborted `io.signal`
 * stop; stopping cancels the call. Never throws: every way out is a
 * {@linkcode PumpResult}, and raw mode is off again before it is returned.
 */
export async function pumpSession(
  session: ExecSession,
  io: CliIo,
  opts: PumpOptions,
): Promise<PumpResult> {
  // Not every way out awaits them.
  session.id.catch(() => {});
  session.exit.catch(() => {});
  const decoder = new TextDecoder();
  const stderrBytes = io.stderrBytes ?? ((b: Uint8Array) => io.stderr(decoder.decode(b)));
  const cleanups: (() => void)[] = [];
  let stopped: number | undefined;
  const stop = (code: number) => {
    if (stopped !== undefined) return;
    stopped = code;
    session.cancel();
  };
  try {
    if (opts.raw) {
      const terminal = io.terminal;
      if (terminal === undefined) throw new Error("No terminal to put in raw mode");
      terminal.setRaw(true);
      cleanups.push(() => terminal.setRaw(false));
    }
    let interrupts = 0;
    const onSignal = io.onSignal;
    if (onSignal !== undefined) {
      // A signal handler that throws would end fsb without undoing raw mode.
      const listen = (sig: CliSignal, fn: () => void) =>
        cleanups.push(onSignal(sig, () => {
          try {
            fn();
          } catch {
            // A resize or signal the session refuses: the command goes on without it.
          }
        }));
      listen("SIGINT", () => {
        if (opts.interrupt === "forward" && interrupts++ === 0) session.signal("INT");
        else stop(SIGINT_EXIT);
      });
      listen("SIGTERM", () => stop(SIGTERM_EXIT));
      if (opts.resize) {
        listen("SIGWINCH", () => {
          const size = io.terminal?.size();
          if (size !== undefined) session.resize(size.cols, size.rows);
        });
      }
    }
    const signal = io.signal;
    if (signal !== undefined) {
      const onAbort = () => stop(SIGINT_EXIT);
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort);
      cleanups.push(() => signal.removeEventListener("abort", onAbort));
    }
    for await (const out of session) {
      const written = out.stream === "stdout" ? io.stdoutBytes(out.data) : stderrBytes(out.data);
      if (written !== undefined) await written;
    }
    const exit = await session.exit;
    return stopped === undefined ? { kind: "exit", exit } : { kind: "stopped", code: stopped };
  } catch (error) {
    if (stopped !== undefined) return { kind: "stopped", code: stopped };
    session.cancel();
    if (error instanceof Deno.errors.BrokenPipe) return { kind: "closed" };
    return { kind: "failed", error };
  } finally {
    // Raw mode, registered first, is undone last; each undo runs even if one before fails.
    for (const cleanup of cleanups.reverse()) {
      try {
        cleanup();
      } catch {
        // Nothing better to do on the way out.
      }
    }
  }
}
