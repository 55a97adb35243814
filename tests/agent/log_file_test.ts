import assert from "node:assert/strict";
import { join } from "node:path";
import { followLogFile } from "../../agent/log_file.ts";
import {
  capLogFile,
  LogCap,
  logDropsPath,
  readLogDrops,
  removeLogFile,
} from "../../agent/log_cap.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_log_file_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function append(path: string, text: string): void {
  Deno.writeFileSync(path, encoder.encode(text), { append: true, create: true });
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

Deno.test("followLogFile() yields every byte of the file as written, over several chunks", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    // Larger than one read, and not text, so chunking and copying both show.
    const data = new Uint8Array(200_003);
    for (let i = 0; i < data.length; i += 65_536) {
      crypto.getRandomValues(data.subarray(i, Math.min(i + 65_536, data.length)));
    }
    await Deno.writeFile(path, data);
    let asked = 0;
    const got = await collect(followLogFile(path, {
      follow: false,
      isDone: () => {
        asked++;
        return false;
      },
    }));
    assert.deepEqual(got, data);
    assert.equal(asked, 0, "isDone() is for follow mode only");
  });
});

Deno.test("followLogFile() yields chunks that later reads do not overwrite", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    await Deno.writeFile(path, new Uint8Array(150_000).fill(7));
    const chunks: Uint8Array[] = [];
    for await (const chunk of followLogFile(path, { follow: false, isDone: () => true })) {
      chunks.push(chunk);
    }
    assert.ok(chunks.length >= 3, `expected several chunks, got ${chunks.length}`);
    assert.ok(chunks.every((c) => c.every((b) => b === 7)));
    assert.equal(chunks.reduce((n, c) => n + c.length, 0), 150_000);
  });
});

Deno.test("followLogFile() of a missing file yields nothing", async () => {
  await withDir(async (dir) => {
    const got = await collect(
      followLogFile(join(dir, "missing.log"), { follow: false, isDone: () => false }),
    );
    assert.equal(got.length, 0);
  });
});

Deno.test("followLogFile() in follow mode yields appended bytes until done and drained", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    append(path, "one\n");
    let stage = 0;
    const seen: string[] = [];
    const chunks = followLogFile(path, {
      follow: true,
      pollMs: 5,
      isDone: () => {
        // The writer's last bytes land between the reader's end-of-file and
        // this answer, as when a process prints and exits at once.
        if (stage === 2) {
          append(path, "three\n");
          return true;
        }
        return false;
      },
    });
    for await (const chunk of chunks) {
      seen.push(decoder.decode(chunk));
      const text = seen.join("");
      if (text === "one\n") {
        stage = 1;
        append(path, "two\n");
      } else if (text === "one\ntwo\n") {
        stage = 2;
      }
    }
    assert.equal(seen.join(""), "one\ntwo\nthree\n");
    assert.ok(seen.length >= 3, "each later write arrives as it is made");
  });
});

Deno.test("followLogFile() in follow mode waits for a missing file to appear", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "later.log");
    let polls = 0;
    let done = false;
    const got = await collect(followLogFile(path, {
      follow: true,
      pollMs: 5,
      isDone: () => {
        polls++;
        if (polls === 3) append(path, "late\n");
        if (polls === 6) done = true;
        return done;
      },
    }));
    assert.equal(decoder.decode(got), "late\n");
  });
});

Deno.test("followLogFile() in follow mode ends with nothing when the file is missing and done", async () => {
  await withDir(async (dir) => {
    const got = await collect(
      followLogFile(join(dir, "never.log"), { follow: true, pollMs: 5, isDone: () => true }),
    );
    assert.equal(got.length, 0);
  });
});

Deno.test("followLogFile() in follow mode ends without error when its signal aborts", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    append(path, "x\n");
    const abort = new AbortController();
    const seen: string[] = [];
    const start = performance.now();
    for await (
      const chunk of followLogFile(path, {
        follow: true,
        signal: abort.signal,
        // Long enough that only the abort can end the wait in time.
        pollMs: 10_000,
        isDone: () => false,
      })
    ) {
      seen.push(decoder.decode(chunk));
      setTimeout(() => abort.abort(), 20);
    }
    assert.deepEqual(seen, ["x\n"]);
    assert.ok(performance.now() - start < 2000, "the abort cut the poll short");
  });
});

