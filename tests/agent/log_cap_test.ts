import assert from "node:assert/strict";
import { join } from "node:path";
import {
  capLogFile,
  LogCap,
  type LogCapLogger,
  type LogCapTimers,
  type LogDrops,
  logDropsPath,
  readLogDrops,
  removeLogFile,
} from "../../agent/log_cap.ts";
import { followLogFile } from "../../agent/log_file.ts";

const encoder = new TextEncoder();
const BLOCK = 4096;

/** `length` bytes of 8-byte lines "0000000\n", "0000001\n", ...: each byte's offset shows. */
function lines(length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(Math.ceil(length / 8) * 8);
  for (let i = 0; i * 8 < out.length; i++) {
    out.set(encoder.encode(`${String(i).padStart(7, "0")}\n`), i * 8);
  }
  return out.subarray(0, length);
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_log_cap_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function run(cmd: string, ...args: string[]): Promise<Deno.CommandOutput> {
  return await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
}

/** Whether `fallocate --collapse-range` works in `dir`. */
async function collapses(dir: string): Promise<boolean> {
  const probe = join(dir, "probe");
  await Deno.writeFile(probe, new Uint8Array(2 * BLOCK));
  const out = await run("fallocate", "--collapse-range", "-o", "0", "-l", `${BLOCK}`, probe);
  await Deno.remove(probe);
  return out.success;
}

/** Runs `fn` in a fresh tmpfs (root only); unmounts and removes it after. */
async function withTmpfs(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_log_cap_tmpfs_" });
  const mounted = await run("mount", "-t", "tmpfs", "-o", "size=64m", "fsb-test", dir);
  if (!mounted.success) {
    await Deno.remove(dir);
    throw new Error(`cannot mount a tmpfs: ${new TextDecoder().decode(mounted.stderr)}`);
  }
  try {
    await fn(dir);
  } finally {
    await unmountAndRemove(dir);
  }
}

async function unmountAndRemove(dir: string): Promise<void> {
  const out = await run("umount", dir);
  if (!out.success) {
    // Left mounted (and so not removed) rather than emptied through the mount.
    console.error(`cannot unmount ${dir}: ${new TextDecoder().decode(out.stderr)}`);
    return;
  }
  await Deno.remove(dir);
}

const canMountTmpfs = Deno.build.os === "linux" && Deno.uid() === 0 &&
  await withTmpfs(() => Promise.resolve()).then(() => true, () => false);

function recorder(): LogCapLogger & { warnings: { obj: object; msg: string }[] } {
  const warnings: { obj: object; msg: string }[] = [];
  return { warnings, warn: (obj, msg) => warnings.push({ obj, msg }) };
}

async function readAll(path: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of followLogFile(path, { follow: false, isDone: () => true })) {
    parts.push(chunk);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
}

/** A small deterministic generator, so a failing run can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
}

/**
 * Appends `total` bytes through an O_APPEND fd while passes of a LogCap run
 * (each pass is started, then writes go on until it ends), then checks that
 * what the file keeps is exactly the newest bytes, in order.
 */
async function keepsNewestWhileAppending(dir: string, logger = recorder()): Promise<LogDrops> {
  const path = join(dir, "a.log");
  const maxBytes = 256 * 1024;
  const stream = lines(6 * 1024 * 1024 + 1234);
  const caps: number[] = [];
  const cap = new LogCap({ maxBytes, logger, onCap: (_, bytes) => caps.push(bytes) });
  cap.track(path);
  const file = await Deno.open(path, { append: true, create: true });
  const random = prng(7);
  let written = 0;
  try {
    while (written < stream.length) {
      let passDone = false;
      const pass = cap.capOnce().then(() => passDone = true);
      // At most 128 KiB a pass, so the file goes over its cap many times.
      const until = Math.min(written + 128 * 1024, stream.length);
      do {
        const n = Math.min(1 + Math.floor(random() * 20_000), until - written);
        await writeAll(file, stream.subarray(written, written + n));
        written += n;
      } while (!passDone && written < until);
      await pass;
    }
    await cap.capOnce();
  } finally {
    file.close();
    await cap.close();
  }
  const drops = (await readLogDrops(path))!;
  assert.ok(caps.length >= 10, `expected many caps, got ${caps.length}`);
  assert.equal(drops.seq % 2, 0);
  assert.equal(drops.dropped % BLOCK, 0);
  assert.equal(drops.dropped, caps.reduce((a, b) => a + b, 0));
  const kept = await readAll(path);
  assert.equal(kept.length, written - drops.dropped);
  // Each cap brings it to at most 3/4 of the cap, never less than that minus
  // a block; what was appended since the last one is all kept.
  assert.ok(kept.length <= maxBytes, `kept ${kept.length}`);
  assert.ok(kept.length > maxBytes * 3 / 4 - BLOCK, `kept ${kept.length}`);
  // Byte for byte: nothing lost, duplicated or reordered at the tail.
  assertBytes(kept, stream.subarray(drops.dropped, written), "kept");
  return drops;
}

/**
 * Asserts two byte arrays are equal, saying where they first differ (a
 * deepEqual of large arrays that differ takes minutes to describe).
 */
function assertBytes(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  const n = Math.min(actual.length, expected.length);
  let i = 0;
  while (i < n && actual[i] === expected[i]) i++;
  if (i === n && actual.length === expected.length) return;
  const show = (b: Uint8Array) => JSON.stringify(new TextDecoder().decode(b.subarray(i, i + 24)));
  assert.fail(
    `${what}: ${actual.length} bytes, expected ${expected.length}; first difference at ${i}: ` +
      `${show(actual)} instead of ${show(expected)}`,
  );
}

Deno.test("LogCap keeps the newest bytes of a file over its cap while a writer appends", async () => {
  await withDir(async (dir) => {
    const collapse = await collapses(dir);
    const logger = recorder();
    const drops = await keepsNewestWhileAppending(dir, logger);
    const { size } = await Deno.stat(join(dir, "a.log"));
    if (collapse) {
      // The head was removed: the file is only what it keeps.
      assert.equal(drops.collapsed, drops.dropped);
      assert.equal(size, 6 * 1024 * 1024 + 1234 - drops.dropped);
      assert.deepEqual(logger.warnings, []);
    } else {
      console.warn(`${dir} cannot collapse a file's head: checked the punch-hole fallback`);
    }
  });
});

Deno.test("LogCap keeps the newest bytes written by another process", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "seq.log");
    const count = 2_000_000;
    // The shell's >> opens the file O_APPEND, as the shim and the process runtime do.
    const child = new Deno.Command("sh", {
      args: ["-c", `seq 1 ${count} >> '${path}'`],
      stdout: "null",
    }).spawn();
    let exited = false;
    const status = child.status.then((s) => {
      exited = true;
      return s;
    });
    const cap = new LogCap({ maxBytes: 512 * 1024 });
    cap.track(path);
    let passes = 0;
    while (!exited) {
      await cap.capOnce();
      passes++;
    }
    assert.ok((await status).success);
    await cap.capOnce();
    await cap.close();
    const expected = encoder.encode(
      Array.from({ length: count }, (_, i) => `${i + 1}\n`).join(""),
    );
    const drops = (await readLogDrops(path))!;
    assert.ok(drops.dropped > 0, `dropped nothing in ${passes} passes`);
    const kept = await readAll(path);
    // The last pass leaves a file at or under maxBytes alone, so what is kept
    // is bounded by maxBytes itself, not by the 3/4 a cap cuts down to.
    assert.ok(kept.length <= 512 * 1024, `kept ${kept.length} bytes`);
    assertBytes(kept, expected.subarray(drops.dropped), "kept");
  });
});

