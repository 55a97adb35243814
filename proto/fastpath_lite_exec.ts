/**
 * The hand-written codecs of FastPath's exec calls (`Exec`, `ExecAttach`,
 * `ExecList`, `ExecKill`) and of `Wait`, for `fastpath_lite.ts`, which puts
 * them into `FastPathLite` and re-exports them. Same rules and the same
 * cross-check as the rest of it (`tests/proto/fastpath_lite_test.ts`).
 *
 * @module
 */
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  ExecAttachRequestSchema,
  ExecExit,
  ExecInfo,
  ExecKillRequestSchema,
  ExecListRequestSchema,
  ExecListResponse,
  ExecRequestSchema,
  ExecResponse,
  ExecStartSchema,
  TerminalSizeSchema,
  WaitRequestSchema,
  WaitResponse,
} from "./gen/fsb/fastpath/v1/fastpath_pb.ts";
import type { LiteMethod } from "./lite_service.ts";
import { putBool, putMap, putString, putStrings, putUint32, readInt64 } from "./_lite_wire.ts";

/** An Exec request (one message of the stream), every field optional. */
export type ExecRequestInit = MessageInitShape<typeof ExecRequestSchema>;
/** The first message of an Exec call, every field optional. */
export type ExecStartInit = MessageInitShape<typeof ExecStartSchema>;
/** A terminal size inside an Exec request. */
export type TerminalSizeInit = MessageInitShape<typeof TerminalSizeSchema>;
/** An ExecAttach request, every field optional. */
export type ExecAttachRequestInit = MessageInitShape<typeof ExecAttachRequestSchema>;
/** An ExecList request, every field optional. */
export type ExecListRequestInit = MessageInitShape<typeof ExecListRequestSchema>;
/** An ExecKill request, every field optional (`signal` empty: KILL). */
export type ExecKillRequestInit = MessageInitShape<typeof ExecKillRequestSchema>;
/** A Wait request, every field optional. */
export type WaitRequestInit = MessageInitShape<typeof WaitRequestSchema>;

/** The exec messages of fastpath.proto, as `fastPathLiteSchema` lists them. */
export const execLiteSchema = {
  "fsb.fastpath.v1.ExecStart": [
    "string name = 1",
    "string namespace = 2",
    "repeated string command = 3",
    "map<string, string> envs = 4",
    "string working_dir = 5",
    "bool tty = 6",
    "bool stdin = 7",
    "bool detach = 8",
    "fsb.fastpath.v1.TerminalSize size = 9",
  ],
  "fsb.fastpath.v1.TerminalSize": ["uint32 cols = 1", "uint32 rows = 2"],
  "fsb.fastpath.v1.ExecRequest": [
    "oneof msg: fsb.fastpath.v1.ExecStart start = 1",
    "oneof msg: bytes stdin = 2",
    "oneof msg: bool stdin_close = 3",
    "oneof msg: fsb.fastpath.v1.TerminalSize resize = 4",
    "oneof msg: string signal = 5",
  ],
  "fsb.fastpath.v1.ExecExit": ["int32 exit_code = 1", "string signal = 2", "string message = 3"],
  "fsb.fastpath.v1.ExecResponse": [
    "oneof msg: string exec_id = 1",
    "oneof msg: bytes stdout = 2",
    "oneof msg: bytes stderr = 3",
    "oneof msg: fsb.fastpath.v1.ExecExit exit = 4",
  ],
  "fsb.fastpath.v1.ExecAttachRequest": [
    "string name = 1",
    "string namespace = 2",
    "string exec_id = 3",
  ],
  "fsb.fastpath.v1.ExecInfo": [
    "string exec_id = 1",
    "repeated string command = 2",
    "bool tty = 3",
    "bool detached = 4",
    "bool running = 5",
    "fsb.fastpath.v1.ExecExit exit = 6",
    "int64 started_at = 7",
    "int64 ended_at = 8",
  ],
  "fsb.fastpath.v1.ExecListRequest": ["string name = 1", "string namespace = 2"],
  "fsb.fastpath.v1.ExecListResponse": ["repeated fsb.fastpath.v1.ExecInfo execs = 1"],
  "fsb.fastpath.v1.ExecKillRequest": [
    "string name = 1",
    "string namespace = 2",
    "string exec_id = 3",
    "string signal = 4",
  ],
  "fsb.fastpath.v1.WaitRequest": ["string name = 1", "string namespace = 2"],
  "fsb.fastpath.v1.WaitResponse": [
    "int32 exit_code = 1",
    "string phase = 2",
    "string message = 3",
  ],
} as const;