Deno.test("followLogFile() with an already aborted signal yields nothing", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    append(path, "x\n");
    const got = await collect(
      followLogFile(path, { follow: true, signal: AbortSignal.abort(), isDone: () => false }),
    );
    assert.equal(got.length, 0);
  });
});

Deno.test("followLogFile() closes the file when the caller stops early", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    append(path, "x\n");
    for await (const chunk of followLogFile(path, { follow: true, isDone: () => false })) {
      assert.equal(decoder.decode(chunk), "x\n");
      break;
    }
    // Deno's resource sanitizer fails this test if the file were left open.
  });
});

// Capped logs (agent/log_cap.ts): a cap removes (or punches out) the oldest
// blocks of a file under a reader, and the reader must neither repeat nor
// skip a byte the file still holds.

const BLOCK = 4096;

/** `length` bytes of 8-byte lines "0000000\n", "0000001\n", ...: each byte's offset shows. */
function lines(length: number): Uint8Array {
  const out = new Uint8Array(Math.ceil(length / 8) * 8);
  for (let i = 0; i * 8 < out.length; i++) {
    out.set(encoder.encode(`${String(i).padStart(7, "0")}\n`), i * 8);
  }
  return out.subarray(0, length);
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
}

function prng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
}

/** Whether `fallocate --collapse-range` works in `dir`. */
async function collapses(dir: string): Promise<boolean> {
  const probe = join(dir, "probe");
  await Deno.writeFile(probe, new Uint8Array(2 * BLOCK));
  const out = await new Deno.Command("fallocate", {
    args: ["--collapse-range", "-o", "0", "-l", `${BLOCK}`, probe],
    stderr: "null",
  }).output();
  await Deno.remove(probe);
  return out.success;
}

/**
 * A guard, not a wait: a reader that lost its place can wait for bytes
 * forever, and a test should fail then rather than hang.
 */
async function deadline<T>(promise: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function pull(it: AsyncIterator<Uint8Array>): Promise<IteratorResult<Uint8Array>> {
  return deadline(it.next(), "a chunk");
}

async function droppedOf(path: string): Promise<number> {
  return (await readLogDrops(path))?.dropped ?? 0;
}

Deno.test("followLogFile() continues at the same byte when a cap shifts the file under it", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const stream = lines(90 * 1024);
    await Deno.writeFile(path, stream.subarray(0, 60 * 1024));
    const it = followLogFile(path, { follow: true, pollMs: 1, isDone: () => true })
      [Symbol.asyncIterator]();
    let got = 0;
    while (got < 60 * 1024) got += (await pull(it)).value!.length;
    await Deno.writeFile(path, stream.subarray(60 * 1024), { append: true });
    // 90 KiB over a 64 KiB cap: down to at most 48 KiB, i.e. the first 44 KiB
    // go, and the reader (at 60 KiB) is 16 KiB into what is left.
    assert.equal(await capLogFile(path, 64 * 1024), 44 * 1024);
    const rest: Uint8Array[] = [];
    for (let r = await pull(it); !r.done; r = await pull(it)) rest.push(r.value);
    assertBytes(concat(rest), stream.subarray(60 * 1024));
  });
});

Deno.test("followLogFile() skips to the oldest byte kept when a cap overtook it", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const stream = lines(300 * 1024);
    await Deno.writeFile(path, stream.subarray(0, 100 * 1024));
    const it = followLogFile(path, { follow: true, pollMs: 1, isDone: () => true })
      [Symbol.asyncIterator]();
    const first = (await pull(it)).value!;
    assertBytes(first, stream.subarray(0, first.length));
    await Deno.writeFile(path, stream.subarray(100 * 1024), { append: true });
    const dropped = await capLogFile(path, 64 * 1024);
    assert.ok(dropped > first.length);
    const rest: Uint8Array[] = [];
    for (let r = await pull(it); !r.done; r = await pull(it)) rest.push(r.value);
    assertBytes(concat(rest), stream.subarray(dropped));
  });
});

Deno.test("followLogFile() started after caps reads what the file keeps", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const stream = lines(300 * 1024);
    await Deno.writeFile(path, stream.subarray(0, 150 * 1024));
    await capLogFile(path, 64 * 1024);
    await Deno.writeFile(path, stream.subarray(150 * 1024), { append: true });
    await capLogFile(path, 64 * 1024);
    const dropped = await droppedOf(path);
    assert.ok(dropped > 150 * 1024);
    const got = await collect(followLogFile(path, { follow: false, isDone: () => true }));
    assertBytes(got, stream.subarray(dropped));
  });
});

