/**
 * The exec half of `client.ts`: an {@linkcode ExecSession} over an Exec or
 * ExecAttach stream, the request queue that feeds an Exec call (stdin,
 * resizes, signals, in the order they happen), a detached start, and `run`.
 *
 * @module
 */
import type { ExecResponse } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import type { ExecRequestInit, ExecStartInit } from "../proto/fastpath_lite.ts";
import { type CallOptions as RpcCallOptions, Code, RpcError } from "../proto/rpc.ts";
import type { ExecExit, ExecOutput, ExecResult, ExecSession } from "./client.ts";
import type { Endpoints } from "./_client_transport.ts";
import { chunksOf, prefetch } from "./_client_streams.ts";
import { concat } from "./_concat.ts";

const UINT32_MAX = 0xffff_ffff;

function checkSize(cols: number, rows: number): void {
  for (const [what, n] of [["cols", cols], ["rows", rows]] as const) {
    if (!Number.isInteger(n) || n < 0 || n > UINT32_MAX) {
      throw new RpcError(
        Code.INVALID_ARGUMENT,
        `Invalid terminal ${what} ${n}: expected a whole number from 0 to ${UINT32_MAX}`,
      );
    }
  }
}

/** Checks a terminal size before it is sent, so that a bad one fails here and not the call. */
export function terminalSize(size: { cols: number; rows: number }): { cols: number; rows: number } {
  checkSize(size.cols, size.rows);
  return { cols: size.cols, rows: size.rows };
}

/**
 * The requests of one Exec call: `start`, then stdin (as it comes, in chunks
 * of at most 256 KiB, then `stdinClose`), with resizes and signals put in as
 * they happen, ahead of stdin not yet taken. It ends only when closed (the
 * call is over): resizes and signals may come as long as the command runs.
 * A new stdin chunk is read only once the last one was taken by the call.
 */
class ExecRequests implements AsyncIterableIterator<ExecRequestInit> {
  readonly #queue: ExecRequestInit[];
  readonly #stdin: AsyncIterator<Uint8Array> | undefined;
  #stdinOpen: boolean;
  #stdinNext: Promise<IteratorResult<Uint8Array>> | undefined;
  #pieces: Iterator<Uint8Array> | undefined;
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(start: ExecStartInit, stdin: AsyncIterable<Uint8Array> | undefined) {
    this.#queue = [{ msg: { case: "start", value: start } }];
    this.#stdin = stdin?.[Symbol.asyncIterator]();
    this.#stdinOpen = stdin !== undefined;
  }

