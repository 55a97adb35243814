/**
 * The tar format as `fsb sandbox cp` needs it: POSIX ustar headers, with PAX
 * extended headers for what ustar cannot hold (names and link targets past
 * 100 bytes, sizes past 8 GiB, times out of range). The reader also takes
 * what busybox and GNU tar write: GNU long names (`L`, `K`), base-256
 * numbers, and the GNU magic. Nothing here touches the file system
 * (`_tar_pack.ts` and `_tar_extract.ts` do).
 *
 * @module
 */

/** The kinds of entry `fsb sandbox cp` copies; anything else is `other` (devices, FIFOs). */
export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "other";

/** One archive entry's header, after any PAX or GNU long-name headers were applied. */
export interface TarHeader {
  /** The path in the archive, as written (`dir/`, `./a`, ...). */
  readonly name: string;
  readonly type: TarEntryType;
  /** The raw type flag (`0`, `5`, `3`, ...), for messages about `other` entries. */
  readonly typeflag: string;
  /** Permission bits with setuid, setgid and sticky. */
  readonly mode: number;
  /** Bytes of data that follow the header (files only; 0 for the rest). */
  readonly size: number;
  /** Modification time in unix seconds. */
  readonly mtime: number;
  /** A symlink's target, or a hard link's archive path. */
  readonly linkname: string;
  readonly uid: number;
  readonly gid: number;
}

/** An entry to write: {@linkcode TarHeader} without what the writer works out. */
export interface TarEntryInit {
  /** The path in the archive, `/`-separated, without a trailing `/` (added for directories). */
  readonly name: string;
  readonly type: "file" | "dir" | "symlink";
  readonly mode: number;
  /** Bytes of data that follow (files). */
  readonly size?: number;
  /** Unix seconds. */
  readonly mtime: number;
  /** A symlink's target. */
  readonly linkname?: string;
  /** Owner; 0 (root) when absent. */
  readonly uid?: number;
  readonly gid?: number;
}

/** An archive that cannot be read: truncated, or a header that is not one. */
export class TarFormatError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "TarFormatError";
  }
}

/** The size of a header and the unit data is padded to. */
export const BLOCK = 512;

/** The end of an archive: two zero blocks. */
export const TAR_END: Uint8Array = new Uint8Array(2 * BLOCK);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Largest values that fit an octal field: 7 digits (mode, uid, gid), 11 (size, mtime).
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

/** Zero bytes that pad `size` bytes of data to a whole block. */
export function tarPadding(size: number): Uint8Array {
  const rest = size % BLOCK;
  return new Uint8Array(rest === 0 ? 0 : BLOCK - rest);
}

/**
 * The header blocks of `entry`: a PAX extended header first when a value
 * does not fit ustar, then the ustar header.
 */
export function encodeTarHeader(entry: TarEntryInit): Uint8Array {
  const name = entry.type === "dir" ? `${entry.name}/` : entry.name;
  const linkname = entry.linkname ?? "";
  const size = entry.type === "file" ? entry.size ?? 0 : 0;
  const mtime = Math.floor(entry.mtime);
  const uid = entry.uid ?? 0;
  const gid = entry.gid ?? 0;
  const pax: [string, string][] = [];
  const nameBytes = encoder.encode(name);
  if (nameBytes.length > 100) pax.push(["path", name]);
  if (encoder.encode(linkname).length > 100) pax.push(["linkpath", linkname]);
  if (size > MAX_OCTAL_11) pax.push(["size", String(size)]);
  if (mtime < 0 || mtime > MAX_OCTAL_11) pax.push(["mtime", String(mtime)]);
  if (uid > MAX_OCTAL_7) pax.push(["uid", String(uid)]);
  if (gid > MAX_OCTAL_7) pax.push(["gid", String(gid)]);
  const ustar = ustarHeader({
    name: truncate(name, 100),
    typeflag: entry.type === "file" ? "0" : entry.type === "dir" ? "5" : "2",
    mode: entry.mode & 0o7777,
    size: size > MAX_OCTAL_11 ? 0 : size,
    mtime: mtime < 0 || mtime > MAX_OCTAL_11 ? 0 : mtime,
    linkname: truncate(linkname, 100),
    uid: uid > MAX_OCTAL_7 ? 0 : uid,
    gid: gid > MAX_OCTAL_7 ? 0 : gid,
  });
  if (pax.length === 0) return ustar;
  const records = encoder.encode(pax.map(([k, v]) => paxRecord(k, v)).join(""));
  const base = name.replace(/\/$/, "").split("/").pop() ?? "";
  const paxHeader = ustarHeader({
    name: truncate(`PaxHeaders/${base}`, 100),
    typeflag: "x",
    mode: 0o644,
    size: records.length,
    mtime: 0,
    linkname: "",
    uid: 0,
    gid: 0,
  });
  const out = new Uint8Array(BLOCK + records.length + tarPadding(records.length).length + BLOCK);
  out.set(paxHeader, 0);
  out.set(records, BLOCK);
  out.set(ustar, out.length - BLOCK);
  return out;
}

