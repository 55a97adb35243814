import assert from "node:assert/strict";
import { describeError } from "../../cli/_channel.ts";
import { type ExecClient, runInSandbox } from "../../cli/_exec_run.ts";
import { Code, RpcError } from "../../cli/client.ts";
import type { ClientConfig } from "../../cli/client_config.ts";
import { parseSandboxArgs } from "../../cli/parse_sandbox_args.ts";
import type { ExecPlan } from "../../cli/parse_exec_args.ts";
import type { CliIo } from "../../cli/sandbox_command.ts";
import {
  execInfo,
  type ExecOptions,
  fakeExecClient,
  FakeSession,
  FakeSignals,
  FakeTerminal,
} from "./fake_exec.ts";

// The commands run in process against fake sessions (see fake_exec.ts for
// why); e2e_exec_test.ts runs them against a real controller and agent.

const CONFIG: ClientConfig = {
  endpoint: { address: "127.0.0.1:9090", source: "--endpoint" },
} as ClientConfig;

const describe = (err: unknown) => describeError(err, () => Promise.resolve(true), CONFIG);

interface Captured {
  io: CliIo;
  stdout: () => Uint8Array;
  stderr: () => Uint8Array;
  stdoutText: () => string;
  stderrText: () => string;
}

function capture(more: Partial<CliIo> = {}): Captured {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const enc = new TextEncoder();
  const join = (parts: Uint8Array[]) => {
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return all;
  };
  return {
    io: {
      stdout: (s) => void out.push(enc.encode(s)),
      stdoutBytes: (b) => void out.push(b.slice()),
      stderr: (s) => void err.push(enc.encode(s)),
      stderrBytes: (b) => void err.push(b.slice()),
      env: {},
      home: "",
      ...more,
    },
    stdout: () => join(out),
    stderr: () => join(err),
    stdoutText: () => new TextDecoder().decode(join(out)),
    stderrText: () => new TextDecoder().decode(join(err)),
  };
}

function plan(...args: string[]): ExecPlan {
  const p = parseSandboxArgs(args, { nowSec: 0 });
  if (p.kind === "help") throw new Error("help");
  return p as ExecPlan;
}

function run(client: ExecClient, io: CliIo, ...args: string[]): Promise<number> {
  return runInSandbox(plan(...args), client, io, describe);
}

/** A client whose exec() hands out `session` and keeps what it was given. */
function execClient(session: FakeSession) {
  const given: { name: string; command: readonly string[]; opts: ExecOptions | undefined }[] = [];
  const client = fakeExecClient({
    exec: (name, command, opts) => {
      given.push({ name, command, opts });
      return session;
    },
  });
  return { client, given };
}

// --- exit codes and output ---------------------------------------------------------

Deno.test("exec exits with the command's exit code, stdout and stderr apart and byte for byte", async () => {
  const binary = new Uint8Array([0, 0xff, 0xfe, 10, 13, 0x80]);
  const session = new FakeSession().out("stdout", "hi\n").out("stderr", binary).out(
    "stdout",
    binary,
  )
    .end({ exitCode: 7 });
  const { client, given } = execClient(session);
  const c = capture();
  assert.equal(
    await run(client, c.io, "exec", "-n", "t", "-e", "A=1", "-w", "/w", "box", "sh", "-c", "x"),
    7,
  );
  assert.deepEqual(c.stdout(), new Uint8Array([...new TextEncoder().encode("hi\n"), ...binary]));
  assert.deepEqual(c.stderr(), binary);
  assert.deepEqual(given.map((g) => [g.name, g.command]), [["box", ["sh", "-c", "x"]]]);
  const opts = given[0].opts!;
  assert.equal(opts.namespace, "t");
  assert.deepEqual(opts.env, { A: "1" });
  assert.equal(opts.workingDir, "/w");
  assert.equal(opts.tty, false);
  assert.equal(opts.stdin, undefined, "no stdin without -i");
  assert.equal(opts.size, undefined, "no size without -t");
});

Deno.test("exec exits 127 and 126 with the agent's reason on stderr", async () => {
  for (
    const [code, message] of [[127, 'exec: "nope": not found'], [
      126,
      "exec: /etc: permission denied",
    ]] as const
  ) {
    const { client } = execClient(new FakeSession().end({ exitCode: code, message }));
    const c = capture();
    assert.equal(await run(client, c.io, "exec", "box", "nope"), code);
    assert.equal(c.stderrText(), `fsb: ${message}\n`);
    assert.equal(c.stdoutText(), "");
  }
});

