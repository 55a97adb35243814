/**
 * A tree of files with what a copy must carry, and a description of a tree
 * to compare two of them, for the tar and cp tests.
 *
 * @module
 */

/** A directory path past ustar's 100-byte name field. */
export const LONG_DIR = "d".repeat(90) + "/" + "e".repeat(90);
/** A file path past what ustar's name and prefix fields hold. */
export const LONG_FILE = `${LONG_DIR}/${"f".repeat(120)}.txt`;
/** The mtime makeTree() sets on MTIMES. */
export const MTIME = 1_600_000_000;

/**
 * A tree with what cp must carry: nested and empty directories, modes,
 * an empty file, a 300 KiB file, names past ustar's 100 bytes, UTF-8 names,
 * relative and absolute symlinks, and a read-only directory.
 */
export async function makeTree(root: string): Promise<void> {
  await Deno.mkdir(`${root}/sub/deeper`, { recursive: true });
  await Deno.mkdir(`${root}/empty`);
  await Deno.mkdir(`${root}/${LONG_DIR}`, { recursive: true });
  await Deno.writeTextFile(`${root}/hello.txt`, "hello\n");
  await Deno.writeFile(`${root}/empty.bin`, new Uint8Array(0));
  const big = new Uint8Array(300 * 1024);
  for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
  await Deno.writeFile(`${root}/sub/big.bin`, big);
  await Deno.writeTextFile(`${root}/sub/deeper/run.sh`, "#!/bin/sh\necho run\n");
  await Deno.chmod(`${root}/sub/deeper/run.sh`, 0o750);
  await Deno.writeTextFile(`${root}/${LONG_FILE}`, "long\n");
  await Deno.writeTextFile(`${root}/grüße €.txt`, "utf-8\n");
  await Deno.symlink("sub/big.bin", `${root}/link-rel`);
  await Deno.symlink("/etc/hostname", `${root}/link-abs`);
  await Deno.symlink("x".repeat(150), `${root}/link-long`);
  await Deno.mkdir(`${root}/readonly`);
  await Deno.writeTextFile(`${root}/readonly/inside.txt`, "ro\n");
  await Deno.chmod(`${root}/readonly`, 0o555);
  await Deno.chmod(`${root}/empty`, 0o700);
  for (const path of ["hello.txt", "sub/big.bin", "sub", "empty", LONG_FILE]) {
    await Deno.utime(`${root}/${path}`, MTIME, MTIME);
  }
}

export interface Node {
  type: "file" | "dir" | "symlink";
  mode: number;
  mtime?: number;
  content?: string;
  target?: string;
}

/** Everything under `root` by relative path (mtime only where `withMtime` lists it). */
export async function describeTree(
  root: string,
  withMtime: string[] = [],
): Promise<Map<string, Node>> {
  const out = new Map<string, Node>();
  const walk = async (rel: string) => {
    const path = rel === "" ? root : `${root}/${rel}`;
    for await (const entry of Deno.readDir(path)) {
      const child = rel === "" ? entry.name : `${rel}/${entry.name}`;
      const info = await Deno.lstat(`${root}/${child}`);
      const node: Node = {
        type: info.isSymlink ? "symlink" : info.isDirectory ? "dir" : "file",
        mode: info.mode! & 0o7777,
      };
      if (withMtime.includes(child)) node.mtime = Math.floor(info.mtime!.getTime() / 1000);
      if (info.isSymlink) node.target = await Deno.readLink(`${root}/${child}`);
      else if (info.isFile) {
        const bytes = await Deno.readFile(`${root}/${child}`);
        node.content = await digest(bytes);
      }
      out.set(child, node);
      if (info.isDirectory) await walk(child);
    }
  };
  await walk("");
  return out;
}

async function digest(bytes: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes.slice()));
  return `${bytes.length}:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Paths under the tree whose mtime makeTree() sets. */
export const MTIMES = ["hello.txt", "sub/big.bin", "sub", "empty", LONG_FILE];

/** Removes `dir`, read-only directories in it included. */
export async function cleanup(dir: string): Promise<void> {
  // Read-only directories must be writable again to be removed.
  await new Deno.Command("chmod", { args: ["-R", "u+w", dir] }).output();
  await Deno.remove(dir, { recursive: true });
}