Deno.test("followLogFile() yields each byte once, in order, through many caps", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const stream = lines(4 * 1024 * 1024);
    const maxBytes = 128 * 1024;
    const cap = new LogCap({ maxBytes });
    cap.track(path);
    const file = await Deno.open(path, { append: true, create: true });
    let done = false;
    const it = followLogFile(path, { follow: true, pollMs: 1, isDone: () => done })
      [Symbol.asyncIterator]();
    const random = prng(11);
    let written = 0;
    // Where the reader is, in the stream of everything written.
    let at = 0;
    let shifted = 0;
    let overtaken = 0;
    try {
      while (written < stream.length) {
        const n = Math.min(Math.floor(random() * 100_000), stream.length - written);
        await writeAll(file, stream.subarray(written, written + n));
        written += n;
        const before = await droppedOf(path);
        await cap.capOnce();
        const dropped = await droppedOf(path);
        if (dropped > before && at > before) {
          if (at >= dropped) shifted++;
          else overtaken++;
        }
        // Pull 0 to 3 chunks, so the reader sometimes lags, sometimes not;
        // only while it has something to read (else next() waits for more).
        for (let pulls = Math.floor(random() * 4); pulls > 0 && at < written; pulls--) {
          const chunk = (await pull(it)).value!;
          const start = Math.max(at, dropped);
          assertBytes(chunk, stream.subarray(start, start + chunk.length), `at ${start}`);
          at = start + chunk.length;
        }
      }
      done = true;
      for (let r = await pull(it); !r.done; r = await pull(it)) {
        const start = Math.max(at, await droppedOf(path));
        assertBytes(r.value, stream.subarray(start, start + r.value.length));
        at = start + r.value.length;
      }
    } finally {
      file.close();
      await cap.close();
    }
    assert.equal(at, stream.length, "the reader got to the last byte");
    assert.ok(shifted >= 3, `the file shifted under the reader ${shifted} times`);
    assert.ok(overtaken >= 3, `a cap overtook the reader ${overtaken} times`);
  });
});

Deno.test("followLogFile() yields each byte once, in order, while a writer and caps run", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const stream = lines(8 * 1024 * 1024);
    const cap = new LogCap({ maxBytes: 128 * 1024 });
    cap.track(path);
    // Every stable drop record a reader may have jumped to.
    const drops = new Set<number>([0]);
    let writing = true;
    const file = await Deno.open(path, { append: true, create: true });
    const chunks: Uint8Array[] = [];
    const reader = (async () => {
      for await (
        const chunk of followLogFile(path, { follow: true, pollMs: 1, isDone: () => !writing })
      ) {
        chunks.push(chunk);
      }
    })();
    let passed = () => {};
    const capper = (async () => {
      while (writing) {
        await cap.capOnce();
        drops.add(await droppedOf(path));
        passed();
      }
    })();
    const random = prng(5);
    try {
      for (let written = 0, unchecked = 0; written < stream.length;) {
        const n = Math.min(1 + Math.floor(random() * 150_000), stream.length - written);
        await writeAll(file, stream.subarray(written, written + n));
        written += n;
        unchecked += n;
        // Writes run during passes, but at most 256 KiB between two, so the
        // file goes over its cap (128 KiB) many times.
        if (unchecked > 256 * 1024) {
          await new Promise<void>((resolve) => passed = resolve);
          unchecked = 0;
        }
      }
    } finally {
      writing = false;
      file.close();
      await capper;
      await cap.close();
    }
    await deadline(reader, "the reader's end");
    assert.ok(drops.size >= 10, `only ${drops.size - 1} caps`);
    // Where each chunk could have started: right after the previous one, or
    // (having been overtaken) at a later drop record. Chunks are short enough
    // to be ambiguous at times, so follow every reading that fits.
    let ends = new Set<number>([0]);
    for (const [k, chunk] of chunks.entries()) {
      const next = new Set<number>();
      for (const end of ends) {
        for (const start of [end, ...[...drops].filter((d) => d > end)]) {
          if (matches(stream, start, chunk)) next.add(start + chunk.length);
        }
      }
      assert.ok(next.size > 0, `chunk ${k} (${chunk.length} bytes) is no continuation`);
      ends = next;
    }
    assert.ok(ends.has(stream.length), "the reader got to the last byte");
  });
});

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