Deno.test("capLogFile() leaves a file under its cap alone and drops whole blocks from one over it", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const data = lines(100_000);
    await Deno.writeFile(path, data);
    assert.equal(await capLogFile(path, 100_000), 0);
    assert.equal(await readLogDrops(path), undefined, "no sidecar until something is dropped");
    assert.equal(await capLogFile(join(dir, "missing.log"), 10), 0);

    const dropped = await capLogFile(path, 64 * 1024);
    // 3/4 of 64 KiB is 48 KiB: the first block boundary leaving at most that.
    assert.equal(dropped, Math.ceil((100_000 - 48 * 1024) / BLOCK) * BLOCK);
    assert.deepEqual(await readLogDrops(path), {
      seq: 2,
      collapsed: (await collapses(dir)) ? dropped : 0,
      dropped,
    });
    assertBytes(await readAll(path), data.subarray(dropped));
    assert.equal(await capLogFile(path, 64 * 1024), 0, "under the cap after one");
  });
});

Deno.test("capLogFile() never drops the block holding the newest byte", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const data = lines(3 * BLOCK + 10);
    await Deno.writeFile(path, data);
    // A cap smaller than a block: all but the last block goes, not more.
    assert.equal(await capLogFile(path, 100), 3 * BLOCK);
    assertBytes(await readAll(path), data.subarray(3 * BLOCK));
    assert.equal(await capLogFile(path, 100), 0);
  });
});

