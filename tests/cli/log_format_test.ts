import assert from "node:assert/strict";
import { pino } from "pino";
import {
  formatLogEvent,
  formatLogLine,
  logDestination,
  type LogSink,
  prettyDestination,
  resolveLogFormat,
} from "../../cli/log_format.ts";
import { UsageError } from "../../cli/usage_error.ts";

/** A sink that keeps what it is given. */
function collector(): LogSink & { text: string; flushed: number } {
  return {
    text: "",
    flushed: 0,
    write(chunk: string) {
      this.text += chunk;
      return true;
    },
    flush(cb?: (err?: Error) => void) {
      this.flushed++;
      cb?.();
    },
  };
}

/** A logger as main.ts makes it (pid in base, the timing level), at a fixed time: 12:34:56.789 UTC. */
function logger(sink: LogSink) {
  return pino<"timing">(
    {
      level: "trace",
      customLevels: { timing: 25 },
      base: { pid: 4242 },
      timestamp: () => `,"time":${Date.UTC(2025, 0, 2, 12, 34, 56, 789)}`,
    },
    prettyDestination(sink, { timeZone: "utc" }),
  );
}

Deno.test("pretty: time, level, message, then the fields as key=value in logged order", () => {
  const sink = collector();
  logger(sink).info(
    { address: "127.0.0.1:9090", metrics: "", mode: "fast", store: "sqlite:/var/lib/fsb/db" },
    "controller serving",
  );
  assert.equal(
    sink.text,
    '12:34:56.789 INFO  controller serving address=127.0.0.1:9090 metrics="" mode=fast store=sqlite:/var/lib/fsb/db\n',
  );
});

Deno.test("pretty: every level has its name, padded to line up", () => {
  const sink = collector();
  const log = logger(sink);
  log.trace("t");
  log.debug("d");
  log.timing({ totalMs: 1.25 }, "create timing");
  log.info("i");
  log.warn("w");
  log.error("e");
  log.fatal("f");
  assert.deepEqual(sink.text.split("\n"), [
    "12:34:56.789 TRACE t",
    "12:34:56.789 DEBUG d",
    "12:34:56.789 TIMING create timing totalMs=1.25",
    "12:34:56.789 INFO  i",
    "12:34:56.789 WARN  w",
    "12:34:56.789 ERROR e",
    "12:34:56.789 FATAL f",
    "",
  ]);
});

Deno.test("pretty: errors as their message (causes included), with their own fields", () => {
  const sink = collector();
  const log = logger(sink);
  const err = Object.assign(new Error("store write failed", { cause: new Error("disk full") }), {
    code: 13,
  });
  log.error({ err, method: "/fsb.fastpath.v1.FastPath/CreateSandbox" }, "internal error");
  class PermissionDeniedError extends Error {
    override name = "PermissionDeniedError";
  }
  log.warn({ err: new PermissionDeniedError("Only an admin token may do that") }, "refused");
  assert.deepEqual(sink.text.split("\n"), [
    '12:34:56.789 ERROR internal error err="store write failed: disk full" err.code=13 method=/fsb.fastpath.v1.FastPath/CreateSandbox',
    '12:34:56.789 WARN  refused err="PermissionDeniedError: Only an admin token may do that"',
    "",
  ]);
});

Deno.test("pretty: values: bare when plain, quoted when not, nested objects as compact JSON", () => {
  const sink = collector();
  logger(sink).info({
    n: 3,
    big: 1.5e21,
    yes: true,
    none: null,
    gone: undefined,
    spaced: "two words",
    eq: "a=b",
    quoted: 'say "hi"',
    empty: "",
    unicode: "héllo",
    list: [1, "x", { y: null }],
    nested: { a: { b: [true] }, s: "with space" },
  }, "values");
  assert.equal(
    sink.text,
    "12:34:56.789 INFO  values n=3 big=1.5e+21 yes=true none=null " +
      'spaced="two words" eq="a=b" quoted="say \\"hi\\"" empty="" unicode=héllo ' +
      'list=[1,"x",{"y":null}] nested={"a":{"b":[true]},"s":"with space"}\n',
  );
});

Deno.test("pretty: nothing logged can break the line or reach the terminal as an escape", () => {
  const sink = collector();
  logger(sink).warn(
    {
      name: "evil\n12:00:00.000 INFO  forged",
      esc: "\x1b[31mred",
      c1: "a\u0085b",
      sep: "x\u2028y",
    },
    "bad\nname\t\x1b]0;title\x07 ok",
  );
  const lines = sink.text.split("\n");
  assert.equal(lines.length, 2);
  assert.equal(
    lines[0],
    "12:34:56.789 WARN  bad\\nname\\t\\u001b]0;title\\u0007 ok " +
      'name="evil\\n12:00:00.000 INFO  forged" esc="\\u001b[31mred" c1="a\\u0085b" sep="x\\u2028y"',
  );
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(lines[0], /[\x00-\x1f\x7f-\x9f]/);
});

