/**
 * Just enough of the tar format to find and read the files of an archive in
 * place: an index of regular files by name, then ranged reads.
 *
 * @module
 */

/** Where one regular file's bytes sit in the archive. */
export interface TarEntry {
  readonly offset: number;
  readonly size: number;
}

const BLOCK = 512;
const decoder = new TextDecoder();

/**
 * Scans the archive's headers (seeking over file bodies) and returns its
 * regular files by name, with any leading `./` dropped. Understands ustar
 * name prefixes, pax `path` records and GNU long names.
 */
export async function readTarIndex(file: Deno.FsFile): Promise<Map<string, TarEntry>> {
  const out = new Map<string, TarEntry>();
  const header = new Uint8Array(BLOCK);
  let offset = 0;
  let longName: string | undefined;
  for (;;) {
    if (!(await readFull(file, { offset, buf: header }))) break;
    if (header.every((b) => b === 0)) break;
    const size = parseOctal(header.subarray(124, 136));
    const type = String.fromCharCode(header[156] || 48);
    const body = offset + BLOCK;
    let name = longName ?? headerName(header);
    longName = undefined;
    if (type === "x" || type === "L") {
      const bytes = new Uint8Array(size);
      await readFull(file, { offset: body, buf: bytes });
      longName = type === "L" ? cString(bytes) : paxPath(bytes);
    } else if (type === "0" || type === "7") {
      if (name.startsWith("./")) name = name.slice(2);
      out.set(name, { offset: body, size });
    }
    offset = body + Math.ceil(size / BLOCK) * BLOCK;
  }
  return out;
}

/** Reads `size` bytes at `offset`. */
export async function readRange(file: Deno.FsFile, entry: TarEntry): Promise<Uint8Array> {
  const out = new Uint8Array(entry.size);
  if (!(await readFull(file, { offset: entry.offset, buf: out }))) {
    throw new Error("Cannot read tar entry as the archive is truncated");
  }
  return out;
}

/** Yields an entry's bytes in chunks of at most `chunkBytes`. */
export async function* readChunks(
  file: Deno.FsFile,
  entry: TarEntry,
  { chunkBytes }: { chunkBytes: number },
): AsyncIterable<Uint8Array> {
  for (let at = 0; at < entry.size; at += chunkBytes) {
    const buf = new Uint8Array(Math.min(chunkBytes, entry.size - at));
    if (!(await readFull(file, { offset: entry.offset + at, buf }))) {
      throw new Error("Cannot read tar entry as the archive is truncated");
    }
    yield buf;
  }
}

async function readFull(
  file: Deno.FsFile,
  { offset, buf }: { offset: number; buf: Uint8Array },
): Promise<boolean> {
  await file.seek(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < buf.byteLength) {
    const n = await file.read(buf.subarray(got));
    if (n === null) return false;
    got += n;
  }
  return true;
}

function headerName(header: Uint8Array): string {
  const name = cString(header.subarray(0, 100));
  const magic = decoder.decode(header.subarray(257, 262));
  const prefix = magic === "ustar" ? cString(header.subarray(345, 500)) : "";
  return prefix === "" ? name : `${prefix}/${name}`;
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return decoder.decode(end < 0 ? bytes : bytes.subarray(0, end));
}

function parseOctal(bytes: Uint8Array): number {
  // GNU base-256 for sizes of 8 GiB and more: high bit set on the first byte.
  if (bytes[0] & 0x80) {
    let n = bytes[0] & 0x7f;
    for (let i = 1; i < bytes.byteLength; i++) n = n * 256 + bytes[i];
    return n;
  }
  const text = cString(bytes).trim();
  return text === "" ? 0 : parseInt(text, 8);
}

/** The `path` of a pax extended header: records of `LEN key=value\n`. */
function paxPath(bytes: Uint8Array): string | undefined {
  const text = decoder.decode(bytes);
  let at = 0;
  while (at < text.length) {
    const space = text.indexOf(" ", at);
    if (space < 0) break;
    const len = parseInt(text.slice(at, space), 10);
    if (!(len > 0)) break;
    const record = text.slice(space + 1, at + len - 1);
    if (record.startsWith("path=")) return record.slice(5);
    at += len;
  }
  return undefined;
}
