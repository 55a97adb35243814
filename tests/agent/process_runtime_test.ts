import assert from "node:assert/strict";
import { join } from "node:path";
import { fromJson, type JsonObject, toJson } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../../registry/errors.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import { assertSameSpec, eventually, runtimeContract } from "./runtime_contract.ts";

const decoder = new TextDecoder();

runtimeContract("ProcessRuntime", async () => {
  const root = await Deno.makeTempDir({ prefix: "fsb_process_runtime_" });
  const logDir = join(root, "logs");
  await Deno.mkdir(logDir);
  const opts = { stateDir: join(root, "state"), images: ["busybox", "ghcr.io/acme/tool:1"] };
  let runtime = new ProcessRuntime(opts);
  return {
    runtime,
    image: "busybox",
    logDir,
    tty: false,
    async restart() {
      await runtime.close();
      runtime = new ProcessRuntime(opts);
      return runtime;
    },
    async cleanup() {
      await runtime.close();
      await Deno.remove(root, { recursive: true });
    },
  };
});

/** One test's directories, runtimes and sandboxes, all undone when it ends. */
interface Scene {
  readonly stateDir: string;
  readonly logDir: string;
  /** The first runtime on `stateDir`. */
  readonly runtime: ProcessRuntime;
  /** Another runtime on the same `stateDir`, as after an agent restart. */
  reopen(): ProcessRuntime;
  spec(command: string[], extra?: JsonObject): SandboxSpec;
  logPath(id: string): string;
  /** Kills this pid when the test ends, whatever happened. */
  killLater(pid: number): void;
}

async function withScene(fn: (s: Scene) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "fsb_process_runtime_" });
  const stateDir = join(root, "state");
  const logDir = join(root, "logs");
  await Deno.mkdir(logDir);
  const runtimes: ProcessRuntime[] = [];
  const ids: string[] = [];
  const pids: number[] = [];
  const scene: Scene = {
    stateDir,
    logDir,
    runtime: new ProcessRuntime({ stateDir }),
    reopen() {
      const runtime = new ProcessRuntime({ stateDir });
      runtimes.push(runtime);
      return runtime;
    },
    spec(command, extra = {}) {
      const id = crypto.randomUUID().replaceAll("-", "");
      ids.push(id);
      return fromJson(SandboxSpecSchema, { sandboxId: id, image: "busybox", command, ...extra });
    },
    logPath: (id) => join(logDir, `${id}.log`),
    killLater: (pid) => void pids.push(pid),
  };
  runtimes.push(scene.runtime);
  try {
    await fn(scene);
  } finally {
    const last = runtimes[runtimes.length - 1];
    for (const id of ids) await last.delete(id, 0).catch(() => {});
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* already gone */ }
    }
    for (const runtime of runtimes) await runtime.close();
    await Deno.remove(root, { recursive: true });
  }
}

/** Asserts that creating `spec` fails with `cls` and exactly `message`, and resolves after. */
async function rejectsCreate(
  s: Scene,
  spec: SandboxSpec,
  cls: new (...args: never[]) => Error,
  message: string,
): Promise<void> {
  await assert.rejects(
    s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) }),
    (err: unknown) => {
      assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
      assert.equal(err.message, message);
      return true;
    },
  );
}

async function readLog(runtime: ProcessRuntime, id: string): Promise<string> {
  let text = "";
  for await (const chunk of runtime.logs(id, { follow: false })) text += decoder.decode(chunk);
  return text;
}

/** Waits until the log holds `lines` lines and returns them. */
async function logLines(runtime: ProcessRuntime, id: string, lines: number): Promise<string[]> {
  let got: string[] = [];
  await eventually(`${lines} lines in the log of ${id}`, async () => {
    got = (await readLog(runtime, id)).split("\n").filter((l) => l !== "");
    return got.length >= lines;
  });
  return got;
}

/** Whether a process with this pid runs (a zombie does not). */
function runs(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2));
  } catch {
    return false;
  }
}

/** Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. */
function startTime(pid: number): string {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
}

async function find(runtime: ProcessRuntime, id: string) {
  return (await runtime.list()).find((s) => s.spec.sandboxId === id);
}

