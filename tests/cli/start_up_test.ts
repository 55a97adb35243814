import assert from "node:assert/strict";

// `fsb sandbox` spends most of its life starting up, so what it loads is held
// here: run with an import map in which every npm package but protobuf-es's
// wire primitives is a module that throws when loaded, and the generated
// `_pb.ts` files are missing. Type-only imports load nothing and stay allowed.

const ROOT = new URL("../../", import.meta.url);
const MAIN = new URL("main.ts", ROOT).pathname;
const decoder = new TextDecoder();

async function poisonedImportMap(dir: string): Promise<string> {
  const poison = `${dir}/poison.js`;
  await Deno.writeTextFile(poison, 'throw new Error("POISON: loaded by fsb sandbox");\n');
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const imports: Record<string, string> = {};
  for (const name of Object.keys(config.imports)) {
    imports[name] = name.endsWith("/") ? `file://${dir}/poisoned-dir/` : `file://${poison}`;
  }
  imports["@bufbuild/protobuf/wire"] = `${config.imports["@bufbuild/protobuf"]}/wire`;
  // Generated code is imported by relative path; remap the folder it lives in.
  imports[new URL("proto/gen/", ROOT).href] = `file://${dir}/poisoned-dir/`;
  const map = `${dir}/import_map.json`;
  await Deno.writeTextFile(map, JSON.stringify({ imports }));
  return map;
}

async function fsb(importMap: string, args: string[], main = MAIN) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--import-map", importMap, main, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { FSB_ENDPOINT: "", NO_COLOR: "1" },
  }).output();
  return { code: out.code, stderr: decoder.decode(out.stderr) };
}

/** A loopback port that nothing listens on (bound, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test("fsb sandbox loads no protobuf-es schemas, generated code or grpc-js, only wire primitives", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-start-up-" });
  try {
    const map = await poisonedImportMap(dir);
    const endpoint = `127.0.0.1:${freePort()}`;
    // The whole calling path (request encoding, table and JSON output, logs)
    // is loaded before the call fails to connect.
    for (const args of [["create", "x", "--image", "busybox", "-o", "json"], ["logs", "x"]]) {
      const res = await fsb(map, ["sandbox", ...args, "--endpoint", endpoint]);
      assert.equal(res.code, 1, res.stderr);
      assert.match(res.stderr, /^fsb: UNAVAILABLE: Cannot reach the controller at 127\.0\.0\.1:/);
    }
    // The poisoned map is in force: the grpc-js fallback for unix sockets trips it.
    const unix = await fsb(map, ["sandbox", "list", "--endpoint", `unix://${dir}/none.sock`]);
    assert.equal(unix.code, 1);
    assert.match(unix.stderr, /POISON|poisoned-dir|does not provide an export named/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fsb token loads no protobuf-es schemas, generated code or grpc-js either", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-start-up-" });
  try {
    const map = await poisonedImportMap(dir);
    // tokenCommand as main.ts calls it, whether or not main.ts dispatches to it yet.
    const main = `${dir}/token_main.ts`;
    await Deno.writeTextFile(
      main,
      `import { denoCliIo, tokenCommand } from ${
        JSON.stringify(new URL("cli/mod.ts", ROOT).href)
      };\n` +
        "Deno.exit(await tokenCommand(Deno.args, denoCliIo()));\n",
    );
    const endpoint = `127.0.0.1:${freePort()}`;
    for (
      const args of [
        ["create", "-n", "a", "-o", "json"],
        ["list", "-o", "json"],
        ["list"],
        ["revoke", "x"],
      ]
    ) {
      const res = await fsb(map, [...args, "--endpoint", endpoint, "--token", "t"], main);
      assert.equal(res.code, 1, res.stderr);
      assert.match(res.stderr, /^fsb: UNAVAILABLE: Cannot reach the controller at 127\.0\.0\.1:/);
    }
    // The poisoned map is in force here too.
    const unix = await fsb(map, ["list", "--endpoint", `unix://${dir}/none.sock`], main);
    assert.equal(unix.code, 1);
    assert.match(unix.stderr, /POISON|poisoned-dir|does not provide an export named/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the client library (@fsb/fsb/client) loads no protobuf-es schemas, generated code or grpc-js", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-start-up-" });
  try {
    const map = await poisonedImportMap(dir);
    const main = `${dir}/client_main.ts`;
    await Deno.writeTextFile(
      main,
      `import { connect, RpcError } from ${
        JSON.stringify(new URL("cli/client.ts", ROOT).href)
      };\n` +
        "using fsb = connect({ endpoint: Deno.args[0], token: 't' });\n" +
        "try {\n" +
        "  await fsb.sandboxes.create({ name: 'x', image: 'busybox', command: ['true'] });\n" +
        "  for await (const _ of fsb.logs('x')) { /* nothing */ }\n" +
        "} catch (err) {\n" +
        "  if (!(err instanceof RpcError)) throw err;\n" +
        "  console.error(`${err.codeName}: ${err.message}`);\n" +
        "}\n",
    );
    const res = await fsb(map, [`127.0.0.1:${freePort()}`], main);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /^UNAVAILABLE: Cannot connect to 127\.0\.0\.1:/);
    // The poisoned map is in force: a unix socket loads grpc-js, and trips it.
    const unix = await fsb(map, [`unix://${dir}/none.sock`], main);
    assert.equal(unix.code, 1);
    assert.match(unix.stderr, /POISON|poisoned-dir|does not provide an export named/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
