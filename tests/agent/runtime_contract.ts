/**
 * The behaviour every {@linkcode Runtime} must show, as a set of `Deno.test`
 * cases that a runtime's own test file registers with a fixture of its own.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { equals, fromJson, toJson } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { AlreadyExistsError, FailedPreconditionError } from "../../registry/errors.ts";
import { normalizeImage } from "../../registry/normalize_image.ts";
import type { Runtime } from "../../agent/runtime.ts";
import { execCases } from "./_exec_contract_cases.ts";
import { eventually, type Harness, newId, running } from "./_runtime_harness.ts";

export {
  collectAttach,
  collectExec,
  eventually,
  type ExecResult,
  execSpec,
} from "./_runtime_harness.ts";

/** What a runtime's test file hands the contract for one test case. */
export interface RuntimeFixture {
  /** The runtime under test, fresh for this case. */
  readonly runtime: Runtime;
  /** An image the runtime can run, with `sh`, `echo`, `sleep` and `trap`. */
  readonly image: string;
  /** A directory the contract may put log files in. */
  readonly logDir: string;
  /** Whether execs can run on a terminal (`tty`); the terminal cases run only then. */
  readonly tty?: boolean;
  /**
   * Whether a detached exec's stdout and stderr come back as one stream (on
   * stdout): containerd's shim writes both into one `file://` log.
   */
  readonly mergedDetachedOutput?: boolean;
  /** Drops the runtime as an agent restart would and returns a new one on the same state. */
  restart(): Promise<Runtime>;
  /** Closes the runtime(s) and removes the fixture's files; sandboxes are already deleted. */
  cleanup(): Promise<void>;
}

const decoder = new TextDecoder();

/** Asserts that two specs are equal field for field, with a readable diff when not. */
export function assertSameSpec(actual: SandboxSpec, expected: SandboxSpec): void {
  assert.deepEqual(toJson(SandboxSpecSchema, actual), toJson(SandboxSpecSchema, expected));
  assert.ok(equals(SandboxSpecSchema, actual, expected));
}

function fileExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/**
 * Registers the contract's test cases, named `NAME: ...`. `setup` runs once
 * per case; every sandbox a case creates is deleted in a finally block, and
 * `cleanup` runs after that.
 */
