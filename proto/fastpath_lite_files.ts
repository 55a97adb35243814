/**
 * The hand-written codecs of FastPath's file calls (`WriteFile`, `ReadFile`,
 * `ListDir`, `Stat`, `MakeDir`, `Remove`), for `fastpath_lite.ts`, which puts
 * them into `FastPathLite` and re-exports them. Same rules and the same
 * cross-check as the rest of it (`tests/proto/fastpath_lite_test.ts`).
 *
 * @module
 */
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  FileChunk,
  FileInfo,
  ListDirRequestSchema,
  ListDirResponse,
  MakeDirRequestSchema,
  ReadFileRequestSchema,
  RemoveRequestSchema,
  RemoveResponse,
  StatRequestSchema,
  WriteFileRequestSchema,
  WriteFileStartSchema,
} from "./gen/fsb/fastpath/v1/fastpath_pb.ts";
import type { LiteMethod } from "./lite_service.ts";
import {
  putBool,
  putInt64,
  putOptionalInt64,
  putOptionalUint32,
  putString,
  putUint32,
  readInt64,
} from "./_lite_wire.ts";

/** A WriteFile request (one message of the stream), every field optional. */
export type WriteFileRequestInit = MessageInitShape<typeof WriteFileRequestSchema>;
/** The first message of a WriteFile call; `uid`, `gid` and `size` are sent whenever present. */
export type WriteFileStartInit = MessageInitShape<typeof WriteFileStartSchema>;
/** A ReadFile request, every field optional (`maxBytes` 0: no limit). */
export type ReadFileRequestInit = MessageInitShape<typeof ReadFileRequestSchema>;
/** A ListDir request, every field optional. */
export type ListDirRequestInit = MessageInitShape<typeof ListDirRequestSchema>;
/** A Stat request, every field optional. */
export type StatRequestInit = MessageInitShape<typeof StatRequestSchema>;
/** A MakeDir request, every field optional (`mode` 0: 0755). */
export type MakeDirRequestInit = MessageInitShape<typeof MakeDirRequestSchema>;
/** A Remove request, every field optional. */
export type RemoveRequestInit = MessageInitShape<typeof RemoveRequestSchema>;

/** The file messages of fastpath.proto, as `fastPathLiteSchema` lists them. */
export const filesLiteSchema = {
  "fsb.fastpath.v1.FileInfo": [
    "string path = 1",
    "string type = 2",
    "uint32 mode = 3",
    "int64 size = 4",
    "uint32 uid = 5",
    "uint32 gid = 6",
    "int64 mtime = 7",
    "string link_target = 8",
  ],
  "fsb.fastpath.v1.WriteFileStart": [
    "string name = 1",
    "string namespace = 2",
    "string path = 3",
    "uint32 mode = 4",
    "optional uint32 uid = 5",
    "optional uint32 gid = 6",
    "bool archive = 7",
    "optional int64 size = 8",
    "bool parents = 9",
  ],
  "fsb.fastpath.v1.WriteFileRequest": [
    "oneof msg: fsb.fastpath.v1.WriteFileStart start = 1",
    "oneof msg: bytes data = 2",
  ],
  "fsb.fastpath.v1.ReadFileRequest": [
    "string name = 1",
    "string namespace = 2",
    "string path = 3",
    "bool archive = 4",
    "int64 max_bytes = 5",
  ],
  "fsb.fastpath.v1.FileChunk": ["bytes data = 1", "fsb.fastpath.v1.FileInfo info = 2"],
  "fsb.fastpath.v1.ListDirRequest": ["string name = 1", "string namespace = 2", "string path = 3"],
  "fsb.fastpath.v1.ListDirResponse": ["repeated fsb.fastpath.v1.FileInfo entries = 1"],
  "fsb.fastpath.v1.StatRequest": ["string name = 1", "string namespace = 2", "string path = 3"],
  "fsb.fastpath.v1.MakeDirRequest": [
    "string name = 1",
    "string namespace = 2",
    "string path = 3",
    "uint32 mode = 4",
    "bool parents = 5",
  ],
  "fsb.fastpath.v1.RemoveRequest": [
    "string name = 1",
    "string namespace = 2",
    "string path = 3",
    "bool recursive = 4",
  ],
  "fsb.fastpath.v1.RemoveResponse": ["bool existed = 1"],
} as const;

// --- writing (the rules are in _lite_wire.ts) -------------------------------

function putWriteFileStart(w: BinaryWriter, no: number, start: WriteFileStartInit): void {
  w.tag(no, WireType.LengthDelimited).fork();
  putString(w, 1, start.name);
  putString(w, 2, start.namespace);
  putString(w, 3, start.path);
  putUint32(w, 4, start.mode);
  putOptionalUint32(w, 5, start.uid);
  putOptionalUint32(w, 6, start.gid);
  putBool(w, 7, start.archive);
  putOptionalInt64(w, 8, start.size);
  putBool(w, 9, start.parents);
  w.join();
}

/**
 * Serializes a `fsb.fastpath.v1.WriteFileRequest`: `start`, or `data`
 * (written even when empty), or nothing.
 */