Deno.test("exec exits with 128+N when a signal ended the command, and says nothing", async () => {
  const { client } = execClient(new FakeSession().end({ exitCode: 137, signal: "KILL" }));
  const c = capture();
  assert.equal(await run(client, c.io, "exec", "box", "sleep", "9"), 137);
  assert.equal(c.stderrText(), "");
});

Deno.test("exec exits 125 with the gRPC code name when fsb's call fails", async () => {
  const cases: [unknown, string][] = [
    [
      new RpcError(
        Code.FAILED_PRECONDITION,
        'Cannot exec in sandbox "default/box" as it is Exited',
      ),
      'fsb: FAILED_PRECONDITION: Cannot exec in sandbox "default/box" as it is Exited\n',
    ],
    [
      new RpcError(Code.NOT_FOUND, 'Sandbox "default/box" not found'),
      'fsb: NOT_FOUND: Sandbox "default/box" not found\n',
    ],
  ];
  for (const [error, stderr] of cases) {
    const { client } = execClient(new FakeSession().out("stdout", "partial").fail(error));
    const c = capture();
    assert.equal(await run(client, c.io, "exec", "box", "true"), 125);
    assert.equal(c.stderrText(), stderr);
    assert.equal(c.stdoutText(), "partial");
  }
  // exec() itself throwing (bad options) is fsb's failure too.
  const client = fakeExecClient({
    exec: () => {
      throw new RpcError(Code.INVALID_ARGUMENT, "Invalid envs: a name has no =");
    },
  });
  const c = capture();
  assert.equal(await run(client, c.io, "exec", "box", "true"), 125);
  assert.equal(c.stderrText(), "fsb: INVALID_ARGUMENT: Invalid envs: a name has no =\n");
});

Deno.test("exec -i forwards stdin, whose end closes the command's stdin", async () => {
  const session = new FakeSession();
  const client = fakeExecClient({
    exec: (_name, _command, opts) => {
      // The command is cat: what comes in goes out; stdin's end ends it.
      (async () => {
        for await (const chunk of opts!.stdin!) session.out("stdout", chunk.slice());
        session.end();
      })();
      return session;
    },
  });
  const input = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
  const stdin = (async function* () {
    for (let at = 0; at < input.length; at += 65536) yield input.subarray(at, at + 65536);
  })();
  const c = capture({ stdin });
  assert.equal(await run(client, c.io, "exec", "-i", "box", "cat"), 0);
  assert.deepEqual(c.stdout(), input);
});

Deno.test("exec -d prints the exec id and exits 0; a failed start exits 125", async () => {
  const seen: unknown[] = [];
  const client = fakeExecClient({
    start: (name, command, opts) => {
      seen.push([name, command, opts?.env, opts?.workingDir]);
      return Promise.resolve("e-42");
    },
  });
  const c = capture();
  assert.equal(await run(client, c.io, "exec", "-d", "-e", "K=V", "box", "sleep", "60"), 0);
  assert.equal(c.stdoutText(), "e-42\n");
  assert.deepEqual(seen, [["box", ["sleep", "60"], { K: "V" }, ""]]);

  const failing = fakeExecClient({
    start: () => Promise.reject(new RpcError(Code.FAILED_PRECONDITION, "not running")),
  });
  const f = capture();
  assert.equal(await run(failing, f.io, "exec", "-d", "box", "x"), 125);
  assert.equal(f.stderrText(), "fsb: FAILED_PRECONDITION: not running\n");
});

// --- Ctrl-C and SIGTERM --------------------------------------------------------------

Deno.test("exec forwards the first Ctrl-C as SIGINT to the command and stops at the second", async () => {
  const session = new FakeSession();
  const { client } = execClient(session);
  const signals = new FakeSignals();
  const c = capture({ onSignal: signals.onSignal });
  const done = run(client, c.io, "exec", "box", "sleep", "60");
  await session.reading;
  signals.send("SIGINT");
  assert.deepEqual(session.signals, ["INT"]);
  assert.equal(session.cancelled, false);
  signals.send("SIGINT");
  assert.equal(await done, 130);
  assert.equal(session.cancelled, true);
  assert.equal(signals.listeners(), 0, "no listener left behind");
  assert.equal(c.stderrText(), "");
});

Deno.test("exec exits with the command's status when the forwarded SIGINT ends it", async () => {
  const session = new FakeSession();
  session.onSignal = (sig) => sig === "INT" && session.end({ exitCode: 130, signal: "INT" });
  const { client } = execClient(session);
  const signals = new FakeSignals();
  const done = run(client, capture({ onSignal: signals.onSignal }).io, "exec", "box", "sleep", "9");
  await session.reading;
  signals.send("SIGINT");
  assert.equal(await done, 130);
  assert.equal(session.cancelled, false);
});