/** What sandboxes left under the state directory: its entries, but for the runtime's folder of records. */
function stateEntries(stateDir: string): string[] {
  const found: string[] = [];
  const walk = (dir: string, prefix: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    for (const entry of entries) {
      const name = prefix + entry.name;
      if (name !== "_records") found.push(name);
      if (entry.isDirectory) walk(join(dir, entry.name), `${name}/`);
    }
  };
  walk(stateDir, "");
  return found.sort();
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("ProcessRuntime.create() without command or args fails with InvalidArgumentError", async () => {
  await withScene(async (s) => {
    const spec = s.spec([]);
    await assert.rejects(
      s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) }),
      (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.message, "Invalid command: is required by the process runtime");
        assert.equal(err.field, "command");
        return true;
      },
    );
    assert.deepEqual(stateEntries(s.stateDir), []);
    assert.equal(exists(s.logPath(spec.sandboxId)), false);
  });
});

Deno.test("ProcessRuntime.create() runs args alone when command is empty", async () => {
  await withScene(async (s) => {
    const spec = s.spec([], { args: ["echo", "from args"] });
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    assert.deepEqual(await logLines(s.runtime, spec.sandboxId, 1), ["from args"]);
  });
});

Deno.test("ProcessRuntime.create() of a missing command fails with FailedPreconditionError naming it", async () => {
  await withScene(async (s) => {
    for (const command of ["/nonexistent/fsb-cmd", "fsb-no-such-command-on-path"]) {
      const spec = s.spec([command, "arg"]);
      await rejectsCreate(
        s,
        spec,
        FailedPreconditionError,
        `Cannot start sandbox ${spec.sandboxId} as command "${command}" was not found`,
      );
      assert.equal(exists(s.logPath(spec.sandboxId)), false);
    }
    assert.deepEqual(stateEntries(s.stateDir), []);
  });
});

Deno.test("ProcessRuntime.create() in a missing working directory fails with FailedPreconditionError", async () => {
  await withScene(async (s) => {
    const workingDir = join(s.logDir, "no-such-dir");
    const spec = s.spec(["true"], { workingDir });
    await rejectsCreate(
      s,
      spec,
      FailedPreconditionError,
      `Cannot start sandbox ${spec.sandboxId} as working directory "${workingDir}" does not exist`,
    );
    assert.deepEqual(stateEntries(s.stateDir), []);
  });
});

Deno.test("ProcessRuntime.create() of a file that is not executable fails with FailedPreconditionError", async () => {
  await withScene(async (s) => {
    const file = join(s.logDir, "plain.txt");
    await Deno.writeTextFile(file, "not a program\n", { mode: 0o644 });
    const spec = s.spec([file]);
    await rejectsCreate(
      s,
      spec,
      FailedPreconditionError,
      `Cannot start sandbox ${spec.sandboxId} as command "${file}" is not executable`,
    );
  });
});

Deno.test("ProcessRuntime.create() looks a bare command up on the spec's PATH and runs it by its full path", async () => {
  await withScene(async (s) => {
    const bin = join(s.logDir, "bin");
    await Deno.mkdir(bin);
    // Earlier on PATH, but not executable: the lookup passes over it.
    await Deno.writeTextFile(join(s.logDir, "fsb-hello"), "#!/bin/sh\necho wrong\n", {
      mode: 0o644,
    });
    await Deno.writeTextFile(join(bin, "fsb-hello"), '#!/bin/sh\necho "$0 $1"\n', { mode: 0o755 });
    const spec = s.spec(["fsb-hello", "hi"], { envs: { PATH: `${s.logDir}:${bin}` } });
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    assert.deepEqual(await logLines(s.runtime, spec.sandboxId, 1), [
      `${join(bin, "fsb-hello")} hi`,
    ]);
  });
});

Deno.test("ProcessRuntime.create() runs a command given with a relative path from the working directory", async () => {
  await withScene(async (s) => {
    await Deno.writeTextFile(join(s.logDir, "run.sh"), "#!/bin/sh\necho ran\n", { mode: 0o755 });
    const spec = s.spec(["./run.sh"], { workingDir: s.logDir });
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    assert.deepEqual(await logLines(s.runtime, spec.sandboxId, 1), ["ran"]);
  });
});

