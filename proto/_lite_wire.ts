/**
 * The wire primitives the hand-written FastPath codecs share
 * (`fastpath_lite.ts`, `fastpath_lite_exec.ts`, `fastpath_lite_files.ts`),
 * each written to match protobuf-es byte for byte. Private to `proto/`.
 *
 * @module
 */
import { type BinaryReader, type BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

// --- writing -------------------------------------------------------------
// Like protobuf-es (and so byte for byte the same): fields in number order,
// proto3 defaults left out, `optional` fields written whenever present (zero
// included), repeated uint32 packed, map entries as nested messages with key 1
// and value 2, both always written, a present message field written even
// when it is empty (presence is what it says), and the member of a oneof that
// is set written whatever its value (a oneof has presence too).

/** Writes a string field unless it is empty or absent. */
export function putString(w: BinaryWriter, no: number, value: string | undefined): void {
  if (value !== undefined && value !== "") w.tag(no, WireType.LengthDelimited).string(value);
}

/** Writes each string of a repeated string field. */
export function putStrings(
  w: BinaryWriter,
  no: number,
  values: readonly string[] | undefined,
): void {
  if (values === undefined) return;
  for (const value of values) w.tag(no, WireType.LengthDelimited).string(value);
}

/** Writes a repeated uint32 field, packed; nothing when empty. */
export function putUint32s(
  w: BinaryWriter,
  no: number,
  values: readonly number[] | undefined,
): void {
  if (values === undefined || values.length === 0) return;
  w.tag(no, WireType.LengthDelimited).fork();
  for (const value of values) w.uint32(value);
  w.join();
}

/** Writes an int64 field unless it is 0 or absent. */
export function putInt64(w: BinaryWriter, no: number, value: bigint | undefined): void {
  if (value !== undefined && value !== 0n) w.tag(no, WireType.Varint).int64(value);
}

/** Writes an `optional int64` field whenever present, 0 included. */
export function putOptionalInt64(w: BinaryWriter, no: number, value: bigint | undefined): void {
  if (value !== undefined) w.tag(no, WireType.Varint).int64(value);
}

/** Writes an `optional uint32` field whenever present, 0 included. */
export function putOptionalUint32(w: BinaryWriter, no: number, value: number | undefined): void {
  if (value !== undefined) w.tag(no, WireType.Varint).uint32(value);
}

/** Writes a uint32 field unless it is 0 or absent. */
export function putUint32(w: BinaryWriter, no: number, value: number | undefined): void {
  if (value !== undefined && value !== 0) w.tag(no, WireType.Varint).uint32(value);
}

/** Writes an enum field unless it is 0 or absent. */
export function putEnum(w: BinaryWriter, no: number, value: number | undefined): void {
  if (value !== undefined && value !== 0) w.tag(no, WireType.Varint).int32(value);
}

/** Writes a bool field when true. */
export function putBool(w: BinaryWriter, no: number, value: boolean | undefined): void {
  if (value === true) w.tag(no, WireType.Varint).bool(true);
}

/** Writes a `map<string, string>` field, one entry message per key. */
export function putMap(
  w: BinaryWriter,
  no: number,
  map: Readonly<Record<string, string>> | undefined,
): void {
  if (map === undefined) return;
  for (const key of Object.keys(map)) {
    w.tag(no, WireType.LengthDelimited).fork();
    w.tag(1, WireType.LengthDelimited).string(key);
    w.tag(2, WireType.LengthDelimited).string(map[key]);
    w.join();
  }
}

// --- reading -------------------------------------------------------------
// Like protobuf-es's fromBinary: unknown fields are skipped (not kept), strings
// must be valid UTF-8, repeated uint32 is accepted packed or not, a map entry
// without key or value gets "" for it, the last value of a scalar field wins,
// a message field that comes more than once is merged into (its scalars
// overwritten, its lists appended), as the encoding's rules say, and so is a
// oneof's message member that comes again while its case is still set.

/** Reads a repeated uint32 field's values, packed or not, into `into`. */
export function readUint32s(r: BinaryReader, wireType: WireType, into: number[]): void {
  if (wireType !== WireType.LengthDelimited) {
    into.push(r.uint32());
    return;
  }
  const len = r.uint32();
  const end = r.pos + len;
  while (r.pos < end) into.push(r.uint32());
}

/** Reads one `map<string, string>` entry into `into`. */
export function readMapEntry(r: BinaryReader, into: Record<string, string>): void {
  const len = r.uint32();
  const end = r.pos + len;
  let key = "";
  let value = "";
  while (r.pos < end) {
    const [no, wireType] = r.tag();
    if (no === 1) key = r.string(true);
    else if (no === 2) value = r.string(true);
    else r.skip(wireType, no);
  }
  // A "__proto__" key is an ordinary entry: Deno has no __proto__ accessor.
  into[key] = value;
}

/**
 * Reads an int64: Deno has BigInt, so the reader's int64 is always a bigint,
 * never the string fallback its type also allows.
 */
export function readInt64(r: BinaryReader): bigint {
  return r.int64() as bigint;
}
