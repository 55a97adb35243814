// Files through the FastPath on real containerd (runc and gVisor): writes and
// reads streamed through the controller and the agent into a sandbox, paths
// resolved inside the sandbox's root, whatever its symlinks say.
import assert from "node:assert/strict";
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  FastPath,
  WriteFileRequestSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcError, type ServiceClient } from "../../proto/grpc.ts";
import { ignoreWithout } from "../support/real_parts.ts";
import { OCI_RUNTIMES, randomBytes, withContainerdCluster } from "../support/containerd_cluster.ts";

const ignore = ignoreWithout("containerd", "root");
const decoder = new TextDecoder();
const encoder = new TextEncoder();

type Client = ServiceClient<typeof FastPath.method>;
type WriteInit = MessageInitShape<typeof WriteFileRequestSchema>;

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function write(
  client: Client,
  path: string,
  data: Uint8Array,
  start: { mode?: number; archive?: boolean; parents?: boolean; size?: bigint } = {},
) {
  async function* reqs(): AsyncGenerator<WriteInit> {
    yield {
      msg: {
        case: "start",
        value: {
          name: "box",
          path,
          mode: start.mode ?? 0,
          archive: start.archive ?? false,
          parents: start.parents ?? false,
          size: start.size,
        },
      },
    };
    for (let at = 0; at < data.length; at += 256 * 1024) {
      yield { msg: { case: "data", value: data.subarray(at, at + 256 * 1024) } };
    }
  }
  return await client.writeFile(reqs(), { timeoutMs: 120_000 });
}

async function read(client: Client, path: string, archive = false) {
  const chunks: Uint8Array[] = [];
  let mode: number | undefined;
  for await (
    const chunk of client.readFile({ name: "box", path, archive }, { timeoutMs: 120_000 })
  ) {
    if (chunk.info !== undefined) mode = chunk.info.mode;
    chunks.push(chunk.data);
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return { data: out, mode };
}

async function shell(client: Client, script: string): Promise<string> {
  let out = "";
  async function* reqs() {
    yield {
      msg: { case: "start" as const, value: { name: "box", command: ["sh", "-c", script] } },
    };
  }
  for await (const res of client.exec(reqs())) {
    if (res.msg.case === "stdout" || res.msg.case === "stderr") {
      out += decoder.decode(res.msg.value);
    }
  }
  return out;
}

function rejectsWith(code: number, message: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof RpcError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  };
}