// "%d %s=%s\n", where %d counts the whole record, its own digits included.
function paxRecord(key: string, value: string): string {
  const rest = encoder.encode(` ${key}=${value}\n`).length;
  let len = rest + String(rest).length;
  if (String(len).length !== String(len - rest).length) len = rest + String(len).length;
  return `${len} ${key}=${value}\n`;
}

// The longest prefix of `s` that fits `max` bytes of UTF-8 (PAX holds the whole).
function truncate(s: string, max: number): string {
  let bytes = encoder.encode(s);
  if (bytes.length <= max) return s;
  bytes = bytes.subarray(0, max);
  // Do not cut a character in half.
  while (bytes.length > 0 && (bytes[bytes.length - 1] & 0xc0) === 0x80) {
    bytes = bytes.subarray(0, -1);
  }
  if (bytes.length > 0 && bytes[bytes.length - 1] >= 0xc0) bytes = bytes.subarray(0, -1);
  return decoder.decode(bytes);
}

interface UstarFields {
  name: string;
  typeflag: string;
  mode: number;
  size: number;
  mtime: number;
  linkname: string;
  uid: number;
  gid: number;
}

function ustarHeader(f: UstarFields): Uint8Array {
  const h = new Uint8Array(BLOCK);
  h.set(encoder.encode(f.name), 0);
  octal(h, 100, 8, f.mode);
  octal(h, 108, 8, f.uid);
  octal(h, 116, 8, f.gid);
  octal(h, 124, 12, f.size);
  octal(h, 136, 12, f.mtime);
  h[156] = f.typeflag.charCodeAt(0);
  h.set(encoder.encode(f.linkname), 157);
  h.set(encoder.encode("ustar\x0000"), 257);
  // The checksum is summed with its own field as spaces.
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.set(encoder.encode(sum.toString(8).padStart(6, "0") + "\x00 "), 148);
  return h;
}

// Zero-padded octal digits, NUL-terminated, filling the field.
function octal(h: Uint8Array, at: number, width: number, value: number): void {
  h.set(encoder.encode(value.toString(8).padStart(width - 1, "0") + "\x00"), at);
}

/** An entry as {@linkcode readTar} yields it: its header, then its data. */
export interface TarReadEntry {
  readonly header: TarHeader;
  /**
   * The entry's data, in chunks. Read it before asking for the next entry, or
   * it is skipped; it can be read once.
   */
  readonly body: AsyncIterable<Uint8Array>;
}

