import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { SandboxSpecSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../../registry/errors.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import { collectAttach, collectExec, eventually, execSpec } from "./runtime_contract.ts";

// The exec cases every runtime must pass are in runtime_contract.ts; these are
// the process runtime's own: its wrapper, files, errors and restarts.

const decoder = new TextDecoder();

/** One test's runtime and running sandbox, all undone when it ends. */
interface Scene {
  readonly root: string;
  runtime: ProcessRuntime;
  /** A running sandbox (`sleep 300`). */
  readonly id: string;
  readonly logPath: string;
  /** Creates another sandbox, deleted when the test ends. */
  create(command: string[], extra?: JsonObject): Promise<string>;
  /** Closes the runtime and opens another on the same state, as an agent restart does. */
  restart(): Promise<void>;
}

async function withScene(fn: (s: Scene) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "fsb_process_exec_" });
  const stateDir = join(root, "state");
  const ids: string[] = [];
  const scene: Scene = {
    root,
    runtime: new ProcessRuntime({ stateDir }),
    id: "",
    logPath: "",
    async create(command, extra = {}) {
      const id = crypto.randomUUID().replaceAll("-", "");
      ids.push(id);
      const spec = fromJson(SandboxSpecSchema, {
        sandboxId: id,
        image: "busybox",
        command,
        ...extra,
      });
      await scene.runtime.create(spec, { logPath: join(root, "logs", `${id}.log`) });
      return id;
    },
    async restart() {
      await scene.runtime.close();
      scene.runtime = new ProcessRuntime({ stateDir });
    },
  };
  const id = await scene.create(["sleep", "300"]);
  Object.assign(scene, { id, logPath: join(root, "logs", `${id}.log`) });
  try {
    await fn(scene);
  } finally {
    for (const id of ids) await scene.runtime.delete(id, 0).catch(() => {});
    await scene.runtime.close();
    await Deno.remove(root, { recursive: true });
  }
}

async function rejectsWith(
  promise: Promise<unknown>,
  cls: new (...args: never[]) => Error,
  message: string,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

/** Pids of live processes whose command line holds `marker`. */
function pidsWith(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^[0-9]+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      if (/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2))) continue;
      if (Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).includes(marker)) {
        pids.push(Number(entry.name));
      }
    } catch {
      // Ended while we looked.
    }
  }
  return pids;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("ProcessRuntime.exec() with tty is a FailedPreconditionError: it has no terminals", async () => {
  await withScene(async (s) => {
    await rejectsWith(
      s.runtime.exec(s.id, execSpec(["sh"], { tty: true })),
      FailedPreconditionError,
      `Cannot exec with a terminal in sandbox ${s.id} as the process runtime has no ` +
        "pseudo-terminals; run it without tty",
    );
  });
});

Deno.test("ProcessRuntime.exec() rejects what no command can run with InvalidArgumentError", async () => {
  await withScene(async (s) => {
    await rejectsWith(
      s.runtime.exec(s.id, execSpec([])),
      InvalidArgumentError,
      "Invalid command: must name a program to run, got an empty argv",
    );
    await rejectsWith(
      s.runtime.exec(s.id, execSpec(["echo", "a\0b"])),
      InvalidArgumentError,
      "Invalid command[1]: must not contain NUL",
    );
    await rejectsWith(
      s.runtime.exec(s.id, execSpec(["true"], { workingDir: "tmp" })),
      InvalidArgumentError,
      'Invalid working_dir: must be an absolute path, got "tmp"',
    );
    await rejectsWith(
      s.runtime.exec(s.id, execSpec(["true"], { env: { "A=B": "c" } })),
      InvalidArgumentError,
      `Invalid envs["A=B"]: a name must be non-empty, without '=' or NUL`,
    );
  });
});

Deno.test("ProcessRuntime.exec() in an unknown sandbox is a NotFoundError naming it", async () => {
  await withScene(async (s) => {
    await rejectsWith(
      s.runtime.exec("nope", execSpec(["true"])),
      NotFoundError,
      "Cannot exec in sandbox nope as it does not exist",
    );
    await rejectsWith(
      s.runtime.execKill(s.id, "0123456789abcdef", 9),
      NotFoundError,
      `Exec 0123456789abcdef not found in sandbox ${s.id}`,
    );
  });
});

