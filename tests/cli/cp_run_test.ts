import assert from "node:assert/strict";
import { describeError } from "../../cli/_channel.ts";
import { runInSandbox } from "../../cli/_exec_run.ts";
import { readTar } from "../../cli/_tar.ts";
import { packTar } from "../../cli/_tar_pack.ts";
import type { ClientConfig } from "../../cli/client_config.ts";
import { parseSandboxArgs } from "../../cli/parse_sandbox_args.ts";
import type { ExecPlan } from "../../cli/parse_exec_args.ts";
import type { CliIo } from "../../cli/sandbox_command.ts";
import { dirFiles, fakeExecClient } from "./fake_exec.ts";
import { cleanup, describeTree, makeTree, MTIME, MTIMES } from "./file_tree.ts";

// `fsb sandbox cp` against a sandbox faked by a local directory, its archives
// made and extracted by busybox tar as the agent does (see fake_exec.ts for
// why); the real agent is in e2e_exec_test.ts. The local side is real.

const CONFIG = { endpoint: { address: "127.0.0.1:9090", source: "--endpoint" } } as ClientConfig;

interface World {
  /** This machine's side. */
  local: string;
  /** The sandbox's root. */
  box: string;
  cp: (...args: string[]) => Promise<{ code: number; stderr: string; stdout: Uint8Array }>;
}

async function world(fn: (w: World) => Promise<void>, stdin?: Uint8Array): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb-cp-" });
  const w: World = {
    local: `${dir}/local`,
    box: `${dir}/box`,
    cp: async (...args) => {
      let stderr = "";
      const out: number[] = [];
      const io: CliIo = {
        stdout: (s) => out.push(...new TextEncoder().encode(s)),
        stdoutBytes: (b) => void out.push(...b),
        stderr: (s) => void (stderr += s),
        env: {},
        home: "",
        ...(stdin === undefined ? {} : {
          stdin: (async function* () {
            yield stdin;
          })(),
        }),
      };
      const plan = parseSandboxArgs(["cp", ...args], { nowSec: 0 }) as ExecPlan;
      const client = fakeExecClient({ files: dirFiles(w.box) });
      const code = await runInSandbox(
        plan,
        client,
        io,
        (err) => describeError(err, () => Promise.resolve(true), CONFIG),
      );
      return { code, stderr, stdout: new Uint8Array(out) };
    },
  };
  await Deno.mkdir(w.local);
  await Deno.mkdir(w.box);
  try {
    await fn(w);
  } finally {
    await cleanup(dir);
  }
}

async function ok(result: Promise<{ code: number; stderr: string }>): Promise<void> {
  const { code, stderr } = await result;
  assert.equal(stderr, "");
  assert.equal(code, 0);
}

async function mode(path: string): Promise<number> {
  return (await Deno.lstat(path)).mode! & 0o7777;
}

// --- into a sandbox ---------------------------------------------------------------------

Deno.test("cp puts a file into an existing directory under its name, mode kept", async () => {
  await world(async ({ local, box, cp }) => {
    await Deno.writeTextFile(`${local}/run.sh`, "#!/bin/sh\n");
    await Deno.chmod(`${local}/run.sh`, 0o751);
    await Deno.mkdir(`${box}/tmp`);
    await ok(cp(`${local}/run.sh`, "box:/tmp"));
    assert.equal(await Deno.readTextFile(`${box}/tmp/run.sh`), "#!/bin/sh\n");
    assert.equal(await mode(`${box}/tmp/run.sh`), 0o751);
    // To a missing path: written there under that name; over a file: replaced.
    await ok(cp(`${local}/run.sh`, "box:/tmp/renamed"));
    assert.equal(await Deno.readTextFile(`${box}/tmp/renamed`), "#!/bin/sh\n");
    await Deno.writeTextFile(`${local}/run.sh`, "v2\n");
    await ok(cp(`${local}/run.sh`, "box:/tmp/renamed"));
    assert.equal(await Deno.readTextFile(`${box}/tmp/renamed`), "v2\n");
  });
});

Deno.test("cp copies a directory into a sandbox: created when missing, nested when existing, /. for contents", async () => {
  await world(async ({ local, box, cp }) => {
    await makeTree(`${local}/tree`);
    // busybox tar sets a directory's mtime before it fills it: only files keep theirs.
    const files = MTIMES.filter((p) => p.includes("."));
    const want = await describeTree(`${local}/tree`, files);
    await ok(cp(`${local}/tree`, "box:/new"));
    assert.deepEqual(await describeTree(`${box}/new`, files), want);
    await Deno.mkdir(`${box}/existing`);
    await ok(cp(`${local}/tree`, "box:/existing"));
    assert.deepEqual(await describeTree(`${box}/existing/tree`, files), want);
    await Deno.mkdir(`${box}/contents`);
    await ok(cp(`${local}/tree/.`, "box:/contents"));
    assert.deepEqual(await describeTree(`${box}/contents`, files), want);
  });
});