Deno.test("ProcessRuntime.create() of a name that is no executable on PATH fails as not found", async () => {
  await withScene(async (s) => {
    await Deno.writeTextFile(join(s.logDir, "fsb-plain"), "not a program\n", { mode: 0o644 });
    await Deno.mkdir(join(s.logDir, "fsb-dir"));
    for (const command of ["fsb-plain", "fsb-dir"]) {
      const spec = s.spec([command], { envs: { PATH: s.logDir } });
      await rejectsCreate(
        s,
        spec,
        FailedPreconditionError,
        `Cannot start sandbox ${spec.sandboxId} as command "${command}" was not found`,
      );
    }
    assert.deepEqual(stateEntries(s.stateDir), []);
  });
});

Deno.test("ProcessRuntime.create() of a directory as the command fails as not executable", async () => {
  await withScene(async (s) => {
    const spec = s.spec([s.logDir]);
    await rejectsCreate(
      s,
      spec,
      FailedPreconditionError,
      `Cannot start sandbox ${spec.sandboxId} as command "${s.logDir}" is not executable`,
    );
    assert.deepEqual(stateEntries(s.stateDir), []);
  });
});

Deno.test("ProcessRuntime.create() in a working directory that is a file fails with FailedPreconditionError", async () => {
  await withScene(async (s) => {
    const workingDir = join(s.logDir, "file");
    await Deno.writeTextFile(workingDir, "");
    const spec = s.spec(["true"], { workingDir });
    await rejectsCreate(
      s,
      spec,
      FailedPreconditionError,
      `Cannot start sandbox ${spec.sandboxId} as working directory "${workingDir}" is not a directory`,
    );
    assert.deepEqual(stateEntries(s.stateDir), []);
    assert.equal(exists(s.logPath(spec.sandboxId)), false);
  });
});

Deno.test("ProcessRuntime.create() of a command line with a NUL byte fails with FailedPreconditionError", async () => {
  await withScene(async (s) => {
    for (const command of [["ec\0ho"], ["echo", "a\0b"]]) {
      const spec = s.spec(command);
      await rejectsCreate(
        s,
        spec,
        FailedPreconditionError,
        `Cannot start sandbox ${spec.sandboxId} as its command line holds a NUL byte`,
      );
    }
    assert.deepEqual(stateEntries(s.stateDir), []);
  });
});

Deno.test("ProcessRuntime.create() makes the command leader of its own session and process group", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sh", "-c", "echo $$; exec sleep 30"]);
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    const [pid] = (await logLines(s.runtime, spec.sandboxId, 1)).map(Number);
    s.killLater(pid);
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const [pgrp, session] = stat.slice(stat.lastIndexOf(")") + 2).split(" ").slice(2, 4);
    assert.deepEqual([Number(pgrp), Number(session)], [pid, pid]);
  });
});

Deno.test("ProcessRuntime.create() keeps a log file that existed before a failed create", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["/nonexistent/fsb-cmd"]);
    await Deno.writeTextFile(s.logPath(spec.sandboxId), "earlier\n");
    await assert.rejects(
      s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) }),
      FailedPreconditionError,
    );
    assert.equal(await Deno.readTextFile(s.logPath(spec.sandboxId)), "earlier\n");
  });
});

Deno.test("ProcessRuntime.create() rejects an id that could leave the state directory", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["true"], { sandboxId: "../escape" });
    await assert.rejects(
      s.runtime.create(spec, { logPath: s.logPath("escape") }),
      (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.field, "sandbox_id");
        return true;
      },
    );
    assert.equal(await s.runtime.delete("../escape", 0), false);
  });
});

Deno.test("ProcessRuntime.create() passes only PATH, HOME and the spec's envs, in the sandbox's home", async () => {
  await withScene(async (s) => {
    const env = s.spec(["env"], { envs: { FOO: "bar" } });
    const pwd = s.spec(["pwd"]);
    const result = await s.runtime.create(env, { logPath: s.logPath(env.sandboxId) });
    await s.runtime.create(pwd, { logPath: s.logPath(pwd.sandboxId) });
    assert.deepEqual(Object.keys(result.stageMs), ["runtime_start"]);
    const home = join(s.stateDir, env.sandboxId);
    const lines = await logLines(s.runtime, env.sandboxId, 3);
    assert.deepEqual(lines.toSorted(), [
      "FOO=bar",
      `HOME=${home}`,
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]);
    assert.deepEqual(await logLines(s.runtime, pwd.sandboxId, 1), [
      join(s.stateDir, pwd.sandboxId),
    ]);
  });
});