Deno.test("ProcessRuntime.exec() ends with 126 for what cannot run and 127 for what is missing", async () => {
  await withScene(async (s) => {
    const plain = join(s.root, "plain");
    await Deno.writeTextFile(plain, "echo hi\n", { mode: 0o644 });
    const cases: [Parameters<typeof execSpec>, number, string][] = [
      [[[plain]], 126, `command "${plain}" is not executable`],
      [[["/tmp"]], 126, 'command "/tmp" is not executable'],
      [[["./fsb-none"]], 127, 'command "./fsb-none" not found'],
      [[["fsb-none"]], 127, 'command "fsb-none" not found in PATH'],
      [
        [["true"], { workingDir: "/fsb-none" }],
        126,
        'working directory "/fsb-none" does not exist',
      ],
    ];
    for (const [args, exitCode, message] of cases) {
      for (const detach of [false, true]) {
        const [argv, extra] = args;
        const proc = await s.runtime.exec(s.id, execSpec(argv, { ...extra, detach }));
        assert.deepEqual((await collectExec(proc)).exit, { exitCode, signal: "", message });
      }
    }
  });
});

Deno.test("ProcessRuntime runs a detached exec with exactly its environment", async () => {
  await withScene(async (s) => {
    const id = await s.create(["sleep", "300"], { envs: { FROM_SANDBOX: "1" } });
    // A shell would drop "odd.name", reset IFS and add SHLVL and PWD.
    const env = { "odd.name": "x", IFS: "14", MULTI: "a\nb", HOME: "/elsewhere" };
    const proc = await s.runtime.exec(id, execSpec(["env"], { env, detach: true }));
    const out = await collectAttach(s.runtime.execAttach(id, proc.execId));
    assert.equal(out.exit?.exitCode, 0);
    const expected = [
      `PATH=${"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}`,
      "HOME=/elsewhere",
      "FROM_SANDBOX=1",
      "odd.name=x",
      "IFS=14",
      "MULTI=a\nb",
    ];
    assert.deepEqual(
      out.stdout.split(/\n(?=[A-Za-z_.]+=)/).map((l) => l.trimEnd()).sort(),
      [
        ...expected,
      ].sort(),
    );
  });
});

Deno.test("ProcessRuntime runs a detached exec whose command path holds '='", async () => {
  await withScene(async (s) => {
    const dir = join(s.root, "a=b");
    await Deno.mkdir(dir);
    await Deno.writeTextFile(join(dir, "hello"), '#!/bin/sh\necho "hi $FOO $1"\n', { mode: 0o755 });
    const proc = await s.runtime.exec(
      s.id,
      execSpec([join(dir, "hello"), "there"], { env: { FOO: "foo" }, detach: true }),
    );
    const out = await collectAttach(s.runtime.execAttach(s.id, proc.execId));
    assert.deepEqual(out, {
      stdout: "hi foo there\n",
      stderr: "",
      exit: { exitCode: 0, signal: "", message: "" },
    });
  });
});

Deno.test("ProcessRuntime keeps a detached exec's output beside the sandbox's log, for the agent's cap", async () => {
  await withScene(async (s) => {
    const proc = await s.runtime.exec(
      s.id,
      execSpec(["sh", "-c", "echo out; echo err >&2"], { detach: true }),
    );
    const dir = `${s.logPath}.execs`;
    const files = [join(dir, `${proc.execId}.stdout`), join(dir, `${proc.execId}.stderr`)];
    assert.deepEqual(proc.logFiles, files);
    await proc.exit;
    assert.equal(await Deno.readTextFile(files[0]), "out\n");
    assert.equal(await Deno.readTextFile(files[1]), "err\n");
    const [record] = await s.runtime.execList(s.id);
    assert.deepEqual(record.logFiles, files);
    assert.equal(await s.runtime.delete(s.id, 0), true);
    assert.equal(exists(dir), false, "delete() removes them");
  });
});

Deno.test("ProcessRuntime.delete() kills the sandbox's attached and detached execs", async () => {
  await withScene(async (s) => {
    const marker = `30.${Math.floor(Math.random() * 1e9)}`;
    const attached = await s.runtime.exec(s.id, execSpec(["sleep", marker]));
    const detached = await s.runtime.exec(s.id, execSpec(["sleep", marker], { detach: true }));
    // The detached one twice: its wrapper names it too.
    await eventually("both run", () => pidsWith(marker).length === 3);
    assert.equal(await s.runtime.delete(s.id, 0), true);
    assert.equal((await collectExec(attached)).exit.signal, "KILL");
    assert.equal((await detached.exit).signal, "KILL");
    assert.deepEqual(pidsWith(marker), []);
  });
});

