// The SDK's `logs` and `fsb sandbox logs` against a real gRPC server (grpc-js
// over loopback) whose StreamLogs handler the test writes: it plays the
// controller, so that a stream can end with or without the end marker, or
// fail after its first messages, exactly when the test says. The client reads
// over fetch, which never sees the status that follows messages: the marker is
// all it has to tell a normal end from a failure.
import assert from "node:assert/strict";
import { Code, connect, type LogsOptions, RpcError } from "../../cli/client.ts";
import { type CliIo, sandboxCommand } from "../../cli/mod.ts";
import { type FastPathImpl, startFastPathServer } from "./fastpath_server.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CUT_SHORT = "The log stream ended before its end (the server or its agent failed)";

type Logs = FastPathImpl["streamLogs"];

/** Two lines, then the marker on a message of its own, as the controller sends it. */
const endsWell: Logs = async function* () {
  yield { data: encoder.encode("one\n") };
  yield { data: encoder.encode("two\n") };
  yield { data: new Uint8Array(0), end: true };
};

/** Two lines, then a failure: over fetch, the stream just ends. */
const failsPartway: Logs = async function* () {
  yield { data: encoder.encode("one\n") };
  yield { data: encoder.encode("two\n") };
  throw new RpcError(Code.UNAVAILABLE, "the agent went away");
};

async function withServer(streamLogs: Logs, fn: (endpoint: string) => Promise<void>) {
  const server = await startFastPathServer({ streamLogs });
  try {
    await fn(server.endpoint);
  } finally {
    await server.close();
  }
}

/** What `logs` yields, as text, and how it ended. */
async function readLogs(
  endpoint: string,
  opts: LogsOptions = {},
): Promise<{ chunks: string[]; error?: unknown }> {
  using fsb = connect({ endpoint });
  const chunks: string[] = [];
  try {
    for await (const chunk of fsb.logs("x", opts)) chunks.push(decoder.decode(chunk));
    return { chunks };
  } catch (error) {
    return { chunks, error };
  }
}

function cutShort(err: unknown): void {
  assert.ok(err instanceof RpcError, `expected an RpcError, got ${err}`);
  assert.equal(err.codeName, "UNKNOWN");
  assert.equal(err.message, CUT_SHORT);
}

function capture(): { io: CliIo; stdout: () => string; stderr: () => string } {
  let out = "";
  let err = "";
  return {
    io: {
      stdout: (s) => out += s,
      stdoutBytes: (b) => {
        out += decoder.decode(b);
      },
      stderr: (s) => err += s,
      env: {},
      home: "/nonexistent-home",
      signal: new AbortController().signal,
    },
    stdout: () => out,
    stderr: () => err,
  };
}

Deno.test("logs() yields every chunk of a stream that ends with the marker, and not the marker", () =>
  withServer(endsWell, async (endpoint) => {
    for (const follow of [false, true]) {
      const got = await readLogs(endpoint, { follow });
      assert.equal(got.error, undefined);
      assert.deepEqual(got.chunks, ["one\n", "two\n"], `follow: ${follow}`);
    }
  }));

Deno.test("logs() rejects with UNKNOWN after the chunks that came when a stream fails partway", () =>
  withServer(failsPartway, async (endpoint) => {
    for (const follow of [false, true]) {
      const got = await readLogs(endpoint, { follow });
      assert.deepEqual(got.chunks, ["one\n", "two\n"], `follow: ${follow}`);
      cutShort(got.error);
    }
  }));

Deno.test("logs() takes a stream that ends without the marker, status OK or not, as cut short", () =>
  // A server from before the marker ends this way too: its clients' logs all fail.
  withServer(async function* () {
    yield { data: encoder.encode("one\n") };
  }, async (endpoint) => {
    const got = await readLogs(endpoint);
    assert.deepEqual(got.chunks, ["one\n"]);
    cutShort(got.error);
  }));

Deno.test("logs() reads a marker that carries data, and ignores anything after it", () =>
  withServer(async function* () {
    yield { data: encoder.encode("one\n"), end: true };
    yield { data: encoder.encode("late\n") };
  }, async (endpoint) => {
    const got = await readLogs(endpoint);
    assert.equal(got.error, undefined);
    assert.deepEqual(got.chunks, ["one\n"]);
  }));

Deno.test("logs() of an empty log is a marker alone: no chunks, no error", () =>
  withServer(async function* () {
    yield { data: new Uint8Array(0), end: true };
  }, async (endpoint) => {
    assert.deepEqual(await readLogs(endpoint), { chunks: [] });
  }));

Deno.test("logs() still reports a failure before any message with its own status", () =>
  withServer(
    // deno-lint-ignore require-yield
    async function* () {
      throw new RpcError(Code.NOT_FOUND, 'Cannot find sandbox "default/x"');
    },
    async (endpoint) => {
      const { chunks, error } = await readLogs(endpoint);
      assert.deepEqual(chunks, []);
      assert.ok(error instanceof RpcError);
      assert.equal(error.codeName, "NOT_FOUND");
      assert.equal(error.message, 'Cannot find sandbox "default/x"');
    },
  ));

Deno.test("logs() with follow ends quietly when its signal aborts, though no marker came", () =>
  withServer(async function* (_req, ctx) {
    yield { data: encoder.encode("one\n") };
    // Held open, as a followed sandbox that keeps running, until the client goes.
    await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
  }, async (endpoint) => {
    using fsb = connect({ endpoint });
    const stop = new AbortController();
    const chunks: string[] = [];
    for await (const chunk of fsb.logs("x", { follow: true, signal: stop.signal })) {
      chunks.push(decoder.decode(chunk));
      stop.abort();
    }
    assert.deepEqual(chunks, ["one\n"]);
  }));

for (const args of [["logs", "x"], ["logs", "x", "-f"]]) {
  const cmd = `fsb sandbox ${args.join(" ")}`;

  Deno.test(`${cmd} exits 0 and prints the log alone when the stream ends with the marker`, () =>
    withServer(endsWell, async (endpoint) => {
      const c = capture();
      assert.equal(await sandboxCommand([...args, "--endpoint", endpoint], c.io), 0);
      assert.equal(c.stdout(), "one\ntwo\n");
      assert.equal(c.stderr(), "");
    }));

  Deno.test(`${cmd} exits 1 after printing what came when the stream fails partway`, () =>
    withServer(failsPartway, async (endpoint) => {
      const c = capture();
      assert.equal(await sandboxCommand([...args, "--endpoint", endpoint], c.io), 1);
      assert.equal(c.stdout(), "one\ntwo\n");
      assert.equal(c.stderr(), `fsb: UNKNOWN: ${CUT_SHORT}\n`);
    }));
}
