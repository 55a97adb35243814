import assert from "node:assert/strict";
import { waitFor } from "../support/cluster.ts";
import { createWhenReady, startUp, type UpProcess } from "../support/fsb_process.ts";
import { cleanup, describeTree, makeTree } from "./file_tree.ts";

// Everything real: `fsb up` with the process runtime (controller, agent,
// exec and files), and each fsb command its own process, as a user runs it.
// The process runtime's sandboxes see the host's files, so what the test
// puts "in the sandbox" goes under a scratch directory of its own.

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const DENO_DIR = Deno.env.get("DENO_DIR") ??
  `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/deno`;
const decoder = new TextDecoder();

interface Ran {
  code: number;
  stdout: Uint8Array;
  stderr: string;
  text: string;
}

/** `fsb ARGS` against `up`, with `stdin` piped in when given; output as bytes. */
async function fsbBytes(up: UpProcess, args: string[], stdin?: Uint8Array): Promise<Ran> {
  const child = fsbChild(up, args, stdin === undefined ? "null" : "piped");
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    // Written while the output is read, so that neither side's pipe fills up.
    (async () => {
      await w.write(stdin);
      await w.close();
    })();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: out.stdout,
    stderr: decoder.decode(out.stderr),
    text: decoder.decode(out.stdout),
  };
}

function fsbChild(up: UpProcess, args: string[], stdin: "null" | "piped"): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdin,
    stdout: "piped",
    stderr: "piped",
    env: {
      HOME: up.home,
      DENO_DIR,
      FSB_ENDPOINT: "",
      FSB_TOKEN: "",
      FSB_TLS_CA: "",
      NO_COLOR: "1",
    },
  }).spawn();
}

/**
 * Reads `child`'s stdout until it printed `text` (and nothing else since the
 * last call), then lets go of the stream so that output() can read the rest.
 */
async function untilPrinted(child: Deno.ChildProcess, text: string): Promise<void> {
  const reader = child.stdout.getReader();
  let got = "";
  try {
    while (got.length < text.length) {
      const { value, done } = await reader.read();
      if (done) break;
      got += decoder.decode(value);
    }
  } finally {
    reader.releaseLock();
  }
  assert.equal(got, text);
}

async function exec(up: UpProcess, ...args: string[]): Promise<Ran> {
  return await fsbBytes(up, ["sandbox", "exec", ...args]);
}

