/**
 * The files contract's cases on archives, directories, stat, removal and symlinks (see files_contract.ts).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../../registry/errors.ts";
import {
  type FilesCase,
  listing,
  randomBytes,
  readAll,
  rejectsWith,
  writeRequests,
} from "./_files_harness.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Registers the cases with `test`. */
export function treeCases(test: FilesCase): void {
  test("an archive round-trips a directory with its modes and a symlink", async (h) => {
    const src = h.path("src");
    await h.files.makeDir(h.id, { path: join(src, "sub"), mode: 0o750, parents: true });
    await h.files.writeFile(
      h.id,
      writeRequests({ path: join(src, "a.txt") }, encoder.encode("one")),
    );
    await h.files.writeFile(
      h.id,
      writeRequests({ path: join(src, "sub", "run.sh"), mode: 0o700 }, encoder.encode("two")),
    );
    await h.sh('"$0" ln -s a.txt "$1"', join(src, "link"));
    const tar = await readAll(h.files, h.id, src, { archive: true });
    assert.equal(tar.info.type, "dir");
    assert.ok(tar.data.length >= 512 * 4, "an archive of its entries");
    const dst = h.path("dst");
    const info = await h.files.writeFile(
      h.id,
      writeRequests({ path: dst, archive: true, size: BigInt(tar.data.length) }, tar.data),
    );
    assert.equal(info.type, "dir");
    assert.deepEqual(await listing(h, join(dst, "src")), ["a.txt", "link", "sub"]);
    const link = await h.files.stat(h.id, { path: join(dst, "src", "link") });
    assert.deepEqual([link.type, link.linkTarget], ["symlink", "a.txt"]);
    assert.equal((await h.files.stat(h.id, { path: join(dst, "src", "sub") })).mode, 0o750);
    const script = await h.files.stat(h.id, { path: join(dst, "src", "sub", "run.sh") });
    assert.equal(script.mode, 0o700);
    const back = await readAll(h.files, h.id, join(dst, "src", "sub", "run.sh"));
    assert.equal(decoder.decode(back.data), "two");
    assert.deepEqual(await listing(h, dst), ["src"], "no staging directory is left");
  });

  test("writeFile() with archive merges into an existing directory, keeping what it had", async (h) => {
    const src = h.path("src");
    await h.files.writeFile(
      h.id,
      writeRequests({ path: join(src, "sub", "new.txt"), parents: true }, encoder.encode("new")),
    );
    const tar = await readAll(h.files, h.id, src, { archive: true });
    const dst = h.path("dst");
    await h.files.writeFile(
      h.id,
      writeRequests(
        { path: join(dst, "src", "sub", "old.txt"), parents: true },
        encoder.encode("old"),
      ),
    );
    await h.files.writeFile(h.id, writeRequests({ path: dst, archive: true }, tar.data));
    assert.deepEqual(await listing(h, join(dst, "src", "sub")), ["new.txt", "old.txt"]);
    assert.deepEqual(await listing(h, dst), ["src"], "no staging directory is left");
  });

  test("a broken archive write leaves the target as it was", async (h) => {
    const src = h.path("src");
    await h.files.writeFile(
      h.id,
      writeRequests({ path: join(src, "f"), parents: true }, randomBytes(300_000)),
    );
    const tar = await readAll(h.files, h.id, src, { archive: true });
    const dst = h.path("dst");
    await rejectsWith(
      h.files.writeFile(
        h.id,
        writeRequests(
          { path: dst, archive: true, size: BigInt(tar.data.length) },
          tar.data.subarray(0, 100_000),
        ),
      ),
      InvalidArgumentError,
      `Invalid size: is ${tar.data.length} bytes, but 100000 came`,
    );
    assert.deepEqual(await listing(h), ["src"]);
    await assert.rejects(
      h.files.writeFile(h.id, writeRequests({ path: dst, archive: true }, randomBytes(4096))),
      FailedPreconditionError,
    );
    assert.deepEqual(await listing(h), ["src"]);
  });

  test("listDir() returns every entry sorted, names byte-exact, with lstat info", async (h) => {
    const names = [
      "plain",
      "B",
      "with space",
      "new\nline",
      "ünïcödé ✓",
      "-dash",
      ".hidden",
      "*",
      "tab\there",
      "back\\slash",
      "'quote\"",
      "a\nb 81a4 0 0 1 2",
    ];
    for (const name of names) {
      await h.files.writeFile(h.id, writeRequests({ path: h.path(name) }, encoder.encode(name)));
    }
    await h.files.makeDir(h.id, { path: h.path("sub dir"), mode: 0o700, parents: false });
    await h.sh('"$0" ln -s "$1" "$2"', "../odd\ntarget", h.path("link"));
    const listed = await h.files.listDir(h.id, { path: h.dir });
    const expected = [...names, "sub dir", "link"].sort((a, b) => {
      const [x, y] = [encoder.encode(a), encoder.encode(b)];
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
      return x.length - y.length;
    });
    assert.deepEqual(listed.entries.map((e) => e.path), expected);
    const byName = new Map(listed.entries.map((e) => [e.path, e]));
    for (const name of names) {
      assert.equal(byName.get(name)?.type, "file");
      assert.equal(byName.get(name)?.size, BigInt(encoder.encode(name).length));
    }
    assert.deepEqual([byName.get("sub dir")?.type, byName.get("sub dir")?.mode], ["dir", 0o700]);
    assert.deepEqual(
      [byName.get("link")?.type, byName.get("link")?.linkTarget],
      ["symlink", "../odd\ntarget"],
    );
  });

  test("listDir() of a file is a FailedPreconditionError, of a missing path a NotFoundError", async (h) => {
    await h.files.writeFile(h.id, writeRequests({ path: h.path("f") }));
    await rejectsWith(
      h.files.listDir(h.id, { path: h.path("f") }),
      FailedPreconditionError,
      `Cannot list ${h.path("f")} in sandbox ${h.id} as it is not a directory`,
    );
    await rejectsWith(
      h.files.listDir(h.id, { path: h.path("none") }),
      NotFoundError,
      `File ${h.path("none")} not found in sandbox ${h.id}`,
    );
  });

  test("stat() reports a symlink as a symlink with its target, a file and a directory as such", async (h) => {
    const before = Math.floor(Date.now() / 1000) - 5;
    await h.files.writeFile(
      h.id,
      writeRequests({ path: h.path("f"), mode: 0o640 }, encoder.encode("12345")),
    );
    await h.sh('"$0" ln -s f "$1"; "$0" ln -s /nowhere "$2"', h.path("l"), h.path("dangling"));
    const file = await h.files.stat(h.id, { path: h.path("f") });
    assert.deepEqual([file.type, file.mode, file.size, file.uid, file.linkTarget], [
      "file",
      0o640,
      5n,
      0,
      "",
    ]);
    assert.ok(file.mtime >= BigInt(before), `mtime ${file.mtime} is now`);
    const link = await h.files.stat(h.id, { path: h.path("l") });
    assert.deepEqual([link.path, link.type, link.linkTarget], [h.path("l"), "symlink", "f"]);
    const dangling = await h.files.stat(h.id, { path: h.path("dangling") });
    assert.deepEqual([dangling.type, dangling.linkTarget], ["symlink", "/nowhere"]);
    assert.equal((await h.files.stat(h.id, { path: `${h.dir}/` })).type, "dir");
  });

  test("makeDir() makes a directory with its mode; parents makes the rest; an existing one is AlreadyExistsError", async (h) => {
    const path = h.path("x", "y");
    await rejectsWith(
      h.files.makeDir(h.id, { path, mode: 0, parents: false }),
      NotFoundError,
      `Cannot make directory ${path} in sandbox ${h.id} as directory ${h.path("x")} does not exist`,
    );
    const made = await h.files.makeDir(h.id, { path, mode: 0o1777, parents: true });
    assert.deepEqual([made.path, made.type, made.mode], [path, "dir", 0o1777]);
    assert.equal((await h.files.stat(h.id, { path: h.path("x") })).mode, 0o755);
    assert.equal((await h.files.makeDir(h.id, { path, mode: 0o700, parents: true })).mode, 0o1777);
    await rejectsWith(
      h.files.makeDir(h.id, { path, mode: 0, parents: false }),
      AlreadyExistsError,
      `Cannot make directory ${path} in sandbox ${h.id} as it already exists`,
    );
    assert.equal(
      (await h.files.makeDir(h.id, { path: h.path("z"), mode: 0, parents: false })).mode,
      0o755,
    );
    await h.files.writeFile(h.id, writeRequests({ path: h.path("f") }));
    await rejectsWith(
      h.files.makeDir(h.id, { path: h.path("f"), mode: 0, parents: true }),
      FailedPreconditionError,
      `Cannot make directory ${h.path("f")} in sandbox ${h.id} as it exists and is not a directory`,
    );
  });

  test("remove() removes files, symlinks (not their targets) and directories; existed says if it did", async (h) => {
    await h.files.writeFile(h.id, writeRequests({ path: h.path("d", "f"), parents: true }));
    await h.sh('"$0" ln -s d "$1"', h.path("l"));
    assert.equal(
      (await h.files.remove(h.id, { path: h.path("l"), recursive: true })).existed,
      true,
    );
    assert.deepEqual(await listing(h, h.path("d")), ["f"], "the link's target stays");
    await rejectsWith(
      h.files.remove(h.id, { path: h.path("d"), recursive: false }),
      FailedPreconditionError,
      `Cannot remove ${
        h.path("d")
      } in sandbox ${h.id} as it is a directory that is not empty; remove it recursively`,
    );
    assert.equal(
      (await h.files.remove(h.id, { path: h.path("d", "f"), recursive: false })).existed,
      true,
    );
    assert.equal(
      (await h.files.remove(h.id, { path: h.path("d"), recursive: false })).existed,
      true,
    );
    await h.files.writeFile(h.id, writeRequests({ path: h.path("e", "g", "h"), parents: true }));
    assert.equal(
      (await h.files.remove(h.id, { path: h.path("e"), recursive: true })).existed,
      true,
    );
    assert.equal(
      (await h.files.remove(h.id, { path: h.path("e"), recursive: true })).existed,
      false,
    );
    assert.deepEqual(await listing(h), []);
  });

  test("symlinks to / and up out of a directory lead to the sandbox's own root", async (h) => {
    // A marker on the host: a confined sandbox must never show it, an
    // unconfined one (the process runtime) shows the host as it is.
    const hostDir = await Deno.makeTempDir({ prefix: "fsb_files_host_" });
    try {
      const marker = join(hostDir, "secret.txt");
      await Deno.writeTextFile(marker, "host secret");
      await h.sh(
        '"$0" ln -s / "$1/hostroot"; "$0" mkdir -p "$1/a/b"; "$0" ln -s ../../../../../../../.. "$1/a/b/up"',
        h.dir,
      );
      const viaRoot = `${h.path("hostroot")}${marker}`;
      const viaUp = `${h.path("a", "b", "up")}${marker}`;
      const written = `${h.path("a", "b", "up")}${hostDir}/written.txt`;
      if (h.confined) {
        // runc: the host's paths simply do not exist in the sandbox. gVisor
        // (runsc 20221219) resolves a missing path below a symlink to "/" as
        // the sandbox's own root directory, so there a read is refused as a
        // directory: either way, not one host byte.
        const refused = (err: unknown) =>
          err instanceof NotFoundError || err instanceof FailedPreconditionError;
        for (const path of [viaRoot, viaUp]) {
          for (const archive of [false, true]) {
            const got = await readAll(h.files, h.id, path, { archive }).then(
              (r) => decoder.decode(r.data),
              (err) => err,
            );
            assert.ok(refused(got), `${path}: ${got}`);
          }
        }
        const listed = await h.files.listDir(h.id, { path: `${h.path("hostroot")}${hostDir}` })
          .then((r) => r.entries.map((e) => e.path), (err) => err);
        assert.ok(
          listed instanceof NotFoundError ||
            (Array.isArray(listed) && !listed.includes("secret.txt")),
          String(listed),
        );
        const wrote = await h.files.writeFile(
          h.id,
          writeRequests({ path: written, parents: true }, encoder.encode("x")),
        ).then(() => true, (err) => err);
        assert.equal(
          await Deno.stat(join(hostDir, "written.txt")).then(() => true, () => false),
          false,
        );
        if (wrote === true) {
          assert.equal(
            decoder.decode((await readAll(h.files, h.id, `${hostDir}/written.txt`)).data),
            "x",
          );
        } else {
          assert.ok(refused(wrote), String(wrote));
        }
      } else {
        for (const path of [viaRoot, viaUp]) {
          assert.equal(decoder.decode((await readAll(h.files, h.id, path)).data), "host secret");
        }
        await h.files.writeFile(h.id, writeRequests({ path: written }, encoder.encode("x")));
        assert.equal(await Deno.readTextFile(join(hostDir, "written.txt")), "x");
      }
    } finally {
      await Deno.remove(hostDir, { recursive: true });
    }
  });
}