function matches(stream: Uint8Array, start: number, chunk: Uint8Array): boolean {
  if (start + chunk.length > stream.length) return false;
  for (let i = 0; i < chunk.length; i++) if (stream[start + i] !== chunk[i]) return false;
  return true;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

Deno.test("followLogFile() discards a read that a cap may have overlapped", async () => {
  await withDir(async (dir) => {
    if (!(await collapses(dir))) return;
    const path = join(dir, "a.log");
    const stream = lines(256 * 1024);
    await Deno.writeFile(path, stream);
    // The drop record is a FIFO here, so the test decides what each of the
    // reader's reads of it returns, and when: the third read is opened before
    // a cap and returns after it, as a read of the real record can (it opens
    // the old file, which the cap replaces). A reader that trusted that
    // record for its next file read would read 64 KiB too far.
    const sidecar = logDropsPath(path);
    const next = join(dir, "next.fifo");
    const mkfifo = async (at: string) =>
      assert.ok((await new Deno.Command("mkfifo", { args: [at] }).output()).success);
    await mkfifo(sidecar);
    let record = { seq: 0, collapsed: 0, dropped: 0 };
    let reads = 0;
    let finished = false;
    const server = (async () => {
      for (;;) {
        await mkfifo(next);
        // Returns once the reader has opened the FIFO; a fresh one then takes
        // its place, so each read gets this one record, then end of file.
        const w = await Deno.open(sidecar, { write: true });
        await Deno.rename(next, sidecar);
        try {
          if (finished) return;
          reads++;
          await w.write(encoder.encode(JSON.stringify(record)));
          if (reads === 3) {
            const cap = new Deno.Command("fallocate", {
              args: ["--collapse-range", "-o", "0", "-l", `${64 * 1024}`, path],
            });
            assert.ok((await cap.output()).success);
            record = { seq: 2, collapsed: 64 * 1024, dropped: 64 * 1024 };
          }
        } finally {
          w.close();
        }
      }
    })();
    let got: Uint8Array;
    try {
      got = await collect(followLogFile(path, { follow: false, isDone: () => true }));
    } finally {
      finished = true;
      // Opening the read end lets the server's last open return.
      const r = await Deno.open(sidecar, { read: true });
      await server;
      r.close();
    }
    assert.ok(reads >= 5, `${reads} reads of the drop record`);
    assertBytes(got, stream);
  });
});

Deno.test("followLogFile() waits while a cap is in progress", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const stream = lines(10 * BLOCK);
    await Deno.writeFile(path, stream);
    // What an agent that died before collapsing 4 blocks leaves behind.
    await Deno.writeTextFile(
      logDropsPath(path),
      JSON.stringify({
        seq: 1,
        collapsed: 0,
        dropped: 0,
        pending: {
          op: "collapse",
          length: 4 * BLOCK,
          size: stream.length,
          check: 1,
          before: "",
          after: "",
        },
      }),
    );
    const reading = collect(followLogFile(path, { follow: false, isDone: () => true }));
    const cap = new LogCap({ maxBytes: 1024 * 1024, logger: { warn: () => {} } });
    cap.track(path);
    await cap.capOnce();
    await cap.close();
    assert.deepEqual(await readLogDrops(path), { seq: 2, collapsed: 0, dropped: 0 });
    assertBytes(await reading, stream);
  });
});

Deno.test("followLogFile() gives up on a cap left in progress for too long", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    append(path, "x\n");
    await Deno.writeTextFile(logDropsPath(path), `{"seq":7,"collapsed":0,"dropped":0}`);
    await assert.rejects(
      collect(followLogFile(path, { follow: false, isDone: () => true, pendingTimeoutMs: 20 })),
      /in progress for over 20 ms/,
    );
  });
});

Deno.test("followLogFile() keeps its place when the log is removed under it", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const stream = lines(400 * 1024);
    await Deno.writeFile(path, stream);
    const dropped = await capLogFile(path, 256 * 1024);
    assert.ok(dropped > 0);
    let removed = false;
    const it = followLogFile(path, { follow: true, pollMs: 1, isDone: () => removed })
      [Symbol.asyncIterator]();
    const first = (await pull(it)).value!;
    assert.ok(first.length < 400 * 1024 - dropped, "the reader is in the middle");
    // The sidecar goes first: the reader must not take its absence for "nothing dropped".
    await removeLogFile(path);
    removed = true;
    const rest: Uint8Array[] = [first];
    for (let r = await pull(it); !r.done; r = await pull(it)) rest.push(r.value);
    assertBytes(concat(rest), stream.subarray(dropped));
  });
});
