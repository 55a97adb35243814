// Holds the hand-written codecs of proto/fastpath_lite.ts to protobuf-es, the
// reference: first that they know every message, field, enum value and method
// of the generated descriptor, then, on seeded random messages built from that
// descriptor, that both sides read each other's bytes and print the same JSON.
// Set FSB_TEST_SEED to rerun one failing seed.
import assert from "node:assert/strict";
import {
  create,
  type DescEnum,
  type DescField,
  type DescMessage,
  fromBinary,
  type Message,
  ScalarType,
  toBinary,
  toJson,
  toJsonString,
} from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  CreateSandboxRequestSchema,
  CreateTokenRequestSchema,
  CreateTokenResponseSchema,
  Egress,
  FastPath,
  file_fsb_fastpath_v1_fastpath as FILE,
  ListSandboxesResponseSchema,
  ListTokensResponseSchema,
  LogChunkSchema,
  NetworkMode,
  ProfileChunkSchema,
  ProfileRequestSchema,
  type SandboxInfo,
  SandboxInfoSchema,
  type TokenInfo,
  TokenInfoSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import {
  decodeCreateTokenResponse,
  decodeListSandboxesResponse,
  decodeListTokensResponse,
  decodeLogChunk,
  decodeProfileChunk,
  decodeSandboxInfo,
  decodeTokenInfo,
  encodeCreateSandboxRequest,
  encodeCreateTokenRequest,
  encodeProfileRequest,
  FastPathLite,
  fastPathLiteSchema,
  sandboxInfoToJson,
  tokenInfoToJson,
} from "../../proto/fastpath_lite.ts";
import type { LiteMethod } from "../../proto/lite_service.ts";

const SEED = Number(Deno.env.get("FSB_TEST_SEED") ?? 0x5eed_f00d) >>> 0;
const ROUNDS = 400;

// --- the descriptor, written the way fastPathLiteSchema writes it -----------

function scalarName(type: ScalarType): string {
  return ScalarType[type].toLowerCase();
}

function fieldLine(f: DescField): string {
  const head = `${f.oneof === undefined ? "" : `oneof ${f.oneof.name}: `}${
    f.proto.proto3Optional ? "optional " : ""
  }`;
  const tail = `${f.name} = ${f.number}`;
  switch (f.fieldKind) {
    case "scalar":
      return `${head}${scalarName(f.scalar)} ${tail}`;
    case "enum":
      return `${head}${f.enum.typeName} ${tail}`;
    case "message":
      return `${head}${f.message.typeName} ${tail}`;
    case "list": {
      const item = f.listKind === "scalar"
        ? scalarName(f.scalar)
        : f.listKind === "enum"
        ? f.enum.typeName
        : f.message.typeName;
      return `${head}repeated ${item} ${tail}`;
    }
    case "map": {
      const value = f.mapKind === "scalar"
        ? scalarName(f.scalar)
        : f.mapKind === "enum"
        ? f.enum.typeName
        : f.message.typeName;
      return `${head}map<${scalarName(f.mapKey)}, ${value}> ${tail}`;
    }
  }
}

function allMessages(messages: readonly DescMessage[]): DescMessage[] {
  return messages.flatMap((m) => [m, ...allMessages(m.nestedMessages)]);
}

function allEnums(): DescEnum[] {
  return [...FILE.enums, ...allMessages(FILE.messages).flatMap((m) => m.nestedEnums)];
}

const STALE = "fastpath.proto changed: teach proto/fastpath_lite.ts (codecs and " +
  "fastPathLiteSchema) the change, then rerun this test";

Deno.test("fastPathLiteSchema knows every message and field of fastpath.proto", () => {
  const lite: Record<string, readonly string[]> = fastPathLiteSchema.messages;
  const proto = Object.fromEntries(
    allMessages(FILE.messages).map((m) => [m.typeName, m.fields.map(fieldLine)]),
  );
  for (const [typeName, fields] of Object.entries(proto)) {
    assert.ok(typeName in lite, `${STALE}: message ${typeName} is missing`);
    for (const field of fields) {
      assert.ok(lite[typeName].includes(field), `${STALE}: ${typeName} has "${field}"`);
    }
  }
  for (const typeName of Object.keys(lite)) {
    assert.ok(typeName in proto, `${STALE}: message ${typeName} is gone`);
  }
  assert.deepEqual(lite, proto, STALE);
});

