import assert from "node:assert/strict";
import {
  encodeTarHeader,
  readTar,
  TAR_END,
  type TarEntryInit,
  TarFormatError,
  tarPadding,
} from "../../cli/_tar.ts";
import { extractTar, UnsafeTarEntryError } from "../../cli/_tar_extract.ts";
import { packTar } from "../../cli/_tar_pack.ts";
import { cleanup, describeTree, LONG_FILE, makeTree, MTIMES } from "./file_tree.ts";

// --- helpers -------------------------------------------------------------------

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of stream) parts.push(chunk.slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// The archive, cut into chunks of awkward sizes, as a network would deliver it.
async function* chunked(bytes: Uint8Array, size = 777): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

function archive(...entries: (TarEntryInit & { data?: string })[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const data = new TextEncoder().encode(e.data ?? "");
    parts.push(encodeTarHeader({ ...e, size: e.type === "file" ? data.length : 0 }));
    if (e.type === "file") parts.push(data, tarPadding(data.length));
  }
  parts.push(TAR_END);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** `bytes` with its first header's type flag set to `flag`, checksum redone. */
function retyped(bytes: Uint8Array, flag: string): Uint8Array {
  const out = bytes.slice();
  out[156] = flag.charCodeAt(0);
  out.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += out[i];
  out.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  return out;
}

async function tempDir(t: { name: string }): Promise<string> {
  return await Deno.makeTempDir({ prefix: "fsb-tar-" + t.name.slice(0, 8).replace(/\W/g, "") });
}

async function run(cmd: string, args: string[], stdin?: Uint8Array): Promise<Uint8Array> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await child.output();
  assert.equal(out.code, 0, `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return out.stdout;
}

// --- round trips -----------------------------------------------------------------

Deno.test("packTar() then extractTar() keeps files, directories, symlinks, modes and mtimes", async (t) => {
  const dir = await tempDir(t);
  try {
    await makeTree(`${dir}/src`);
    await Deno.mkdir(`${dir}/dst`);
    await extractTar(chunked(await collect(packTar(`${dir}/src`, { name: "." }))), `${dir}/dst`);
    assert.deepEqual(
      await describeTree(`${dir}/dst`, MTIMES),
      await describeTree(`${dir}/src`, MTIMES),
    );
    // The top entry "." gave dst the source directory's mode.
    assert.equal(
      (await Deno.stat(`${dir}/dst`)).mode! & 0o777,
      (await Deno.stat(`${dir}/src`)).mode! & 0o777,
    );
  } finally {
    await cleanup(dir);
  }
});

Deno.test("packTar() names entries under the name given, and archives a symlink as a link", async (t) => {
  const dir = await tempDir(t);
  try {
    await makeTree(`${dir}/src`);
    const names: string[] = [];
    for await (const { header } of readTar(packTar(`${dir}/src`, { name: "top" }))) {
      names.push(header.name);
    }
    assert.equal(names[0], "top/");
    assert.ok(names.includes(`top/${LONG_FILE}`), "long names come whole");
    assert.ok(names.every((n) => n === "top/" || n.startsWith("top/")));
    const link = [];
    for await (const { header } of readTar(packTar(`${dir}/src/link-rel`, { name: "l" }))) {
      link.push(header);
    }
    assert.deepEqual(link.map((h) => [h.name, h.type, h.linkname]), [[
      "l",
      "symlink",
      "sub/big.bin",
    ]]);
    await assert.rejects(
      collect(packTar(`${dir}/src/hello.txt`, { name: "" })),
      /Cannot archive the contents of .*hello\.txt: not a directory/,
    );
  } finally {
    await cleanup(dir);
  }
});

Deno.test("GNU tar extracts what packTar() writes, long names and modes included", async (t) => {
  const dir = await tempDir(t);
  try {
    await makeTree(`${dir}/src`);
    await Deno.mkdir(`${dir}/dst`);
    await run(
      "tar",
      ["-x", "-p", "-C", `${dir}/dst`, "-f", "-"],
      await collect(packTar(`${dir}/src`, { name: "." })),
    );
    assert.deepEqual(
      await describeTree(`${dir}/dst`, MTIMES),
      await describeTree(`${dir}/src`, MTIMES),
    );
  } finally {
    await cleanup(dir);
  }
});

for (const format of ["gnu", "pax", "ustar"]) {
  Deno.test(`extractTar() reads GNU tar's ${format} archives`, async (t) => {
    const dir = await tempDir(t);
    try {
      await makeTree(`${dir}/src`);
      if (format === "ustar") {
        // ustar cannot hold these at all; GNU tar refuses them. The long
        // directory stays: it fits ustar's prefix and name fields.
        await Deno.remove(`${dir}/src/link-long`);
        await Deno.remove(`${dir}/src/${LONG_FILE}`);
      }
      const bytes = await run("tar", ["-c", `--format=${format}`, "-C", `${dir}/src`, "."]);
      await Deno.mkdir(`${dir}/dst`);
      await extractTar(chunked(bytes, 4096), `${dir}/dst`);
      assert.deepEqual(
        await describeTree(`${dir}/dst`, MTIMES),
        await describeTree(`${dir}/src`, MTIMES),
      );
    } finally {
      await cleanup(dir);
    }
  });
}

