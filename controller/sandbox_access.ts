/**
 * Exec and files through the controller (shared/DESIGN.md section 14): each
 * call is checked (token for the sandbox's namespace, the request's rules),
 * then forwarded as it is to the sandbox's agent, which the client never
 * dials. Streams are piped message by message, so the flow control of both
 * hops holds end to end: a slow client slows the command's output.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type ExecRequest,
  ExecRequestSchema,
  type ExecResponse,
  type FastPath,
  type FileChunk,
  type WriteFileRequest,
  WriteFileRequestSchema,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import type { CallContext, ServiceImpl } from "../proto/rpc.ts";
import {
  checkExecStart,
  checkSandboxPath,
  InvalidArgumentError,
  parseSignal,
  readStart,
  startAgainError,
} from "../registry/mod.ts";
import type { Term } from "./_leadership.ts";

type FastPathImpl = ServiceImpl<typeof FastPath.method>;

/** The FastPath methods of section 14, as handlers for `RpcServer.add`. */
export type SandboxAccessImpl = Pick<
  FastPathImpl,
  | "exec"
  | "execAttach"
  | "execList"
  | "execKill"
  | "writeFile"
  | "readFile"
  | "listDir"
  | "stat"
  | "makeDir"
  | "remove"
  | "wait"
>;

/**
 * The agent's gRPC message limit is 1 MiB; bytes from clients (whose limit
 * here is 32 MiB) are cut to this before they go on.
 */
const FORWARD_CHUNK_BYTES = 256 * 1024;

/**
 * Handlers that check and forward exec and file calls for the sandboxes of
 * the term `current()` gives (UNAVAILABLE when this controller does not lead).
 */
export function sandboxAccess(current: () => Term): SandboxAccessImpl {
  // The token is checked before anything of a request is read, streams included.
  const target = (
    req: { name: string; namespace: string },
    ctx: CallContext,
    action: string,
    running = true,
  ) => {
    const { controller, auth } = current();
    return controller.sandboxAgent(req, {
      caller: auth.authenticate(ctx.metadata),
      action,
      running,
    });
  };

  return {
    async *exec(reqs, ctx) {
      current().auth.authenticate(ctx.metadata);
      const it = reqs[Symbol.asyncIterator]();
      const start = await readStart(it, "an exec");
      checkExecStart(start);
      const agent = await target(start, ctx, "exec in");
      const upstream = async function* (): AsyncGenerator<ExecRequest> {
        yield create(ExecRequestSchema, { msg: { case: "start", value: start } });
        for (;;) {
          const next = await it.next();
          if (next.done) return;
          const msg = next.value.msg;
          if (msg.case === "signal") parseSignal("signal", msg.value);
          if (msg.case === "stdin" && msg.value.length > FORWARD_CHUNK_BYTES) {
            for (const piece of pieces(msg.value)) {
              yield { ...next.value, msg: { case: "stdin", value: piece } };
            }
          } else {
            yield next.value;
          }
        }
      };
      yield* agent.client.exec(upstream(), {
        signal: ctx.signal,
        metadata: agent.metadata,
      }) as AsyncIterable<ExecResponse>;
    },
    async *execAttach(req, ctx) {
      checkExecId(req.execId);
      const agent = await target(req, ctx, "attach to an exec of", false);
      yield* agent.client.execAttach(req, { signal: ctx.signal, metadata: agent.metadata });
    },
    async execList(req, ctx) {
      const agent = await target(req, ctx, "list the execs of", false);
      return await agent.client.execList(req, { signal: ctx.signal, metadata: agent.metadata });
    },
    async execKill(req, ctx) {
      checkExecId(req.execId);
      parseSignal("signal", req.signal, 9);
      const agent = await target(req, ctx, "kill an exec of", false);
      return await agent.client.execKill(req, { signal: ctx.signal, metadata: agent.metadata });
    },
    async writeFile(reqs, ctx) {
      current().auth.authenticate(ctx.metadata);
      const it = reqs[Symbol.asyncIterator]();
      const start = await readStart(it, "a write");
      checkSandboxPath("path", start.path);
      checkMode(start.mode);
      if (start.size !== undefined && start.size < 0n) {
        throw new InvalidArgumentError("size", `must not be negative, got ${start.size}`);
      }
      const agent = await target(start, ctx, "write a file in");
      const upstream = async function* (): AsyncGenerator<WriteFileRequest> {
        yield create(WriteFileRequestSchema, { msg: { case: "start", value: start } });
        for (;;) {
          const next = await it.next();
          if (next.done) return;
          const msg = next.value.msg;
          if (msg.case === "start") throw startAgainError();
          if (msg.case === "data" && msg.value.length > FORWARD_CHUNK_BYTES) {
            for (const piece of pieces(msg.value)) {
              yield { ...next.value, msg: { case: "data", value: piece } };
            }
          } else {
            yield next.value;
          }
        }
      };
      return await agent.client.writeFile(upstream(), {
        signal: ctx.signal,
        metadata: agent.metadata,
      });
    },
    async *readFile(req, ctx) {
      checkSandboxPath("path", req.path);
      if (req.maxBytes < 0n) {
        throw new InvalidArgumentError("max_bytes", `must not be negative, got ${req.maxBytes}`);
      }
      const agent = await target(req, ctx, "read a file in");
      yield* agent.client.readFile(req, {
        signal: ctx.signal,
        metadata: agent.metadata,
      }) as AsyncIterable<FileChunk>;
    },
    async listDir(req, ctx) {
      checkSandboxPath("path", req.path);
      const agent = await target(req, ctx, "list a directory in");
      return await agent.client.listDir(req, { signal: ctx.signal, metadata: agent.metadata });
    },
    async stat(req, ctx) {
      checkSandboxPath("path", req.path);
      const agent = await target(req, ctx, "stat a file in");
      return await agent.client.stat(req, { signal: ctx.signal, metadata: agent.metadata });
    },
    async makeDir(req, ctx) {
      checkSandboxPath("path", req.path);
      checkMode(req.mode);
      const agent = await target(req, ctx, "make a directory in");
      return await agent.client.makeDir(req, { signal: ctx.signal, metadata: agent.metadata });
    },
    async remove(req, ctx) {
      checkSandboxPath("path", req.path);
      if (req.path.replace(/\/+$/, "") === "") {
        throw new InvalidArgumentError("path", "must not be the sandbox's root");
      }
      const agent = await target(req, ctx, "remove a file in");
      return await agent.client.remove(req, { signal: ctx.signal, metadata: agent.metadata });
    },
    async wait(req, ctx) {
      const agent = await target(req, ctx, "wait for", false);
      return await agent.client.wait(req, { signal: ctx.signal, metadata: agent.metadata });
    },
  };
}

function checkExecId(execId: string): void {
  if (!/^[0-9a-f]{16}$/.test(execId)) {
    throw new InvalidArgumentError("exec_id", `must be 16 lowercase hex digits, got "${execId}"`);
  }
}

function checkMode(mode: number): void {
  if (mode > 0o7777) {
    throw new InvalidArgumentError(
      "mode",
      `must be permission bits (at most 0o7777), got 0o${mode.toString(8)}`,
    );
  }
}

function* pieces(bytes: Uint8Array): Generator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += FORWARD_CHUNK_BYTES) {
    yield bytes.subarray(at, at + FORWARD_CHUNK_BYTES);
  }
}