for (const oci of OCI_RUNTIMES) {
  const suffix = oci === "runc" ? "" : " (runsc)";

  Deno.test({
    name: `A 50 MiB file goes into a sandbox and comes out identical${suffix}`,
    ignore,
  }, async () => {
    await withContainerdCluster(oci, async ({ cluster }) => {
      const client = cluster.client;
      await client.createSandbox({ name: "box", image: "busybox", command: ["sleep", "600"] });
      const data = randomBytes(50 * 1024 * 1024);
      const info = await write(client, "/tmp/big.bin", data, {
        mode: 0o640,
        size: BigInt(data.length),
      });
      assert.equal(Number(info.size), data.length);
      assert.equal(info.mode, 0o640);
      const back = await read(client, "/tmp/big.bin");
      assert.equal(back.data.length, data.length);
      assert.equal(await sha256(back.data), await sha256(data));
      assert.equal(back.mode, 0o640);
      // The sandbox sees the same bytes.
      const inside = await shell(client, "sha256sum /tmp/big.bin | cut -d' ' -f1");
      assert.equal(inside.trim(), await sha256(data));
    });
  });

  Deno.test({
    name: `Symlinks in a sandbox never lead a file call to the host${suffix}`,
    ignore,
  }, async () => {
    await withContainerdCluster(oci, async ({ cluster, dir }) => {
      const client = cluster.client;
      await client.createSandbox({ name: "box", image: "busybox", command: ["sleep", "600"] });
      // A marker only the host has: a sandbox's view of "/" must not show it.
      const marker = join(dir, "host-secret.txt");
      await Deno.writeTextFile(marker, "host secret");
      await shell(client, `ln -s / /hostroot; mkdir -p /a/b; ln -s ../../.. /a/b/up`);
      for (const path of [`/hostroot${marker}`, `/a/b/up${marker}`, `/a/b/up/up${marker}`]) {
        const got = await read(client, path).then((r) => decoder.decode(r.data), (err) => err);
        assert.notEqual(got, "host secret", path);
        assert.ok(got instanceof RpcError, `${path}: ${got}`);
        if (oci === "runc") {
          assert.equal(got.code, Code.NOT_FOUND, got.message);
        } else {
          // gVisor (runsc 20221219) resolves a missing path under a symlink
          // to "/" as the sandbox's own root directory: still nothing of the host.
          assert.ok(
            ([Code.NOT_FOUND, Code.FAILED_PRECONDITION] as number[]).includes(got.code),
            got.message,
          );
        }
      }
      // Writes through them land inside the sandbox, never on the host.
      const wrote = await write(client, `/hostroot${dir}/written.txt`, encoder.encode("x"), {
        parents: true,
      }).then(() => true, (err) => err);
      assert.equal(await Deno.stat(join(dir, "written.txt")).then(() => true, () => false), false);
      if (oci === "runc") {
        assert.equal(wrote, true);
        assert.equal(await shell(client, `cat ${dir}/written.txt`), "x");
      } else {
        // The same gVisor quirk as above: the parent reads as the root directory.
        assert.ok(wrote === true || wrote instanceof RpcError, String(wrote));
      }
      const listed = await client.listDir({ name: "box", path: "/hostroot/" });
      assert.ok(listed.entries.some((e) => e.path === "hostroot" && e.type === "symlink"));
      assert.equal(listed.entries.some((e) => e.path === "host-secret.txt"), false);
    });
  });

  Deno.test({
    name: `A directory round-trips as a tar archive with its modes${suffix}`,
    ignore,
  }, async () => {
    await withContainerdCluster(oci, async ({ cluster }) => {
      const client = cluster.client;
      await client.createSandbox({ name: "box", image: "busybox", command: ["sleep", "600"] });
      await shell(
        client,
        "mkdir -p /src/sub && echo one > /src/a.txt && echo two > /src/sub/b.sh && " +
          "chmod 700 /src/sub/b.sh && chmod 750 /src/sub && ln -s a.txt /src/link",
      );
      const tar = await read(client, "/src", true);
      assert.ok(tar.data.length > 0);
      await write(client, "/dst", tar.data, { archive: true });
      const listing = await shell(
        client,
        "cd /dst/src && stat -c '%n %a' a.txt sub sub/b.sh && readlink link && cat sub/b.sh",
      );
      assert.equal(listing, "a.txt 644\nsub 750\nsub/b.sh 700\na.txt\ntwo\n");
    });
  });
}

Deno.test({ name: "File calls refuse bad paths and report missing files", ignore }, async () => {
  await withContainerdCluster("runc", async ({ cluster }) => {
    const client = cluster.client;
    await client.createSandbox({ name: "box", image: "busybox", command: ["sleep", "600"] });
    await assert.rejects(
      client.stat({ name: "box", path: "/tmp/a\0b" }),
      rejectsWith(Code.INVALID_ARGUMENT, /Invalid path: must not contain NUL/),
    );
    await assert.rejects(
      client.stat({ name: "box", path: "tmp" }),
      rejectsWith(Code.INVALID_ARGUMENT, /Invalid path: must be an absolute path, got "tmp"/),
    );
    await assert.rejects(
      client.stat({ name: "box", path: "/no/such/file" }),
      rejectsWith(Code.NOT_FOUND, /\/no\/such\/file/),
    );
    await assert.rejects(
      write(client, "/tmp/short", encoder.encode("abc"), { size: 10n }),
      rejectsWith(Code.INVALID_ARGUMENT, /size/),
    );
    // Nothing half-written stays behind a failed write.
    assert.equal(await shell(client, "ls -A /tmp"), "");
    const made = await client.makeDir({ name: "box", path: "/x/y", parents: true, mode: 0o700 });
    assert.equal(made.type, "dir");
    assert.equal(made.mode, 0o700);
    assert.deepEqual(await client.remove({ name: "box", path: "/x", recursive: true }), {
      $typeName: "fsb.fastpath.v1.RemoveResponse",
      existed: true,
    });
    assert.equal((await client.remove({ name: "box", path: "/x" })).existed, false);
  });
});