Deno.test({
  name: "busybox tar (what the agent runs in a sandbox) and the CLI read each other's archives",
  ignore: !hasBusybox(),
}, async (t) => {
  const dir = await tempDir(t);
  try {
    await makeTree(`${dir}/src`);
    // busybox writes GNU long names ("././@LongLink") for names past 100 bytes.
    const bytes = await run("busybox", ["tar", "-c", "-C", dir, "src"]);
    await Deno.mkdir(`${dir}/out`);
    await extractTar(chunked(bytes), `${dir}/out`);
    assert.deepEqual(await describeTree(`${dir}/out/src`), await describeTree(`${dir}/src`));
    // ... and reads PAX long names.
    await Deno.mkdir(`${dir}/back`);
    await run(
      "busybox",
      ["tar", "-x", "-C", `${dir}/back`],
      await collect(packTar(`${dir}/src`, { name: "." })),
    );
    assert.deepEqual(await describeTree(`${dir}/back`), await describeTree(`${dir}/src`));
  } finally {
    await cleanup(dir);
  }
});

function hasBusybox(): boolean {
  try {
    return new Deno.Command("busybox", { args: ["tar", "--help"] }).outputSync().code === 0;
  } catch {
    return false;
  }
}

// --- headers -------------------------------------------------------------------

Deno.test("encodeTarHeader() moves what ustar cannot hold into a PAX header readTar() applies", async () => {
  const name = "n".repeat(300);
  const header = encodeTarHeader({
    name,
    type: "file",
    mode: 0o4755,
    size: 2 ** 34,
    mtime: -5,
    uid: 2 ** 22,
    gid: 7,
  });
  // A PAX header with its records, then the ustar header: no data is read here.
  for await (const { header: h } of readTar(chunked(header))) {
    assert.equal(h.name, name);
    assert.equal(h.size, 2 ** 34);
    assert.equal(h.mtime, -5);
    assert.equal(h.uid, 2 ** 22);
    assert.equal(h.gid, 7);
    assert.equal(h.mode, 0o4755);
    assert.equal(h.type, "file");
    break;
  }
});

Deno.test("readTar() refuses a header whose checksum is wrong, and an archive cut short", async () => {
  const bytes = archive({
    name: "a.txt",
    type: "file",
    mode: 0o644,
    mtime: 0,
    data: "x".repeat(600),
  });
  const bad = bytes.slice();
  bad[0] ^= 1;
  await assert.rejects(
    Array.fromAsync(readTar(chunked(bad))),
    new TarFormatError("Invalid tar archive: a header's checksum does not match"),
  );
  await assert.rejects(
    (async () => {
      for await (const { body } of readTar(chunked(bytes.subarray(0, 800)))) await collect(body);
    })(),
    new TarFormatError("Invalid tar archive: it ends in the middle of an entry"),
  );
});

Deno.test("readTar() skips the data of an entry whose body is not read", async () => {
  const bytes = archive(
    { name: "a", type: "file", mode: 0o644, mtime: 0, data: "a".repeat(1000) },
    { name: "b", type: "file", mode: 0o600, mtime: 0, data: "bb" },
  );
  const seen: [string, string][] = [];
  for await (const { header, body } of readTar(chunked(bytes, 100))) {
    seen.push([
      header.name,
      header.name === "b" ? new TextDecoder().decode(await collect(body)) : "",
    ]);
  }
  assert.deepEqual(seen, [["a", ""], ["b", "bb"]]);
});

// --- what an archive from a sandbox may not do -------------------------------

async function refuses(t: { name: string }, bytes: Uint8Array, message: string): Promise<void> {
  const dir = await tempDir(t);
  try {
    await Deno.mkdir(`${dir}/dest`);
    await assert.rejects(extractTar(chunked(bytes), `${dir}/dest`), (err: unknown) => {
      assert.ok(err instanceof UnsafeTarEntryError, `expected UnsafeTarEntryError, got ${err}`);
      assert.equal(err.message, message);
      return true;
    });
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${dir}/dest`)), [], "nothing extracted");
  } finally {
    await cleanup(dir);
  }
}

Deno.test("extractTar() refuses an absolute path", async (t) => {
  await refuses(
    t,
    archive({ name: "/tmp/fsb-evil", type: "file", mode: 0o644, mtime: 0, data: "x" }),
    'Refusing to extract "/tmp/fsb-evil": its path is absolute',
  );
});

Deno.test("extractTar() refuses a path with ..", async (t) => {
  await refuses(
    t,
    archive({ name: "a/../../outside/x", type: "file", mode: 0o644, mtime: 0, data: "x" }),
    'Refusing to extract "a/../../outside/x": its path contains ".."',
  );
});

Deno.test("extractTar() refuses a path through a symlink it extracted earlier", async (t) => {
  const dir = await tempDir(t);
  try {
    await Deno.mkdir(`${dir}/dest`);
    await Deno.mkdir(`${dir}/outside`);
    const bytes = archive(
      { name: "ok.txt", type: "file", mode: 0o644, mtime: 0, data: "fine" },
      { name: "link", type: "symlink", mode: 0o777, mtime: 0, linkname: `${dir}/outside` },
      { name: "link/evil", type: "file", mode: 0o644, mtime: 0, data: "x" },
    );
    await assert.rejects(
      extractTar(chunked(bytes), `${dir}/dest`),
      new UnsafeTarEntryError("link/evil", 'its path goes through the symlink "link"'),
    );
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${dir}/outside`)), []);
    // What came before the refused entry stays.
    assert.equal(await Deno.readTextFile(`${dir}/dest/ok.txt`), "fine");
  } finally {
    await cleanup(dir);
  }
});