Deno.test("exec stops at SIGTERM with 143", async () => {
  const session = new FakeSession();
  const { client } = execClient(session);
  const signals = new FakeSignals();
  const done = run(client, capture({ onSignal: signals.onSignal }).io, "exec", "box", "sleep", "9");
  await session.reading;
  signals.send("SIGTERM");
  assert.equal(await done, 143);
  assert.ok(session.cancelled);
});

// --- the terminal ----------------------------------------------------------------------

interface TerminalCase {
  name: string;
  /** Drives the session once the command is running; returns the exit status expected. */
  drive: (session: FakeSession, signals: FakeSignals) => void;
  status: number;
  stdoutBytes?: CliIo["stdoutBytes"];
}

const TERMINAL_CASES: TerminalCase[] = [
  { name: "the command ends", drive: (s) => s.out("stdout", "x").end({ exitCode: 3 }), status: 3 },
  {
    name: "the call fails",
    drive: (s) => s.fail(new RpcError(Code.UNAVAILABLE, "agent gone")),
    status: 125,
  },
  {
    name: "a non-RPC error comes out of the session",
    drive: (s) => s.fail(new TypeError("boom")),
    status: 125,
  },
  { name: "SIGTERM", drive: (_, sig) => sig.send("SIGTERM"), status: 143 },
  {
    name: "two SIGINTs",
    drive: (_, sig) => {
      sig.send("SIGINT");
      sig.send("SIGINT");
    },
    status: 130,
  },
  {
    name: "writing the output throws",
    drive: (s) => s.out("stdout", "x"),
    status: 125,
    stdoutBytes: () => {
      throw new Error("disk full");
    },
  },
  {
    name: "the reader of stdout went away",
    drive: (s) => s.out("stdout", "x"),
    status: 141,
    stdoutBytes: () => Promise.reject(new Deno.errors.BrokenPipe("broken pipe")),
  },
];

for (const tc of TERMINAL_CASES) {
  Deno.test(`exec -it puts the terminal back when ${tc.name}`, async () => {
    const session = new FakeSession();
    const { client, given } = execClient(session);
    const terminal = new FakeTerminal(true, { cols: 120, rows: 40 });
    const signals = new FakeSignals();
    const c = capture({
      terminal,
      onSignal: signals.onSignal,
      stdin: (async function* () {})(),
      ...(tc.stdoutBytes === undefined ? {} : { stdoutBytes: tc.stdoutBytes }),
    });
    const done = run(client, c.io, "exec", "-it", "box", "sh");
    await session.reading;
    assert.deepEqual(terminal.calls, ["raw"], "raw while the command runs");
    tc.drive(session, signals);
    assert.equal(await done, tc.status);
    assert.deepEqual(terminal.calls, ["raw", "cooked"]);
    assert.equal(signals.listeners(), 0);
    assert.equal(given[0].opts?.tty, true);
    assert.deepEqual(given[0].opts?.size, { cols: 120, rows: 40 });
    if (tc.status === 125) assert.match(c.stderrText(), /^fsb: /);
  });
}

Deno.test("exec -it restores the terminal before it prints why it failed", async () => {
  const session = new FakeSession();
  const { client } = execClient(session);
  const terminal = new FakeTerminal(true);
  const order: string[] = [];
  const done = runInSandbox(
    plan("exec", "-it", "box", "sh"),
    client,
    {
      ...capture().io,
      terminal: {
        stdinIsTerminal: true,
        setRaw: (raw) => {
          terminal.setRaw(raw);
          order.push(raw ? "raw" : "cooked");
        },
        size: () => terminal.size(),
      },
      stderr: (s) => void order.push(s),
      stdin: (async function* () {})(),
    },
    describe,
  );
  await session.reading;
  session.fail(new RpcError(Code.UNAVAILABLE, "agent gone"));
  assert.equal(await done, 125);
  assert.deepEqual(order, ["raw", "cooked", "fsb: UNAVAILABLE: agent gone\n"]);
});

Deno.test("exec -it refuses to start when stdin is not a terminal, touching nothing", async () => {
  const { client, given } = execClient(new FakeSession());
  const terminal = new FakeTerminal(false);
  const c = capture({ terminal });
  assert.equal(await run(client, c.io, "exec", "-it", "box", "sh"), 125);
  assert.equal(
    c.stderrText(),
    "fsb: Cannot run exec -it: stdin is not a terminal (drop -t, or run fsb in one)\n",
  );
  assert.deepEqual(terminal.calls, []);
  assert.equal(given.length, 0);
});