Deno.test("ProcessRuntime.logs() of an unknown sandbox throws NotFoundError", async () => {
  await withScene(async (s) => {
    const id = "0123456789abcdef0123456789abcdef";
    await assert.rejects(readLog(s.runtime, id), (err: unknown) => {
      assert.ok(err instanceof NotFoundError);
      assert.equal(err.message, `Cannot read logs of sandbox ${id} as it does not exist`);
      return true;
    });
  });
});

Deno.test("ProcessRuntime reports a sandbox killed by a signal as killed by that signal", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sh", "-c", "kill -KILL $$"]);
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    await eventually(
      "it ended",
      async () => (await find(s.runtime, spec.sandboxId))?.phase === "Exited",
    );
    assert.equal((await find(s.runtime, spec.sandboxId))?.message, "killed by SIGKILL");
  });
});

Deno.test("ProcessRuntime keeps a sandbox running and logging after its runtime closes; a new one adopts it", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sh", "-c", "echo $$; while true; do echo tick; sleep 0.02; done"]);
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    const [pid] = await logLines(s.runtime, spec.sandboxId, 1);
    s.killLater(Number(pid));
    await s.runtime.close();
    const size = (await Deno.stat(s.logPath(spec.sandboxId))).size;
    await eventually(
      "the log grows",
      async () => (await Deno.stat(s.logPath(spec.sandboxId))).size > size,
    );
    const adopter = s.reopen();
    const adopted = await find(adopter, spec.sandboxId);
    assert.equal(adopted?.phase, "Running");
    assertSameSpec(adopted.spec, spec);
    assert.equal(await adopter.delete(spec.sandboxId, 2000), true);
    assert.equal(runs(Number(pid)), false, "delete() by the adopter ended the process");
    assert.deepEqual(stateEntries(s.stateDir), []);
  });
});

Deno.test("ProcessRuntime sandboxes outlive the agent process that created them", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sh", "-c", "echo $$; while true; do echo tick; sleep 0.02; done"]);
    const script = join(s.logDir, "agent.ts");
    // The agent is a separate Deno process that creates one sandbox, closes
    // the runtime and exits; close() must not hold the process open.
    await Deno.writeTextFile(
      script,
      `import { fromJson } from "@bufbuild/protobuf";
import { ProcessRuntime } from ${
        JSON.stringify(import.meta.resolve("../../agent/process_runtime.ts"))
      };
import { SandboxSpecSchema } from ${
        JSON.stringify(import.meta.resolve("../../proto/gen/fsb/agent/v1/agent_pb.ts"))
      };
const [stateDir, logPath, spec] = Deno.args;
const runtime = new ProcessRuntime({ stateDir });
await runtime.create(fromJson(SandboxSpecSchema, JSON.parse(spec)), { logPath });
await runtime.close();
`,
    );
    const agent = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-lock",
        "--config",
        new URL("../../deno.json", import.meta.url).pathname,
        script,
        s.stateDir,
        s.logPath(spec.sandboxId),
        JSON.stringify(toJson(SandboxSpecSchema, spec)),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(agent.code, 0, decoder.decode(agent.stderr));
    const runtime = s.reopen();
    const [pid] = await logLines(runtime, spec.sandboxId, 1);
    s.killLater(Number(pid));
    const size = (await Deno.stat(s.logPath(spec.sandboxId))).size;
    await eventually(
      "the log grows",
      async () => (await Deno.stat(s.logPath(spec.sandboxId))).size > size,
    );
    assert.equal((await find(runtime, spec.sandboxId))?.phase, "Running");
    assert.equal(await runtime.delete(spec.sandboxId, 2000), true);
    assert.equal(runs(Number(pid)), false);
  });
});

