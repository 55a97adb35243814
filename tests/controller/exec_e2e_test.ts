// Exec and Wait through the FastPath on real containerd (runc and gVisor):
// a grpc-js client, the controller, the agent and containerd's task Exec API,
// all over loopback.
import assert from "node:assert/strict";
import type { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcError, type ServiceClient } from "../../proto/grpc.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ExecRequestSchema } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { waitFor } from "../support/cluster.ts";
import {
  type Oci,
  OCI_RUNTIMES,
  randomBytes,
  withContainerdCluster,
} from "../support/containerd_cluster.ts";
import { ignoreWithout } from "../support/real_parts.ts";

const ignore = ignoreWithout("containerd", "root");
const decoder = new TextDecoder();

type Client = ServiceClient<typeof FastPath.method>;
type ExecRequestInit = MessageInitShape<typeof ExecRequestSchema>;

function suffix(oci: Oci): string {
  return oci === "runc" ? "" : " (runsc)";
}

interface ExecResult {
  execId: string;
  stdout: Uint8Array;
  stderr: Uint8Array;
  exitCode: number | undefined;
  signal: string;
  message: string;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Runs one exec to its end and collects what it says. */
async function exec(
  client: Client,
  name: string,
  command: string[],
  opts: {
    stdin?: Uint8Array;
    tty?: boolean;
    size?: { cols: number; rows: number };
    envs?: Record<string, string>;
    workingDir?: string;
    detach?: boolean;
    signal?: AbortSignal;
    more?: () => AsyncIterable<ExecRequestInit>;
  } = {},
): Promise<ExecResult> {
  async function* requests(): AsyncGenerator<ExecRequestInit> {
    yield {
      msg: {
        case: "start",
        value: {
          name,
          command,
          stdin: opts.stdin !== undefined,
          tty: opts.tty ?? false,
          size: opts.size,
          envs: opts.envs ?? {},
          workingDir: opts.workingDir ?? "",
          detach: opts.detach ?? false,
        },
      },
    };
    if (opts.more) yield* opts.more();
    if (opts.stdin !== undefined) {
      for (let at = 0; at < opts.stdin.length; at += 64 * 1024) {
        yield { msg: { case: "stdin", value: opts.stdin.subarray(at, at + 64 * 1024) } };
      }
      yield { msg: { case: "stdinClose", value: true } };
    }
  }
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const result: ExecResult = {
    execId: "",
    stdout: new Uint8Array(),
    stderr: new Uint8Array(),
    exitCode: undefined,
    signal: "",
    message: "",
  };
  for await (const res of client.exec(requests(), { signal: opts.signal, timeoutMs: 120_000 })) {
    switch (res.msg.case) {
      case "execId":
        result.execId = res.msg.value;
        break;
      case "stdout":
        out.push(res.msg.value);
        break;
      case "stderr":
        err.push(res.msg.value);
        break;
      case "exit":
        result.exitCode = res.msg.value.exitCode;
        result.signal = res.msg.value.signal;
        result.message = res.msg.value.message;
        break;
    }
  }
  result.stdout = concat(out);
  result.stderr = concat(err);
  return result;
}

async function sleeper(client: Client, name = "box"): Promise<void> {
  const info = await client.createSandbox({ name, image: "busybox", command: ["sleep", "600"] });
  assert.equal(info.phase, "Running");
}

async function rejects(p: Promise<unknown>, code: number, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RpcError, String(err));
    assert.equal(err.codeName, Object.entries(Code).find(([, c]) => c === code)![0]);
    assert.match(err.message, message);
    return true;
  });
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