Deno.test("cp into a sandbox refuses a directory onto a file, and a missing parent", async () => {
  await world(async ({ local, box, cp }) => {
    await Deno.mkdir(`${local}/d`);
    await Deno.writeTextFile(`${box}/file`, "x");
    assert.deepEqual(await cp(`${local}/d`, "box:/file"), {
      code: 1,
      stderr: `fsb: Cannot copy directory "${local}/d" onto file "/file"\n`,
      stdout: new Uint8Array(),
    });
    const missing = await cp(`${local}/d`, "box:/no/such");
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'fsb: Directory "/no" does not exist\n');
    const noSource = await cp(`${local}/nothing`, "box:/");
    assert.equal(noSource.code, 1);
    assert.equal(noSource.stderr, `fsb: "${local}/nothing" does not exist\n`);
    // A directory to a missing "path/" is fine: it is created.
    await ok(cp(`${local}/d/`, "box:/made/"));
    assert.ok((await Deno.stat(`${box}/made`)).isDirectory);
  });
});

Deno.test("cp - extracts a tar archive from stdin into a sandbox directory", async () => {
  const src = await Deno.makeTempDir({ prefix: "fsb-cp-src-" });
  try {
    await makeTree(src);
    const archive = new Uint8Array(
      await new Response(ReadableStream.from(packTar(src, { name: "." })))
        .arrayBuffer(),
    );
    await world(async ({ box, cp }) => {
      await Deno.mkdir(`${box}/in`);
      await ok(cp("-", "box:/in"));
      assert.deepEqual(await describeTree(`${box}/in`), await describeTree(src));
      const notDir = await cp("-", "box:/missing");
      assert.equal(notDir.code, 1);
      assert.equal(notDir.stderr, 'fsb: Directory "/missing" does not exist\n');
    }, archive);
  } finally {
    await cleanup(src);
  }
});

// --- out of a sandbox ---------------------------------------------------------------------

Deno.test("cp gets a file out of a sandbox with its mode and mtime, into a directory or to a name", async () => {
  await world(async ({ local, box, cp }) => {
    await Deno.writeTextFile(`${box}/data.txt`, "payload\n");
    await Deno.chmod(`${box}/data.txt`, 0o640);
    await Deno.utime(`${box}/data.txt`, MTIME, MTIME);
    await ok(cp("box:/data.txt", local));
    assert.equal(await Deno.readTextFile(`${local}/data.txt`), "payload\n");
    assert.equal(await mode(`${local}/data.txt`), 0o640);
    assert.equal((await Deno.stat(`${local}/data.txt`)).mtime!.getTime(), MTIME * 1000);
    await ok(cp("box:/data.txt", `${local}/other.txt`));
    assert.equal(await Deno.readTextFile(`${local}/other.txt`), "payload\n");
    // Nothing but the copies: no temporary file is left behind.
    assert.deepEqual(
      (await Array.fromAsync(Deno.readDir(local))).map((e) => e.name).sort(),
      ["data.txt", "other.txt"],
    );
  });
});

Deno.test("cp copies a directory out of a sandbox: created when missing, nested when existing, /. for contents", async () => {
  await world(async ({ local, box, cp }) => {
    await makeTree(`${box}/tree`);
    const want = await describeTree(`${box}/tree`, MTIMES);
    await ok(cp("box:/tree", `${local}/new`));
    assert.deepEqual(await describeTree(`${local}/new`, MTIMES), want);
    assert.equal(await mode(`${local}/new`), await mode(`${box}/tree`));
    await Deno.mkdir(`${local}/existing`);
    await ok(cp("box:/tree/", `${local}/existing`));
    assert.deepEqual(await describeTree(`${local}/existing/tree`, MTIMES), want);
    await Deno.mkdir(`${local}/contents`);
    await ok(cp("box:/tree/.", `${local}/contents`));
    assert.deepEqual(await describeTree(`${local}/contents`, MTIMES), want);
  });
});

Deno.test("cp copies a symlink out of a sandbox as a symlink", async () => {
  await world(async ({ local, box, cp }) => {
    await Deno.symlink("/etc/passwd", `${box}/link`);
    await ok(cp("box:/link", local));
    assert.equal(await Deno.readLink(`${local}/link`), "/etc/passwd");
    await ok(cp("box:/link", `${local}/renamed`));
    assert.equal(await Deno.readLink(`${local}/renamed`), "/etc/passwd");
  });
});

Deno.test("cp out of a sandbox refuses a directory onto a file and a missing parent; a missing source is NOT_FOUND", async () => {
  await world(async ({ local, box, cp }) => {
    await Deno.mkdir(`${box}/d`);
    await Deno.writeTextFile(`${local}/file`, "x");
    const onto = await cp("box:/d", `${local}/file`);
    assert.equal(onto.code, 1);
    assert.equal(onto.stderr, `fsb: Cannot copy directory "/d" onto file "${local}/file"\n`);
    const parent = await cp("box:/d", `${local}/no/such`);
    assert.equal(parent.code, 1);
    assert.equal(parent.stderr, `fsb: Directory "${local}/no" does not exist\n`);
    const gone = await cp("box:/nothing", local);
    assert.equal(gone.code, 1);
    assert.equal(gone.stderr, 'fsb: NOT_FOUND: No such file or directory: "/nothing"\n');
  });
});

Deno.test("cp NAME:PATH - writes a tar archive of the path to stdout", async () => {
  await world(async ({ box, cp }) => {
    await makeTree(`${box}/tree`);
    const { code, stderr, stdout } = await cp("box:/tree", "-");
    assert.equal(stderr, "");
    assert.equal(code, 0);
    const names: string[] = [];
    for await (const { header } of readTar(ReadableStream.from([stdout]))) names.push(header.name);
    assert.ok(names.includes("tree/"), names.slice(0, 3).join(","));
    assert.ok(names.includes("tree/sub/big.bin"));
  });
});