Deno.test("exec -t without -i leaves the terminal alone but sends its size and resizes", async () => {
  const session = new FakeSession();
  const { client, given } = execClient(session);
  const terminal = new FakeTerminal(false, { cols: 100, rows: 30 });
  const signals = new FakeSignals();
  const done = run(
    client,
    capture({ terminal, onSignal: signals.onSignal }).io,
    "exec",
    "-t",
    "box",
    "top",
  );
  await session.reading;
  terminal.current = { cols: 132, rows: 50 };
  signals.send("SIGWINCH");
  session.end();
  assert.equal(await done, 0);
  assert.deepEqual(terminal.calls, []);
  assert.equal(given[0].opts?.tty, true);
  assert.equal(given[0].opts?.stdin, undefined);
  assert.deepEqual(given[0].opts?.size, { cols: 100, rows: 30 });
  assert.deepEqual(session.resizes, [[132, 50]]);
});

Deno.test("exec without -t ignores terminal size changes", async () => {
  const session = new FakeSession();
  const { client } = execClient(session);
  const signals = new FakeSignals();
  const done = run(
    client,
    capture({ terminal: new FakeTerminal(true), onSignal: signals.onSignal }).io,
    "exec",
    "box",
    "true",
  );
  await session.reading;
  signals.send("SIGWINCH");
  session.end();
  assert.equal(await done, 0);
  assert.deepEqual(session.resizes, []);
});

// --- attach, ps, kill, wait --------------------------------------------------------------

Deno.test("attach writes the exec's output and exits with its exit code", async () => {
  const session = new FakeSession().out("stdout", "so far\n").out("stderr", "err\n").end({
    exitCode: 4,
  });
  const seen: unknown[] = [];
  const client = fakeExecClient({
    attach: (name, id, opts) => {
      seen.push([name, id, opts?.namespace]);
      return session;
    },
  });
  const c = capture();
  assert.equal(await run(client, c.io, "attach", "box", "e-1", "-n", "t"), 4);
  assert.equal(c.stdoutText(), "so far\n");
  assert.equal(c.stderrText(), "err\n");
  assert.deepEqual(seen, [["box", "e-1", "t"]]);
});

Deno.test("attach stops at the first Ctrl-C without signalling the exec", async () => {
  const session = new FakeSession();
  const client = fakeExecClient({ attach: () => session });
  const signals = new FakeSignals();
  const done = run(client, capture({ onSignal: signals.onSignal }).io, "attach", "box", "e-1");
  await session.reading;
  signals.send("SIGINT");
  assert.equal(await done, 130);
  assert.deepEqual(session.signals, []);
  assert.ok(session.cancelled);
});

Deno.test("attach exits 125 when the exec is unknown", async () => {
  const session = new FakeSession().fail(new RpcError(Code.NOT_FOUND, 'Exec "e-9" not found'));
  const c = capture();
  assert.equal(
    await run(fakeExecClient({ attach: () => session }), c.io, "attach", "box", "e-9"),
    125,
  );
  assert.equal(c.stderrText(), 'fsb: NOT_FOUND: Exec "e-9" not found\n');
});

const NOW_MS = 1_700_000_100_000;
const EXECS = [
  execInfo({
    execId: "e-1",
    command: ["sleep", "60"],
    detached: true,
    running: true,
    startedAt: BigInt(NOW_MS - 90_000),
  }),
  execInfo({
    execId: "e-2",
    command: ["sh", "-c", "echo 'hi there'; exit 3"],
    running: false,
    exit: { $typeName: "fsb.fastpath.v1.ExecExit", exitCode: 3, signal: "", message: "" },
    startedAt: BigInt(NOW_MS - 5_000),
    endedAt: BigInt(NOW_MS - 4_000),
  }),
  execInfo({
    execId: "e-3",
    command: ["sh", "-c", "while true; do echo a long line; done"],
    running: false,
    exit: { $typeName: "fsb.fastpath.v1.ExecExit", exitCode: 137, signal: "KILL", message: "" },
    startedAt: BigInt(NOW_MS - 700_000),
    endedAt: BigInt(NOW_MS),
  }),
];

Deno.test("ps prints a sandbox's execs as a table", async () => {
  const c = capture({ now: () => NOW_MS });
  assert.equal(
    await run(fakeExecClient({ list: () => Promise.resolve(EXECS) }), c.io, "ps", "box"),
    0,
  );
  assert.equal(
    c.stdoutText(),
    [
      "EXEC ID   COMMAND                                    STATE     EXIT CODE    STARTED",
      "e-1       sleep 60                                   Running   -            1m30s ago",
      "e-2       sh -c 'echo '\\''hi there'\\''; exit 3'      Exited    3            5s ago",
      "e-3       sh -c 'while true; do echo a long lin...   Exited    137 (KILL)   11m ago",
      "",
    ].join("\n"),
  );
});