for (const oci of OCI_RUNTIMES) {
  Deno.test({
    name: `Exec runs commands with their exit codes, stdio and env${suffix(oci)}`,
    ignore,
  }, async () => {
    await withContainerdCluster(oci, async ({ cluster }) => {
      const client = cluster.client;
      await sleeper(client);
      const three = await exec(client, "box", ["sh", "-c", "exit 3"]);
      assert.equal(three.exitCode, 3);
      assert.match(three.execId, /^[0-9a-f]{16}$/);

      const hi = await exec(client, "box", ["sh", "-c", "echo hi; echo oops >&2; exit 7"]);
      assert.deepEqual([decoder.decode(hi.stdout), decoder.decode(hi.stderr)], ["hi\n", "oops\n"]);
      assert.equal(hi.exitCode, 7);

      const missing = await exec(client, "box", ["no-such-command"]);
      assert.equal(missing.exitCode, 127);
      assert.match(missing.message, /no-such-command/);

      const random = randomBytes(1024 * 1024);
      const cat = await exec(client, "box", ["cat"], { stdin: random });
      assert.equal(cat.exitCode, 0);
      assert.equal(cat.stdout.length, random.length);
      assert.equal(await sha256(cat.stdout), await sha256(random));

      const env = await exec(client, "box", ["sh", "-c", 'printf "%s|%s" "$A" "$(pwd)"'], {
        envs: { A: 'it\'s "quoted" = $HOME\nand more' },
        workingDir: "/tmp",
      });
      assert.equal(decoder.decode(env.stdout), 'it\'s "quoted" = $HOME\nand more|/tmp');

      const killed = await exec(client, "box", ["sleep", "60"], {
        more: async function* () {
          yield { msg: { case: "signal", value: "TERM" } } satisfies ExecRequestInit;
        },
      });
      assert.equal(killed.exitCode, 128 + 15);
      assert.equal(killed.signal, "TERM");
    });
  });

  Deno.test({
    name: `Exec with tty runs on a terminal of the size sent${suffix(oci)}`,
    ignore,
  }, async () => {
    await withContainerdCluster(oci, async ({ cluster }) => {
      await sleeper(cluster.client);
      const script = oci === "runc"
        ? "tty; stty size"
        // gVisor's terminal is a real one, but busybox's `tty` cannot name it
        // there, and runsc ignores the spec's console size: the size sent
        // lands by ResizePty just after the start (stty races it).
        : "[ -t 0 ] && [ -t 1 ] && echo terminal; sleep 0.5; stty size";
      const res = await exec(cluster.client, "box", ["sh", "-c", script], {
        tty: true,
        size: { cols: 91, rows: 33 },
      });
      assert.equal(res.exitCode, 0);
      const lines = decoder.decode(res.stdout).split("\r\n");
      assert.match(lines[0], oci === "runc" ? /^\/dev\/pts\/\d+$/ : /^terminal$/);
      assert.equal(lines[1], "33 91");
      assert.equal(res.stderr.length, 0);

      const resized = await exec(cluster.client, "box", ["sh", "-c", "sleep 1; stty size"], {
        tty: true,
        size: { cols: 80, rows: 24 },
        more: async function* () {
          yield {
            msg: { case: "resize", value: { cols: 120, rows: 40 } },
          } satisfies ExecRequestInit;
        },
      });
      assert.match(decoder.decode(resized.stdout), /40 120/);
    });
  });

  Deno.test({
    name: `A detached exec keeps its output for attach, after the caller left${suffix(oci)}`,
    ignore,
  }, async () => {
    await withContainerdCluster(oci, async ({ cluster }) => {
      await sleeper(cluster.client);
      const started = await exec(cluster.client, "box", [
        "sh",
        "-c",
        "echo first; sleep 1; echo second >&2; exit 5",
      ], { detach: true });
      assert.match(started.execId, /^[0-9a-f]{16}$/);
      assert.equal(started.exitCode, undefined);
      const listed = await cluster.client.execList({ name: "box" });
      const mine = listed.execs.find((e) => e.execId === started.execId);
      assert.ok(mine?.detached);
      let out = "";
      let exit: number | undefined;
      for await (
        const res of cluster.client.execAttach({ name: "box", execId: started.execId })
      ) {
        if (res.msg.case === "stdout" || res.msg.case === "stderr") {
          out += decoder.decode(res.msg.value);
        }
        if (res.msg.case === "exit") exit = res.msg.value.exitCode;
      }
      assert.equal(out, "first\nsecond\n");
      assert.equal(exit, 5);
      // Attaching after the end still gets everything.
      const again: string[] = [];
      for await (
        const res of cluster.client.execAttach({ name: "box", execId: started.execId })
      ) {
        if (res.msg.case === "stdout") again.push(decoder.decode(res.msg.value));
        if (res.msg.case === "exit") again.push(`exit ${res.msg.value.exitCode}`);
      }
      assert.equal(again.join(""), "first\nsecond\nexit 5");
      const ended = await cluster.client.execList({ name: "box" });
      const record = ended.execs.find((e) => e.execId === started.execId);
      assert.equal(record?.running, false);
      assert.equal(record?.exit?.exitCode, 5);

      const long = await exec(cluster.client, "box", ["sleep", "600"], { detach: true });
      const killed = await cluster.client.execKill({
        name: "box",
        execId: long.execId,
        signal: "KILL",
      });
      assert.equal(killed.execId, long.execId);
      await waitFor(async () => {
        const all = await cluster.client.execList({ name: "box" });
        return all.execs.find((e) => e.execId === long.execId)?.exit?.exitCode === 137;
      });
    });
  });

  Deno.test({
    name: `An attached exec dies with its caller's call${suffix(oci)}`,
    ignore,
  }, async () => {
    await withContainerdCluster(oci, async ({ cluster }) => {
      await sleeper(cluster.client);
      const ctl = new AbortController();
      const running = exec(cluster.client, "box", ["sh", "-c", "echo up; exec sleep 600"], {
        signal: ctl.signal,
      });
      await waitFor(async () => {
        const all = await cluster.client.execList({ name: "box" });
        return all.execs.some((e) => e.running);
      });
      ctl.abort();
      await running.catch(() => {});
      // Only the sandbox's own `sleep 600` is left.
      await waitFor(async () => {
        const ps = await exec(cluster.client, "box", ["ps", "-o", "args"]);
        return decoder.decode(ps.stdout).split("\n").filter((l) => l === "sleep 600").length === 1;
      });
    });
  });

  Deno.test({
    name: `Wait returns the main process's exit code${suffix(oci)}`,
    ignore,
  }, async () => {
    await withContainerdCluster(oci, async ({ cluster }) => {
      await cluster.client.createSandbox({
        name: "short",
        image: "busybox",
        command: ["sh", "-c", "sleep 1; exit 42"],
      });
      const res = await cluster.client.wait({ name: "short" }, { timeoutMs: 60_000 });
      assert.equal(res.exitCode, 42);
      // Once it ended, an exec is refused, naming the phase.
      await cluster.heartbeatAll();
      await waitFor(async () =>
        (await cluster.client.getSandbox({ name: "short" })).phase !== "Running"
      );
      await rejects(
        exec(cluster.client, "short", ["true"]),
        Code.FAILED_PRECONDITION,
        /Cannot exec in sandbox "default\/short" as it is (Exited|Failed)/,
      );
    });
  });
}