Deno.test("LogCap.remove() stops capping a file and removes it with its sidecar", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    await Deno.writeFile(path, lines(200_000));
    const cap = new LogCap({ maxBytes: 64 * 1024 });
    cap.track(path);
    cap.track(path);
    assert.equal(cap.size, 1);
    await cap.capOnce();
    assert.ok((await readLogDrops(path))!.dropped > 0);
    await cap.remove(path);
    assert.equal(cap.size, 0);
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
    await assert.rejects(Deno.lstat(logDropsPath(path)), Deno.errors.NotFound);
    // Missing files are no error, and untracked files are not looked at.
    await removeLogFile(path);
    await cap.capOnce();
    await assert.rejects(Deno.lstat(logDropsPath(path)), Deno.errors.NotFound);
    await cap.close();
  });
});

Deno.test("LogCap.remove() during a pass leaves nothing behind", async () => {
  await withDir(async (dir) => {
    const logger = recorder();
    const cap = new LogCap({ maxBytes: 64 * 1024, logger });
    const paths = Array.from({ length: 8 }, (_, i) => join(dir, `${i}.log`));
    for (const path of paths) {
      await Deno.writeFile(path, lines(200_000));
      cap.track(path);
    }
    const pass = cap.capOnce();
    // As the agent does: the runtime removes the log, then the cap forgets it.
    await Promise.all(paths.map(async (path) => {
      await Deno.remove(path);
      await cap.remove(path);
    }));
    await pass;
    await cap.close();
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    assert.deepEqual(logger.warnings, []);
  });
});

Deno.test("LogCap passes ignore files that do not exist yet", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "later.log");
    const logger = recorder();
    const cap = new LogCap({ maxBytes: 64 * 1024, logger });
    cap.track(path);
    await cap.capOnce();
    await Deno.writeFile(path, lines(100_000));
    await cap.capOnce();
    assert.ok((await readLogDrops(path))!.dropped > 0);
    assert.deepEqual(logger.warnings, []);
    await cap.close();
  });
});

Deno.test("LogCap.start() runs a pass every intervalMs until close()", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    await Deno.writeFile(path, lines(100_000));
    const scheduled: { fn: () => void; ms: number; handle: number }[] = [];
    const cleared: unknown[] = [];
    const timers: LogCapTimers = {
      setTimeout: (fn, ms) => scheduled.push({ fn, ms, handle: scheduled.length + 1 }),
      clearTimeout: (handle) => cleared.push(handle),
    };
    const cap = new LogCap({ maxBytes: 64 * 1024, intervalMs: 250, timers });
    cap.track(path);
    cap.start();
    cap.start();
    assert.equal(scheduled.length, 1);
    assert.equal(scheduled[0].ms, 250);
    assert.equal(await readLogDrops(path), undefined, "nothing before the first interval");
    scheduled[0].fn();
    await cap.capOnce(); // runs after the timer's pass
    assert.ok((await readLogDrops(path))!.dropped > 0);
    assert.equal(scheduled.length, 2, "the next pass is scheduled once this one is done");
    await cap.close();
    assert.deepEqual(cleared, [2]);
    assert.equal(scheduled.length, 2);
  });
});