export function runtimeContract(name: string, setup: () => Promise<RuntimeFixture>): void {
  function test(title: string, fn: (h: Harness) => Promise<void>): void {
    Deno.test(`${name}: ${title}`, async () => {
      const fixture = await setup();
      const ids: string[] = [];
      const h: Harness = {
        runtime: fixture.runtime,
        image: fixture.image,
        logPath: (id) => join(fixture.logDir, `${id}.log`),
        spec(command, args = [], extra = {}) {
          const id = newId();
          ids.push(id);
          return fromJson(SandboxSpecSchema, {
            sandboxId: id,
            name: `sb-${id.slice(0, 8)}`,
            namespace: "default",
            pool: "default-pool",
            image: fixture.image,
            command,
            args,
            failurePolicy: "MANUAL",
            createdAt: String(Math.floor(Date.now() / 1000)),
            ...extra,
          });
        },
        async create(spec) {
          const { stageMs } = await h.runtime.create(spec, { logPath: h.logPath(spec.sandboxId) });
          return stageMs;
        },
        async find(id) {
          return (await h.runtime.list()).find((s) => s.spec.sandboxId === id);
        },
        async readLog(id) {
          let text = "";
          for await (const chunk of h.runtime.logs(id, { follow: false })) {
            text += decoder.decode(chunk, { stream: true });
          }
          return text + decoder.decode();
        },
        async restart() {
          h.runtime = await fixture.restart();
        },
        tty: fixture.tty ?? false,
        mergedDetachedOutput: fixture.mergedDetachedOutput ?? false,
      };
      try {
        await fn(h);
      } finally {
        for (const id of ids) await h.runtime.delete(id, 0).catch(() => {});
        await fixture.cleanup();
      }
    });
  }

  test("create() then list() shows the sandbox Running with its full spec", async (h) => {
    const spec = h.spec(["sh", "-c"], ["sleep 30"], {
      envs: { GREETING: "hi", EMPTY: "" },
      workingDir: "/tmp",
      exposedPorts: [8080, 9000],
      expireTime: "1893456000",
      failurePolicy: "AUTO_RECREATE",
      labels: { team: "infra", "fsb.io/x": "y" },
    });
    const stageMs = await h.create(spec);
    assert.ok(Object.keys(stageMs).length > 0, "create() reports its stages");
    for (const [stage, ms] of Object.entries(stageMs)) {
      assert.ok(Number.isFinite(ms) && ms >= 0, `stage ${stage} took ${ms} ms`);
    }
    const sandbox = await h.find(spec.sandboxId);
    assert.ok(sandbox !== undefined, "list() shows the new sandbox");
    assert.equal(sandbox.phase, "Running");
    // A running sandbox says nothing, or (the process runtime) that it isolates nothing.
    assert.ok(sandbox.message === "" || /isolates nothing/.test(sandbox.message));
    assertSameSpec(sandbox.spec, spec);
  });

  test("create() runs the command with its envs in its working directory", async (h) => {
    const spec = h.spec(["sh", "-c", 'echo "$GREETING from $(pwd)"; sleep 30'], [], {
      envs: { GREETING: "hello" },
      workingDir: "/tmp",
    });
    await h.create(spec);
    await eventually(
      "the greeting in the log",
      async () => (await h.readLog(spec.sandboxId)) !== "",
    );
    assert.equal(await h.readLog(spec.sandboxId), "hello from /tmp\n");
  });

  test("create() of an id in use fails with AlreadyExistsError and keeps the first", async (h) => {
    const spec = h.spec(["sleep", "30"]);
    await h.create(spec);
    await assert.rejects(h.create(spec), AlreadyExistsError);
    assert.equal((await h.find(spec.sandboxId))?.phase, "Running");
  });

  test("logs() returns stdout and stderr as written, in one stream", async (h) => {
    // The pause matters: containerd's shim copies each stream on its own goroutine, so only
    // writes apart in time keep their order across the two streams.
    const spec = h.spec(["sh", "-c", "echo hello; sleep 0.3; echo err >&2; sleep 30"]);
    await h.create(spec);
    await eventually(
      "both lines in the log",
      async () => (await h.readLog(spec.sandboxId)).length >= "hello\nerr\n".length,
    );
    assert.equal(await h.readLog(spec.sandboxId), "hello\nerr\n");
    assert.equal((await h.find(spec.sandboxId))?.phase, "Running", "reading logs does not stop it");
  });

  test("logs() with follow streams later output and ends when the sandbox exits", async (h) => {
    const spec = h.spec(["sh", "-c", "echo one; sleep 1; echo two"]);
    await h.create(spec);
    const start = performance.now();
    const arrivals: [string, number][] = [];
    // A guard so that a follow that never ends fails instead of hanging.
    const guard = new AbortController();
    const timer = setTimeout(() => guard.abort(), 10_000);
    try {
      for await (
        const chunk of h.runtime.logs(spec.sandboxId, { follow: true, signal: guard.signal })
      ) {
        arrivals.push([decoder.decode(chunk), performance.now() - start]);
      }
    } finally {
      clearTimeout(timer);
    }
    assert.ok(!guard.signal.aborted, "the follow ended by itself");
    assert.equal(arrivals.map(([text]) => text).join(""), "one\ntwo\n");
    const one = arrivals.find(([text]) => text.includes("one"))!;
    const two = arrivals.find(([text]) => text.includes("two"))!;
    assert.ok(two[1] - one[1] >= 500, `"two" came later (${one[1]} ms, then ${two[1]} ms)`);
    assert.equal((await h.find(spec.sandboxId))?.phase, "Exited");
  });

  test("a command that ends by itself becomes Exited with its exit code", async (h) => {
    const failing = h.spec(["sh", "-c", "exit 3"]);
    const succeeding = h.spec(["sh", "-c", "echo done"]);
    await h.create(failing);
    await h.create(succeeding);
    for (
      const [spec, message] of [[failing, "exit code 3"], [succeeding, "exit code 0"]] as const
    ) {
      await eventually(
        `${spec.sandboxId} exited`,
        async () => (await h.find(spec.sandboxId))?.phase !== "Running",
      );
      const sandbox = await h.find(spec.sandboxId);
      assert.equal(sandbox?.phase, "Exited");
      assert.equal(sandbox?.message, message);
      assertSameSpec(sandbox.spec, spec);
    }
    assert.equal(await h.readLog(succeeding.sandboxId), "done\n", "its log stays readable");
  });

  test("delete() stops the sandbox and removes its log; a second delete() resolves false", async (h) => {
    const spec = h.spec(["sh", "-c", "echo up; sleep 30"]);
    await h.create(spec);
    const logPath = h.logPath(spec.sandboxId);
    await eventually("output", async () => (await h.readLog(spec.sandboxId)) === "up\n");
    assert.equal(await h.runtime.delete(spec.sandboxId, 5000), true);
    assert.equal(await h.find(spec.sandboxId), undefined);
    assert.equal(fileExists(logPath), false, "the log file is removed");
    assert.equal(await h.runtime.delete(spec.sandboxId, 5000), false);
  });

  test("delete() with no grace right after create() stops and removes the sandbox", async (h) => {
    const spec = h.spec(["sleep", "30"]);
    await h.create(spec);
    assert.equal(await h.runtime.delete(spec.sandboxId, 0), true);
    assert.equal(await h.find(spec.sandboxId), undefined);
    assert.equal(fileExists(h.logPath(spec.sandboxId)), false, "the log file is removed");
  });

  test("delete() of an id it never had resolves false", async (h) => {
    assert.equal(await h.runtime.delete(newId(), 0), false);
  });

  test("delete() SIGKILLs a sandbox that ignores SIGTERM once graceMs has passed", async (h) => {
    const spec = h.spec(["sh", "-c", 'trap "" TERM; echo ready; while true; do sleep 1; done']);
    await h.create(spec);
    await eventually(
      "the trap is set",
      async () => (await h.readLog(spec.sandboxId)) === "ready\n",
    );
    const graceMs = 400;
    const start = performance.now();
    assert.equal(await h.runtime.delete(spec.sandboxId, graceMs), true);
    const took = performance.now() - start;
    assert.ok(took >= graceMs * 0.95, `waited the grace: ${took} ms`);
    assert.ok(took < graceMs + 3000, `then killed it: ${took} ms`);
    assert.equal(await h.find(spec.sandboxId), undefined);
  });

  test("delete() returns well before graceMs when the sandbox exits on SIGTERM", async (h) => {
    const spec = h.spec(["sleep", "30"]);
    await h.create(spec);
    await running(h, spec.sandboxId);
    const start = performance.now();
    assert.equal(await h.runtime.delete(spec.sandboxId, 10_000), true);
    const took = performance.now() - start;
    assert.ok(took < 2000, `delete took ${took} ms of a 10000 ms grace`);
  });

  test("a restarted runtime lists the same sandboxes with their specs and can delete them", async (h) => {
    const alive = h.spec(["sleep", "30"], [], { labels: { role: "alive" } });
    const ended = h.spec(["sh", "-c", "exit 0"], [], { labels: { role: "ended" } });
    await h.create(alive);
    await h.create(ended);
    await eventually("one ended", async () => (await h.find(ended.sandboxId))?.phase === "Exited");
    await h.restart();
    const after = await h.runtime.list();
    const aliveAfter = after.find((s) => s.spec.sandboxId === alive.sandboxId);
    const endedAfter = after.find((s) => s.spec.sandboxId === ended.sandboxId);
    assert.equal(aliveAfter?.phase, "Running");
    assertSameSpec(aliveAfter.spec, alive);
    assert.equal(endedAfter?.phase, "Exited");
    assert.equal(endedAfter.message, "exit code 0");
    assertSameSpec(endedAfter.spec, ended);
    for (const spec of [alive, ended]) {
      assert.equal(await h.runtime.delete(spec.sandboxId, 5000), true);
      assert.equal(await h.find(spec.sandboxId), undefined);
      assert.equal(fileExists(h.logPath(spec.sandboxId)), false);
    }
  });

  test("a create that fails leaves nothing behind and the id free", async (h) => {
    const bad = h.spec(["/nonexistent/fsb-no-such-command"]);
    await assert.rejects(h.create(bad), FailedPreconditionError);
    assert.equal(await h.find(bad.sandboxId), undefined);
    assert.equal(fileExists(h.logPath(bad.sandboxId)), false, "no log file is left");
    assert.equal(await h.runtime.delete(bad.sandboxId, 0), false);
    const good = fromJson(SandboxSpecSchema, {
      sandboxId: bad.sandboxId,
      image: h.image,
      command: ["sleep", "30"],
    });
    await h.create(good);
    assert.equal((await h.find(bad.sandboxId))?.phase, "Running", "the id can be used again");
  });

  test("images() returns normalized references, the fixture's image among them", async (h) => {
    const images = await h.runtime.images();
    assert.ok(images.includes(normalizeImage(h.image)), `${images} has ${h.image}`);
    for (const image of images) assert.equal(image, normalizeImage(image));
  });

  test("ready() is true for a working runtime", async (h) => {
    assert.equal(await h.runtime.ready(), true);
  });

  execCases(test);
}
