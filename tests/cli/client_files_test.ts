// The library client's file calls (`files` of `cli/client.ts`) over real gRPC
// (RpcServer, with handlers playing the controller; see fastpath_server.ts),
// through the CLI's fetch transport and, for `unix:` endpoints, grpc-js.
import assert from "node:assert/strict";
import {
  type FileInfo,
  FileInfoSchema,
  type WriteFileStart,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, connect, type FsbClient, RpcError } from "../../cli/client.ts";
import { eventually } from "../agent/runtime_contract.ts";
import { type FastPathImpl, startFastPathServer } from "./fastpath_server.ts";

const text = (s: string) => new TextEncoder().encode(s);

function isCode(code: number, message?: string) {
  return (err: unknown) => {
    assert.ok(err instanceof RpcError, `expected an RpcError, got ${err}`);
    assert.equal(err.codeName, new RpcError(code, "").codeName, err.message);
    if (message !== undefined) assert.equal(err.message, message);
    return true;
  };
}

async function withFsb(
  impl: Partial<FastPathImpl>,
  fn: (fsb: FsbClient) => Promise<void>,
  opts: { unix?: boolean } = {},
): Promise<void> {
  const server = await startFastPathServer(impl, opts);
  try {
    using fsb = connect({ endpoint: server.endpoint });
    await fn(fsb);
  } finally {
    await server.close();
  }
}

function info(more: MessageInitShape<typeof FileInfoSchema>): FileInfo {
  return create(FileInfoSchema, { type: "file", mode: 0o644, ...more });
}

function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