Deno.test("LogCap settles a collapse that an earlier agent began and did not record", async () => {
  await withDir(async (dir) => {
    if (!(await collapses(dir))) return;
    const path = join(dir, "a.log");
    const data = lines(10 * BLOCK + 100);
    await Deno.writeFile(path, data);
    const length = 6 * BLOCK;
    await Deno.writeTextFile(
      logDropsPath(path),
      JSON.stringify({
        seq: 3,
        collapsed: 0,
        dropped: 0,
        pending: {
          op: "collapse",
          length,
          size: data.length,
          check: BLOCK,
          before: await sha256(data.subarray(0, BLOCK)),
          after: await sha256(data.subarray(length, length + BLOCK)),
        },
      }),
    );
    // The agent died after fallocate, before writing seq 4.
    assert.ok(
      (await run("fallocate", "--collapse-range", "-o", "0", "-l", `${length}`, path)).success,
    );
    // More was written since, so the size alone does not tell.
    const more = lines(10 * BLOCK + 100 + length).subarray(10 * BLOCK + 100);
    await Deno.writeFile(path, more, { append: true });
    const logger = recorder();
    const cap = new LogCap({ maxBytes: 1024 * 1024, logger });
    cap.track(path);
    await cap.capOnce();
    await cap.close();
    assert.deepEqual(await readLogDrops(path), { seq: 4, collapsed: length, dropped: length });
    assert.equal(logger.warnings.length, 1);
    assert.deepEqual(logger.warnings[0].obj, { path, op: "collapse", applied: true });
  });
});

Deno.test("LogCap settles a collapse that an earlier agent recorded and did not begin", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const data = lines(10 * BLOCK + 100);
    await Deno.writeFile(path, data);
    const length = 6 * BLOCK;
    await Deno.writeTextFile(
      logDropsPath(path),
      JSON.stringify({
        seq: 5,
        collapsed: 8192,
        dropped: 8192,
        pending: {
          op: "collapse",
          length,
          size: data.length,
          check: BLOCK,
          before: await sha256(data.subarray(0, BLOCK)),
          after: await sha256(data.subarray(length, length + BLOCK)),
        },
      }),
    );
    const cap = new LogCap({ maxBytes: 1024 * 1024, logger: recorder() });
    cap.track(path);
    await cap.capOnce();
    await cap.close();
    assert.deepEqual(await readLogDrops(path), { seq: 6, collapsed: 8192, dropped: 8192 });
    assertBytes(await readAll(path), data, "a reader starts at the file's start");
  });
});

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name: "LogCap punches holes where the file system cannot collapse (tmpfs), warning once",
  ignore: !canMountTmpfs,
  fn: async () => {
    await withTmpfs(async (dir) => {
      assert.equal(await collapses(dir), false, "tmpfs collapses now: this test checks nothing");
      const path = join(dir, "a.log");
      const data = lines(400_000);
      await Deno.writeFile(path, data.subarray(0, 300_000));
      const logger = recorder();
      const cap = new LogCap({ maxBytes: 64 * 1024, logger });
      cap.track(path);
      await cap.capOnce();
      let drops = (await readLogDrops(path))!;
      const first = drops.dropped;
      assert.equal(drops.collapsed, 0);
      assert.equal(first, Math.ceil((300_000 - 48 * 1024) / BLOCK) * BLOCK);
      let stat = await Deno.stat(path);
      assert.equal(stat.size, 300_000, "punching keeps the apparent size");
      assert.ok(stat.blocks! * 512 <= 64 * 1024, `uses ${stat.blocks! * 512} bytes`);
      assertBytes(await readAll(path), data.subarray(first, 300_000));

      await Deno.writeFile(path, data.subarray(300_000), { append: true });
      await cap.capOnce();
      drops = (await readLogDrops(path))!;
      assert.equal(drops.dropped, Math.ceil((400_000 - 48 * 1024) / BLOCK) * BLOCK);
      stat = await Deno.stat(path);
      assert.equal(stat.size, 400_000);
      assert.ok(stat.blocks! * 512 <= 64 * 1024, `uses ${stat.blocks! * 512} bytes`);
      assertBytes(await readAll(path), data.subarray(drops.dropped));
      await cap.close();
      assert.equal(logger.warnings.length, 1, JSON.stringify(logger.warnings));
      assert.match(logger.warnings[0].msg, /punching holes/);
    });
  },
});

Deno.test({
  name: "LogCap keeps the newest bytes on tmpfs while a writer appends",
  ignore: !canMountTmpfs,
  fn: async () => {
    await withTmpfs(async (dir) => {
      const drops = await keepsNewestWhileAppending(dir);
      assert.equal(drops.collapsed, 0);
      const stat = await Deno.stat(join(dir, "a.log"));
      assert.ok(stat.blocks! * 512 <= 256 * 1024 + BLOCK, `uses ${stat.blocks! * 512} bytes`);
    });
  },
});