Deno.test("fsb sandbox exec, attach, ps, kill, wait and cp against fsb up", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-e2e-exec-" });
  const scratch = await Deno.makeTempDir({ prefix: "fsb-e2e-exec-local-" });
  const up = await startUp(dataDir, ["--runtime", "process"]);
  try {
    const created = await createWhenReady(up, "box", ["sleep", "600"]);
    assert.equal(created.code, 0, created.stderr);

    await t.step("exec prints what the command prints and exits with its exit code", async () => {
      const r = await exec(up, "box", "--", "sh", "-c", "echo hi; echo oops >&2; exit 7");
      assert.equal(r.text, "hi\n");
      assert.equal(r.stderr, "oops\n");
      assert.equal(r.code, 7);
      // Without "--" too: flags end at the command.
      const ls = await exec(up, "box", "sh", "-c", 'echo "$0 $1"', "-x", "--y");
      assert.equal(ls.text, "-x --y\n");
      assert.equal(ls.code, 0);
    });

    await t.step("exec exits 127 for a command that is not there", async () => {
      const r = await exec(up, "box", "--", "fsb-no-such-command");
      assert.equal(r.code, 127);
      assert.match(r.stderr, /^fsb: .*fsb-no-such-command/);
      assert.equal(r.text, "");
    });

    await t.step("exec -e and -w reach the command", async () => {
      const r = await exec(
        up,
        "-e",
        "GREETING=hello there",
        "-w",
        "/tmp",
        "box",
        "--",
        "sh",
        "-c",
        'echo "$GREETING $(pwd)"',
      );
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.text, /^hello there \S*\/tmp\n$/);
    });

    await t.step("exec -i pipes 1 MiB through cat byte for byte", async () => {
      const input = new Uint8Array(1 << 20);
      for (let at = 0; at < input.length; at += 65536) {
        crypto.getRandomValues(input.subarray(at, at + 65536));
      }
      const r = await fsbBytes(up, ["sandbox", "exec", "-i", "box", "--", "cat"], input);
      assert.equal(r.stderr, "");
      assert.equal(r.code, 0);
      assert.equal(r.stdout.length, input.length);
      assert.deepEqual(r.stdout, input);
    });

    await t.step("Ctrl-C reaches the command as SIGINT; a second one stops fsb", async () => {
      const trapped = fsbChild(up, [
        "sandbox",
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        'trap "echo got INT; exit 3" INT; echo ready; while :; do sleep 0.05; done',
      ], "null");
      await untilPrinted(trapped, "ready\n");
      trapped.kill("SIGINT");
      const out = await trapped.output();
      assert.equal(decoder.decode(out.stdout), "got INT\n");
      assert.equal(out.code, 3);

      const stubborn = fsbChild(up, [
        "sandbox",
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        'trap "echo ignored" INT; echo ready; while :; do sleep 0.05; done',
      ], "null");
      await untilPrinted(stubborn, "ready\n");
      stubborn.kill("SIGINT");
      await untilPrinted(stubborn, "ignored\n");
      stubborn.kill("SIGINT");
      const second = await stubborn.output();
      assert.equal(second.code, 130);
    });

    await t.step("exec -d prints an id that attach follows to the end; ps lists it", async () => {
      const flag = `${scratch}/go`;
      const started = await exec(
        up,
        "-d",
        "box",
        "--",
        "sh",
        "-c",
        `echo one; while [ ! -e ${flag} ]; do sleep 0.05; done; echo two >&2; exit 5`,
      );
      assert.equal(started.code, 0, started.stderr);
      const id = started.text.trim();
      assert.match(id, /^\S+$/);
      const ps = await fsbBytes(up, ["sandbox", "ps", "box", "-o", "json"]);
      assert.equal(ps.code, 0, ps.stderr);
      const listed = JSON.parse(ps.text).find((e: { execId: string }) => e.execId === id);
      assert.equal(listed.detached, true);
      assert.equal(listed.running, true);
      const table = await fsbBytes(up, ["sandbox", "ps", "box"]);
      assert.match(table.text, new RegExp(`^${id}\\s+sh -c .*Running\\s+-`, "m"));
      const attach = fsbChild(up, ["sandbox", "attach", "box", id], "null");
      await Deno.writeTextFile(flag, "");
      const out = await attach.output();
      assert.equal(decoder.decode(out.stdout), "one\n");
      assert.equal(decoder.decode(out.stderr), "two\n");
      assert.equal(out.code, 5);
      // Attaching again replays it all.
      const again = await fsbBytes(up, ["sandbox", "attach", "box", id]);
      assert.equal(again.text, "one\n");
      assert.equal(again.code, 5);
    });

    await t.step("kill sends a detached exec a signal; it ends with 128+N", async () => {
      const started = await exec(up, "-d", "box", "--", "sleep", "600");
      const id = started.text.trim();
      const killed = await fsbBytes(up, ["sandbox", "kill", "box", id, "--signal", "TERM"]);
      assert.equal(killed.code, 0, killed.stderr);
      assert.equal(killed.text, `${id}\n`);
      const attach = await fsbBytes(up, ["sandbox", "attach", "box", id]);
      assert.equal(attach.code, 143);
    });

    await t.step("cp copies a file both ways with its content and mode", async () => {
      await Deno.mkdir(`${scratch}/in`);
      await Deno.writeTextFile(`${scratch}/run.sh`, "#!/bin/sh\necho run\n");
      await Deno.chmod(`${scratch}/run.sh`, 0o751);
      const put = await fsbBytes(up, [
        "sandbox",
        "cp",
        `${scratch}/run.sh`,
        `box:${scratch}/in/run.sh`,
      ]);
      assert.equal(put.code, 0, put.stderr);
      const ran = await exec(up, "box", "--", "sh", "-c", `cat ${scratch}/in/run.sh`);
      assert.equal(ran.text, "#!/bin/sh\necho run\n");
      await Deno.mkdir(`${scratch}/back`);
      const got = await fsbBytes(up, [
        "sandbox",
        "cp",
        `box:${scratch}/in/run.sh`,
        `${scratch}/back`,
      ]);
      assert.equal(got.code, 0, got.stderr);
      assert.equal(
        await Deno.readTextFile(`${scratch}/back/run.sh`),
        "#!/bin/sh\necho run\n",
      );
      assert.equal((await Deno.stat(`${scratch}/back/run.sh`)).mode! & 0o7777, 0o751);
    });

    await t.step("cp copies a directory both ways with identical contents and modes", async () => {
      await makeTree(`${scratch}/tree`);
      const put = await fsbBytes(up, [
        "sandbox",
        "cp",
        `${scratch}/tree`,
        `box:${scratch}/in/tree`,
      ]);
      assert.equal(put.code, 0, put.stderr);
      const got = await fsbBytes(up, [
        "sandbox",
        "cp",
        `box:${scratch}/in/tree`,
        `${scratch}/tree-back`,
      ]);
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(
        await describeTree(`${scratch}/tree-back`),
        await describeTree(`${scratch}/tree`),
      );
      // And as a tar stream on stdout.
      const tar = await fsbBytes(up, ["sandbox", "cp", `box:${scratch}/in/tree`, "-"]);
      assert.equal(tar.code, 0, tar.stderr);
      assert.ok(tar.stdout.length > 300 * 1024);
    });

    await t.step("wait exits with the sandbox process's exit code", async () => {
      const flag = `${scratch}/end`;
      const made = await fsbBytes(up, [
        "sandbox",
        "create",
        "waiter",
        "--image",
        "busybox",
        "--",
        "sh",
        "-c",
        `while [ ! -e ${flag} ]; do sleep 0.05; done; exit 3`,
      ]);
      assert.equal(made.code, 0, made.stderr);
      const waiting = fsbChild(up, ["sandbox", "wait", "waiter"], "null");
      await Deno.writeTextFile(flag, "");
      const out = await waiting.output();
      assert.equal(decoder.decode(out.stdout), "3\n");
      assert.equal(out.code, 3);
      // The sandbox is no longer running: exec is fsb's failure, 125.
      await waitFor(async () => {
        const r = await exec(up, "waiter", "--", "true");
        return r.code === 125 && /^fsb: FAILED_PRECONDITION: /.test(r.stderr);
      });
    });

    await t.step("exec in a sandbox that does not exist exits 125 with NOT_FOUND", async () => {
      const r = await exec(up, "nope", "--", "true");
      assert.equal(r.code, 125);
      assert.match(r.stderr, /^fsb: NOT_FOUND: /);
    });
  } finally {
    up.child.kill("SIGTERM");
    await up.child.status;
    await Deno.remove(dataDir, { recursive: true });
    await cleanup(scratch);
  }
});
