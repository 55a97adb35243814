/**
 * Stand-ins for the exec and file calls of the SDK (`cli/client.ts`), so that
 * the CLI commands of `cli/_exec_run.ts` and `cli/_cp_run.ts` can be run in
 * process against scripted sessions and a local directory.
 *
 * They are fakes, and on purpose: what these tests check is the CLI's side
 * (exit codes, byte-exact output, raw mode restored on every way out,
 * signals, docker cp's path rules), which needs sessions that end, fail or
 * get interrupted exactly when a test says so. The real SDK, controller and
 * agent are exercised end to end in `e2e_exec_test.ts`.
 *
 * @module
 */
import { Code, RpcError } from "../../cli/client.ts";
import type {
  ExecExit,
  ExecInfo,
  ExecOptions,
  ExecSession,
  FileInfo,
  FsbFiles,
} from "../../cli/client.ts";
import type { ExecClient } from "../../cli/_exec_run.ts";
import type { CliSignal, CliTerminal } from "../../cli/sandbox_command.ts";

type Output = { stream: "stdout" | "stderr"; data: Uint8Array };
type Event = Output | { end: ExecExit } | { error: unknown };

/**
 * A session whose output, end and failure the test drives. It records the
 * signals, resizes and cancellation fsb sends it.
 */
export class FakeSession implements ExecSession {
  readonly signals: string[] = [];
  readonly resizes: [number, number][] = [];
  cancelled = false;
  readonly id: Promise<string>;
  readonly exit: Promise<ExecExit>;
  /** Called on every signal fsb sends, after it is recorded. */
  onSignal?: (signal: string) => void;
  /** Resolves once fsb reads the output: by then it handles signals (and set raw mode). */
  readonly reading: Promise<void>;
  #read!: () => void;
  #events: Event[] = [];
  #wake: (() => void) | undefined;
  #settle!: { resolve: (e: ExecExit) => void; reject: (err: unknown) => void };

  constructor(id = "exec-1") {
    this.reading = new Promise((resolve) => this.#read = resolve);
    this.id = Promise.resolve(id);
    this.exit = new Promise((resolve, reject) => {
      this.#settle = { resolve, reject };
    });
  }

  /** Output for fsb to write. */
  out(stream: "stdout" | "stderr", data: Uint8Array | string): this {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    return this.#push({ stream, data: bytes });
  }

  /** The command ends. */
  end(exit: Partial<ExecExit> = {}): this {
    return this.#push({ end: { exitCode: 0, signal: "", message: "", ...exit } });
  }

  /** The call fails. */
  fail(error: unknown): this {
    return this.#push({ error });
  }

  #push(event: Event): this {
    this.#events.push(event);
    this.#wake?.();
    return this;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Output> {
    this.#read();
    while (true) {
      const event = this.#events.shift();
      if (event === undefined) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        continue;
      }
      if ("end" in event) {
        this.#settle.resolve(event.end);
        return;
      }
      if ("error" in event) {
        this.#settle.reject(event.error);
        throw event.error;
      }
      yield event;
    }
  }

  resize(cols: number, rows: number): void {
    this.resizes.push([cols, rows]);
  }

  signal(signal: string): void {
    this.signals.push(signal);
    this.onSignal?.(signal);
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.fail(new RpcError(Code.CANCELLED, "The call was cancelled"));
  }
}

/** What a fake client was asked. */
export interface ExecCall {
  readonly method: string;
  readonly args: readonly unknown[];
}

/**
 * An {@linkcode ExecClient} made of `parts`; a call to anything else fails
 * the test. Every call is recorded in `calls`.
 */
export function fakeExecClient(
  parts: Partial<{
    exec: ExecClient["exec"];
    start: ExecClient["execs"]["start"];
    attach: ExecClient["execs"]["attach"];
    list: ExecClient["execs"]["list"];
    kill: ExecClient["execs"]["kill"];
    wait: ExecClient["wait"];
    files: FsbFiles;
  }>,
): ExecClient & { calls: ExecCall[] } {
  const calls: ExecCall[] = [];
  // deno-lint-ignore no-explicit-any
  const take = <F extends (...args: any[]) => any>(method: string, fn: F | undefined): F =>
    ((...args: unknown[]) => {
      calls.push({ method, args });
      if (fn === undefined) throw new Error(`unexpected call: ${method}`);
      return fn(...args);
    }) as F;
  return {
    calls,
    exec: take("exec", parts.exec),
    execs: {
      start: take("execs.start", parts.start),
      attach: take("execs.attach", parts.attach),
      list: take("execs.list", parts.list),
      kill: take("execs.kill", parts.kill),
    },
    wait: take("wait", parts.wait),
    files: parts.files ?? new Proxy({} as FsbFiles, {
      get: (_, method) => take(`files.${String(method)}`, undefined),
    }),
  };
}

