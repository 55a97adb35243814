// FetchChannel's client and bidirectional streams against grpc-js itself over
// loopback (the generated protobuf-es schemas on the server side): full
// duplex, half-close, flow control reaching back to the caller's iterable,
// trailers-only refusals, cancel and deadline. The server is a bare grpc-js
// Server rather than RpcServer, so that each test can answer exactly when it
// wants (headers, messages, a status) and see what the client did.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createServer, type Socket } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { create, type DescMessage, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type ExecRequest,
  FastPath,
  type WriteFileRequest,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcError } from "../../proto/rpc.ts";
import { FetchChannel } from "../../proto/fetch_client.ts";
import {
  type ExecRequestInit,
  FastPathLite,
  type WriteFileRequestInit,
} from "../../proto/fastpath_lite.ts";
import { eventually } from "../agent/runtime_contract.ts";

type ExecCall = grpc.ServerDuplexStream<ExecRequest, unknown>;
type WriteFileCall = grpc.ServerReadableStream<WriteFileRequest, unknown>;

interface RawHandlers {
  exec?: (call: ExecCall) => void;
  writeFile?: (call: WriteFileCall, done: grpc.sendUnaryData<unknown>) => void;
}

function definition(localName: string): grpc.MethodDefinition<unknown, unknown> {
  const method = FastPath.methods.find((m) => m.localName === localName)!;
  const bytes = (schema: DescMessage) => (value: unknown) => {
    const out = toBinary(schema, create(schema, value as never));
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  };
  return {
    path: `/${FastPath.typeName}/${method.name}`,
    requestStream: method.methodKind === "client_streaming" ||
      method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" ||
      method.methodKind === "bidi_streaming",
    requestSerialize: bytes(method.input),
    requestDeserialize: (buf: Buffer) => fromBinary(method.input, buf),
    responseSerialize: bytes(method.output),
    responseDeserialize: (buf: Buffer) => fromBinary(method.output, buf),
  };
}

/**
 * grpc-js serving Exec and WriteFile with `handlers` on a loopback port. It
 * owns the sockets, as RpcServer does, and closes by destroying them: a
 * graceful grpc-js shutdown would send GOAWAY, which Deno 2.9's HTTP/2 stacks
 * handle badly (denoland/deno#36788).
 */
async function withRawServer(
  handlers: RawHandlers,
  fn: (channel: FetchChannel) => Promise<void>,
): Promise<void> {
  const server = new grpc.Server();
  const unused = (call: { emit(e: string, err: unknown): void }) =>
    call.emit("error", { code: Code.UNIMPLEMENTED, details: "not used by this test" });
  server.addService({ exec: definition("exec"), writeFile: definition("writeFile") }, {
    exec: (handlers.exec ?? unused) as grpc.handleBidiStreamingCall<unknown, unknown>,
    writeFile: (handlers.writeFile ?? unused) as grpc.handleClientStreamingCall<unknown, unknown>,
  });
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const sockets = new Set<Socket>();
  const net = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    injector.injectConnection(socket);
  });
  await new Promise<void>((resolve) => net.listen(0, "127.0.0.1", resolve));
  const { port } = net.address() as { port: number };
  const channel = new FetchChannel(`127.0.0.1:${port}`);
  try {
    await fn(channel);
  } finally {
    channel.close();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => net.close(() => resolve()));
    server.forceShutdown();
  }
}

/** A request iterator that records what the call did with it, and can be held up. */
class Requests<T> implements AsyncIterableIterator<T> {
  pulled = 0;
  returned = false;
  readonly #items: (T | (() => Promise<T>))[];
  readonly #then: "end" | "hang";

  /**
   * Gives `items` (calling the functions among them for a request that takes
   * a while, or fails), then ends or, with "hang", waits forever (stdin that
   * nobody types on).
   */
  constructor(items: (T | (() => Promise<T>))[], then: "end" | "hang" = "end") {
    this.#items = items;
    this.#then = then;
  }