// --- writing (the rules are in _lite_wire.ts) -------------------------------

function putTerminalSize(w: BinaryWriter, no: number, size: TerminalSizeInit): void {
  w.tag(no, WireType.LengthDelimited).fork();
  putUint32(w, 1, size.cols);
  putUint32(w, 2, size.rows);
  w.join();
}

function putExecStart(w: BinaryWriter, no: number, start: ExecStartInit): void {
  w.tag(no, WireType.LengthDelimited).fork();
  putString(w, 1, start.name);
  putString(w, 2, start.namespace);
  putStrings(w, 3, start.command);
  putMap(w, 4, start.envs);
  putString(w, 5, start.workingDir);
  putBool(w, 6, start.tty);
  putBool(w, 7, start.stdin);
  putBool(w, 8, start.detach);
  if (start.size !== undefined) putTerminalSize(w, 9, start.size);
  w.join();
}

/**
 * Serializes a `fsb.fastpath.v1.ExecRequest`: the oneof's member that is set,
 * whatever its value (`stdin` of no bytes, `stdinClose: false`), or nothing.
 */
export function encodeExecRequest(req: ExecRequestInit): Uint8Array {
  const w = new BinaryWriter();
  const msg = req.msg;
  switch (msg?.case) {
    case "start":
      putExecStart(w, 1, msg.value);
      break;
    case "stdin":
      w.tag(2, WireType.LengthDelimited).bytes(msg.value);
      break;
    case "stdinClose":
      w.tag(3, WireType.Varint).bool(msg.value);
      break;
    case "resize":
      putTerminalSize(w, 4, msg.value);
      break;
    case "signal":
      w.tag(5, WireType.LengthDelimited).string(msg.value);
      break;
  }
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.ExecAttachRequest`. */
export function encodeExecAttachRequest(req: ExecAttachRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  putString(w, 3, req.execId);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.ExecListRequest`. */
export function encodeExecListRequest(req: ExecListRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.ExecKillRequest`. */
export function encodeExecKillRequest(req: ExecKillRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  putString(w, 3, req.execId);
  putString(w, 4, req.signal);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.WaitRequest`. */
export function encodeWaitRequest(req: WaitRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  return w.finish();
}

// --- reading (the rules are in _lite_wire.ts) -------------------------------

function readExecExit(r: BinaryReader, end: number, into?: ExecExit): ExecExit {
  const exit: ExecExit = into ?? {
    $typeName: "fsb.fastpath.v1.ExecExit",
    exitCode: 0,
    signal: "",
    message: "",
  };
  while (r.pos < end) {
    const [no, wireType] = r.tag();
    switch (no) {
      case 1:
        exit.exitCode = r.int32();
        break;
      case 2:
        exit.signal = r.string(true);
        break;
      case 3:
        exit.message = r.string(true);
        break;
      default:
        r.skip(wireType, no);
    }
  }
  return exit;
}

/**
 * Parses a `fsb.fastpath.v1.ExecResponse`: `msg` is the member that came
 * last (`{ case: undefined }` for none); output bytes are views into `bytes`,
 * not copies. Throws on malformed input.
 */
export function decodeExecResponse(bytes: Uint8Array): ExecResponse {
  const r = new BinaryReader(bytes);
  const res: ExecResponse = { $typeName: "fsb.fastpath.v1.ExecResponse", msg: { case: undefined } };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    switch (no) {
      case 1:
        res.msg = { case: "execId", value: r.string(true) };
        break;
      case 2:
        res.msg = { case: "stdout", value: r.bytes() };
        break;
      case 3:
        res.msg = { case: "stderr", value: r.bytes() };
        break;
      case 4: {
        const len = r.uint32();
        const into = res.msg.case === "exit" ? res.msg.value : undefined;
        res.msg = { case: "exit", value: readExecExit(r, r.pos + len, into) };
        break;
      }
      default:
        r.skip(wireType, no);
    }
  }
  return res;
}

// `exit` gets a property only when present, as protobuf-es's does.
function readExecInfo(r: BinaryReader, end: number): ExecInfo {
  const info: ExecInfo = {
    $typeName: "fsb.fastpath.v1.ExecInfo",
    execId: "",
    command: [],
    tty: false,
    detached: false,
    running: false,
    startedAt: 0n,
    endedAt: 0n,
  };
  while (r.pos < end) {
    const [no, wireType] = r.tag();
    switch (no) {
      case 1:
        info.execId = r.string(true);
        break;
      case 2:
        info.command.push(r.string(true));
        break;
      case 3:
        info.tty = r.bool();
        break;
      case 4:
        info.detached = r.bool();
        break;
      case 5:
        info.running = r.bool();
        break;
      case 6: {
        const len = r.uint32();
        info.exit = readExecExit(r, r.pos + len, info.exit);
        break;
      }
      case 7:
        info.startedAt = readInt64(r);
        break;
      case 8:
        info.endedAt = readInt64(r);
        break;
      default:
        r.skip(wireType, no);
    }
  }
  return info;
}

/** Parses a `fsb.fastpath.v1.ExecInfo`. Throws on malformed input. */
export function decodeExecInfo(bytes: Uint8Array): ExecInfo {
  const r = new BinaryReader(bytes);
  return readExecInfo(r, r.len);
}

/** Parses a `fsb.fastpath.v1.ExecListResponse`. Throws on malformed input. */
export function decodeExecListResponse(bytes: Uint8Array): ExecListResponse {
  const r = new BinaryReader(bytes);
  const res: ExecListResponse = { $typeName: "fsb.fastpath.v1.ExecListResponse", execs: [] };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1) {
      const len = r.uint32();
      res.execs.push(readExecInfo(r, r.pos + len));
    } else {
      r.skip(wireType, no);
    }
  }
  return res;
}