Deno.test("pretty: pid and hostname are left out; bindings of child loggers are kept", () => {
  const sink = collector();
  logger(sink).child({ agent: "agent-1" }).info({ sandbox: "demo" }, "started");
  assert.equal(sink.text, "12:34:56.789 INFO  started agent=agent-1 sandbox=demo\n");
  assert.equal(
    formatLogEvent({ level: 30, time: 0, pid: 1, hostname: "h", msg: "m" }, {
      timeZone: "utc",
      omit: [],
    }),
    "00:00:00.000 INFO  m pid=1 hostname=h",
  );
});

Deno.test("pretty: colours for a terminal", () => {
  assert.equal(
    formatLogEvent({ level: 50, time: 0, msg: "failed", id: "x" }, {
      timeZone: "utc",
      color: true,
    }),
    "\x1b[2m00:00:00.000\x1b[22m \x1b[31mERROR\x1b[0m failed \x1b[2mid=\x1b[22mx",
  );
  assert.equal(
    formatLogEvent({ level: 30, time: 0, msg: "ok" }, { timeZone: "utc", color: true }),
    "\x1b[2m00:00:00.000\x1b[22m \x1b[32mINFO \x1b[0m ok",
  );
});

Deno.test("pretty: local time by default, custom level names, events without time or message", () => {
  const t = new Date(2025, 5, 7, 8, 9, 10, 11).getTime();
  assert.equal(formatLogEvent({ level: 30, time: t, msg: "m" }), "08:09:10.011 INFO  m");
  assert.equal(
    formatLogEvent({ level: 35, msg: "m" }, { levels: { 35: "notice" } }),
    "NOTICE m",
  );
  assert.equal(formatLogEvent({ level: 35, a: 1 }), "LEVEL35 a=1");
});

Deno.test("pretty: lines that are not JSON objects pass through, escaped", () => {
  assert.equal(formatLogLine("not json\n"), "not json\n");
  assert.equal(formatLogLine("[1,2]"), "[1,2]\n");
  assert.equal(formatLogLine("oops\x1b[2J"), "oops\\u001b[2J\n");
});

Deno.test("pretty destination: whole lines only, however the chunks fall; flush passes through", () => {
  const sink = collector();
  const dest = prettyDestination(sink, { timeZone: "utc" });
  const a = JSON.stringify({ level: 30, time: 0, msg: "a" });
  const b = JSON.stringify({ level: 40, time: 0, msg: "b" });
  dest.write(a.slice(0, 10));
  assert.equal(sink.text.length, 0);
  dest.write(`${a.slice(10)}\n${b}\n`);
  assert.equal(sink.text, "00:00:00.000 INFO  a\n00:00:00.000 WARN  b\n");
  dest.write(JSON.stringify({ level: 30, time: 0, msg: "c" }));
  let called = false;
  dest.flush!(() => called = true);
  assert.equal(sink.text.split("\n")[2], "00:00:00.000 INFO  c");
  assert.equal(sink.flushed, 1);
  assert.ok(called);
  // pino's own flush reaches the sink.
  const log = logger(sink);
  log.flush();
  assert.equal(sink.flushed, 2);
});

Deno.test("logDestination: json is the sink itself, pretty wraps it", () => {
  const sink = collector();
  assert.equal(logDestination("json", sink), sink);
  const pretty = logDestination("pretty", sink, { timeZone: "utc" });
  assert.notEqual(pretty, sink);
  pretty.write(`${JSON.stringify({ level: 30, time: 0, msg: "x" })}\n`);
  assert.equal(sink.text, "00:00:00.000 INFO  x\n");
});

Deno.test("resolveLogFormat: the flag, else pretty on a terminal and json elsewhere", () => {
  assert.equal(resolveLogFormat(undefined, true), "pretty");
  assert.equal(resolveLogFormat(undefined, false), "json");
  assert.equal(resolveLogFormat("json", true), "json");
  assert.equal(resolveLogFormat("pretty", false), "pretty");
  assert.throws(
    () => resolveLogFormat("text", true, "Usage: fsb up"),
    (err: unknown) =>
      err instanceof UsageError && err.usage === "Usage: fsb up" &&
      err.message === 'Flag --log-format must be one of json, pretty, got "text"',
  );
});