Deno.test("ProcessRuntime reads the exit code of a detached exec that ended while no agent ran", async () => {
  await withScene(async (s) => {
    const proc = await s.runtime.exec(
      s.id,
      execSpec(["sh", "-c", "sleep 0.3; exit 9"], { detach: true }),
    );
    await s.restart();
    const exitFile = join(`${s.logPath}.execs`, `${proc.execId}.exit`);
    await eventually("the wrapper wrote the exit code", () => exists(exitFile));
    await eventually("the wrapper ended", async () => {
      const [exec] = await s.runtime.execList(s.id);
      return exec.exit !== undefined;
    });
    const [exec] = await s.runtime.execList(s.id);
    assert.deepEqual(exec.exit, { exitCode: 9, signal: "", message: "" });
    assert.ok(
      exec.endedAt! - exec.startedAt >= 250,
      `ended after its sleep: ${JSON.stringify(exec)}`,
    );
  });
});

Deno.test("ProcessRuntime.execKill() of a detached exec after a restart signals its command", async () => {
  await withScene(async (s) => {
    const proc = await s.runtime.exec(s.id, execSpec(["sleep", "30"], { detach: true }));
    await s.restart();
    await s.runtime.execKill(s.id, proc.execId, 15);
    const out = await collectAttach(s.runtime.execAttach(s.id, proc.execId));
    assert.deepEqual(out.exit, { exitCode: 143, signal: "TERM", message: "" });
  });
});

Deno.test("ProcessRuntime: unread stdout stalls an attached exec until it is read", async () => {
  await withScene(async (s) => {
    // 64 KiB per round, then a line on stderr: unread, the stdout pipe (and
    // what the reader buffers) fills within a few rounds and the loop stalls.
    const script = "i=0; while [ $i -lt 64 ]; do head -c 65536 /dev/zero; echo $i >&2; " +
      "i=$((i + 1)); done";
    const proc = await s.runtime.exec(s.id, execSpec(["sh", "-c", script]));
    let rounds = "";
    const stderr = (async () => {
      for await (const chunk of proc.stderr) rounds += decoder.decode(chunk);
    })();
    await eventually("a first round", () => rounds.includes("0\n"));
    // Proving that something does not happen takes time: half a second in
    // which the 4 MiB would have gone through many times over.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.ok(!rounds.includes("63\n"), `stalled, at rounds ${rounds.split("\n").length - 1}`);
    let bytes = 0;
    for await (const chunk of proc.stdout) bytes += chunk.length;
    await stderr;
    assert.equal(bytes, 64 * 65536);
    assert.ok(rounds.endsWith("63\n"));
    assert.equal((await proc.exit).exitCode, 0);
  });
});

Deno.test("ProcessRuntime: an exec's stdin writes after its command ended are dropped", async () => {
  await withScene(async (s) => {
    const proc = await s.runtime.exec(s.id, execSpec(["true"], { stdin: true }));
    assert.equal((await collectExec(proc)).exit.exitCode, 0);
    await proc.write(new Uint8Array(200_000));
    await proc.closeStdin();
    await proc.closeStdin();
  });
});

Deno.test("ProcessRuntime.execAttach() of an attached exec is a FailedPreconditionError", async () => {
  await withScene(async (s) => {
    const proc = await s.runtime.exec(s.id, execSpec(["sleep", "30"]));
    await rejectsWith(
      collectAttach(s.runtime.execAttach(s.id, proc.execId)),
      FailedPreconditionError,
      `Cannot attach to exec ${proc.execId} in sandbox ${s.id} as it is not detached`,
    );
    await rejectsWith(
      s.runtime.execKill(s.id, proc.execId, 40),
      InvalidArgumentError,
      "Invalid signal: must be a signal the process runtime can send (1 to 31), got 40",
    );
    const [listed] = await s.runtime.execList(s.id);
    assert.equal(listed.detached, false);
    await s.runtime.execKill(s.id, proc.execId, 9);
    assert.equal((await collectExec(proc)).exit.exitCode, 137);
    assert.deepEqual(await s.runtime.execList(s.id), [], "ended attached execs are forgotten");
  });
});

Deno.test("ProcessRuntime.wait() is 128+N for a signal, and rejects when its signal aborts", async () => {
  await withScene(async (s) => {
    const abort = new AbortController();
    const waiting = s.runtime.wait(s.id, { signal: abort.signal });
    abort.abort();
    await assert.rejects(waiting, (err: unknown) => (err as Error).name === "AbortError");
    const id = await s.create(["sh", "-c", "kill -TERM $$"]);
    assert.equal(await s.runtime.wait(id), 143);
  });
});

Deno.test("ProcessRuntime.helper() is the host's busybox", async () => {
  await withScene(async (s) => {
    const helper = await s.runtime.helper(s.id);
    assert.equal(helper?.length, 1);
    assert.equal(basename(helper[0]), "busybox");
    const out = await collectExec(await s.runtime.exec(s.id, execSpec([...helper, "true"])));
    assert.equal(out.exit.exitCode, 0);
    await assert.rejects(s.runtime.helper("nope"), NotFoundError);
  });
});
