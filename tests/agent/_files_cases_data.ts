/**
 * The files contract's cases on writing and reading files (see files_contract.ts).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { WriteFileRequest } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
} from "../../registry/errors.ts";
import {
  type FilesCase,
  listing,
  randomBytes,
  readAll,
  rejectsWith,
  sameBytes,
  writeRequests,
} from "./_files_harness.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Registers the cases with `test`. */
export function dataCases(test: FilesCase): void {
  test("writeFile() then readFile() round-trips 5 MiB of random bytes exactly", async (h) => {
    const data = randomBytes(5 * 1024 * 1024 + 17);
    const path = h.path("big.bin");
    const written = await h.files.writeFile(
      h.id,
      writeRequests({ path, size: BigInt(data.length) }, data, 100_000),
    );
    assert.equal(written.path, path);
    assert.equal(written.type, "file");
    assert.equal(written.size, BigInt(data.length));
    assert.equal(written.mode, 0o644, "0644 when no mode is given");
    const read = await readAll(h.files, h.id, path);
    assert.equal(read.infos, 1);
    assert.equal(read.info.size, BigInt(data.length));
    assert.equal(read.info.type, "file");
    assert.ok(sameBytes(read.data, data), "the bytes read are the bytes written");
    assert.equal((await h.sh('"$0" md5sum < "$1"', path)).split(" ")[0].length, 32);
  });

  test("writeFile() of no data makes an empty file; readFile() sends one chunk with its info", async (h) => {
    const path = h.path("empty");
    assert.equal((await h.files.writeFile(h.id, writeRequests({ path }))).size, 0n);
    const read = await readAll(h.files, h.id, path);
    assert.equal(read.data.length, 0);
    assert.equal(read.infos, 1);
  });

  test("writeFile() sets the mode and owner it is given, setuid bits included", async (h) => {
    const path = h.path("tool");
    const info = await h.files.writeFile(
      h.id,
      writeRequests({ path, mode: 0o4750, uid: 1234, gid: 2345 }, encoder.encode("#!/bin/sh\n")),
    );
    assert.equal(info.mode, 0o4750);
    assert.equal(info.uid, 1234);
    assert.equal(info.gid, 2345);
    assert.equal(await h.sh('"$0" stat -c "%a %u %g" "$1"', path), "4750 1234 2345\n");
  });

  test("writeFile() replaces an existing file whole", async (h) => {
    const path = h.path("f.txt");
    await h.files.writeFile(
      h.id,
      writeRequests({ path, mode: 0o600 }, encoder.encode("old old old")),
    );
    const info = await h.files.writeFile(h.id, writeRequests({ path }, encoder.encode("new")));
    assert.equal(info.mode, 0o644);
    assert.equal(decoder.decode((await readAll(h.files, h.id, path)).data), "new");
    assert.deepEqual(await listing(h), ["f.txt"], "no temporary file is left");
  });

  test("writeFile() makes missing parents with parents, else a missing parent is a NotFoundError", async (h) => {
    const path = h.path("a", "b", "c.txt");
    await rejectsWith(
      h.files.writeFile(h.id, writeRequests({ path }, encoder.encode("x"))),
      NotFoundError,
      `Cannot write ${path} in sandbox ${h.id} as directory ${h.path("a", "b")} does not exist`,
    );
    await h.files.writeFile(h.id, writeRequests({ path, parents: true }, encoder.encode("x")));
    assert.equal(decoder.decode((await readAll(h.files, h.id, path)).data), "x");
    assert.equal((await h.files.stat(h.id, { path: h.path("a") })).mode, 0o755);
  });

  test("writeFile() onto a directory, or under a file, is a FailedPreconditionError", async (h) => {
    await h.files.makeDir(h.id, { path: h.path("d"), mode: 0, parents: false });
    await rejectsWith(
      h.files.writeFile(h.id, writeRequests({ path: h.path("d") }, encoder.encode("x"))),
      FailedPreconditionError,
      `Cannot write ${h.path("d")} in sandbox ${h.id} as it is a directory`,
    );
    await h.files.writeFile(h.id, writeRequests({ path: h.path("f") }, encoder.encode("x")));
    await rejectsWith(
      h.files.writeFile(h.id, writeRequests({ path: h.path("f", "g") }, encoder.encode("x"))),
      FailedPreconditionError,
      `Cannot write ${h.path("f", "g")} in sandbox ${h.id} as a parent of it is not a directory`,
    );
    assert.deepEqual(await listing(h), ["d", "f"]);
  });

  test("a write whose stream breaks leaves neither the file nor a temporary name", async (h) => {
    const path = h.path("broken.bin");
    const broken = new Error("the caller went away");
    async function* requests(): AsyncIterable<WriteFileRequest> {
      yield* writeRequests({ path, parents: true }, randomBytes(1024 * 1024));
      throw broken;
    }
    await assert.rejects(h.files.writeFile(h.id, requests()), (err) => err === broken);
    assert.deepEqual(await listing(h), []);
  });

  test("a write aborted by its signal leaves neither the file nor a temporary name", async (h) => {
    const path = h.path("aborted.bin");
    const abort = new AbortController();
    async function* requests(): AsyncIterable<WriteFileRequest> {
      yield* writeRequests({ path }, randomBytes(1024 * 1024));
      abort.abort(new Error("cancelled"));
      // The caller is gone and sends nothing more.
      await new Promise(() => {});
    }
    await assert.rejects(
      h.files.writeFile(h.id, requests(), { signal: abort.signal }),
      /cancelled/,
    );
    assert.deepEqual(await listing(h), []);
  });

  test("a write with more or fewer bytes than its size is an InvalidArgumentError and leaves nothing", async (h) => {
    const path = h.path("sized");
    await rejectsWith(
      h.files.writeFile(h.id, writeRequests({ path, size: 10n }, encoder.encode("abc"))),
      InvalidArgumentError,
      "Invalid size: is 10 bytes, but 3 came",
    );
    await rejectsWith(
      h.files.writeFile(h.id, writeRequests({ path, size: 2n }, encoder.encode("abc"))),
      InvalidArgumentError,
      "Invalid size: is 2 bytes, but more data came",
    );
    assert.deepEqual(await listing(h), []);
  });

  test("a write over the agent's limit is an InvalidArgumentError and leaves nothing", async (h) => {
    const files = h.filesWith({ maxWriteBytes: 1000 });
    const path = h.path("big");
    await rejectsWith(
      files.writeFile(h.id, writeRequests({ path, size: 1001n }, randomBytes(1001))),
      InvalidArgumentError,
      "Invalid size: must be within 0..1000 bytes (the agent's limit), got 1001",
    );
    await rejectsWith(
      files.writeFile(h.id, writeRequests({ path }, randomBytes(1500), 600)),
      InvalidArgumentError,
      "Invalid data: must total at most 1000 bytes (the agent's limit)",
    );
    assert.deepEqual(await listing(h), []);
    await files.writeFile(h.id, writeRequests({ path }, randomBytes(1000)));
    assert.equal((await h.files.stat(h.id, { path })).size, 1000n);
  });

  test("file calls refuse relative paths, NUL bytes, modes over 0o7777 and removing /", async (h) => {
    await rejectsWith(
      h.files.stat(h.id, { path: "tmp/x" }),
      InvalidArgumentError,
      'Invalid path: must be an absolute path, got "tmp/x"',
    );
    await rejectsWith(
      h.files.stat(h.id, { path: "/tmp/a\0b" }),
      InvalidArgumentError,
      "Invalid path: must not contain NUL",
    );
    await rejectsWith(
      h.files.writeFile(h.id, writeRequests({ path: h.path("m"), mode: 0o10000 })),
      InvalidArgumentError,
      "Invalid mode: must be at most 0o7777, got 0o10000",
    );
    await rejectsWith(
      h.files.makeDir(h.id, { path: h.path("m"), mode: 0o17777, parents: false }),
      InvalidArgumentError,
      "Invalid mode: must be at most 0o7777, got 0o17777",
    );
    await rejectsWith(
      h.files.remove(h.id, { path: "/", recursive: true }),
      InvalidArgumentError,
      "Invalid path: must not be the sandbox's root /",
    );
    await rejectsWith(
      readAll(h.files, h.id, h.path("m"), { maxBytes: -1 }),
      InvalidArgumentError,
      "Invalid max_bytes: must be 0 (no limit) or more",
    );
    await rejectsWith(
      h.files.writeFile(h.id, writeRequests({ path: "/" })),
      InvalidArgumentError,
      "Invalid path: must name a file, not /",
    );
    assert.deepEqual(await listing(h), []);
  });

  test("readFile() of a missing file is a NotFoundError, of a directory a FailedPreconditionError", async (h) => {
    await rejectsWith(
      readAll(h.files, h.id, h.path("nope")),
      NotFoundError,
      `File ${h.path("nope")} not found in sandbox ${h.id}`,
    );
    await rejectsWith(
      h.files.stat(h.id, { path: h.path("nope") }),
      NotFoundError,
      `File ${h.path("nope")} not found in sandbox ${h.id}`,
    );
    await rejectsWith(
      readAll(h.files, h.id, h.dir),
      FailedPreconditionError,
      `Cannot read ${h.dir} in sandbox ${h.id} as it is a directory; read it as an archive`,
    );
  });

  test("readFile() with maxBytes sends a file up to it and refuses a bigger one with OutOfRangeError", async (h) => {
    const path = h.path("hundred");
    await h.files.writeFile(h.id, writeRequests({ path }, randomBytes(100)));
    assert.equal((await readAll(h.files, h.id, path, { maxBytes: 100 })).data.length, 100);
    await rejectsWith(
      readAll(h.files, h.id, path, { maxBytes: 99 }),
      OutOfRangeError,
      `Cannot read ${path} in sandbox ${h.id} as it is over max_bytes 99: 100 bytes`,
    );
  });

  test("readFile() stops its helper when the reader stops early", async (h) => {
    const path = h.path("big");
    await h.files.writeFile(h.id, writeRequests({ path }, randomBytes(8 * 1024 * 1024)));
    let chunks = 0;
    for await (const _ of h.files.readFile(h.id, { path, archive: false, maxBytes: 0n })) {
      if (++chunks === 2) break;
    }
    assert.equal(chunks, 2);
    // The sandbox still answers: nothing was left holding it.
    assert.equal((await h.files.stat(h.id, { path })).size, 8n * 1024n * 1024n);
  });
}
