/**
 * What the runtime contract's cases share: their view of the fixture and
 * helpers for waiting and for execs.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { JsonObject } from "@bufbuild/protobuf";
import type { SandboxSpec } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import type {
  ExecExitStatus,
  ExecOutput,
  ExecProcess,
  ExecSpec,
  Runtime,
  RuntimeSandbox,
} from "../../agent/runtime.ts";

/** The running test's view: the current runtime and helpers that clean up after it. */
export interface Harness {
  runtime: Runtime;
  readonly image: string;
  logPath(id: string): string;
  /** A full spec with a fresh id, deleted when the test ends. */
  spec(command: string[], args?: string[], extra?: JsonObject): SandboxSpec;
  create(spec: SandboxSpec): Promise<Record<string, number>>;
  find(id: string): Promise<RuntimeSandbox | undefined>;
  readLog(id: string): Promise<string>;
  /** Replaces `runtime` with the fixture's restarted one. */
  restart(): Promise<void>;
  /** The fixture's `tty`. */
  readonly tty: boolean;
  /** The fixture's `mergedDetachedOutput`. */
  readonly mergedDetachedOutput: boolean;
}

/** Registers one case of the contract. */
export type RuntimeCase = (title: string, fn: (h: Harness) => Promise<void>) => void;

const decoder = new TextDecoder();

/** A sandbox id as DESIGN section 2 makes them: 32 random hex characters. */
export function newId(): string {
  return crypto.randomUUID().replaceAll("-", "");
}

/**
 * Polls `check` every 20 ms until it returns true, failing with `what` after
 * `ms`. For waiting on another process, which no clock injection can reach.
 * The bound is generous: CI runs the runsc suites beside these on 2 cores.
 */
export async function eventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 20_000,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) assert.fail(`timed out after ${ms} ms waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** An ExecSpec running `argv` attached, without stdin, unless `extra` says otherwise. */
export function execSpec(argv: string[], extra: Partial<ExecSpec> = {}): ExecSpec {
  return { argv, env: {}, workingDir: "", tty: false, stdin: false, detach: false, ...extra };
}

/** What an exec wrote and how it ended. */
export interface ExecResult {
  readonly stdout: Uint8Array;
  readonly stderr: Uint8Array;
  readonly exit: ExecExitStatus;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Reads both output streams of `proc` to their end, then its exit. */
export async function collectExec(proc: ExecProcess): Promise<ExecResult> {
  const read = async (stream: AsyncIterable<Uint8Array>) => {
    const chunks: Uint8Array[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    return concat(chunks);
  };
  const [stdout, stderr] = await Promise.all([read(proc.stdout), read(proc.stderr)]);
  return { stdout, stderr, exit: await proc.exit };
}

/** What execAttach() replays, until its exit (undefined if it ended without one). */
export async function collectAttach(
  outputs: AsyncIterable<ExecOutput>,
): Promise<{ stdout: string; stderr: string; exit: ExecExitStatus | undefined }> {
  const chunks = { stdout: [] as Uint8Array[], stderr: [] as Uint8Array[] };
  let exit: ExecExitStatus | undefined;
  for await (const output of outputs) {
    assert.equal(exit, undefined, "nothing comes after the exit");
    if (output.stream === "exit") exit = output.exit;
    else chunks[output.stream].push(output.data);
  }
  return {
    stdout: decoder.decode(concat(chunks.stdout)),
    stderr: decoder.decode(concat(chunks.stderr)),
    exit,
  };
}

/** Waits until sandbox `id` is Running. */
export async function running(h: Harness, id: string): Promise<void> {
  await eventually(`${id} Running`, async () => (await h.find(id))?.phase === "Running");
}
