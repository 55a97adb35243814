/**
 * Finding the host's static busybox, which the containerd runtime mounts into
 * every sandbox as its helper for file operations.
 *
 * @module
 */

/** Where Debian's busybox-static (and most distributions' busybox) installs it. */
const CANDIDATES = ["/usr/bin/busybox", "/bin/busybox"];

/**
 * The first of `candidates` that is a statically linked ELF executable, or
 * undefined. A dynamically linked busybox would not run in an image without
 * the host's libc, so it does not count.
 */
export function findStaticBusybox(candidates: readonly string[] = CANDIDATES): string | undefined {
  for (const path of candidates) {
    try {
      if (isStaticElf(Deno.readFileSync(path))) return path;
    } catch {
      // Missing or unreadable: try the next.
    }
  }
  return undefined;
}

/** Whether `bytes` is a 64-bit little-endian ELF executable without an interpreter (PT_INTERP). */
export function isStaticElf(bytes: Uint8Array): boolean {
  if (bytes.length < 64) return false;
  if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
    return false;
  }
  // ELFCLASS64, little-endian: what every host fsb runs on is.
  if (bytes[4] !== 2 || bytes[5] !== 1) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const phoff = Number(view.getBigUint64(32, true));
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > bytes.length) return false;
    const PT_INTERP = 3;
    if (view.getUint32(at, true) === PT_INTERP) return false;
  }
  return true;
}