Deno.test({ name: "Exec refuses bad requests before they reach the agent", ignore }, async () => {
  await withContainerdCluster("runc", async ({ cluster }) => {
    await sleeper(cluster.client);
    await rejects(
      exec(cluster.client, "box", []),
      Code.INVALID_ARGUMENT,
      /Invalid command: must name a program to run, got an empty argv/,
    );
    await rejects(
      exec(cluster.client, "box", ["true"], { workingDir: "tmp" }),
      Code.INVALID_ARGUMENT,
      /Invalid working_dir: must be an absolute path, got "tmp"/,
    );
    await rejects(
      exec(cluster.client, "box", ["true"], { envs: { "A=B": "c" } }),
      Code.INVALID_ARGUMENT,
      /Invalid envs\["A=B"\]: a name must be non-empty, without '=' or NUL/,
    );
    await rejects(
      exec(cluster.client, "nope", ["true"]),
      Code.NOT_FOUND,
      /Sandbox "default\/nope" not found/,
    );
    await rejects(
      exec(cluster.clientFor(undefined), "box", ["true"]),
      Code.UNAUTHENTICATED,
      /This call needs a token/,
    );
    // A token for another namespace learns nothing of this one.
    const other = await cluster.client.createToken({ namespaces: ["other"] });
    await rejects(
      exec(cluster.clientFor(other.secret), "box", ["true"]),
      Code.PERMISSION_DENIED,
      /default/,
    );
  });
});