  async next(): Promise<IteratorResult<T>> {
    if (this.pulled < this.#items.length) {
      const item = this.#items[this.pulled++];
      return {
        done: false,
        value: typeof item === "function" ? await (item as () => Promise<T>)() : item,
      };
    }
    if (this.#then === "hang") await new Promise(() => {});
    return { done: true, value: undefined };
  }

  return(): Promise<IteratorResult<T>> {
    this.returned = true;
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}

const text = (s: string) => new TextEncoder().encode(s);
const start: ExecRequestInit = { msg: { case: "start", value: { name: "x", command: ["cat"] } } };

function stdin(s: string): ExecRequestInit {
  return { msg: { case: "stdin", value: text(s) } };
}

function summary(res: { msg: { case: string | undefined; value?: unknown } }): string {
  const { case: kind, value } = res.msg;
  if (value instanceof Uint8Array) return `${kind}:${new TextDecoder().decode(value)}`;
  if (kind === "exit") return `exit:${(value as { exitCode: number }).exitCode}`;
  return `${kind}:${value}`;
}

/** A cat that shouts: each stdin chunk back in capitals, the exit once stdin ends. */
function shoutingCat(seen: string[]): (call: ExecCall) => void {
  return (call) => {
    call.on("data", (req: ExecRequest) => {
      seen.push(req.msg.case ?? "none");
      if (req.msg.case === "start") call.write({ msg: { case: "execId", value: "e1" } });
      if (req.msg.case === "stdin") {
        const upper = new TextDecoder().decode(req.msg.value).toUpperCase();
        call.write({ msg: { case: "stdout", value: text(upper) } });
      }
    });
    call.on("end", () => {
      seen.push("end");
      call.write({ msg: { case: "exit", value: { exitCode: 0 } } });
      call.end();
    });
  };
}

Deno.test("FetchChannel bidi: each request is made only after the answer to the last one (full duplex), and the iterable's end half-closes", async () => {
  const seen: string[] = [];
  await withRawServer({ exec: shoutingCat(seen) }, async (channel) => {
    // The next request waits for the answer to the previous one: over a
    // half-duplex transport this would never finish.
    let answered: () => void = () => {};
    const next = () => new Promise<void>((resolve) => answered = resolve);
    async function* requests(): AsyncGenerator<ExecRequestInit> {
      yield start;
      for (const word of ["one", "two", "three"]) {
        await next();
        yield stdin(word);
      }
      await next();
    }
    const got: string[] = [];
    for await (const res of channel.client(FastPathLite).exec(requests(), { timeoutMs: 10_000 })) {
      got.push(summary(res));
      answered();
    }
    assert.deepEqual(got, ["execId:e1", "stdout:ONE", "stdout:TWO", "stdout:THREE", "exit:0"]);
    assert.deepEqual(seen, ["start", "stdin", "stdin", "stdin", "end"]);
  });
});

Deno.test("FetchChannel client stream: sends every request, half-closes, and resolves to the one answer", async () => {
  const received: Uint8Array[] = [];
  let path = "";
  await withRawServer({
    writeFile: (call, done) => {
      call.on("data", (req: WriteFileRequest) => {
        if (req.msg.case === "start") path = req.msg.value.path;
        if (req.msg.case === "data") received.push(new Uint8Array(req.msg.value));
      });
      call.on("end", () => {
        const size = received.reduce((n, c) => n + c.length, 0);
        done(null, { path, type: "file", size: BigInt(size), mode: 0o644 });
      });
    },
  }, async (channel) => {
    const chunks = Array.from({ length: 4 }, (_, i) => new Uint8Array(256 * 1024).fill(i + 1));
    const reqs = new Requests<WriteFileRequestInit>([
      { msg: { case: "start", value: { name: "x", path: "/tmp/ünï" } } },
      ...chunks.map((value): WriteFileRequestInit => ({ msg: { case: "data", value } })),
    ]);
    const info = await channel.client(FastPathLite).writeFile(reqs);
    assert.equal(info.path, "/tmp/ünï");
    assert.equal(info.size, 1024n * 1024n);
    assert.deepEqual(received, chunks);
    assert.equal(reqs.pulled, 5);
  });
});

Deno.test("FetchChannel client stream: a server that reads slowly holds the caller's iterable back", async () => {
  const CHUNK = 64 * 1024;
  const TOTAL = 96; // 6 MiB
  let consumed = 0;
  let pulled = 0;
  let mostAhead = 0;
  await withRawServer({
    writeFile: (call, done) => {
      call.on("data", () => {
        consumed++;
        // One message per timer turn: a reader slower than loopback.
        call.pause();
        setTimeout(() => call.resume(), 1);
      });
      call.on("end", () => done(null, { size: BigInt(consumed) }));
    },
  }, async (channel) => {
    async function* requests(): AsyncGenerator<WriteFileRequestInit> {
      yield { msg: { case: "start", value: { path: "/big" } } };
      for (let i = 0; i < TOTAL; i++) {
        pulled++;
        mostAhead = Math.max(mostAhead, pulled - consumed);
        yield { msg: { case: "data", value: new Uint8Array(CHUNK) } };
      }
    }
    const info = await channel.client(FastPathLite).writeFile(requests(), { timeoutMs: 30_000 });
    assert.equal(info.size, BigInt(TOTAL + 1));
  });
  // HTTP/2 windows and the buffers on both sides (about 1 MiB in Deno's fetch)
  // let some requests ahead, never the whole upload.
  assert.ok(mostAhead <= TOTAL / 2, `the caller was read ${mostAhead} chunks ahead of the server`);
});

Deno.test("FetchChannel bidi: a refusal before any answer is the server's status, and the requests are let go", async () => {
  await withRawServer({
    exec: (call) => {
      call.once("data", () =>
        call.emit("error", {
          code: Code.FAILED_PRECONDITION,
          details: 'Cannot exec in sandbox "default/x" as it is Exited',
        }));
    },
  }, async (channel) => {
    // After `start`, the caller waits on input that never comes.
    const reqs = new Requests<ExecRequestInit>([start], "hang");
    await assert.rejects(
      async () => {
        for await (const _ of channel.client(FastPathLite).exec(reqs)) { /* none */ }
      },
      (err) =>
        err instanceof RpcError && err.code === Code.FAILED_PRECONDITION &&
        err.message === 'Cannot exec in sandbox "default/x" as it is Exited',
    );
    assert.ok(reqs.returned, "the request iterator's return() was called");
  });
});

Deno.test("FetchChannel client stream: a refusal mid-upload is the server's status, and the rest is not read", async () => {
  await withRawServer({
    writeFile: (call, done) => {
      call.once(
        "data",
        () =>
          done(
            { code: Code.PERMISSION_DENIED, details: "not your namespace" } as grpc.ServiceError,
          ),
      );
    },
  }, async (channel) => {
    const reqs = new Requests<WriteFileRequestInit>(
      [{ msg: { case: "start", value: { path: "/x" } } }],
      "hang",
    );
    await assert.rejects(
      channel.client(FastPathLite).writeFile(reqs),
      (err) =>
        err instanceof RpcError && err.code === Code.PERMISSION_DENIED &&
        err.message === "not your namespace",
    );
    assert.ok(reqs.returned);
    assert.equal(reqs.pulled, 1);
  });
});

Deno.test("FetchChannel bidi: aborting the signal cancels the call on the server, ends the answers quietly and lets the requests go", async () => {
  let cancelled = false;
  await withRawServer({
    exec: (call) => {
      call.on("cancelled", () => cancelled = true);
      call.once("data", () => call.write({ msg: { case: "execId", value: "e1" } }));
    },
  }, async (channel) => {
    const abort = new AbortController();
    const reqs = new Requests<ExecRequestInit>([start], "hang");
    const got: string[] = [];
    for await (const res of channel.client(FastPathLite).exec(reqs, { signal: abort.signal })) {
      got.push(summary(res));
      abort.abort();
    }
    assert.deepEqual(got, ["execId:e1"]);
    assert.ok(reqs.returned);
    await eventually("the server sees the cancellation", () => cancelled);
  });
});

Deno.test("FetchChannel bidi: leaving the answers early cancels the call on the server", async () => {
  let cancelled = false;
  await withRawServer({
    exec: (call) => {
      call.on("cancelled", () => cancelled = true);
      call.once("data", () => {
        call.write({ msg: { case: "execId", value: "e1" } });
        call.write({ msg: { case: "stdout", value: text("more") } });
      });
    },
  }, async (channel) => {
    const reqs = new Requests<ExecRequestInit>([start], "hang");
    for await (const res of channel.client(FastPathLite).exec(reqs)) {
      assert.equal(summary(res), "execId:e1");
      break;
    }
    assert.ok(reqs.returned);
    await eventually("the server sees the cancellation", () => cancelled);
  });
});

Deno.test("FetchChannel streams fail with DEADLINE_EXCEEDED past their deadline, before or after the first answer", async () => {
  await withRawServer({
    exec: (call) => {
      call.once("data", (req: ExecRequest) => {
        // `signal` asks for an answer, then silence; `start` gets silence at once.
        if (req.msg.case === "signal") call.write({ msg: { case: "execId", value: "e1" } });
      });
    },
    writeFile: () => {},
  }, async (channel) => {
    const client = channel.client(FastPathLite);
    const isDeadline = (err: unknown) =>
      err instanceof RpcError && err.code === Code.DEADLINE_EXCEEDED;
    await assert.rejects(async () => {
      for await (const _ of client.exec(new Requests([start], "hang"), { timeoutMs: 100 })) {
        /* none */
      }
    }, isDeadline);
    const got: string[] = [];
    await assert.rejects(async () => {
      const reqs = new Requests<ExecRequestInit>(
        [{ msg: { case: "signal", value: "TERM" } }],
        "hang",
      );
      for await (const res of client.exec(reqs, { timeoutMs: 300 })) got.push(summary(res));
    }, isDeadline);
    assert.deepEqual(got, ["execId:e1"]);
    await assert.rejects(
      client.writeFile(new Requests<WriteFileRequestInit>([{}], "hang"), { timeoutMs: 100 }),
      isDeadline,
    );
  });
});

Deno.test("FetchChannel streams fail with the caller's own error when its iterable throws, and cancel the call", async () => {
  let cancelled = 0;
  let uploadStarted: () => void = () => {};
  const started = new Promise<void>((resolve) => uploadStarted = resolve);
  await withRawServer({
    exec: (call) => {
      call.on("cancelled", () => cancelled++);
      call.once("data", () => call.write({ msg: { case: "execId", value: "e1" } }));
    },
    writeFile: (call) => {
      call.on("cancelled", () => cancelled++);
      call.once("data", () => uploadStarted());
    },
  }, async (channel) => {
    const client = channel.client(FastPathLite);
    const boom = new Error("stdin went away");
    // The second request fails once the first answer is in.
    let failed = false;
    let reject: (err: Error) => void = () => {};
    const failing = () => new Promise<ExecRequestInit>((_, no) => failed ? no(boom) : reject = no);
    const got: string[] = [];
    await assert.rejects(async () => {
      for await (const res of client.exec(new Requests([start, failing]))) {
        got.push(summary(res));
        failed = true;
        reject(boom);
      }
    }, (err) => err === boom);
    assert.deepEqual(got, ["execId:e1"]);

    // The second request fails once the server has the first.
    const upload = new Requests<WriteFileRequestInit>([
      {},
      () => started.then(() => Promise.reject(boom)),
    ]);
    await assert.rejects(client.writeFile(upload), (err) => err === boom);
    await eventually("the server sees both calls cancelled", () => cancelled === 2);
  });
});

Deno.test("FetchChannel streams report a request they cannot encode as INTERNAL", async () => {
  await withRawServer({
    exec: (call) => call.once("data", () => call.write({ msg: { case: "execId", value: "e1" } })),
  }, async (channel) => {
    const reqs = new Requests<ExecRequestInit>([
      start,
      { msg: { case: "resize", value: { cols: -1, rows: 24 } } },
    ], "hang");
    await assert.rejects(
      async () => {
        for await (const _ of channel.client(FastPathLite).exec(reqs)) { /* some */ }
      },
      (err) =>
        err instanceof RpcError && err.code === Code.INTERNAL &&
        err.message === "Request message serialization failure: invalid uint32: -1",
    );
    assert.ok(reqs.returned, "an iterator that did not fail itself is let go");
  });
});