/** A terminal that records what is done to it. */
export class FakeTerminal implements CliTerminal {
  readonly calls: string[] = [];
  constructor(
    readonly stdinIsTerminal: boolean,
    public current: { cols: number; rows: number } | undefined = { cols: 80, rows: 24 },
  ) {}

  setRaw(raw: boolean): void {
    this.calls.push(raw ? "raw" : "cooked");
  }

  size(): { cols: number; rows: number } | undefined {
    return this.current;
  }
}

/** Process signals a test sends by hand; `listeners` shows what is still listening. */
export class FakeSignals {
  readonly #handlers = new Map<CliSignal, Set<() => void>>();

  readonly onSignal = (signal: CliSignal, handler: () => void): () => void => {
    const set = this.#handlers.get(signal) ?? new Set();
    this.#handlers.set(signal, set);
    set.add(handler);
    return () => set.delete(handler);
  };

  send(signal: CliSignal): void {
    for (const handler of [...this.#handlers.get(signal) ?? []]) handler();
  }

  listeners(): number {
    let n = 0;
    for (const set of this.#handlers.values()) n += set.size;
    return n;
  }
}

/** An ExecInfo as the generated type has it. */
export function execInfo(init: Partial<Omit<ExecInfo, "$typeName">>): ExecInfo {
  return {
    $typeName: "fsb.fastpath.v1.ExecInfo",
    execId: "",
    command: [],
    tty: false,
    detached: false,
    running: false,
    startedAt: 0n,
    endedAt: 0n,
    ...init,
  } as ExecInfo;
}

export type { ExecOptions };

// --- files -----------------------------------------------------------------------

/**
 * {@linkcode FsbFiles} over a local directory standing in for a sandbox's
 * root, with archives made and extracted by busybox tar as the agent does
 * inside a sandbox. Paths must be absolute, as the agent requires; nothing
 * here confines them the way the agent does (this is a test's own directory).
 */
export function dirFiles(root: string): FsbFiles {
  const local = (path: string) => {
    if (!path.startsWith("/")) {
      throw new RpcError(Code.INVALID_ARGUMENT, `Invalid path: must be absolute, got "${path}"`);
    }
    return `${root}${path}`.replace(/\/+$/, "") || "/";
  };
  const info = async (path: string): Promise<FileInfo> => {
    let st: Deno.FileInfo;
    try {
      st = await Deno.lstat(local(path));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new RpcError(Code.NOT_FOUND, `No such file or directory: "${path}"`);
      }
      throw err;
    }
    return {
      $typeName: "fsb.fastpath.v1.FileInfo",
      path,
      type: st.isDirectory ? "dir" : st.isSymlink ? "symlink" : st.isFile ? "file" : "other",
      mode: st.mode! & 0o7777,
      size: BigInt(st.size),
      uid: st.uid ?? 0,
      gid: st.gid ?? 0,
      mtime: BigInt(Math.floor(st.mtime!.getTime() / 1000)),
      linkTarget: st.isSymlink ? await Deno.readLink(local(path)) : "",
    } as FileInfo;
  };
  return {
    stat: (_name, path) => info(path),
    read: (_name, path, opts) => {
      const first = info(path);
      const chunks = async function* () {
        await first;
        const where = local(path);
        if (opts?.archive) {
          const slash = where.lastIndexOf("/");
          yield* tar(["-c", "-C", where.slice(0, slash) || "/", where.slice(slash + 1)]);
        } else {
          using file = await Deno.open(where);
          yield* file.readable;
        }
      };
      return Object.assign(chunks(), { info: first });
    },
    write: async (_name, path, data, opts) => {
      const where = local(path);
      const bytes = typeof data === "string"
        ? new TextEncoder().encode(data)
        : data instanceof Uint8Array
        ? data
        : await gather(data);
      if (opts?.archive) {
        await Deno.mkdir(where, { recursive: true });
        for await (const _ of tar(["-x", "-C", where], bytes)) { /* no output */ }
      } else {
        try {
          await Deno.writeFile(where, bytes, { mode: opts?.mode || 0o644 });
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) {
            throw new RpcError(Code.NOT_FOUND, `No such directory: "${path}"`);
          }
          throw err;
        }
        await Deno.chmod(where, opts?.mode || 0o644);
      }
      return await info(path);
    },
    list: () => Promise.reject(new Error("unexpected call: files.list")),
    mkdir: () => Promise.reject(new Error("unexpected call: files.mkdir")),
    remove: () => Promise.reject(new Error("unexpected call: files.remove")),
  };
}

async function gather(data: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of data) parts.push(chunk.slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function* tar(args: string[], stdin?: Uint8Array): AsyncGenerator<Uint8Array> {
  const child = new Deno.Command("busybox", {
    args: ["tar", ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  yield* child.stdout;
  const { code } = await child.status;
  const err = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  if (code !== 0) throw new RpcError(Code.INTERNAL, `tar failed: ${err}`);
}