Deno.test("ProcessRuntime reports a sandbox that ended while no runtime watched it as exited while the agent was down", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sh", "-c", "echo $$; exec sleep 30"]);
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    const [pid] = await logLines(s.runtime, spec.sandboxId, 1);
    await s.runtime.close();
    Deno.kill(Number(pid), "SIGKILL");
    await eventually("it ended", () => !runs(Number(pid)));
    const adopter = s.reopen();
    const sandbox = await find(adopter, spec.sandboxId);
    assert.equal(sandbox?.phase, "Exited");
    assert.equal(sandbox.message, "exited while the agent was down");
    assert.equal(await adopter.delete(spec.sandboxId, 1000), true);
  });
});

Deno.test("ProcessRuntime reports an adopted sandbox that ends as exited with its code unknown", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sh", "-c", "echo $$; exec sleep 30"]);
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    const [pid] = await logLines(s.runtime, spec.sandboxId, 1);
    await s.runtime.close();
    const adopter = s.reopen();
    assert.equal((await find(adopter, spec.sandboxId))?.phase, "Running");
    Deno.kill(Number(pid), "SIGKILL");
    await eventually(
      "it ended",
      async () => (await find(adopter, spec.sandboxId))?.phase !== "Running",
    );
    const sandbox = await find(adopter, spec.sandboxId);
    assert.equal(sandbox?.phase, "Exited");
    assert.equal(sandbox.message, "exited after an agent restart, exit code unknown");
    // The verdict is stored, so yet another runtime gives the same answer.
    assert.equal((await find(s.reopen(), spec.sandboxId))?.message, sandbox.message);
  });
});

Deno.test("ProcessRuntime.logs() with follow ends when the sandbox is deleted", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sh", "-c", "echo up; exec sleep 30"]);
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    await logLines(s.runtime, spec.sandboxId, 1);
    let text = "";
    for await (const chunk of s.runtime.logs(spec.sandboxId, { follow: true })) {
      text += decoder.decode(chunk);
      await s.runtime.delete(spec.sandboxId, 1000);
    }
    assert.equal(text, "up\n");
  });
});

Deno.test("ProcessRuntime.delete() ends background processes of the sandbox's group too", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sh", "-c", "sleep 30 & echo $!; echo $$; wait"]);
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    const pids = (await logLines(s.runtime, spec.sandboxId, 2)).map(Number);
    pids.forEach(s.killLater);
    assert.ok(pids.every(runs));
    assert.equal(await s.runtime.delete(spec.sandboxId, 2000), true);
    assert.deepEqual(pids.map(runs), [false, false]);
  });
});

Deno.test("ProcessRuntime.delete() gives a group member that outlives the leader the grace, then kills it", async () => {
  await withScene(async (s) => {
    // The leader dies on SIGTERM; its child ignores SIGTERM and keeps running.
    const spec = s.spec([
      "sh",
      "-c",
      `sh -c 'trap "" TERM; echo $$; while true; do sleep 0.05; done' & wait`,
    ]);
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    const [straggler] = (await logLines(s.runtime, spec.sandboxId, 1)).map(Number);
    s.killLater(straggler);
    const graceMs = 300;
    const start = performance.now();
    assert.equal(await s.runtime.delete(spec.sandboxId, graceMs), true);
    const took = performance.now() - start;
    assert.ok(took >= graceMs * 0.95, `waited for the whole group: ${took} ms`);
    assert.equal(runs(straggler), false);
  });
});

Deno.test("ProcessRuntime does not take a process that reused a sandbox's pid for the sandbox", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sh", "-c", "echo $$; exec sleep 30"]);
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    const [pid] = await logLines(s.runtime, spec.sandboxId, 1);
    await s.runtime.close();
    Deno.kill(Number(pid), "SIGKILL");
    await eventually("it ended", () => !runs(Number(pid)));
    const statePath = join(s.stateDir, "_records", `${spec.sandboxId}.json`);
    const record = JSON.parse(await Deno.readTextFile(statePath));
    // Stands in for a new process that got the old pid: a session leader of
    // its own, so it even heads a process group with the recorded id. Start
    // times count 10 ms clock ticks, so it must start in a later tick than the
    // sandbox did (a real reuse, after the pid space wrapped, always does).
    let other = new Deno.Command("sleep", { args: ["30"], detached: true }).spawn();
    while (startTime(other.pid) === record.startTime) {
      other.kill("SIGKILL");
      await other.status;
      await new Promise((resolve) => setTimeout(resolve, 5));
      other = new Deno.Command("sleep", { args: ["30"], detached: true }).spawn();
    }
    try {
      // The state record is this runtime's own format; the test rewrites the
      // pid because the kernel cannot be made to reuse one on demand.
      await Deno.writeTextFile(statePath, JSON.stringify({ ...record, pid: other.pid }));
      const adopter = s.reopen();
      const sandbox = await find(adopter, spec.sandboxId);
      assert.equal(sandbox?.phase, "Exited");
      assert.equal(sandbox.message, "exited while the agent was down");
      assert.equal(await adopter.delete(spec.sandboxId, 200), true);
      assert.equal(runs(other.pid), true, "the other process was not signalled");
    } finally {
      other.kill("SIGKILL");
      await other.status;
    }
  });
});