/**
 * Reads the entries of the tar archive `source` streams, in order, one at a
 * time (no entry's data is held in memory). Ends at the two zero blocks that
 * end an archive, or at the end of the stream if it stops between entries.
 *
 * @throws {TarFormatError} when the stream ends inside an entry or a header's
 * checksum is wrong.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>): AsyncGenerator<TarReadEntry> {
  const input = new ByteReader(source);
  let pax: Map<string, string> = new Map();
  let longName: string | undefined;
  let longLink: string | undefined;
  try {
    while (true) {
      const block = await input.read(BLOCK, true);
      if (block === undefined || block.every((b) => b === 0)) return;
      const raw = parseHeader(block);
      if (
        raw.typeflag === "x" || raw.typeflag === "g" || raw.typeflag === "L" || raw.typeflag === "K"
      ) {
        const data = await input.read(raw.size, false);
        await input.skip(tarPadding(raw.size).length);
        if (raw.typeflag === "x") pax = parsePax(data!);
        // Global PAX headers hold nothing fsb uses.
        else if (raw.typeflag === "L") longName = cString(data!, 0, data!.length);
        else if (raw.typeflag === "K") longLink = cString(data!, 0, data!.length);
        continue;
      }
      const header: TarHeader = {
        ...raw,
        name: pax.get("path") ?? longName ?? raw.name,
        linkname: pax.get("linkpath") ?? longLink ?? raw.linkname,
        size: paxNumber(pax, "size") ?? raw.size,
        mtime: paxNumber(pax, "mtime") ?? raw.mtime,
        uid: paxNumber(pax, "uid") ?? raw.uid,
        gid: paxNumber(pax, "gid") ?? raw.gid,
      };
      pax = new Map();
      longName = undefined;
      longLink = undefined;
      // Only files carry data, but a header's size says what follows whatever its type.
      const dataSize = header.type === "dir" || header.type === "symlink" ||
          header.type === "hardlink"
        ? 0
        : header.size;
      let left = dataSize;
      const body = (async function* () {
        for await (const chunk of input.chunks(left)) {
          left -= chunk.length;
          yield chunk;
        }
      })();
      yield { header: header.type === "file" ? header : { ...header, size: 0 }, body };
      await input.skip(left + tarPadding(dataSize).length);
    }
  } finally {
    await input.close();
  }
}

function parseHeader(h: Uint8Array): TarHeader {
  const stored = number(h, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new TarFormatError("Invalid tar archive: a header's checksum does not match");
  }
  const magic = decoder.decode(h.subarray(257, 263));
  let name = cString(h, 0, 100);
  // Only POSIX ustar has a prefix field; GNU keeps times there.
  if (magic === "ustar\x00") {
    const prefix = cString(h, 345, 155);
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  const typeflag = h[156] === 0 ? "0" : String.fromCharCode(h[156]);
  return {
    name,
    type: entryType(typeflag),
    typeflag,
    mode: number(h, 100, 8) & 0o7777,
    size: number(h, 124, 12),
    mtime: number(h, 136, 12),
    linkname: cString(h, 157, 100),
    uid: number(h, 108, 8),
    gid: number(h, 116, 8),
  };
}

function entryType(typeflag: string): TarEntryType {
  switch (typeflag) {
    case "0":
    case "7":
      return "file";
    case "1":
      return "hardlink";
    case "2":
      return "symlink";
    case "5":
      return "dir";
    default:
      return "other";
  }
}

// An octal field (NUL- or space-terminated, maybe space-padded), or GNU base-256.
function number(h: Uint8Array, at: number, width: number): number {
  const field = h.subarray(at, at + width);
  if (field[0] & 0x80) {
    let n = BigInt(field[0] & 0x3f);
    for (let i = 1; i < field.length; i++) n = (n << 8n) | BigInt(field[i]);
    // Bit 6 of the first byte is the sign (two's complement).
    if (field[0] & 0x40) n -= 1n << BigInt(8 * field.length - 2);
    return Number(n);
  }
  let start = 0;
  while (start < field.length && field[start] === 0x20) start++;
  let end = start;
  while (end < field.length && field[end] !== 0 && field[end] !== 0x20) end++;
  const text = decoder.decode(field.subarray(start, end));
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) {
    throw new TarFormatError(`Invalid tar archive: "${text}" is not an octal number`);
  }
  return parseInt(text, 8);
}

function cString(bytes: Uint8Array, at: number, width: number): string {
  const field = bytes.subarray(at, at + width);
  const nul = field.indexOf(0);
  return decoder.decode(nul < 0 ? field : field.subarray(0, nul));
}

function parsePax(data: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const len = space < 0 ? NaN : Number(decoder.decode(data.subarray(at, space)));
    if (!Number.isSafeInteger(len) || len <= 0 || at + len > data.length) {
      throw new TarFormatError("Invalid tar archive: a PAX record is malformed");
    }
    const record = decoder.decode(data.subarray(space + 1, at + len - 1));
    const eq = record.indexOf("=");
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    at += len;
  }
  return out;
}

function paxNumber(pax: Map<string, string>, key: string): number | undefined {
  const value = pax.get(key);
  if (value === undefined) return undefined;
  // mtime may carry a fraction of a second.
  const n = Math.floor(Number(value));
  if (!Number.isFinite(n)) throw new TarFormatError(`Invalid tar archive: PAX ${key}="${value}"`);
  return n;
}

/** Exact reads over a stream of chunks of any size. */
class ByteReader {
  #source: AsyncIterator<Uint8Array>;
  #head: Uint8Array = new Uint8Array(0);
  #done = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#source = source[Symbol.asyncIterator]();
  }

  // Refills the head; false at the end of the stream.
  async #fill(): Promise<boolean> {
    while (this.#head.length === 0) {
      if (this.#done) return false;
      const next = await this.#source.next();
      if (next.done) {
        this.#done = true;
        return false;
      }
      this.#head = next.value;
    }
    return true;
  }

  /** Exactly `n` bytes; undefined if `endOk` and the stream ended before the first byte. */
  async read(n: number, endOk: boolean): Promise<Uint8Array | undefined> {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (!(await this.#fill())) {
        if (got === 0 && endOk) return undefined;
        throw new TarFormatError("Invalid tar archive: it ends in the middle of an entry");
      }
      const take = Math.min(n - got, this.#head.length);
      out.set(this.#head.subarray(0, take), got);
      this.#head = this.#head.subarray(take);
      got += take;
    }
    return out;
  }

  /** The next `n` bytes as the chunks they come in. */
  async *chunks(n: number): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (!(await this.#fill())) {
        throw new TarFormatError("Invalid tar archive: it ends in the middle of an entry");
      }
      const take = Math.min(left, this.#head.length);
      const chunk = this.#head.subarray(0, take);
      this.#head = this.#head.subarray(take);
      left -= take;
      yield chunk;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.chunks(n)) { /* discarded */ }
  }

  async close(): Promise<void> {
    if (!this.#done) await this.#source.return?.();
  }
}