Deno.test("ps -o json prints the proto3 JSON of ExecInfo; no execs says so on stderr", async () => {
  const c = capture();
  assert.equal(
    await run(
      fakeExecClient({ list: () => Promise.resolve(EXECS.slice(0, 2)) }),
      c.io,
      "ps",
      "box",
      "-o",
      "json",
    ),
    0,
  );
  assert.deepEqual(JSON.parse(c.stdoutText()), [
    {
      execId: "e-1",
      command: ["sleep", "60"],
      tty: false,
      detached: true,
      running: true,
      startedAt: String(NOW_MS - 90_000),
      endedAt: "0",
    },
    {
      execId: "e-2",
      command: ["sh", "-c", "echo 'hi there'; exit 3"],
      tty: false,
      detached: false,
      running: false,
      exit: { exitCode: 3, signal: "", message: "" },
      startedAt: String(NOW_MS - 5_000),
      endedAt: String(NOW_MS - 4_000),
    },
  ]);
  const empty = capture();
  assert.equal(
    await run(fakeExecClient({ list: () => Promise.resolve([]) }), empty.io, "ps", "box"),
    0,
  );
  assert.equal(empty.stdoutText(), "");
  assert.equal(empty.stderrText(), 'No execs in sandbox "default/box"\n');
  const failed = capture();
  const client = fakeExecClient({
    list: () => Promise.reject(new RpcError(Code.NOT_FOUND, "gone")),
  });
  assert.equal(await run(client, failed.io, "ps", "box"), 1);
  assert.equal(failed.stderrText(), "fsb: NOT_FOUND: gone\n");
});

Deno.test("kill sends the signal asked for (the server's default otherwise) and prints the id", async () => {
  const seen: unknown[] = [];
  const client = fakeExecClient({
    kill: (name, id, opts) => {
      seen.push([name, id, opts?.killSignal]);
      return Promise.resolve(EXECS[0]);
    },
  });
  const c = capture();
  assert.equal(await run(client, c.io, "kill", "box", "e-1", "-s", "TERM"), 0);
  assert.equal(await run(client, c.io, "kill", "box", "e-1"), 0);
  assert.deepEqual(seen, [["box", "e-1", "TERM"], ["box", "e-1", undefined]]);
  assert.equal(c.stdoutText(), "e-1\ne-1\n");
  const failing = fakeExecClient({
    kill: () =>
      Promise.reject(new RpcError(Code.INVALID_ARGUMENT, 'Invalid signal: unknown signal "BOGUS"')),
  });
  const f = capture();
  assert.equal(await run(failing, f.io, "kill", "box", "e-1", "-s", "BOGUS"), 1);
  assert.equal(f.stderrText(), 'fsb: INVALID_ARGUMENT: Invalid signal: unknown signal "BOGUS"\n');
});

Deno.test("wait prints the main process's exit code and exits with it; 125 when fsb fails", async () => {
  const response = (exitCode: number) =>
    Promise.resolve(
      {
        $typeName: "fsb.fastpath.v1.WaitResponse",
        exitCode,
        phase: "Exited",
        message: "",
      } as const,
    );
  const c = capture();
  assert.equal(await run(fakeExecClient({ wait: () => response(3) }), c.io, "wait", "box"), 3);
  assert.equal(c.stdoutText(), "3\n");
  const f = capture();
  const failing = fakeExecClient({
    wait: () => Promise.reject(new RpcError(Code.NOT_FOUND, "gone")),
  });
  assert.equal(await run(failing, f.io, "wait", "box"), 125);
  assert.equal(f.stderrText(), "fsb: NOT_FOUND: gone\n");
});

Deno.test("wait stops at Ctrl-C with 130", async () => {
  const signals = new FakeSignals();
  let called!: () => void;
  const waiting = new Promise<void>((resolve) => called = resolve);
  const client = fakeExecClient({
    wait: (_name, opts) =>
      new Promise((_, reject) => {
        opts!.signal!.addEventListener("abort", () =>
          reject(new RpcError(Code.CANCELLED, "cancelled")));
        called();
      }),
  });
  const c = capture({ onSignal: signals.onSignal });
  const done = run(client, c.io, "wait", "box");
  await waiting;
  signals.send("SIGINT");
  assert.equal(await done, 130);
  assert.equal(c.stderrText(), "");
  assert.equal(signals.listeners(), 0);
});
