// The exec codecs of proto/fastpath_lite_exec.ts, case by case, against
// protobuf-es: the seeded cross-checks of fastpath_lite_test.ts cover every
// message at random; these pin the cases random messages rarely hit (oneof
// members set to their zero value, a oneof message sent twice, big output).
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  ExecInfoSchema,
  ExecListResponseSchema,
  ExecRequestSchema,
  ExecResponseSchema,
  WaitResponseSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import {
  decodeExecInfo,
  decodeExecListResponse,
  decodeExecResponse,
  decodeWaitResponse,
  encodeExecRequest,
  type ExecRequestInit,
} from "../../proto/fastpath_lite.ts";

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function reference(init: ExecRequestInit): string {
  return hex(toBinary(ExecRequestSchema, create(ExecRequestSchema, init)));
}

Deno.test("encodeExecRequest() writes the member that is set, even at its zero value, and nothing for none", () => {
  const cases: ExecRequestInit[] = [
    {},
    { msg: undefined },
    { msg: { case: undefined } },
    { msg: { case: "start", value: {} } },
    { msg: { case: "stdin", value: new Uint8Array(0) } },
    { msg: { case: "stdinClose", value: false } },
    { msg: { case: "stdinClose", value: true } },
    { msg: { case: "resize", value: {} } },
    { msg: { case: "resize", value: { cols: 80, rows: 24 } } },
    { msg: { case: "signal", value: "" } },
    { msg: { case: "signal", value: "SIGTERM" } },
  ];
  for (const init of cases) {
    assert.equal(hex(encodeExecRequest(init)), reference(init), Deno.inspect(init));
  }
  assert.equal(hex(encodeExecRequest({})), "");
  assert.equal(hex(encodeExecRequest({ msg: { case: "stdinClose", value: false } })), "1800");
  assert.equal(
    hex(encodeExecRequest({ msg: { case: "stdin", value: new Uint8Array(0) } })),
    "1200",
  );
  assert.equal(hex(encodeExecRequest({ msg: { case: "start", value: {} } })), "0a00");
});

Deno.test("encodeExecRequest() writes a start with argv, env, working dir, tty and size as protobuf-es does", () => {
  const init: ExecRequestInit = {
    msg: {
      case: "start",
      value: {
        name: "web",
        namespace: "team-ü",
        command: ["sh", "-c", "echo 'héllo 😀'", ""],
        envs: { LANG: "C.UTF-8", "": "empty key", "__proto__": "ordinary", "ÉTÉ": "" },
        workingDir: "/srv/app",
        tty: true,
        stdin: true,
        detach: false,
        size: { cols: 0, rows: 65535 },
      },
    },
  };
  assert.equal(hex(encodeExecRequest(init)), reference(init));
  assert.deepEqual(
    fromBinary(ExecRequestSchema, encodeExecRequest(init)),
    create(ExecRequestSchema, init),
  );
});

