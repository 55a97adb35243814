// The library client's exec calls (`exec`, `run`, `execs`, `wait` of
// `cli/client.ts`) over real gRPC (RpcServer, with handlers playing the
// controller; see fastpath_server.ts), through the CLI's fetch transport and,
// for `unix:` endpoints, grpc-js.
import assert from "node:assert/strict";
import type { ExecRequest, ExecStart } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, connect, type ExecOutput, type FsbClient, RpcError } from "../../cli/client.ts";
import { eventually } from "../agent/runtime_contract.ts";
import { type FastPathImpl, startFastPathServer } from "./fastpath_server.ts";

const text = (s: string) => new TextEncoder().encode(s);
const decoder = new TextDecoder();

function isCode(code: number, message?: string | RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof RpcError, `expected an RpcError, got ${err}`);
    assert.equal(err.codeName, new RpcError(code, "").codeName, err.message);
    if (typeof message === "string") assert.equal(err.message, message);
    else if (message !== undefined) assert.match(err.message, message);
    return true;
  };
}

/** A loopback port that nothing listens on (bound, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function withFsb(
  impl: Partial<FastPathImpl>,
  fn: (fsb: FsbClient) => Promise<void>,
  opts: { unix?: boolean } = {},
): Promise<void> {
  const server = await startFastPathServer(impl, opts);
  try {
    using fsb = connect({ endpoint: server.endpoint, token: "s3cret" });
    await fn(fsb);
  } finally {
    await server.close();
  }
}

function describe(req: ExecRequest): string {
  const { case: kind, value } = req.msg;
  if (value instanceof Uint8Array) return `${kind}:${decoder.decode(value)}`;
  if (kind === "resize") return `resize:${value.cols}x${value.rows}`;
  if (kind === "start") return "start";
  return `${kind}:${value}`;
}

/**
 * A cat that shouts, as the controller would run it: the exec id, stdin back
 * in capitals on stdout, "bye" on stderr once stdin ends, then exit 3.
 * Records every request and the start.
 */
function shoutingCat(seen: string[], starts: ExecStart[] = []): FastPathImpl["exec"] {
  return async function* (reqs) {
    for await (const req of reqs) {
      seen.push(describe(req));
      const msg = req.msg;
      if (msg.case === "start") {
        starts.push(msg.value);
        yield { msg: { case: "execId", value: "e-1" } };
      } else if (msg.case === "stdin") {
        yield { msg: { case: "stdout", value: text(decoder.decode(msg.value).toUpperCase()) } };
      } else if (msg.case === "stdinClose") {
        yield { msg: { case: "stderr", value: text("bye") } };
        yield { msg: { case: "exit", value: { exitCode: 3 } } };
        return;
      } else if (msg.case === "signal") {
        yield { msg: { case: "exit", value: { exitCode: 130, signal: msg.value } } };
        return;
      }
    }
  };
}

async function outputOf(session: AsyncIterable<ExecOutput>): Promise<string[]> {
  const out: string[] = [];
  for await (const { stream, data } of session) out.push(`${stream}:${decoder.decode(data)}`);
  return out;
}

Deno.test("exec() sends start and stdin, then stdinClose, and gives output, id and exit", async () => {
  const seen: string[] = [];
  const starts: ExecStart[] = [];
  await withFsb({ exec: shoutingCat(seen, starts) }, async (fsb) => {
    async function* stdin() {
      yield text("one ");
      yield new Uint8Array(0); // nothing to send
      yield text("twö");
    }
    const session = fsb.exec("web", ["cat", "-"], {
      namespace: "team-a",
      env: { LANG: "C.UTF-8" },
      workingDir: "/srv",
      stdin: stdin(),
    });
    assert.equal(await session.id, "e-1");
    assert.deepEqual(await outputOf(session), ["stdout:ONE ", "stdout:TWÖ", "stderr:bye"]);
    assert.deepEqual(await session.exit, { exitCode: 3, signal: "", message: "" });
    assert.deepEqual(seen, ["start", "stdin:one ", "stdin:twö", "stdinClose:true"]);
    const { name, namespace, command, envs, workingDir, tty, stdin: attached, detach } = starts[0];
    assert.deepEqual(
      { name, namespace, command, envs, workingDir, tty, attached, detach },
      {
        name: "web",
        namespace: "team-a",
        command: ["cat", "-"],
        envs: { LANG: "C.UTF-8" },
        workingDir: "/srv",
        tty: false,
        attached: true,
        detach: false,
      },
    );
  });
});

