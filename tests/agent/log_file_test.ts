import assert from "node:assert/strict";
import { join } from "node:path";
import { followLogFile } from "../../agent/log_file.ts";

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
