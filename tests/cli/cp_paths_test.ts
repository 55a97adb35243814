import assert from "node:assert/strict";
import {
  baseName,
  CopyPathError,
  type CopySourceKind,
  copyStep,
  type CopyTargetKind,
  dirName,
  joinPath,
} from "../../cli/cp_paths.ts";

Deno.test("copyStep() follows docker cp for a file", () => {
  const cases: [string, CopySourceKind, string, CopyTargetKind, string][] = [
    // into an existing directory, under its own name
    ["/src/a.txt", "file", "/dst", "dir", "/dst/a.txt"],
    ["/src/a.txt", "file", "/dst/", "dir", "/dst/a.txt"],
    ["a.txt", "file", "/", "dir", "/a.txt"],
    // to a missing path or over a file: written there
    ["/src/a.txt", "file", "/dst/b.txt", "missing", "/dst/b.txt"],
    ["/src/a.txt", "file", "/dst/b.txt", "file", "/dst/b.txt"],
    // a symlink is copied as one, like a file
    ["/src/link", "symlink", "/dst", "dir", "/dst/link"],
    ["/src/link", "symlink", "/dst/other", "missing", "/dst/other"],
  ];
  for (const [src, srcKind, dst, dstKind, to] of cases) {
    assert.deepEqual(copyStep(src, srcKind, dst, dstKind), { action: "file", to }, `${src} ${dst}`);
  }
});

Deno.test("copyStep() follows docker cp for a directory", () => {
  const cases: [string, string, CopyTargetKind, { to: string; create: boolean }][] = [
    // to a missing path: made there, with the same contents
    ["/src/d", "/dst/new", "missing", { to: "/dst/new", create: true }],
    ["/src/d/", "/dst/new", "missing", { to: "/dst/new", create: true }],
    ["/src/d/.", "/dst/new", "missing", { to: "/dst/new", create: true }],
    // into an existing directory, under its own name
    ["/src/d", "/dst", "dir", { to: "/dst/d", create: true }],
    ["/src/d/", "/dst/", "dir", { to: "/dst/d", create: true }],
    ["d", ".", "dir", { to: "./d", create: true }],
    // with /. its contents go into the existing directory
    ["/src/d/.", "/dst", "dir", { to: "/dst", create: false }],
    ["./.", "/dst", "dir", { to: "/dst", create: false }],
    [".", "/dst", "dir", { to: "/dst", create: false }],
    ["/", "/dst", "dir", { to: "/dst", create: false }],
  ];
  for (const [src, dst, dstKind, step] of cases) {
    assert.deepEqual(
      copyStep(src, "dir", dst, dstKind),
      { action: "dir", ...step },
      `${src} ${dst}`,
    );
  }
});

Deno.test("copyStep() refuses what docker cp refuses", () => {
  const cases: [string, CopySourceKind, string, CopyTargetKind, string][] = [
    ["/src/d", "dir", "/dst/f", "file", 'Cannot copy directory "/src/d" onto file "/dst/f"'],
    ["/src/a.txt", "file", "/dst/new/", "missing", 'Directory "/dst/new/" does not exist'],
    ["/src/a.txt", "file", "/dst/f/", "file", '"/dst/f/" is not a directory'],
    ["/src/a.txt/", "file", "/dst", "dir", '"/src/a.txt/" is not a directory'],
    ["/src/a.txt/.", "file", "/dst", "dir", '"/src/a.txt/." is not a directory'],
  ];
  for (const [src, srcKind, dst, dstKind, message] of cases) {
    assert.throws(() => copyStep(src, srcKind, dst, dstKind), new CopyPathError(message));
  }
});

Deno.test("baseName(), dirName() and joinPath() ignore trailing slashes", () => {
  assert.equal(baseName("/a/b/"), "b");
  assert.equal(baseName("b"), "b");
  assert.equal(baseName("/"), "");
  assert.equal(dirName("/a/b/"), "/a");
  assert.equal(dirName("/a"), "/");
  assert.equal(dirName("a"), ".");
  assert.equal(joinPath("/", "x"), "/x");
  assert.equal(joinPath("/a//", "x"), "/a/x");
});