Deno.test("ProcessRuntime.create() aborted by its signal leaves nothing behind", async () => {
  await withScene(async (s) => {
    const before = s.spec(["sleep", "30"]);
    await assert.rejects(
      s.runtime.create(before, {
        logPath: s.logPath(before.sandboxId),
        signal: AbortSignal.abort(),
      }),
      { name: "AbortError" },
    );
    const during = s.spec(["sh", "-c", "echo $$; exec sleep 30"]);
    const abort = new AbortController();
    const creating = s.runtime.create(during, {
      logPath: s.logPath(during.sandboxId),
      signal: abort.signal,
    });
    abort.abort();
    await assert.rejects(creating, { name: "AbortError" });
    assert.deepEqual(await s.runtime.list(), []);
    assert.deepEqual(stateEntries(s.stateDir), []);
    assert.equal(exists(s.logPath(before.sandboxId)), false);
    assert.equal(exists(s.logPath(during.sandboxId)), false);
  });
});

Deno.test("ProcessRuntime.delete() during create() waits for it, then removes the sandbox", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sleep", "30"]);
    const creating = s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    const deleting = s.runtime.delete(spec.sandboxId, 1000);
    await creating;
    assert.equal(await deleting, true);
    assert.deepEqual(await s.runtime.list(), []);
    assert.deepEqual(stateEntries(s.stateDir), []);
  });
});

/** Pids of the processes whose command line holds `marker`. */
function pidsWith(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^[0-9]+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes(marker) && runs(Number(entry.name))) pids.push(Number(entry.name));
    } catch {
      // Ended while we looked.
    }
  }
  return pids;
}

Deno.test("ProcessRuntime.delete() with no grace right after create() leaves no process behind", async () => {
  await withScene(async (s) => {
    // Deleted at once, a process may not yet lead its own group: it must be
    // stopped all the same. The odd duration marks this test's processes.
    const marker = `30.${Math.floor(Math.random() * 1e9)}`;
    for (let i = 0; i < 20; i++) {
      const spec = s.spec(["sleep", marker]);
      await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
      assert.equal(await s.runtime.delete(spec.sandboxId, 0), true);
    }
    assert.deepEqual(pidsWith(marker), []);
    assert.deepEqual(stateEntries(s.stateDir), []);
  });
});

Deno.test("ProcessRuntime keeps the fields of an adopted record it does not know when it records the exit", async () => {
  await withScene(async (s) => {
    const spec = s.spec(["sh", "-c", "echo $$; exec sleep 30"]);
    await s.runtime.create(spec, { logPath: s.logPath(spec.sandboxId) });
    const [pid] = (await logLines(s.runtime, spec.sandboxId, 1)).map(Number);
    await s.runtime.close();
    // As a newer agent might have written it.
    const statePath = join(s.stateDir, "_records", `${spec.sandboxId}.json`);
    const record = JSON.parse(await Deno.readTextFile(statePath));
    await Deno.writeTextFile(statePath, JSON.stringify({ ...record, future: { x: 1 } }));
    Deno.kill(pid, "SIGKILL");
    await eventually("it ended", () => !runs(pid));
    const adopter = s.reopen();
    assert.equal((await find(adopter, spec.sandboxId))?.phase, "Exited");
    assert.deepEqual(JSON.parse(await Deno.readTextFile(statePath)), {
      ...record,
      future: { x: 1 },
      exit: "exited while the agent was down",
    });
  });
});