Deno.test("encodeExecRequest() sends stdin of 1 MiB whole, and throws on a size outside uint32", () => {
  const data = new Uint8Array(1 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  const bytes = encodeExecRequest({ msg: { case: "stdin", value: data } });
  assert.equal(hex(bytes), reference({ msg: { case: "stdin", value: data } }));
  const back = fromBinary(ExecRequestSchema, bytes).msg;
  assert.equal(back.case, "stdin");
  assert.deepEqual(back.value, data);
  assert.throws(
    () => encodeExecRequest({ msg: { case: "resize", value: { cols: -1, rows: 24 } } }),
    /invalid uint32: -1/,
  );
});

Deno.test("decodeExecResponse() reads every member, an empty oneof, and zero values that are set", () => {
  const cases = [
    {},
    { msg: { case: "execId", value: "" } },
    { msg: { case: "execId", value: "e-0123456789ab" } },
    { msg: { case: "stdout", value: new Uint8Array(0) } },
    { msg: { case: "stdout", value: new TextEncoder().encode("héllo\n") } },
    { msg: { case: "stderr", value: new Uint8Array([0, 255, 10]) } },
    { msg: { case: "exit", value: {} } },
    { msg: { case: "exit", value: { exitCode: 127, message: "sh: nope: not found" } } },
    { msg: { case: "exit", value: { exitCode: 137, signal: "KILL" } } },
    { msg: { case: "exit", value: { exitCode: -1 } } },
  ] as const;
  for (const init of cases) {
    const msg = create(ExecResponseSchema, init);
    assert.deepEqual(
      decodeExecResponse(toBinary(ExecResponseSchema, msg)),
      msg,
      Deno.inspect(init),
    );
  }
  assert.deepEqual(decodeExecResponse(new Uint8Array(0)).msg, { case: undefined });
  assert.deepEqual(decodeExecResponse(new Uint8Array([0x0a, 0x00])).msg, {
    case: "execId",
    value: "",
  });
});

Deno.test("decodeExecResponse() gives output as a view of 1 MiB, not a copy", () => {
  const data = new Uint8Array(1 << 20).fill(0x61);
  const bytes = toBinary(
    ExecResponseSchema,
    create(ExecResponseSchema, { msg: { case: "stdout", value: data } }),
  );
  const res = decodeExecResponse(bytes);
  assert.equal(res.msg.case, "stdout");
  assert.deepEqual(res.msg.value, data);
  assert.equal((res.msg.value as Uint8Array).buffer, bytes.buffer);
});

Deno.test("decodeExecResponse() merges an exit sent twice, but not across another member", () => {
  const w = new BinaryWriter();
  w.tag(4, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int32(1).join();
  w.tag(4, WireType.LengthDelimited).fork().tag(2, WireType.LengthDelimited).string("TERM").join();
  const merged = w.finish();
  assert.deepEqual(decodeExecResponse(merged), fromBinary(ExecResponseSchema, merged));
  assert.deepEqual(decodeExecResponse(merged).msg.value, {
    $typeName: "fsb.fastpath.v1.ExecExit",
    exitCode: 1,
    signal: "TERM",
    message: "",
  });

  const v = new BinaryWriter();
  v.tag(4, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int32(1).join();
  v.tag(1, WireType.LengthDelimited).string("e1");
  v.tag(4, WireType.LengthDelimited).fork().tag(2, WireType.LengthDelimited).string("TERM").join();
  const reset = v.finish();
  assert.deepEqual(decodeExecResponse(reset), fromBinary(ExecResponseSchema, reset));
  assert.equal((decodeExecResponse(reset).msg.value as { exitCode: number }).exitCode, 0);
});

Deno.test("decodeExecInfo() tells an absent exit from an empty one, and reads int64 times as bigint", () => {
  const absent = decodeExecInfo(new Uint8Array(0));
  assert.ok(!("exit" in absent));
  assert.deepEqual(absent, create(ExecInfoSchema));
  const info = create(ExecInfoSchema, {
    execId: "e1",
    command: ["sleep", "1"],
    running: false,
    detached: true,
    exit: {},
    startedAt: 2n ** 63n - 1n,
    endedAt: -(2n ** 63n),
  });
  const decoded = decodeExecInfo(toBinary(ExecInfoSchema, info));
  assert.deepEqual(decoded, info);
  assert.equal(decoded.startedAt, 9223372036854775807n);
  const list = create(ExecListResponseSchema, { execs: [info, create(ExecInfoSchema)] });
  assert.deepEqual(decodeExecListResponse(toBinary(ExecListResponseSchema, list)), list);
});

Deno.test("decodeWaitResponse() reads a negative exit code and a phase", () => {
  for (const init of [{}, { exitCode: -2, phase: "Failed", message: "OOM-killed" }]) {
    const msg = create(WaitResponseSchema, init);
    assert.deepEqual(decodeWaitResponse(toBinary(WaitResponseSchema, msg)), msg);
  }
});