async function readAll(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk.slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A WriteFile handler keeping what it got: the start, each data message's size, the bytes. */
function recorder(): {
  impl: Partial<FastPathImpl>;
  writes: { start: WriteFileStart; sizes: number[]; data: Uint8Array }[];
} {
  const writes: { start: WriteFileStart; sizes: number[]; data: Uint8Array }[] = [];
  return {
    writes,
    impl: {
      writeFile: async (reqs) => {
        let start: WriteFileStart | undefined;
        const parts: Uint8Array[] = [];
        for await (const req of reqs) {
          if (req.msg.case === "start") start = req.msg.value;
          if (req.msg.case === "data") parts.push(req.msg.value.slice());
        }
        const data = await readAll((async function* () {
          yield* parts;
        })());
        writes.push({ start: start!, sizes: parts.map((p) => p.length), data });
        return info({ path: start!.path, size: BigInt(data.length), mode: start!.mode || 0o644 });
      },
    },
  };
}

Deno.test("files.write() sends start, then the data in chunks of at most 256 KiB, and resolves to the file", async () => {
  const { impl, writes } = recorder();
  await withFsb(impl, async (fsb) => {
    const data = bytes(600 * 1024);
    const written = await fsb.files.write("web", "/srv/blob.bin", data, {
      namespace: "team-a",
      mode: 0o4755,
      uid: 0,
      parents: true,
    });
    assert.equal(written.path, "/srv/blob.bin");
    assert.equal(written.size, 614_400n);
    assert.equal(written.mode, 0o4755);
    const [{ start, sizes, data: got }] = writes;
    assert.deepEqual(sizes, [262_144, 262_144, 90_112]);
    assert.deepEqual(got, data);
    assert.equal(start.name, "web");
    assert.equal(start.namespace, "team-a");
    assert.equal(start.mode, 0o4755);
    assert.equal(start.uid, 0, "a uid of 0 is sent: root, on purpose");
    assert.equal(start.gid, undefined);
    assert.equal(start.size, 614_400n, "bytes in memory tell their size");
    assert.equal(start.parents, true);
    assert.equal(start.archive, false);
  });
});

Deno.test("files.write() sends text as UTF-8 and a stream as it comes, an empty file as start alone", async () => {
  const { impl, writes } = recorder();
  await withFsb(impl, async (fsb) => {
    await fsb.files.write("web", "/tmp/ünï.txt", "héllo 😀\n");
    assert.deepEqual(writes[0].data, text("héllo 😀\n"));
    assert.equal(writes[0].start.size, 12n, "text tells its size in bytes");

    async function* stream() {
      yield text("a");
      yield new Uint8Array(0);
      yield bytes(300 * 1024, 7);
    }
    await fsb.files.write("web", "/tmp/t.tar", stream(), { archive: true, size: 307_201 });
    assert.deepEqual(writes[1].sizes, [1, 262_144, 45_056]);
    assert.equal(writes[1].start.archive, true);
    assert.equal(writes[1].start.size, 307_201n);

    async function* unknownLength() {
      yield text("x");
    }
    await fsb.files.write("web", "/tmp/x", unknownLength());
    assert.equal(writes[2].start.size, undefined, "a stream's size is not known unless given");

    await fsb.files.write("web", "/tmp/empty", new Uint8Array(0));
    assert.deepEqual(writes[3].sizes, []);
    assert.equal(writes[3].start.size, 0n);
  });
});

Deno.test("files.write() rejects options out of range with INVALID_ARGUMENT, before any call", async () => {
  const { impl, writes } = recorder();
  await withFsb(impl, async (fsb) => {
    await assert.rejects(
      fsb.files.write("web", "/x", "", { mode: -1 }),
      isCode(
        Code.INVALID_ARGUMENT,
        "Invalid mode -1: expected a whole number from 0 to 4294967295",
      ),
    );
    await assert.rejects(
      fsb.files.write("web", "/x", "", { uid: 2 ** 32 }),
      isCode(Code.INVALID_ARGUMENT),
    );
    await assert.rejects(
      fsb.files.write("web", "/x", "", { size: 1.5 }),
      isCode(Code.INVALID_ARGUMENT, "Invalid size 1.5: expected a whole number >= 0"),
    );
    assert.equal(writes.length, 0);
  });
});

Deno.test("files.write() fails with the server's status, and stops reading the data", async () => {
  let pulled = 0;
  await withFsb({
    writeFile: async (reqs) => {
      for await (const req of reqs) {
        if (req.msg.case === "start") {
          throw new RpcError(
            Code.FAILED_PRECONDITION,
            `Cannot write "${req.msg.value.path}": it is a directory`,
          );
        }
      }
      return info({});
    },
  }, async (fsb) => {
    async function* endless() {
      for (;;) {
        pulled++;
        yield bytes(64 * 1024);
      }
    }
    await assert.rejects(
      fsb.files.write("web", "/etc", endless()),
      isCode(Code.FAILED_PRECONDITION, 'Cannot write "/etc": it is a directory'),
    );
    const after = pulled;
    assert.ok(after < 64, `read ${after} chunks of an upload already refused`);
  });
});

Deno.test("files.read() gives the info before any byte is read, then the bytes, sending maxBytes and archive", async () => {
  const data = bytes(700 * 1024);
  const requests: string[] = [];
  await withFsb({
    readFile: async function* (req) {
      requests.push(`${req.namespace}/${req.name} ${req.path} ${req.archive} ${req.maxBytes}`);
      const size = BigInt(data.length);
      yield { data: data.subarray(0, 100_000), info: info({ path: req.path, size }) };
      yield { data: data.subarray(100_000, 500_000) };
      yield { data: new Uint8Array(0) };
      yield { data: data.subarray(500_000) };
    },
  }, async (fsb) => {
    const read = fsb.files.read("web", "/data/big.bin", { namespace: "team-a", maxBytes: 1 << 20 });
    const got = await read.info;
    assert.equal(got.size, 716_800n);
    assert.equal(got.path, "/data/big.bin");
    assert.deepEqual(await readAll(read), data);
    assert.deepEqual(requests, ["team-a/web /data/big.bin false 1048576"]);

    const archive = fsb.files.read("web", "/data", { archive: true });
    await readAll(archive);
    assert.equal(requests[1], "/web /data true 0");
  });
});

Deno.test("files.read() fails with the server's status before the first chunk, and with DATA_LOSS for a short file", async () => {
  await withFsb({
    readFile: async function* (req) {
      if (req.path === "/missing") throw new RpcError(Code.NOT_FOUND, `No such file "${req.path}"`);
      if (req.path === "/big") {
        throw new RpcError(Code.OUT_OF_RANGE, "The file is bigger than 10 bytes");
      }
      yield { data: text("half"), info: info({ path: req.path, size: 8n }) };
      // The agent fails mid-file: its status comes in trailers, which fetch does not show.
      throw new RpcError(Code.INTERNAL, "read error");
    },
  }, async (fsb) => {
    const missing = fsb.files.read("web", "/missing");
    await assert.rejects(missing.info, isCode(Code.NOT_FOUND, 'No such file "/missing"'));
    await assert.rejects(readAll(missing), isCode(Code.NOT_FOUND));
    await assert.rejects(
      readAll(fsb.files.read("web", "/big", { maxBytes: 10 })),
      isCode(Code.OUT_OF_RANGE, "The file is bigger than 10 bytes"),
    );
    const short = fsb.files.read("web", "/short");
    assert.equal((await short.info).size, 8n);
    await assert.rejects(
      readAll(short),
      isCode(Code.DATA_LOSS, 'Reading "/short" ended after 4 of its 8 bytes'),
    );
    assert.throws(
      () => fsb.files.read("web", "/x", { maxBytes: -1 }),
      isCode(Code.INVALID_ARGUMENT),
    );
  });
});

Deno.test("files.read() ends quietly when its signal aborts, and the server sees the call cancelled", async () => {
  let cancelled = false;
  await withFsb({
    readFile: async function* (req, ctx) {
      ctx.signal.addEventListener("abort", () => cancelled = true);
      yield { data: text("first"), info: info({ path: req.path, size: 1n << 40n }) };
      while (!ctx.signal.aborted) {
        yield { data: bytes(1024) };
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
  }, async (fsb) => {
    const abort = new AbortController();
    let n = 0;
    for await (const _ of fsb.files.read("web", "/dev/zero", { signal: abort.signal })) {
      if (++n === 3) abort.abort();
    }
    assert.ok(n >= 3);
    await eventually("the server sees the call cancelled", () => cancelled);
  });
});

Deno.test("files.list(), stat(), mkdir() and remove() send their requests and give the answers", async () => {
  const seen: string[] = [];
  await withFsb({
    listDir: (req) => {
      seen.push(`list ${req.path}`);
      return { entries: [info({ path: "a" }), info({ path: "b", type: "dir", mode: 0o755 })] };
    },
    stat: (req) => {
      seen.push(`stat ${req.namespace}/${req.name} ${req.path}`);
      if (req.path === "/nope") throw new RpcError(Code.NOT_FOUND, `No such file "${req.path}"`);
      return info({ path: req.path, type: "symlink", linkTarget: "/etc/hostname" });
    },
    makeDir: (req) => {
      seen.push(`mkdir ${req.path} ${req.mode.toString(8)} ${req.parents}`);
      return info({ path: req.path, type: "dir", mode: req.mode || 0o755 });
    },
    remove: (req) => {
      seen.push(`remove ${req.path} ${req.recursive}`);
      return { existed: req.path !== "/gone" };
    },
  }, async (fsb) => {
    assert.deepEqual((await fsb.files.list("web", "/srv")).map((f) => `${f.path} ${f.type}`), [
      "a file",
      "b dir",
    ]);
    assert.equal(
      (await fsb.files.stat("web", "/link", { namespace: "ns" })).linkTarget,
      "/etc/hostname",
    );
    await assert.rejects(
      fsb.files.stat("web", "/nope"),
      isCode(Code.NOT_FOUND, 'No such file "/nope"'),
    );
    assert.equal(
      (await fsb.files.mkdir("web", "/a/b", { mode: 0o700, parents: true })).mode,
      0o700,
    );
    assert.equal((await fsb.files.mkdir("web", "/c")).mode, 0o755);
    await assert.rejects(
      fsb.files.mkdir("web", "/d", { mode: 0.5 }),
      isCode(Code.INVALID_ARGUMENT),
    );
    assert.equal(await fsb.files.remove("web", "/a", { recursive: true }), true);
    assert.equal(await fsb.files.remove("web", "/gone"), false);
    assert.deepEqual(seen, [
      "list /srv",
      "stat ns/web /link",
      "stat /web /nope",
      "mkdir /a/b 700 true",
      "mkdir /c 0 false",
      "remove /a true",
      "remove /gone false",
    ]);
  });
});

Deno.test("files.write() and read() work over a unix: endpoint too (grpc-js)", async () => {
  const { impl, writes } = recorder();
  await withFsb({
    ...impl,
    readFile: async function* (req) {
      yield { data: text("from unix"), info: info({ path: req.path, size: 9n }) };
    },
  }, async (fsb) => {
    await fsb.files.write("web", "/u", bytes(300 * 1024));
    assert.deepEqual(writes[0].sizes, [262_144, 45_056]);
    const read = fsb.files.read("web", "/u");
    assert.equal((await read.info).size, 9n);
    assert.equal(new TextDecoder().decode(await readAll(read)), "from unix");
  }, { unix: true });
});

Deno.test("files.write() fails over on UNAVAILABLE before an answer, sending what the first endpoint took again", async () => {
  let firstTook = 0;
  const unavailable = await startFastPathServer({
    writeFile: async (reqs) => {
      for await (const _ of reqs) {
        if (++firstTook === 3) throw new RpcError(Code.UNAVAILABLE, "not the leader");
      }
      return info({});
    },
  });
  const { impl, writes } = recorder();
  const ok = await startFastPathServer(impl);
  try {
    using fsb = connect({ endpoint: [unavailable.endpoint, ok.endpoint] });
    const data = bytes(5 * 256 * 1024);
    const written = await fsb.files.write("web", "/f", data);
    assert.equal(written.size, BigInt(data.length));
    assert.equal(firstTook, 3);
    assert.deepEqual(writes[0].data, data, "the second endpoint got every byte, in order");
    assert.equal(writes[0].start.path, "/f");
  } finally {
    await unavailable.close();
    await ok.close();
  }
});

Deno.test("files.write() does not fail over once an endpoint has read more than it can send again", async () => {
  const unavailable = await startFastPathServer({
    writeFile: async (reqs) => {
      let took = 0;
      for await (const _ of reqs) {
        // Past the 16 requests kept for another endpoint.
        if (++took === 20) throw new RpcError(Code.UNAVAILABLE, "agent went away");
      }
      return info({});
    },
  });
  const { impl, writes } = recorder();
  const ok = await startFastPathServer(impl);
  try {
    using fsb = connect({ endpoint: [unavailable.endpoint, ok.endpoint] });
    const small = async function* () {
      for (let i = 0; i < 30; i++) yield bytes(1024, i);
    };
    await assert.rejects(
      fsb.files.write("web", "/f", small()),
      isCode(Code.UNAVAILABLE, "agent went away"),
    );
    assert.equal(writes.length, 0);
  } finally {
    await unavailable.close();
    await ok.close();
  }
});
