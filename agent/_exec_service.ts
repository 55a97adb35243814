/**
 * The agent's Exec, ExecAttach, ExecList, ExecKill and Wait calls
 * (shared/DESIGN.md section 14) onto its runtime. The controller names the
 * sandbox in the `fsb-sandbox-id` metadata; everything a request says is
 * checked again here, as an agent trusts nothing it did not check.
 *
 * @module
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Agent as AgentService } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import type {
  ExecExitSchema,
  ExecInfoSchema,
  ExecRequest,
  ExecResponseSchema,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import type { CallContext, ServiceImpl } from "../proto/rpc.ts";
import {
  checkExecStart,
  InvalidArgumentError,
  NotFoundError,
  parseSignal,
  readStart,
  startAgainError,
} from "../registry/mod.ts";
import type { ExecExitStatus, ExecRecord, Runtime } from "./runtime.ts";

type AgentImpl = ServiceImpl<typeof AgentService.method>;
type ExecResponseInit = MessageInitShape<typeof ExecResponseSchema>;

/** The exec handlers of the Agent service. */
export type ExecImpl = Pick<AgentImpl, "exec" | "execAttach" | "execList" | "execKill" | "wait">;

/** The metadata key the controller names the sandbox with. */
export const SANDBOX_ID_METADATA = "fsb-sandbox-id";

/** The sandbox id a call names, checked as every sandbox id is before it touches a path. */
export function sandboxIdOf(ctx: CallContext): string {
  const id = ctx.metadata[SANDBOX_ID_METADATA] ?? "";
  if (!/^[0-9a-f]{32}$/.test(id)) {
    throw new InvalidArgumentError(
      SANDBOX_ID_METADATA,
      `must be 32 lowercase hex digits, got "${id}"`,
    );
  }
  return id;
}

/** Options for {@linkcode execService}. */
export interface ExecServiceOptions {
  /** Called with the output files of each detached exec, to cap them like sandbox logs. */
  readonly trackLog?: (path: string) => void;
}

/** Exec handlers over `runtime`. */
export function execService(runtime: Runtime, opts: ExecServiceOptions = {}): ExecImpl {
  return {
    async *exec(reqs, ctx) {
      const id = sandboxIdOf(ctx);
      const it = reqs[Symbol.asyncIterator]();
      const start = await readStart(it, "an exec");
      checkExecStart(start);
      const proc = await runtime.exec(id, {
        argv: start.command,
        env: start.envs,
        workingDir: start.workingDir,
        tty: start.tty,
        stdin: start.stdin,
        detach: start.detach,
        cols: start.size?.cols,
        rows: start.size?.rows,
      }, { signal: ctx.signal });
      for (const path of proc.logFiles ?? []) opts.trackLog?.(path);
      yield { msg: { case: "execId", value: proc.execId } };
      if (start.detach) return;
      // Requests after start: stdin, resizes, signals. Their end closes stdin.
      const control = (async () => {
        try {
          for (;;) {
            const next = await it.next();
            if (next.done) break;
            await apply(next.value, proc);
          }
        } finally {
          await proc.closeStdin().catch(() => {});
        }
      })();
      control.catch(() => {});
      for await (const out of interleave(proc.stdout, proc.stderr)) {
        yield out;
      }
      const exit = await proc.exit;
      yield { msg: { case: "exit", value: exitMessage(exit) } };
    },

    async *execAttach(req, ctx) {
      const id = sandboxIdOf(ctx);
      yield { msg: { case: "execId", value: req.execId } };
      for await (const out of runtime.execAttach(id, req.execId, { signal: ctx.signal })) {
        if (out.stream === "exit") yield { msg: { case: "exit", value: exitMessage(out.exit) } };
        else yield { msg: { case: out.stream, value: out.data } };
      }
    },

    async execList(_req, ctx) {
      const id = sandboxIdOf(ctx);
      return { execs: (await runtime.execList(id)).map(execInfo) };
    },

    async execKill(req, ctx) {
      const id = sandboxIdOf(ctx);
      const signo = parseSignal("signal", req.signal, 9);
      const known = (await runtime.execList(id)).some((r) => r.execId === req.execId);
      if (!known) throw new NotFoundError(`Exec ${req.execId} not found in sandbox ${id}`);
      return execInfo(await runtime.execKill(id, req.execId, signo));
    },

    async wait(_req, ctx) {
      const id = sandboxIdOf(ctx);
      const exitCode = await runtime.wait(id, { signal: ctx.signal });
      return { exitCode, phase: "Exited", message: `exit code ${exitCode}` };
    },
  };
}

async function apply(req: ExecRequest, proc: {
  write(chunk: Uint8Array): Promise<void>;
  closeStdin(): Promise<void>;
  resize(cols: number, rows: number): Promise<void>;
  kill(signo: number): Promise<void>;
}): Promise<void> {
  const msg = req.msg;
  switch (msg.case) {
    case "stdin":
      await proc.write(msg.value);
      return;
    case "stdinClose":
      if (msg.value) await proc.closeStdin();
      return;
    case "resize":
      if (msg.value.cols > 0 && msg.value.rows > 0) {
        await proc.resize(msg.value.cols, msg.value.rows);
      }
      return;
    case "signal":
      await proc.kill(parseSignal("signal", msg.value));
      return;
    case "start":
      throw startAgainError();
  }
}

function exitMessage(exit: ExecExitStatus): MessageInitShape<typeof ExecExitSchema> {
  return { exitCode: exit.exitCode, signal: exit.signal, message: exit.message };
}

function execInfo(r: ExecRecord): MessageInitShape<typeof ExecInfoSchema> {
  return {
    execId: r.execId,
    command: [...r.argv],
    tty: r.tty,
    detached: r.detached,
    running: r.exit === undefined,
    exit: r.exit === undefined ? undefined : exitMessage(r.exit),
    startedAt: BigInt(r.startedAt),
    endedAt: BigInt(r.endedAt ?? 0),
  };
}

/**
 * stdout and stderr as responses, each chunk as soon as it is read. Neither
 * stream is read ahead of what the caller takes, so a slow caller stalls
 * the command (the pipes fill) instead of growing a buffer here.
 */
async function* interleave(
  stdout: AsyncIterable<Uint8Array>,
  stderr: AsyncIterable<Uint8Array>,
): AsyncGenerator<ExecResponseInit> {
  const its = [stdout[Symbol.asyncIterator](), stderr[Symbol.asyncIterator]()];
  const cases = ["stdout", "stderr"] as const;
  const pending = new Map<number, Promise<{ i: number; r: IteratorResult<Uint8Array> }>>();
  const pull = (i: number) => pending.set(i, its[i].next().then((r) => ({ i, r })));
  pull(0);
  pull(1);
  try {
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values());
      if (r.done) {
        pending.delete(i);
        continue;
      }
      pull(i);
      yield { msg: { case: cases[i], value: r.value } };
    }
  } finally {
    if (pending.size > 0) { for (const it of its) it.return?.(undefined).catch?.(() => {}); }
  }
}