Deno.test("run() collects stdout and stderr, sends text stdin as UTF-8 in chunks of at most 256 KiB", async () => {
  const sizes: number[] = [];
  await withFsb({
    exec: async function* (reqs) {
      let got = "";
      for await (const req of reqs) {
        const msg = req.msg;
        if (msg.case === "start") yield { msg: { case: "execId", value: "e-2" } };
        if (msg.case === "stdin") {
          sizes.push(msg.value.length);
          got += decoder.decode(msg.value, { stream: true });
        }
        if (msg.case === "stdinClose") {
          yield { msg: { case: "stdout", value: text(`${got.length} chars`) } };
          yield { msg: { case: "stderr", value: text("warn") } };
          yield { msg: { case: "stdout", value: text(", done") } };
          yield { msg: { case: "exit", value: { exitCode: 0 } } };
          return;
        }
      }
    },
  }, async (fsb) => {
    // 300 000 two-byte characters: 600 000 bytes, cut at 256 KiB (mid-character: bytes, not text).
    const res = await fsb.run("web", ["wc", "-m"], { stdin: "é".repeat(300_000) });
    assert.equal(decoder.decode(res.stdout), "300000 chars, done");
    assert.equal(decoder.decode(res.stderr), "warn");
    assert.equal(res.exitCode, 0);
    assert.deepEqual(sizes, [262_144, 262_144, 75_712]);
  });
});

Deno.test("run() reports a command that cannot be found as exit 127 with a message, not as an error", async () => {
  await withFsb({
    exec: async function* (reqs) {
      for await (const req of reqs) {
        if (req.msg.case !== "start") continue;
        assert.equal(req.msg.value.stdin, false, "no stdin given, none attached");
        yield { msg: { case: "execId", value: "e-3" } };
        yield {
          msg: {
            case: "exit",
            value: { exitCode: 127, message: 'exec: "nope": executable file not found in $PATH' },
          },
        };
        return;
      }
    },
  }, async (fsb) => {
    const res = await fsb.run("web", ["nope"]);
    assert.deepEqual(res, {
      exitCode: 127,
      signal: "",
      message: 'exec: "nope": executable file not found in $PATH',
      stdout: new Uint8Array(0),
      stderr: new Uint8Array(0),
    });
  });
});

Deno.test("exec() passes resizes and signals on while stdin waits, with tty and the first size in start", async () => {
  const seen: string[] = [];
  const starts: ExecStart[] = [];
  await withFsb({ exec: shoutingCat(seen, starts) }, async (fsb) => {
    let stdinReturned = false;
    const stdin: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({
        next: () => new Promise(() => {}), // a terminal nobody types on
        return: () => {
          stdinReturned = true;
          return Promise.resolve({ done: true, value: undefined });
        },
      }),
    };
    const session = fsb.exec("web", ["sh"], { tty: true, size: { cols: 80, rows: 24 }, stdin });
    assert.equal(await session.id, "e-1");
    session.resize(120, 40);
    session.signal("INT");
    assert.deepEqual(await outputOf(session), []);
    assert.deepEqual(await session.exit, { exitCode: 130, signal: "INT", message: "" });
    assert.deepEqual(seen, ["start", "resize:120x40", "signal:INT"]);
    assert.equal(starts[0].tty, true);
    assert.deepEqual({ ...starts[0].size, $typeName: undefined }, {
      $typeName: undefined,
      cols: 80,
      rows: 24,
    });
    assert.ok(stdinReturned, "stdin is let go once the exec ended");
    // After the end: nothing to send, no error.
    session.signal("TERM");
    session.resize(1, 1);
  });
});

Deno.test("exec() refuses a bad terminal size or signal at once with INVALID_ARGUMENT", async () => {
  await withFsb({ exec: shoutingCat([]) }, async (fsb) => {
    assert.throws(
      () => fsb.exec("web", ["sh"], { tty: true, size: { cols: -1, rows: 24 } }),
      isCode(
        Code.INVALID_ARGUMENT,
        "Invalid terminal cols -1: expected a whole number from 0 to 4294967295",
      ),
    );
    const session = fsb.exec("web", ["sh"], { stdin: (async function* () {})() });
    assert.throws(() => session.resize(80.5, 24), isCode(Code.INVALID_ARGUMENT));
    assert.throws(() => session.signal(""), isCode(Code.INVALID_ARGUMENT));
    assert.deepEqual(await outputOf(session), ["stderr:bye"]);
  });
});

Deno.test("exec() fails with the server's status when it refuses before any answer", async () => {
  await withFsb({
    // deno-lint-ignore require-yield
    exec: async function* () {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        'Cannot exec in sandbox "default/web" as it is Exited',
      );
    },
  }, async (fsb) => {
    const session = fsb.exec("web", ["true"]);
    const refused = isCode(
      Code.FAILED_PRECONDITION,
      'Cannot exec in sandbox "default/web" as it is Exited',
    );
    await assert.rejects(outputOf(session), refused);
    await assert.rejects(session.id, refused);
    await assert.rejects(session.exit, refused);
    await assert.rejects(fsb.run("web", ["true"]), refused);
  });
});