Deno.test("extractTar() refuses a path through a symlink already in the destination", async (t) => {
  const dir = await tempDir(t);
  try {
    await Deno.mkdir(`${dir}/dest/a`, { recursive: true });
    await Deno.mkdir(`${dir}/outside`);
    await Deno.symlink(`${dir}/outside`, `${dir}/dest/a/b`);
    const bytes = archive({ name: "a/b/c/evil", type: "file", mode: 0o644, mtime: 0, data: "x" });
    await assert.rejects(
      extractTar(chunked(bytes), `${dir}/dest`),
      new UnsafeTarEntryError("a/b/c/evil", 'its path goes through the symlink "a/b"'),
    );
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${dir}/outside`)), []);
  } finally {
    await cleanup(dir);
  }
});

Deno.test("extractTar() replaces a symlink in the way of a file instead of writing through it", async (t) => {
  const dir = await tempDir(t);
  try {
    await Deno.mkdir(`${dir}/dest`);
    await Deno.writeTextFile(`${dir}/victim`, "untouched");
    await Deno.symlink(`${dir}/victim`, `${dir}/dest/f`);
    const bytes = archive({ name: "f", type: "file", mode: 0o644, mtime: 0, data: "new" });
    await extractTar(chunked(bytes), `${dir}/dest`);
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "untouched");
    assert.ok((await Deno.lstat(`${dir}/dest/f`)).isFile);
    assert.equal(await Deno.readTextFile(`${dir}/dest/f`), "new");
  } finally {
    await cleanup(dir);
  }
});

Deno.test("extractTar() refuses a hard link to a path outside the destination", async (t) => {
  await refuses(
    t,
    // encodeTarHeader writes no hard links: a symlink header retyped to "1".
    retyped(archive({ name: "h", type: "symlink", mode: 0o644, mtime: 0, linkname: "../x" }), "1"),
    'Refusing to extract "../x": its path contains ".."',
  );
});

Deno.test("extractTar() drops setuid and setgid bits and skips devices with a warning", async (t) => {
  const dir = await tempDir(t);
  try {
    const bytes = archive(
      { name: "suid", type: "file", mode: 0o6755, mtime: 0, data: "#!/bin/sh\n" },
      { name: "tmp", type: "dir", mode: 0o1777, mtime: 0 },
    );
    // A character device: a symlink header retyped to "3".
    const dev = retyped(
      archive({ name: "null", type: "symlink", mode: 0o666, mtime: 0, linkname: "" }),
      "3",
    );
    const both = new Uint8Array(bytes.length - 1024 + dev.length);
    both.set(bytes.subarray(0, bytes.length - 1024));
    both.set(dev, bytes.length - 1024);
    await Deno.mkdir(`${dir}/dest`);
    const warnings: string[] = [];
    await extractTar(chunked(both), `${dir}/dest`, { warn: (m) => warnings.push(m) });
    assert.equal((await Deno.stat(`${dir}/dest/suid`)).mode! & 0o7777, 0o755);
    assert.equal((await Deno.stat(`${dir}/dest/tmp`)).mode! & 0o7777, 0o1777);
    assert.deepEqual(warnings, ['Skipped "null": type 3 is not a file, directory or link']);
    await assert.rejects(Deno.lstat(`${dir}/dest/null`), Deno.errors.NotFound);
  } finally {
    await cleanup(dir);
  }
});

Deno.test("extractTar() makes hard links GNU tar archived as links", async (t) => {
  const dir = await tempDir(t);
  try {
    await Deno.mkdir(`${dir}/src/a`, { recursive: true });
    await Deno.writeTextFile(`${dir}/src/a/one`, "same\n");
    await Deno.link(`${dir}/src/a/one`, `${dir}/src/two`);
    const bytes = await run("tar", ["-c", "-C", `${dir}/src`, "a", "two"]);
    const types = [];
    for await (const { header } of readTar(chunked(bytes))) types.push([header.name, header.type]);
    assert.deepEqual(types, [["a/", "dir"], ["a/one", "file"], ["two", "hardlink"]]);
    await Deno.mkdir(`${dir}/dst`);
    await extractTar(chunked(bytes), `${dir}/dst`);
    assert.equal(await Deno.readTextFile(`${dir}/dst/two`), "same\n");
    assert.equal(
      (await Deno.stat(`${dir}/dst/two`)).ino,
      (await Deno.stat(`${dir}/dst/a/one`)).ino,
    );
  } finally {
    await cleanup(dir);
  }
});