  /** Queues a request (a resize, a signal); nothing once closed. */
  push(req: ExecRequestInit): void {
    if (this.#closed) return;
    this.#queue.push(req);
    this.#wake?.();
  }

  /** Ends the requests and lets stdin go (its `return()`, not awaited). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    if (this.#stdinOpen) {
      this.#stdinOpen = false;
      try {
        this.#stdin?.return?.().catch(() => {});
      } catch {
        // Nothing more to let go of.
      }
    }
  }

  async next(): Promise<IteratorResult<ExecRequestInit>> {
    for (;;) {
      const queued = this.#queue.shift();
      if (queued !== undefined) return { done: false, value: queued };
      if (this.#closed) return { done: true, value: undefined };
      const piece = this.#pieces?.next();
      if (piece !== undefined && piece.done !== true) {
        return { done: false, value: { msg: { case: "stdin", value: piece.value } } };
      }
      this.#pieces = undefined;
      const woken = new Promise<"woken">((resolve) => this.#wake = () => resolve("woken"));
      if (!this.#stdinOpen) {
        await woken;
        continue;
      }
      if (this.#stdinNext === undefined) {
        this.#stdinNext = this.#stdin!.next();
        // Awaited below, unless a resize or the end comes first: never unhandled.
        this.#stdinNext.catch(() => {});
      }
      const got = await Promise.race([woken, this.#stdinNext]);
      if (got === "woken") continue;
      this.#stdinNext = undefined;
      if (got.done === true) {
        this.#stdinOpen = false;
        return { done: false, value: { msg: { case: "stdinClose", value: true } } };
      }
      this.#pieces = chunksOf(got.value);
    }
  }

  return(): Promise<IteratorResult<ExecRequestInit>> {
    this.close();
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ExecRequestInit> {
    return this;
  }
}

/** How a session reaches its exec besides the answers: requests (Exec) or ExecKill (attach). */
interface SessionControl {
  /** The exec's id when known before the call (attach). */
  readonly id?: string;
  /** The requests of an Exec call. */
  readonly requests?: ExecRequests;
  /** Sends a signal some other way (attach: ExecKill). */
  readonly kill?: (signal: string) => void;
}

function settled<T>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
} {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The caller may never look at it; the stream's own failure is thrown where it iterates.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** An exec's output as it comes, its id and its exit; see {@linkcode ExecSession}. */
class Session implements ExecSession {
  readonly id: Promise<string>;
  readonly exit: Promise<ExecExit>;
  readonly #abort: AbortController;
  readonly #control: SessionControl;
  readonly #output: AsyncIterator<ExecOutput>;
  readonly #settleId: (id: string) => void;
  readonly #failId: (err: unknown) => void;
  readonly #settleExit: (exit: ExecExit) => void;
  readonly #failExit: (err: unknown) => void;
  #over = false;

  constructor(
    open: (signal: AbortSignal) => AsyncIterable<ExecResponse>,
    control: SessionControl,
    signal: AbortSignal | undefined,
  ) {
    const id = settled<string>();
    const exit = settled<ExecExit>();
    this.id = id.promise;
    this.exit = exit.promise;
    this.#settleId = id.resolve;
    this.#failId = id.reject;
    this.#settleExit = exit.resolve;
    this.#failExit = exit.reject;
    this.#control = control;
    if (control.id !== undefined) id.resolve(control.id);
    this.#abort = new AbortController();
    const callSignal = signal === undefined
      ? this.#abort.signal
      : AbortSignal.any([signal, this.#abort.signal]);
    this.#output = prefetch(this.#drive(open(callSignal), callSignal));
  }

  async *#drive(
    responses: AsyncIterable<ExecResponse>,
    signal: AbortSignal,
  ): AsyncGenerator<ExecOutput> {
    let exit: ExecExit | undefined;
    try {
      for await (const res of responses) {
        const msg = res.msg;
        switch (msg.case) {
          case "execId":
            this.#settleId(msg.value);
            break;
          case "stdout":
          case "stderr":
            if (msg.value.length > 0) yield { stream: msg.case, data: msg.value };
            break;
          case "exit":
            exit = {
              exitCode: msg.value.exitCode,
              signal: msg.value.signal,
              message: msg.value.message,
            };
            break;
        }
      }
      if (exit !== undefined) {
        this.#end(exit);
        return;
      }
      // The transports end a stream quietly when the caller cancels it.
      if (signal.aborted) {
        this.#fail(new RpcError(Code.CANCELLED, "The exec was cancelled"));
        return;
      }
      // fetch cannot see trailers: the server's status, if it sent one, is lost.
      throw new RpcError(Code.UNKNOWN, "The exec stream ended without an exit status");
    } catch (err) {
      if (signal.aborted && err instanceof RpcError && err.code === Code.CANCELLED) {
        this.#fail(new RpcError(Code.CANCELLED, "The exec was cancelled"));
        return;
      }
      this.#fail(err);
      throw err;
    } finally {
      this.#control.requests?.close();
      // Left before the end: the loop's return() has cancelled the call.
      this.#fail(new RpcError(Code.CANCELLED, "The exec's output was left unread"));
    }
  }

  #end(exit: ExecExit): void {
    if (this.#over) return;
    this.#over = true;
    this.#failId(new RpcError(Code.UNKNOWN, "The exec stream gave no exec id"));
    this.#settleExit(exit);
  }

  #fail(err: unknown): void {
    if (this.#over) return;
    this.#over = true;
    this.#failId(err);
    this.#failExit(err);
  }

  resize(cols: number, rows: number): void {
    checkSize(cols, rows);
    this.#control.requests?.push({ msg: { case: "resize", value: { cols, rows } } });
  }

  signal(signal: string): void {
    if (typeof signal !== "string" || signal === "") {
      throw new RpcError(Code.INVALID_ARGUMENT, "A signal needs a name (TERM, SIGINT) or a number");
    }
    if (this.#over) return;
    if (this.#control.kill !== undefined) this.#control.kill(signal);
    else this.#control.requests?.push({ msg: { case: "signal", value: signal } });
  }

  cancel(): void {
    this.#abort.abort();
    this.#control.requests?.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<ExecOutput> {
    return this.#output;
  }
}

/**
 * Opens an attached Exec: `start` (its `stdin` set as `stdin` is given),
 * then stdin as the command reads it. No deadline but `call`'s.
 */
export function execSession(
  endpoints: Endpoints,
  start: ExecStartInit,
  opts: { readonly stdin?: AsyncIterable<Uint8Array>; readonly call: RpcCallOptions },
): ExecSession {
  const requests = new ExecRequests({ ...start, stdin: opts.stdin !== undefined }, opts.stdin);
  return new Session(
    (signal) => endpoints.bidiStream("exec", requests, { ...opts.call, signal }),
    { requests },
    opts.call.signal,
  );
}

/**
 * Follows a detached exec: what it wrote so far, then on to its end. Its
 * signals go through ExecKill; it has no terminal to resize.
 */
export function attachSession(
  endpoints: Endpoints,
  req: { readonly name: string; readonly namespace: string; readonly execId: string },
  call: RpcCallOptions,
): ExecSession {
  const kill = (signal: string) => {
    // A signal that cannot be sent is told by the exec going on: nothing waits for this.
    endpoints.unary("execKill", { ...req, signal }, { timeoutMs: 10_000 }).catch(() => {});
  };
  return new Session(
    (signal) => endpoints.stream("execAttach", req, { ...call, signal }),
    { id: req.execId, kill },
    call.signal,
  );
}

/**
 * Starts a detached exec and resolves to its id (the call's first answer,
 * after which it is left). A command the sandbox cannot start at all, told
 * as an exit before any id, is an error: NOT_FOUND for exit code 127, else
 * FAILED_PRECONDITION.
 */
export async function startDetached(
  endpoints: Endpoints,
  start: ExecStartInit,
  call: RpcCallOptions,
): Promise<string> {
  async function* requests(): AsyncGenerator<ExecRequestInit> {
    yield { msg: { case: "start", value: { ...start, detach: true } } };
  }
  for await (const res of endpoints.bidiStream("exec", requests(), call)) {
    const msg = res.msg;
    if (msg.case === "execId") return msg.value;
    if (msg.case === "exit") {
      const { exitCode, message } = msg.value;
      throw new RpcError(
        exitCode === 127 ? Code.NOT_FOUND : Code.FAILED_PRECONDITION,
        message === "" ? `The command could not be started (exit code ${exitCode})` : message,
      );
    }
  }
  throw new RpcError(Code.UNKNOWN, "The exec stream ended without an exec id");
}

/** Reads `session` to its end: its exit with everything it wrote. */
export async function collect(session: ExecSession): Promise<ExecResult> {
  const out: Record<ExecOutput["stream"], Uint8Array[]> = { stdout: [], stderr: [] };
  // Joined once at the end, rather than grown chunk by chunk.
  for await (const { stream, data } of session) out[stream].push(data);
  const exit = await session.exit;
  return { ...exit, stdout: concat(out.stdout), stderr: concat(out.stderr) };
}

/** `stdin` as the one-item stream `run()` sends (text as UTF-8); undefined for none. */
export function stdinOf(
  stdin: Uint8Array | string | undefined,
): AsyncIterable<Uint8Array> | undefined {
  if (stdin === undefined) return undefined;
  const bytes = typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin;
  return (async function* () {
    yield bytes;
  })();
}