Deno.test("exec() fails with UNKNOWN when the stream ends without an exit, whatever the server's status", async () => {
  for (const how of ["ends", "fails"]) {
    await withFsb({
      exec: async function* () {
        yield { msg: { case: "execId", value: "e-4" } };
        yield { msg: { case: "stdout", value: text("partial") } };
        // After output, a status comes in trailers, which fetch does not show.
        if (how === "fails") throw new RpcError(Code.INTERNAL, "agent lost");
      },
    }, async (fsb) => {
      const session = fsb.exec("web", ["sh"]);
      const got: string[] = [];
      const unknown = isCode(Code.UNKNOWN, "The exec stream ended without an exit status");
      await assert.rejects(async () => {
        for await (const out of session) got.push(decoder.decode(out.data));
      }, unknown);
      assert.deepEqual(got, ["partial"]);
      assert.equal(await session.id, "e-4");
      await assert.rejects(session.exit, unknown);
    });
  }
});

Deno.test("cancel(), the call's signal and leaving the loop end the call: the server sees it cancelled", async () => {
  let cancelled = 0;
  const serverSide: FastPathImpl["exec"] = async function* (_reqs, ctx) {
    ctx.signal.addEventListener("abort", () => cancelled++);
    yield { msg: { case: "execId", value: "e-5" } };
    for (let i = 0; !ctx.signal.aborted; i++) {
      yield { msg: { case: "stdout", value: text(`tick ${i}\n`) } };
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  await withFsb({ exec: serverSide }, async (fsb) => {
    const cancelledByCall = isCode(Code.CANCELLED, "The exec was cancelled");

    const session = fsb.exec("web", ["ticker"]);
    let seen = 0;
    for await (const _ of session) if (++seen === 2) session.cancel();
    assert.ok(seen >= 2);
    await assert.rejects(session.exit, cancelledByCall);
    await eventually("the server sees the first call cancelled", () => cancelled === 1);

    const abort = new AbortController();
    const signalled = fsb.exec("web", ["ticker"], { signal: abort.signal });
    for await (const _ of signalled) abort.abort();
    await assert.rejects(signalled.exit, cancelledByCall);
    await eventually("the server sees the second call cancelled", () => cancelled === 2);

    const left = fsb.exec("web", ["ticker"]);
    for await (const _ of left) break;
    await assert.rejects(left.exit, isCode(Code.CANCELLED, "The exec's output was left unread"));
    await eventually("the server sees the third call cancelled", () => cancelled === 3);
  });
});

Deno.test("exec() has no deadline unless given one, and then fails with DEADLINE_EXCEEDED", async () => {
  await withFsb({
    exec: async function* (_reqs, ctx) {
      yield { msg: { case: "execId", value: "e-6" } };
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
    },
  }, async (fsb) => {
    const session = fsb.exec("web", ["sleep", "infinity"], { timeoutMs: 200 });
    assert.equal(await session.id, "e-6");
    await assert.rejects(outputOf(session), isCode(Code.DEADLINE_EXCEEDED));
    await assert.rejects(session.exit, isCode(Code.DEADLINE_EXCEEDED));
  });
});

Deno.test("exec() fails with stdin's own error when stdin fails, and the call is cancelled", async () => {
  let cancelled = false;
  await withFsb({
    exec: async function* (reqs, ctx) {
      ctx.signal.addEventListener("abort", () => cancelled = true);
      for await (const req of reqs) {
        if (req.msg.case === "start") yield { msg: { case: "execId", value: "e-7" } };
      }
    },
  }, async (fsb) => {
    const broken = new Error("stdin: input/output error");
    let started: Promise<string> = Promise.resolve("");
    // Fails once the server has the call, so that there is a call to cancel.
    async function* stdin() {
      yield text("a");
      await started;
      throw broken;
    }
    const session = fsb.exec("web", ["cat"], { stdin: stdin() });
    started = session.id;
    await assert.rejects(outputOf(session), (err) => err === broken);
    await assert.rejects(session.exit, (err) => err === broken);
    await eventually("the server sees the call cancelled", () => cancelled);
  });
});

Deno.test("execs: start sends detach and gives the id; attach replays and signals through ExecKill; list; kill", async () => {
  const kills: string[] = [];
  const starts: ExecStart[] = [];
  await withFsb({
    exec: async function* (reqs) {
      for await (const req of reqs) {
        if (req.msg.case !== "start") continue;
        starts.push(req.msg.value);
        if (req.msg.value.command[0] === "nope") {
          yield { msg: { case: "exit", value: { exitCode: 127, message: "nope: not found" } } };
        } else {
          yield { msg: { case: "execId", value: "e-8" } };
        }
      }
    },
    execAttach: async function* (req) {
      if (req.execId !== "e-8") throw new RpcError(Code.NOT_FOUND, `No exec ${req.execId}`);
      yield { msg: { case: "stdout", value: text("so far\n") } };
      yield { msg: { case: "stdout", value: text("then\n") } };
      yield { msg: { case: "exit", value: { exitCode: 143, signal: "TERM" } } };
    },
    execList: (req) => ({
      execs: req.name === "web"
        ? [{
          execId: "e-8",
          command: ["sleep", "60"],
          detached: true,
          running: true,
          startedAt: 1_700_000_000_000n,
        }]
        : [],
    }),
    execKill: (req) => {
      kills.push(`${req.namespace}/${req.name} ${req.execId} ${req.signal || "(KILL)"}`);
      return { execId: req.execId, running: false, exit: { exitCode: 137, signal: "KILL" } };
    },
  }, async (fsb) => {
    assert.equal(await fsb.execs.start("web", ["sleep", "60"], { env: { A: "1" } }), "e-8");
    assert.equal(starts[0].detach, true);
    assert.equal(starts[0].stdin, false);
    assert.deepEqual(starts[0].envs, { A: "1" });
    await assert.rejects(
      fsb.execs.start("web", ["nope"]),
      isCode(Code.NOT_FOUND, "nope: not found"),
    );

    const session = fsb.execs.attach("web", "e-8", { namespace: "team-a" });
    assert.equal(await session.id, "e-8");
    session.signal("TERM");
    assert.deepEqual(await outputOf(session), ["stdout:so far\n", "stdout:then\n"]);
    assert.deepEqual(await session.exit, { exitCode: 143, signal: "TERM", message: "" });
    await eventually("the signal went through ExecKill", () => kills.length === 1);
    assert.deepEqual(kills, ["team-a/web e-8 TERM"]);
    await assert.rejects(
      outputOf(fsb.execs.attach("web", "e-9")),
      isCode(Code.NOT_FOUND, "No exec e-9"),
    );

    const list = await fsb.execs.list("web");
    assert.deepEqual(list.map((e) => [e.execId, e.running, e.startedAt]), [[
      "e-8",
      true,
      1_700_000_000_000n,
    ]]);
    assert.deepEqual(await fsb.execs.list("other"), []);

    const killed = await fsb.execs.kill("web", "e-8");
    assert.equal(killed.exit?.exitCode, 137);
    await fsb.execs.kill("web", "e-8", { killSignal: "SIGHUP", namespace: "team-a" });
    assert.deepEqual(kills.slice(1), ["/web e-8 (KILL)", "team-a/web e-8 SIGHUP"]);
  });
});

Deno.test("wait() resolves to the sandbox's exit code and phase", async () => {
  await withFsb({
    wait: (req) => ({
      exitCode: req.name === "job" ? 2 : 0,
      phase: "Exited",
      message: "exited with code 2",
    }),
  }, async (fsb) => {
    const res = await fsb.wait("job");
    assert.deepEqual([res.exitCode, res.phase, res.message], [2, "Exited", "exited with code 2"]);
  });
});

Deno.test("exec() fails over past a closed port before its first answer, sending start again", async () => {
  const seen: string[] = [];
  const server = await startFastPathServer({ exec: shoutingCat(seen) });
  try {
    using fsb = connect({ endpoint: [`127.0.0.1:${freePort()}`, server.endpoint] });
    const res = await fsb.run("web", ["cat"], { stdin: "hi" });
    assert.equal(decoder.decode(res.stdout), "HI");
    assert.equal(res.exitCode, 3);
    assert.deepEqual(seen, ["start", "stdin:hi", "stdinClose:true"]);
  } finally {
    await server.close();
  }
});

Deno.test("exec() and run() work over a unix: endpoint too (grpc-js)", async () => {
  const seen: string[] = [];
  await withFsb({ exec: shoutingCat(seen) }, async (fsb) => {
    const res = await fsb.run("web", ["cat"], { stdin: "over unix" });
    assert.equal(decoder.decode(res.stdout), "OVER UNIX");
    assert.equal(decoder.decode(res.stderr), "bye");
    const session = fsb.exec("web", ["cat"], { stdin: (async function* () {})() });
    assert.equal(await session.id, "e-1");
    assert.deepEqual(await outputOf(session), ["stderr:bye"]);
    assert.equal((await session.exit).exitCode, 3);
  }, { unix: true });
});