Deno.test("fastPathLiteSchema knows every enum value of fastpath.proto, by number", () => {
  const lite: Record<string, readonly string[]> = fastPathLiteSchema.enums;
  const proto: Record<string, string[]> = {};
  for (const e of allEnums()) {
    const names: string[] = [];
    for (const v of e.values) {
      assert.ok(
        v.number >= 0 && v.number < e.values.length && names[v.number] === undefined,
        `${STALE}: ${e.typeName} is no longer numbered 0, 1, 2, ... (${v.name} = ${v.number})`,
      );
      names[v.number] = v.name;
    }
    proto[e.typeName] = names;
  }
  assert.deepEqual(lite, proto, STALE);
});

Deno.test("FastPathLite has every FastPath method, with its name and kind", () => {
  assert.equal(FastPathLite.typeName, FastPath.typeName);
  const lite: Record<string, LiteMethod<never, unknown>> = FastPathLite.methods;
  assert.deepEqual(
    Object.keys(lite).sort(),
    FastPath.methods.map((m) => m.localName).sort(),
    `${STALE}: the methods differ`,
  );
  for (const method of FastPath.methods) {
    assert.equal(lite[method.localName].name, method.name);
    assert.equal(lite[method.localName].kind, method.methodKind);
  }
});

// --- random messages ----------------------------------------------------------