export function encodeWriteFileRequest(req: WriteFileRequestInit): Uint8Array {
  const w = new BinaryWriter();
  const msg = req.msg;
  if (msg?.case === "start") putWriteFileStart(w, 1, msg.value);
  else if (msg?.case === "data") w.tag(2, WireType.LengthDelimited).bytes(msg.value);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.ReadFileRequest`. */
export function encodeReadFileRequest(req: ReadFileRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  putString(w, 3, req.path);
  putBool(w, 4, req.archive);
  putInt64(w, 5, req.maxBytes);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.ListDirRequest`. */
export function encodeListDirRequest(req: ListDirRequestInit): Uint8Array {
  return encodePathRequest(req);
}

/** Serializes a `fsb.fastpath.v1.StatRequest`. */
export function encodeStatRequest(req: StatRequestInit): Uint8Array {
  return encodePathRequest(req);
}

// ListDir and Stat requests have the same three fields.
function encodePathRequest(req: { name?: string; namespace?: string; path?: string }): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  putString(w, 3, req.path);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.MakeDirRequest`. */
export function encodeMakeDirRequest(req: MakeDirRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  putString(w, 3, req.path);
  putUint32(w, 4, req.mode);
  putBool(w, 5, req.parents);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.RemoveRequest`. */
export function encodeRemoveRequest(req: RemoveRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  putString(w, 3, req.path);
  putBool(w, 4, req.recursive);
  return w.finish();
}

// --- reading (the rules are in _lite_wire.ts) -------------------------------

function readFileInfo(r: BinaryReader, end: number, into?: FileInfo): FileInfo {
  const info: FileInfo = into ?? {
    $typeName: "fsb.fastpath.v1.FileInfo",
    path: "",
    type: "",
    mode: 0,
    size: 0n,
    uid: 0,
    gid: 0,
    mtime: 0n,
    linkTarget: "",
  };
  while (r.pos < end) {
    const [no, wireType] = r.tag();
    switch (no) {
      case 1:
        info.path = r.string(true);
        break;
      case 2:
        info.type = r.string(true);
        break;
      case 3:
        info.mode = r.uint32();
        break;
      case 4:
        info.size = readInt64(r);
        break;
      case 5:
        info.uid = r.uint32();
        break;
      case 6:
        info.gid = r.uint32();
        break;
      case 7:
        info.mtime = readInt64(r);
        break;
      case 8:
        info.linkTarget = r.string(true);
        break;
      default:
        r.skip(wireType, no);
    }
  }
  return info;
}

/** Parses a `fsb.fastpath.v1.FileInfo`. Throws on malformed input. */
export function decodeFileInfo(bytes: Uint8Array): FileInfo {
  const r = new BinaryReader(bytes);
  return readFileInfo(r, r.len);
}

/**
 * Parses a `fsb.fastpath.v1.FileChunk`; `data` is a view into `bytes`, not a
 * copy, and `info` gets a property only when present, as protobuf-es's does.
 */
export function decodeFileChunk(bytes: Uint8Array): FileChunk {
  const r = new BinaryReader(bytes);
  const chunk: FileChunk = { $typeName: "fsb.fastpath.v1.FileChunk", data: new Uint8Array(0) };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1) {
      chunk.data = r.bytes();
    } else if (no === 2) {
      const len = r.uint32();
      chunk.info = readFileInfo(r, r.pos + len, chunk.info);
    } else {
      r.skip(wireType, no);
    }
  }
  return chunk;
}

/** Parses a `fsb.fastpath.v1.ListDirResponse`. Throws on malformed input. */
export function decodeListDirResponse(bytes: Uint8Array): ListDirResponse {
  const r = new BinaryReader(bytes);
  const res: ListDirResponse = { $typeName: "fsb.fastpath.v1.ListDirResponse", entries: [] };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1) {
      const len = r.uint32();
      res.entries.push(readFileInfo(r, r.pos + len));
    } else {
      r.skip(wireType, no);
    }
  }
  return res;
}

/** Parses a `fsb.fastpath.v1.RemoveResponse`. Throws on malformed input. */
export function decodeRemoveResponse(bytes: Uint8Array): RemoveResponse {
  const r = new BinaryReader(bytes);
  const res: RemoveResponse = { $typeName: "fsb.fastpath.v1.RemoveResponse", existed: false };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1) res.existed = r.bool();
    else r.skip(wireType, no);
  }
  return res;
}

// --- the methods ---------------------------------------------------------------

/** The file methods, for `FastPathLite.methods`. */
export const filesLiteMethods = {
  writeFile: {
    name: "WriteFile",
    kind: "client_streaming",
    encode: encodeWriteFileRequest,
    decode: decodeFileInfo,
  } satisfies LiteMethod<WriteFileRequestInit, FileInfo, "client_streaming">,
  readFile: {
    name: "ReadFile",
    kind: "server_streaming",
    encode: encodeReadFileRequest,
    decode: decodeFileChunk,
  } satisfies LiteMethod<ReadFileRequestInit, FileChunk, "server_streaming">,
  listDir: {
    name: "ListDir",
    kind: "unary",
    encode: encodeListDirRequest,
    decode: decodeListDirResponse,
  } satisfies LiteMethod<ListDirRequestInit, ListDirResponse, "unary">,
  stat: {
    name: "Stat",
    kind: "unary",
    encode: encodeStatRequest,
    decode: decodeFileInfo,
  } satisfies LiteMethod<StatRequestInit, FileInfo, "unary">,
  makeDir: {
    name: "MakeDir",
    kind: "unary",
    encode: encodeMakeDirRequest,
    decode: decodeFileInfo,
  } satisfies LiteMethod<MakeDirRequestInit, FileInfo, "unary">,
  remove: {
    name: "Remove",
    kind: "unary",
    encode: encodeRemoveRequest,
    decode: decodeRemoveResponse,
  } satisfies LiteMethod<RemoveRequestInit, RemoveResponse, "unary">,
} as const;
