/**
 * The runtime contract's exec cases (see runtime_contract.ts).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { JsonObject } from "@bufbuild/protobuf";
import { FailedPreconditionError, NotFoundError } from "../../registry/errors.ts";
import {
  collectAttach,
  collectExec,
  eventually,
  execSpec,
  type Harness,
  newId,
  running,
  type RuntimeCase,
} from "./_runtime_harness.ts";

const decoder = new TextDecoder();

/** Registers the exec cases with `test`. */
export function execCases(test: RuntimeCase): void {
  /** Creates a sandbox that runs until deleted, and waits for it to run. */
  async function sleeper(h: Harness, extra: JsonObject = {}): Promise<string> {
    const spec = h.spec(["sleep", "300"], [], extra);
    await h.create(spec);
    await running(h, spec.sandboxId);
    return spec.sandboxId;
  }

  test("exec() returns the command's exit code and leaves the sandbox running", async (h) => {
    const id = await sleeper(h);
    const proc = await h.runtime.exec(id, execSpec(["sh", "-c", "exit 3"]));
    assert.match(proc.execId, /^[0-9a-f]{16}$/);
    const result = await collectExec(proc);
    assert.deepEqual(result.exit, { exitCode: 3, signal: "", message: "" });
    assert.equal((await h.find(id))?.phase, "Running");
  });

  test("exec() of a missing command ends with exit code 127 and says why", async (h) => {
    const id = await sleeper(h);
    const result = await collectExec(
      await h.runtime.exec(id, execSpec(["fsb-no-such-command", "x"])),
    );
    assert.equal(result.exit.exitCode, 127);
    assert.match(result.exit.message, /fsb-no-such-command/);
  });

  test("exec() passes 1 MiB of random stdin through cat byte for byte", async (h) => {
    const id = await sleeper(h);
    const input = new Uint8Array(1024 * 1024);
    for (let at = 0; at < input.length; at += 65536) {
      crypto.getRandomValues(input.subarray(at, at + 65536));
    }
    const proc = await h.runtime.exec(id, execSpec(["cat"], { stdin: true }));
    const writing = (async () => {
      // Uneven chunks, so that no chunk boundary lines up with a pipe's buffer.
      for (let at = 0; at < input.length; at += 40_000) {
        await proc.write(input.subarray(at, at + 40_000));
      }
      await proc.closeStdin();
    })();
    const [result] = await Promise.all([collectExec(proc), writing]);
    assert.equal(result.exit.exitCode, 0);
    assert.equal(result.stdout.length, input.length);
    assert.ok(result.stdout.every((b, i) => b === input[i]), "stdout is stdin, byte for byte");
  });

  test("exec() keeps stdout and stderr apart", async (h) => {
    const id = await sleeper(h);
    const result = await collectExec(
      await h.runtime.exec(id, execSpec(["sh", "-c", "echo out; echo err >&2; echo out2"])),
    );
    assert.equal(decoder.decode(result.stdout), "out\nout2\n");
    assert.equal(decoder.decode(result.stderr), "err\n");
    assert.equal(result.exit.exitCode, 0);
  });

  test("exec() runs with the sandbox's envs and its own, in the given or the sandbox's working dir", async (h) => {
    const id = await sleeper(h, {
      envs: { FROM_SANDBOX: "sandbox", OVERRIDDEN: "sandbox" },
      workingDir: "/tmp",
    });
    const script = 'echo "$FROM_SANDBOX $OVERRIDDEN $FROM_EXEC $(pwd)"';
    const env = { OVERRIDDEN: "exec", FROM_EXEC: "a b  c" };
    const inSandboxDir = await collectExec(
      await h.runtime.exec(id, execSpec(["sh", "-c", script], { env })),
    );
    assert.equal(decoder.decode(inSandboxDir.stdout), "sandbox exec a b  c /tmp\n");
    const inRoot = await collectExec(
      await h.runtime.exec(id, execSpec(["sh", "-c", script], { env, workingDir: "/" })),
    );
    assert.equal(decoder.decode(inRoot.stdout), "sandbox exec a b  c /\n");
  });

  test("a signal ends an exec with exit code 128+N and the signal's name", async (h) => {
    const id = await sleeper(h);
    const proc = await h.runtime.exec(id, execSpec(["sleep", "30"]));
    await proc.kill(15);
    const result = await collectExec(proc);
    assert.deepEqual(result.exit, { exitCode: 143, signal: "TERM", message: "" });
  });

  test("aborting exec()'s signal kills an attached exec", async (h) => {
    const id = await sleeper(h);
    const abort = new AbortController();
    const proc = await h.runtime.exec(id, execSpec(["sleep", "30"]), { signal: abort.signal });
    const start = performance.now();
    abort.abort();
    const result = await collectExec(proc);
    assert.ok(result.exit.exitCode > 128, `killed: ${JSON.stringify(result.exit)}`);
    assert.notEqual(result.exit.signal, "");
    assert.ok(performance.now() - start < 10_000, "well before sleep 30 would have ended");
  });

  test("a detached exec's output and exit replay through execAttach(), while it runs and after", async (h) => {
    const id = await sleeper(h);
    // Pauses between streams: a merged log (containerd) orders them as its copies land.
    const script = "echo one; sleep 0.2; echo two >&2; sleep 0.5; echo three; exit 4";
    const proc = await h.runtime.exec(id, execSpec(["sh", "-c", script], { detach: true }));
    assert.match(proc.execId, /^[0-9a-f]{16}$/);
    const expected = {
      stdout: h.mergedDetachedOutput ? "one\ntwo\nthree\n" : "one\nthree\n",
      stderr: h.mergedDetachedOutput ? "" : "two\n",
      exit: { exitCode: 4, signal: "", message: "" },
    };
    assert.deepEqual(await collectAttach(h.runtime.execAttach(id, proc.execId)), expected);
    assert.deepEqual(await collectAttach(h.runtime.execAttach(id, proc.execId)), expected);
    const listed = (await h.runtime.execList(id)).find((e) => e.execId === proc.execId);
    assert.ok(listed !== undefined, "execList() shows it");
    assert.deepEqual(listed.argv, ["sh", "-c", script]);
    assert.equal(listed.detached, true);
    assert.equal(listed.tty, false);
    assert.deepEqual(listed.exit, expected.exit);
    assert.ok(listed.endedAt! >= listed.startedAt, "it ended after it started");
  });

  test("execList() shows a running detached exec; execKill() ends it", async (h) => {
    const id = await sleeper(h);
    const before = Date.now();
    const proc = await h.runtime.exec(id, execSpec(["sleep", "30"], { detach: true }));
    const listed = (await h.runtime.execList(id)).find((e) => e.execId === proc.execId);
    assert.ok(listed !== undefined, "execList() shows it");
    assert.equal(listed.exit, undefined, "running");
    assert.ok(listed.startedAt >= before - 1000 && listed.startedAt <= Date.now() + 1000);
    await h.runtime.execKill(id, proc.execId, 9);
    await eventually("the killed exec shows its exit", async () => {
      const exec = (await h.runtime.execList(id)).find((e) => e.execId === proc.execId);
      return exec?.exit !== undefined;
    });
    const ended = (await h.runtime.execList(id)).find((e) => e.execId === proc.execId);
    assert.deepEqual(ended?.exit, { exitCode: 137, signal: "KILL", message: "" });
    const attached = await collectAttach(h.runtime.execAttach(id, proc.execId));
    assert.deepEqual(attached.exit, ended.exit);
  });

  test("execAttach() and execKill() of an unknown exec id are NotFoundErrors", async (h) => {
    const id = await sleeper(h);
    const unknown = "0123456789abcdef";
    await assert.rejects(h.runtime.execKill(id, unknown, 9), NotFoundError);
    await assert.rejects(collectAttach(h.runtime.execAttach(id, unknown)), NotFoundError);
  });

  test("exec() in an unknown sandbox is a NotFoundError", async (h) => {
    await assert.rejects(h.runtime.exec(newId(), execSpec(["true"])), NotFoundError);
  });

  test("exec() in an Exited sandbox is a FailedPreconditionError naming the phase", async (h) => {
    const spec = h.spec(["sh", "-c", "exit 0"]);
    await h.create(spec);
    const id = spec.sandboxId;
    await eventually(`${id} Exited`, async () => (await h.find(id))?.phase === "Exited");
    await assert.rejects(
      h.runtime.exec(id, execSpec(["true"])),
      (err: unknown) => {
        assert.ok(err instanceof FailedPreconditionError, `got ${err}`);
        assert.equal(err.message, `Cannot exec in sandbox ${id} as it is Exited`);
        return true;
      },
    );
  });

  test("wait() resolves to the main process's exit code once it ends", async (h) => {
    const spec = h.spec(["sh", "-c", "sleep 0.5; exit 7"]);
    await h.create(spec);
    assert.equal(await h.runtime.wait(spec.sandboxId), 7);
    assert.equal((await h.find(spec.sandboxId))?.phase, "Exited");
    assert.equal(await h.runtime.wait(spec.sandboxId), 7, "and at once when it has ended");
  });

  test("a detached exec outlives a restart: listed and attachable to its end", async (h) => {
    const id = await sleeper(h);
    const script = "echo before; sleep 1; echo after; exit 6";
    const proc = await h.runtime.exec(id, execSpec(["sh", "-c", script], { detach: true }));
    await h.restart();
    const listed = (await h.runtime.execList(id)).find((e) => e.execId === proc.execId);
    assert.ok(listed !== undefined, "listed after the restart");
    assert.deepEqual(listed.argv, ["sh", "-c", script]);
    assert.deepEqual(await collectAttach(h.runtime.execAttach(id, proc.execId)), {
      stdout: "before\nafter\n",
      stderr: "",
      exit: { exitCode: 6, signal: "", message: "" },
    });
  });

  test("exec() with tty runs on a terminal, or is a FailedPreconditionError without terminals", async (h) => {
    const id = await sleeper(h);
    const spec = execSpec(["sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo on a tty"], {
      tty: true,
      stdin: true,
      cols: 100,
      rows: 30,
    });
    if (!h.tty) {
      await assert.rejects(h.runtime.exec(id, spec), FailedPreconditionError);
      return;
    }
    const proc = await h.runtime.exec(id, spec);
    await proc.closeStdin();
    const result = await collectExec(proc);
    assert.equal(result.exit.exitCode, 0);
    assert.match(decoder.decode(result.stdout), /on a tty/);
    assert.equal(result.stderr.length, 0, "a terminal has no separate stderr");
  });
}
