// The file codecs of proto/fastpath_lite_files.ts, case by case, against
// protobuf-es: the seeded cross-checks of fastpath_lite_test.ts cover every
// message at random; these pin what random messages rarely hit (optional
// owner ids of 0, a file info sent in pieces, data of 1 MiB, int64 edges).
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  FileChunkSchema,
  FileInfoSchema,
  ListDirResponseSchema,
  ReadFileRequestSchema,
  RemoveResponseSchema,
  WriteFileRequestSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import {
  decodeFileChunk,
  decodeFileInfo,
  decodeListDirResponse,
  decodeRemoveResponse,
  encodeReadFileRequest,
  encodeWriteFileRequest,
  type WriteFileRequestInit,
} from "../../proto/fastpath_lite.ts";

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function reference(init: WriteFileRequestInit): string {
  return hex(toBinary(WriteFileRequestSchema, create(WriteFileRequestSchema, init)));
}

Deno.test("encodeWriteFileRequest() sends uid, gid and size whenever present, 0 included", () => {
  const cases: WriteFileRequestInit[] = [
    {},
    { msg: { case: undefined } },
    { msg: { case: "start", value: {} } },
    { msg: { case: "start", value: { uid: undefined, gid: undefined, size: undefined } } },
    { msg: { case: "start", value: { uid: 0, gid: 0, size: 0n } } },
    {
      msg: {
        case: "start",
        value: {
          name: "web",
          namespace: "team-a",
          path: "/tmp/ünï cødé/😀.txt",
          mode: 0o4755,
          uid: 4_294_967_295,
          gid: 1000,
          archive: true,
          size: 2n ** 63n - 1n,
          parents: true,
        },
      },
    },
    { msg: { case: "start", value: { size: -1n } } },
    { msg: { case: "data", value: new Uint8Array(0) } },
    { msg: { case: "data", value: new Uint8Array([0, 1, 2, 255]) } },
  ];
  for (const init of cases) {
    assert.equal(hex(encodeWriteFileRequest(init)), reference(init), Deno.inspect(init));
  }
  assert.equal(
    hex(encodeWriteFileRequest({ msg: { case: "start", value: { uid: 0 } } })),
    "0a022800",
  );
  assert.equal(
    hex(encodeWriteFileRequest({ msg: { case: "data", value: new Uint8Array(0) } })),
    "1200",
  );
});

Deno.test("encodeWriteFileRequest() sends data of 1 MiB whole", () => {
  const data = new Uint8Array(1 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
  const init: WriteFileRequestInit = { msg: { case: "data", value: data } };
  const bytes = encodeWriteFileRequest(init);
  assert.equal(hex(bytes), reference(init));
  assert.deepEqual(fromBinary(WriteFileRequestSchema, bytes).msg.value, data);
});

Deno.test("encodeReadFileRequest() sends maxBytes as int64, and refuses one outside it", () => {
  for (const maxBytes of [0n, 1n, 1n << 40n, 2n ** 63n - 1n, -1n]) {
    const init = { name: "x", path: "/etc/hostname", archive: true, maxBytes };
    assert.equal(
      hex(encodeReadFileRequest(init)),
      hex(toBinary(ReadFileRequestSchema, create(ReadFileRequestSchema, init))),
    );
  }
  assert.throws(() => encodeReadFileRequest({ maxBytes: 2n ** 63n }), /invalid int64/);
});

Deno.test("decodeFileChunk() tells an absent info from an empty one, and gives data as a view", () => {
  const absent = decodeFileChunk(new Uint8Array(0));
  assert.ok(!("info" in absent));
  assert.deepEqual(absent, create(FileChunkSchema));
  assert.deepEqual(
    decodeFileChunk(new Uint8Array([0x12, 0x00])),
    create(FileChunkSchema, { info: {} }),
  );
  const data = new Uint8Array(1 << 20).fill(7);
  const chunk = create(FileChunkSchema, {
    data,
    info: {
      path: "/data/ünï.bin",
      type: "file",
      mode: 0o644,
      size: 1n << 20n,
      uid: 0,
      gid: 4_294_967_295,
      mtime: -(2n ** 63n),
      linkTarget: "",
    },
  });
  const bytes = toBinary(FileChunkSchema, chunk);
  const decoded = decodeFileChunk(bytes);
  assert.deepEqual(decoded, chunk);
  assert.equal(decoded.data.buffer, bytes.buffer, "a view, not a copy");
});

Deno.test("decodeFileChunk() merges an info sent in pieces, as protobuf-es does", () => {
  const w = new BinaryWriter();
  w.tag(2, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("/a").join();
  w.tag(1, WireType.LengthDelimited).bytes(new Uint8Array([1, 2]));
  w.tag(2, WireType.LengthDelimited).fork().tag(4, WireType.Varint).int64(42n).join();
  const bytes = w.finish();
  const chunk = decodeFileChunk(bytes);
  assert.deepEqual(chunk, fromBinary(FileChunkSchema, bytes));
  assert.equal(chunk.info?.path, "/a");
  assert.equal(chunk.info?.size, 42n);
});

Deno.test("decodeListDirResponse(), decodeFileInfo() and decodeRemoveResponse() read what protobuf-es writes", () => {
  const entries = [
    create(FileInfoSchema, { path: "bin", type: "dir", mode: 0o755 }),
    create(FileInfoSchema, { path: "link", type: "symlink", linkTarget: "/etc/ünï" }),
    create(FileInfoSchema),
  ];
  const list = create(ListDirResponseSchema, { entries });
  assert.deepEqual(decodeListDirResponse(toBinary(ListDirResponseSchema, list)), list);
  assert.deepEqual(decodeFileInfo(toBinary(FileInfoSchema, entries[1])), entries[1]);
  for (const existed of [true, false]) {
    const res = create(RemoveResponseSchema, { existed });
    assert.deepEqual(decodeRemoveResponse(toBinary(RemoveResponseSchema, res)), res);
  }
});