/** Parses a `fsb.fastpath.v1.WaitResponse`. Throws on malformed input. */
export function decodeWaitResponse(bytes: Uint8Array): WaitResponse {
  const r = new BinaryReader(bytes);
  const res: WaitResponse = {
    $typeName: "fsb.fastpath.v1.WaitResponse",
    exitCode: 0,
    phase: "",
    message: "",
  };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    switch (no) {
      case 1:
        res.exitCode = r.int32();
        break;
      case 2:
        res.phase = r.string(true);
        break;
      case 3:
        res.message = r.string(true);
        break;
      default:
        r.skip(wireType, no);
    }
  }
  return res;
}

// --- the methods ---------------------------------------------------------------

/** The exec methods and Wait, for `FastPathLite.methods`. */
export const execLiteMethods = {
  exec: {
    name: "Exec",
    kind: "bidi_streaming",
    encode: encodeExecRequest,
    decode: decodeExecResponse,
  } satisfies LiteMethod<ExecRequestInit, ExecResponse, "bidi_streaming">,
  execAttach: {
    name: "ExecAttach",
    kind: "server_streaming",
    encode: encodeExecAttachRequest,
    decode: decodeExecResponse,
  } satisfies LiteMethod<ExecAttachRequestInit, ExecResponse, "server_streaming">,
  execList: {
    name: "ExecList",
    kind: "unary",
    encode: encodeExecListRequest,
    decode: decodeExecListResponse,
  } satisfies LiteMethod<ExecListRequestInit, ExecListResponse, "unary">,
  execKill: {
    name: "ExecKill",
    kind: "unary",
    encode: encodeExecKillRequest,
    decode: decodeExecInfo,
  } satisfies LiteMethod<ExecKillRequestInit, ExecInfo, "unary">,
  wait: {
    name: "Wait",
    kind: "unary",
    encode: encodeWaitRequest,
    decode: decodeWaitResponse,
  } satisfies LiteMethod<WaitRequestInit, WaitResponse, "unary">,
} as const;