/** mulberry32: small, seedable, good enough to pick test values. */
function rngFrom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = rngFrom(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

// BMP and astral characters, a ZWJ sequence, controls, JSON escapes, a
// byte-order mark (text, not a marker, inside protobuf strings), U+2028.
const CHARS = [
  ..."abcXYZ019 -_./:=",
  "é",
  "ß",
  "中",
  "文",
  "😀",
  "👩‍💻",
  "\u0000",
  "\n",
  "\t",
  '"',
  "\\",
  "\u2028",
  "\ufeff",
  "\u007f",
];
const SPECIAL_STRINGS = ["", "__proto__", "constructor", "toString", "0", "1", "10", "-1", "01"];

function randomString(r: Random): string {
  if (r.chance(0.15)) return r.pick(SPECIAL_STRINGS);
  // Some past 32 characters, beyond the reader's ASCII fast path.
  const len = r.chance(0.1) ? 30 + r.int(300) : r.int(12);
  let s = "";
  for (let i = 0; i < len; i++) s += r.pick(CHARS);
  return s;
}

const INT32_EDGES = [0, 1, -1, 126, 127, 128, 137, 255, 2 ** 31 - 1, -(2 ** 31)];
const INT64_EDGES = [0n, 1n, -1n, 127n, 128n, 2n ** 31n, 2n ** 32n, 2n ** 63n - 1n, -(2n ** 63n)];
const UINT32_EDGES = [0, 1, 127, 128, 8080, 65535, 65536, 2 ** 31, 2 ** 32 - 1];

function randomScalar(r: Random, type: ScalarType): unknown {
  switch (type) {
    case ScalarType.STRING:
      return randomString(r);
    case ScalarType.BOOL:
      return r.chance(0.5);
    case ScalarType.INT64: {
      if (r.chance(0.4)) return r.pick(INT64_EDGES);
      const hi = BigInt(r.int(2 ** 32));
      const lo = BigInt(r.int(2 ** 32));
      return BigInt.asIntN(64, (hi << 32n) | lo) >> BigInt(r.int(64));
    }
    case ScalarType.INT32:
      return r.chance(0.4) ? r.pick(INT32_EDGES) : r.int(2 ** 32) | 0;
    case ScalarType.UINT32:
      return r.chance(0.4) ? r.pick(UINT32_EDGES) : r.int(2 ** 32);
    case ScalarType.BYTES: {
      const bytes = new Uint8Array(r.chance(0.2) ? 0 : r.chance(0.1) ? 5000 : r.int(64));
      for (let i = 0; i < bytes.length; i++) bytes[i] = r.int(256);
      return bytes;
    }
    default:
      throw new Error(
        `No random ${
          ScalarType[type]
        } values: fastpath.proto uses a new scalar type; extend this test`,
      );
  }
}

function randomEnum(r: Random, e: DescEnum): number {
  // Known values, negative numbers, numbers the enum does not (yet) have.
  if (r.chance(0.7)) return r.pick(e.values).number;
  return r.pick([-1, -2, -(2 ** 31), 2 ** 31 - 1, e.values.length, 99]);
}

/** A map that may hold a "__proto__" key as an ordinary entry, as protobuf-es's do. */
function putOwn(map: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(map, key, { value, writable: true, enumerable: true, configurable: true });
}

function randomValue(r: Random, f: DescField, depth: number): unknown {
  switch (f.fieldKind) {
    case "scalar":
      return randomScalar(r, f.scalar);
    case "enum":
      return randomEnum(r, f.enum);
    case "message":
      return randomMessage(r, f.message, depth + 1);
    case "list": {
      // Many items now and then: a sandbox with hundreds of ports, say.
      const many = f.listKind !== "message" && r.chance(0.1);
      const n = r.chance(0.3) ? 0 : many ? 100 + r.int(900) : 1 + r.int(5);
      const items: unknown[] = [];
      for (let i = 0; i < n; i++) {
        items.push(
          f.listKind === "scalar"
            ? randomScalar(r, f.scalar)
            : f.listKind === "enum"
            ? randomEnum(r, f.enum)
            : randomMessage(r, f.message, depth + 1),
        );
      }
      return items;
    }
    case "map": {
      const map: Record<string, unknown> = {};
      const n = r.chance(0.3) ? 0 : 1 + r.int(6);
      for (let i = 0; i < n; i++) {
        const key = String(randomScalar(r, f.mapKey));
        putOwn(
          map,
          key,
          f.mapKind === "scalar"
            ? randomScalar(r, f.scalar)
            : f.mapKind === "enum"
            ? randomEnum(r, f.enum)
            : randomMessage(r, f.message, depth + 1),
        );
      }
      return map;
    }
  }
}

/**
 * A random message of `desc`; every field kind of the descriptor gets values,
 * and a oneof one of its members (its zero value now and then: a member that
 * is set is sent whatever its value).
 */
function randomMessage(r: Random, desc: DescMessage, depth = 0): Message {
  const init: Record<string, unknown> = {};
  if (!r.chance(0.1)) {
    for (const member of desc.members) {
      if (r.chance(0.25)) continue;
      if (member.kind === "oneof") {
        const f = r.pick(member.fields);
        if (f.fieldKind === "message" && depth > 2) continue;
        const value = f.fieldKind === "message"
          ? randomMessage(r, f.message, depth + 1)
          : r.chance(0.2)
          ? zeroOf(f)
          : randomValue(r, f, depth);
        init[member.localName] = { case: f.localName, value };
        continue;
      }
      const f = member;
      // Explicit presence: zero is a value too, distinct from absent.
      if (f.proto.proto3Optional && r.chance(0.2)) {
        init[f.localName] = zeroOf(f);
        continue;
      }
      if (f.fieldKind === "message" && depth > 2) continue;
      init[f.localName] = randomValue(r, f, depth);
    }
  }
  return create(desc, init);
}

function zeroOf(f: DescField): unknown {
  if (f.fieldKind === "enum") return 0;
  if (f.fieldKind !== "scalar") throw new Error(`No zero for ${f}: extend this test`);
  switch (f.scalar) {
    case ScalarType.INT64:
      return 0n;
    case ScalarType.STRING:
      return "";
    case ScalarType.BOOL:
      return false;
    case ScalarType.BYTES:
      return new Uint8Array(0);
    default:
      return 0;
  }
}

/**
 * An init shape as the CLI builds them: fields left out or set to undefined,
 * message fields as init shapes of their own (plain objects, no `$typeName`)
 * or as messages.
 */
function randomInit(r: Random, desc: DescMessage, depth = 0): Record<string, unknown> {
  const full = randomMessage(r, desc) as unknown as Record<string, unknown>;
  const init: Record<string, unknown> = {};
  for (const member of desc.members) {
    if (r.chance(0.3)) continue;
    if (r.chance(0.2)) {
      init[member.localName] = undefined;
    } else if (member.kind === "oneof") {
      const oneof = full[member.localName] as { case: string | undefined; value?: unknown };
      const f = member.fields.find((f) => f.localName === oneof.case);
      init[member.localName] = f?.fieldKind === "message" && depth < 2 && r.chance(0.7)
        ? { case: f.localName, value: randomInit(r, f.message, depth + 1) }
        : oneof;
    } else if (member.fieldKind === "message" && depth < 2 && r.chance(0.7)) {
      init[member.localName] = randomInit(r, member.message, depth + 1);
    } else {
      init[member.localName] = full[member.localName];
    }
  }
  return init;
}

/** `msg` without protobuf-es's `$unknown`, at every depth. */
function withoutUnknown<T>(msg: T): T {
  const strip = (value: unknown): void => {
    if (Array.isArray(value)) {
      value.forEach(strip);
    } else if (typeof value === "object" && value !== null && !(value instanceof Uint8Array)) {
      // Into oneofs ({ case, value }) and maps too, where messages may sit.
      if ("$typeName" in value) delete (value as { $unknown?: unknown }).$unknown;
      Object.values(value).forEach(strip);
    }
  };
  strip(msg);
  return msg;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// --- the cross-checks ---------------------------------------------------------

for (const [index, method] of FastPath.methods.entries()) {
  const seed = (SEED ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  const lite = FastPathLite
    .methods[method.localName as keyof typeof FastPathLite.methods] as LiteMethod<unknown, unknown>;

  Deno.test(`${method.name}: the lite request encoding is protobuf-es's, byte for byte`, () => {
    const r = new Random(seed);
    for (let i = 0; i < ROUNDS; i++) {
      const msg = randomMessage(r, method.input);
      const bytes = lite.encode(msg);
      const where = `seed ${SEED}, round ${i}`;
      assert.deepEqual(fromBinary(method.input, bytes), msg, where);
      assert.equal(hex(bytes), hex(toBinary(method.input, msg)), where);
      const init = randomInit(r, method.input);
      assert.equal(
        hex(lite.encode(init)),
        hex(toBinary(method.input, create(method.input, init))),
        `${where}, init ${Deno.inspect(init)}`,
      );
    }
  });

  Deno.test(`${method.name}: the lite response decoder reads protobuf-es's bytes`, () => {
    const r = new Random(seed + 1);
    for (let i = 0; i < ROUNDS; i++) {
      const msg = randomMessage(r, method.output);
      const bytes = toBinary(method.output, msg);
      const where = `seed ${SEED}, round ${i}`;
      assert.deepEqual(lite.decode(bytes), msg, where);
      // Fields it does not know, before and after the ones it does, are skipped.
      const padded = concat([unknownFields(r), bytes, unknownFields(r)]);
      assert.deepEqual(lite.decode(padded), msg, `${where}, bytes ${hex(padded)}`);
    }
  });

  Deno.test(`${method.name}: the lite decoder fails where protobuf-es fails, and only there`, () => {
    const r = new Random(seed + 2);
    for (let i = 0; i < ROUNDS; i++) {
      const bytes = toBinary(method.output, randomMessage(r, method.output));
      if (bytes.length === 0) continue;
      let broken: Uint8Array;
      if (r.chance(0.5)) {
        broken = bytes.subarray(0, r.int(bytes.length));
      } else {
        broken = bytes.slice();
        broken[r.int(bytes.length)] = r.int(256);
      }
      const theirs = attempt(() => withoutUnknown(fromBinary(method.output, broken)));
      const ours = attempt(() => lite.decode(broken));
      const where = `seed ${SEED}, round ${i}, bytes ${hex(broken)}`;
      assert.equal(ours.ok, theirs.ok, `${where}: ${ours.ok ? theirs.error : ours.error}`);
      if (ours.ok) assert.deepEqual(ours.value, theirs.value, where);
    }
  });
}

function attempt(fn: () => unknown): { ok: boolean; value?: unknown; error?: unknown } {
  try {
    return { ok: true, value: fn() };
  } catch (error) {
    return { ok: false, error };
  }
}

// --- unknown fields -----------------------------------------------------------

// Past the highest field number of every FastPath message, so that new fields
// never make "unknown" ones known.
const TOP_FIELD = Math.max(
  ...allMessages(FILE.messages).flatMap((m) => m.fields.map((f) => f.number)),
);
const UNKNOWN_NUMBERS = [TOP_FIELD + 1, TOP_FIELD + 2, TOP_FIELD + 77, 1000, 2 ** 29 - 1];

/** One to three fields no FastPath message has, of every wire type, groups included. */
function unknownFields(r: Random): Uint8Array {
  const w = new BinaryWriter();
  const count = 1 + r.int(3);
  for (let i = 0; i < count; i++) {
    const no = r.pick(UNKNOWN_NUMBERS);
    switch (r.int(5)) {
      case 0:
        w.tag(no, WireType.Varint).uint64(BigInt(r.int(2 ** 32)) << BigInt(r.int(32)));
        break;
      case 1:
        w.tag(no, WireType.Bit64).fixed64(BigInt(r.int(2 ** 32)));
        break;
      case 2:
        w.tag(no, WireType.LengthDelimited).string(randomString(r));
        break;
      case 3:
        w.tag(no, WireType.Bit32).fixed32(r.int(2 ** 32));
        break;
      case 4:
        w.tag(no, WireType.StartGroup);
        w.tag(1, WireType.Varint).int32(r.int(100));
        w.tag(2, WireType.LengthDelimited).string(randomString(r));
        w.tag(no, WireType.EndGroup);
        break;
    }
  }
  return w.finish();
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * A message of `desc` encoded one field at a time, with unknown fields between
 * them, cut into one to three pieces: each piece is a valid encoding of part
 * of the message, and the pieces merged give the whole of it.
 */
function messagePiecesWithUnknowns(r: Random, desc: DescMessage, msg: Message): Uint8Array[] {
  const parts: Uint8Array[] = [];
  if (r.chance(0.5)) parts.push(unknownFields(r));
  for (const f of desc.fields) {
    const value = (msg as unknown as Record<string, unknown>)[f.localName];
    parts.push(toBinary(desc, create(desc, { [f.localName]: value })));
    if (r.chance(0.5)) parts.push(unknownFields(r));
  }
  const cuts = new Set(Array.from({ length: r.int(3) }, () => r.int(parts.length + 1)));
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    pieces.push(concat(parts.slice(from, cut)));
    from = cut;
  }
  pieces.push(concat(parts.slice(from)));
  return pieces;
}

/**
 * `info` encoded one field at a time (a valid encoding: a message is the
 * concatenation of its fields) with unknown fields before, between and after
 * them, and inside map entries and message fields; exposed ports sometimes
 * unpacked, which parsers must accept too, and message fields sometimes in
 * several pieces, which parsers must merge.
 */
function sandboxInfoWithUnknowns(r: Random, info: SandboxInfo): Uint8Array {
  const parts: Uint8Array[] = [unknownFields(r)];
  for (const f of SandboxInfoSchema.fields) {
    const value = (info as unknown as Record<string, unknown>)[f.localName];
    if (f.fieldKind === "message") {
      if (value !== undefined) {
        for (const piece of messagePiecesWithUnknowns(r, f.message, value as Message)) {
          const w = new BinaryWriter();
          w.tag(f.number, WireType.LengthDelimited).bytes(piece);
          parts.push(w.finish());
        }
      }
    } else if (f.fieldKind === "map") {
      for (const [key, val] of Object.entries(value as Record<string, string>)) {
        const w = new BinaryWriter();
        w.tag(f.number, WireType.LengthDelimited).fork();
        if (r.chance(0.5)) w.raw(unknownFields(r));
        w.tag(1, WireType.LengthDelimited).string(key);
        if (r.chance(0.5)) w.raw(unknownFields(r));
        w.tag(2, WireType.LengthDelimited).string(val);
        w.join();
        parts.push(w.finish());
      }
    } else if (f.name === "exposed_ports" && r.chance(0.5)) {
      const w = new BinaryWriter();
      for (const port of value as number[]) w.tag(f.number, WireType.Varint).uint32(port);
      parts.push(w.finish());
    } else {
      parts.push(toBinary(SandboxInfoSchema, create(SandboxInfoSchema, { [f.localName]: value })));
    }
    if (r.chance(0.5)) parts.push(unknownFields(r));
  }
  return concat(parts);
}

Deno.test("decodeSandboxInfo() skips unknown fields anywhere, and reads unpacked ports", () => {
  const r = new Random(SEED ^ 0x1111);
  for (let i = 0; i < ROUNDS; i++) {
    const info = randomMessage(r, SandboxInfoSchema) as SandboxInfo;
    const bytes = sandboxInfoWithUnknowns(r, info);
    const where = `seed ${SEED}, round ${i}`;
    assert.deepEqual(decodeSandboxInfo(bytes), info, where);
    assert.deepEqual(withoutUnknown(fromBinary(SandboxInfoSchema, bytes)), info, where);
  }
});

Deno.test("decodeListSandboxesResponse() skips unknown fields around and inside each sandbox", () => {
  const r = new Random(SEED ^ 0x2222);
  for (let i = 0; i < ROUNDS / 4; i++) {
    const infos = Array.from({ length: r.int(5) }, () => randomMessage(r, SandboxInfoSchema));
    const w = new BinaryWriter();
    w.raw(unknownFields(r));
    for (const info of infos) {
      w.tag(1, WireType.LengthDelimited).bytes(sandboxInfoWithUnknowns(r, info as SandboxInfo));
      w.raw(unknownFields(r));
    }
    const bytes = w.finish();
    const expected = create(ListSandboxesResponseSchema, { sandboxes: infos as SandboxInfo[] });
    assert.deepEqual(decodeListSandboxesResponse(bytes), expected, `seed ${SEED}, round ${i}`);
  }
});

Deno.test("the lite decoders give a map entry without key or value an empty one", () => {
  const w = new BinaryWriter();
  w.tag(14, WireType.LengthDelimited).fork().tag(2, WireType.LengthDelimited).string("v").join();
  w.tag(16, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("k").join();
  const bytes = w.finish();
  const info = decodeSandboxInfo(bytes);
  assert.deepEqual(info.labels, { "": "v" });
  assert.deepEqual(info.envs, { k: "" });
  assert.deepEqual(info, fromBinary(SandboxInfoSchema, bytes));
});

Deno.test("decodeSandboxInfo() merges a message field that comes twice, as protobuf-es does", () => {
  const w = new BinaryWriter();
  w.tag(21, WireType.LengthDelimited).fork();
  w.tag(1, WireType.Varint).int32(1).tag(3, WireType.LengthDelimited).string("10.0.0.0/8");
  w.join();
  w.tag(22, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int64(500n).join();
  w.tag(21, WireType.LengthDelimited).fork();
  w.tag(1, WireType.Varint).int32(2).tag(2, WireType.Varint).int32(2);
  w.tag(3, WireType.LengthDelimited).string("192.168.0.0/16");
  w.join();
  w.tag(22, WireType.LengthDelimited).fork().tag(3, WireType.Varint).int64(0n).join();
  const bytes = w.finish();
  const info = decodeSandboxInfo(bytes);
  assert.deepEqual(info, fromBinary(SandboxInfoSchema, bytes));
  assert.deepEqual(info.network, {
    $typeName: "fsb.fastpath.v1.NetworkPolicy",
    mode: NetworkMode.NONE,
    egress: Egress.DENY,
    allowCidrs: ["10.0.0.0/8", "192.168.0.0/16"],
    denyCidrs: [],
  });
  // Present limits only: memoryBytes was never sent, so it has no property.
  assert.deepEqual(info.resources, {
    $typeName: "fsb.fastpath.v1.Resources",
    cpuMillis: 500n,
    pids: 0n,
  });
  assert.ok(!("memoryBytes" in info.resources!));
});

Deno.test("decodeSandboxInfo() tells an empty network or resources message from an absent one", () => {
  const absent = decodeSandboxInfo(new Uint8Array(0));
  assert.ok(!("network" in absent) && !("resources" in absent));
  const w = new BinaryWriter();
  w.tag(21, WireType.LengthDelimited).bytes(new Uint8Array(0));
  w.tag(22, WireType.LengthDelimited).bytes(new Uint8Array(0));
  const empty = decodeSandboxInfo(w.finish());
  assert.deepEqual(empty, create(SandboxInfoSchema, { network: {}, resources: {} }));
  assert.deepEqual(sandboxInfoToJson(empty).network, {
    mode: "NETWORK_MODE_UNSPECIFIED",
    egress: "EGRESS_UNSPECIFIED",
    allowCidrs: [],
    denyCidrs: [],
  });
  assert.deepEqual(sandboxInfoToJson(empty).resources, {});
});

// --- JSON ----------------------------------------------------------------------

Deno.test("sandboxInfoToJson() is protobuf-es's toJson with alwaysEmitImplicit, byte for byte", () => {
  const r = new Random(SEED ^ 0x3333);
  const opts = { alwaysEmitImplicit: true } as const;
  for (let i = 0; i < ROUNDS; i++) {
    const info = randomMessage(r, SandboxInfoSchema) as SandboxInfo;
    const where = `seed ${SEED}, round ${i}`;
    const ours = sandboxInfoToJson(info);
    assert.deepEqual(ours, toJson(SandboxInfoSchema, info, opts), where);
    assert.equal(JSON.stringify(ours), toJsonString(SandboxInfoSchema, info, opts), where);
    assert.equal(
      JSON.stringify(ours, null, 2),
      toJsonString(SandboxInfoSchema, info, { ...opts, prettySpaces: 2 }),
      where,
    );
  }
});

// --- the new CreateSandboxRequest fields, spelled out ---------------------------

Deno.test("encodeCreateSandboxRequest() sends network and resources only when present", () => {
  const cases: Record<string, unknown>[] = [
    {},
    { network: undefined, resources: undefined },
    { network: {}, resources: {} },
    { network: { mode: NetworkMode.NONE } },
    { network: { egress: Egress.DENY, allowCidrs: ["10.1.0.0/16"], denyCidrs: ["not a cidr"] } },
    { resources: { cpuMillis: 500n } },
    { resources: { cpuMillis: 0n, memoryBytes: -1n, pids: undefined } },
    { resources: { memoryBytes: 64n * 1024n * 1024n, pids: 2n ** 63n - 1n } },
  ];
  for (const init of cases) {
    const bytes = encodeCreateSandboxRequest(init);
    const where = Deno.inspect(init);
    assert.equal(
      hex(bytes),
      hex(toBinary(CreateSandboxRequestSchema, create(CreateSandboxRequestSchema, init))),
      where,
    );
  }
  // Absent: not a byte. Present but empty: the field with length 0.
  assert.equal(hex(encodeCreateSandboxRequest({ network: undefined })), "");
  assert.equal(hex(encodeCreateSandboxRequest({ network: {}, resources: {} })), "72007a00");
  // A present zero limit is sent: 0 is the controller's to reject, not "unset".
  assert.equal(hex(encodeCreateSandboxRequest({ resources: { pids: 0n } })), "7a021800");
});

// --- tokens ---------------------------------------------------------------------

Deno.test("tokenInfoToJson() is protobuf-es's toJson with alwaysEmitImplicit, byte for byte", () => {
  const r = new Random(SEED ^ 0x4444);
  const opts = { alwaysEmitImplicit: true } as const;
  for (let i = 0; i < ROUNDS; i++) {
    const token = randomMessage(r, TokenInfoSchema) as TokenInfo;
    const where = `seed ${SEED}, round ${i}`;
    const ours = tokenInfoToJson(token);
    assert.deepEqual(ours, toJson(TokenInfoSchema, token, opts), where);
    assert.equal(
      JSON.stringify(ours, null, 2),
      toJsonString(TokenInfoSchema, token, { ...opts, prettySpaces: 2 }),
      where,
    );
  }
});

Deno.test("decodeCreateTokenResponse() merges a token sent in pieces with unknown fields between", () => {
  const r = new Random(SEED ^ 0x5555);
  for (let i = 0; i < ROUNDS; i++) {
    const token = randomMessage(r, TokenInfoSchema) as TokenInfo;
    const secret = randomString(r);
    const w = new BinaryWriter();
    w.raw(unknownFields(r));
    for (const piece of messagePiecesWithUnknowns(r, TokenInfoSchema, token)) {
      w.tag(1, WireType.LengthDelimited).bytes(piece);
    }
    if (secret !== "") w.tag(2, WireType.LengthDelimited).string(secret);
    w.raw(unknownFields(r));
    const bytes = w.finish();
    const where = `seed ${SEED}, round ${i}, bytes ${hex(bytes)}`;
    const expected = create(CreateTokenResponseSchema, { token, secret });
    assert.deepEqual(decodeCreateTokenResponse(bytes), expected, where);
    assert.deepEqual(withoutUnknown(fromBinary(CreateTokenResponseSchema, bytes)), expected, where);
  }
});

Deno.test("decodeListTokensResponse() and decodeTokenInfo() skip unknown fields", () => {
  const r = new Random(SEED ^ 0x6666);
  for (let i = 0; i < ROUNDS / 4; i++) {
    const tokens = Array.from({ length: r.int(5) }, () => randomMessage(r, TokenInfoSchema));
    const w = new BinaryWriter();
    w.raw(unknownFields(r));
    for (const token of tokens) {
      const inner = concat(messagePiecesWithUnknowns(r, TokenInfoSchema, token));
      assert.deepEqual(decodeTokenInfo(inner), token, `seed ${SEED}, round ${i}`);
      w.tag(1, WireType.LengthDelimited).bytes(inner);
      w.raw(unknownFields(r));
    }
    const expected = create(ListTokensResponseSchema, { tokens: tokens as TokenInfo[] });
    assert.deepEqual(decodeListTokensResponse(w.finish()), expected, `seed ${SEED}, round ${i}`);
  }
});

Deno.test("decodeCreateTokenResponse() tells an empty token from an absent one", () => {
  const absent = decodeCreateTokenResponse(new Uint8Array(0));
  assert.ok(!("token" in absent));
  assert.deepEqual(absent, create(CreateTokenResponseSchema));
  const empty = decodeCreateTokenResponse(new Uint8Array([0x0a, 0x00]));
  assert.deepEqual(empty, create(CreateTokenResponseSchema, { token: {} }));
});

Deno.test("encodeCreateTokenRequest() sends quota whenever present, 0 included", () => {
  const cases: Record<string, unknown>[] = [
    {},
    { quota: undefined },
    { quota: 0 },
    { quota: 10, namespaces: ["team-a", "team-b"], ttlSeconds: 3600n },
    { admin: true, ttlSeconds: 0n },
  ];
  for (const init of cases) {
    assert.equal(
      hex(encodeCreateTokenRequest(init)),
      hex(toBinary(CreateTokenRequestSchema, create(CreateTokenRequestSchema, init))),
      Deno.inspect(init),
    );
  }
  assert.equal(hex(encodeCreateTokenRequest({ quota: undefined })), "");
  assert.equal(hex(encodeCreateTokenRequest({ quota: 0 })), "2000");
});

// --- profiles ---------------------------------------------------------------------
// The seeded cross-checks above cover Profile like every method; these spell
// out what fsb debug profile sends and the chunk sizes a profile comes in.

Deno.test("encodeProfileRequest() is protobuf-es's for what fsb debug profile sends", () => {
  const cases: Record<string, unknown>[] = [
    {},
    { kind: "cpu", seconds: 30 },
    { kind: "cpu", seconds: 0 },
    { kind: "cpu", seconds: 300, agentId: "agent-1" },
    { kind: "heap", agentId: "agent-ü" },
    { kind: "heap", seconds: undefined, agentId: undefined },
    { seconds: 0xffff_ffff },
  ];
  for (const init of cases) {
    assert.equal(
      hex(encodeProfileRequest(init)),
      hex(toBinary(ProfileRequestSchema, create(ProfileRequestSchema, init))),
      Deno.inspect(init),
    );
  }
  // seconds 0 is proto3's default: not sent, and the controller takes 30.
  assert.equal(hex(encodeProfileRequest({ kind: "cpu", seconds: 0 })), "0a03637075");
  assert.equal(hex(encodeProfileRequest({ kind: "cpu", seconds: 2 })), "0a036370751002");
});

Deno.test("decodeProfileChunk() reads chunks of any size, as views into the message", () => {
  for (const size of [0, 1, 127, 128, 16_384, 1 << 20, (4 << 20) + 3]) {
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 31 + size) & 0xff;
    const bytes = toBinary(ProfileChunkSchema, create(ProfileChunkSchema, { data }));
    const chunk = decodeProfileChunk(bytes);
    assert.deepEqual(chunk, create(ProfileChunkSchema, { data }), `${size} bytes`);
    if (size > 0) assert.equal(chunk.data.buffer, bytes.buffer, "a view, not a copy");
  }
});

Deno.test("decodeLogChunk() reads the end marker, and data as a view into the message", () => {
  const data = new TextEncoder().encode("hello\n");
  const cases = [{ data }, { end: true }, { data, end: true }, {}];
  for (const init of cases) {
    const bytes = toBinary(LogChunkSchema, create(LogChunkSchema, init));
    const chunk = decodeLogChunk(bytes);
    assert.deepEqual(chunk, create(LogChunkSchema, init), Deno.inspect(init));
    if (init.data !== undefined) {
      assert.equal(chunk.data.buffer, bytes.buffer, "a view, not a copy");
    }
  }
  // The marker on its own is two bytes (field 2, varint 1): an empty data is not sent.
  assert.deepEqual([...toBinary(LogChunkSchema, create(LogChunkSchema, { end: true }))], [0x10, 1]);
  // A server from before the marker sends data alone: end reads false.
  assert.equal(decodeLogChunk(new Uint8Array([0x0a, 1, 0x41])).end, false);
});
