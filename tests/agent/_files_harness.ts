/**
 * What the files contract's cases share: their view of the fixture and
 * helpers for writing, reading and asserting.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  type FileInfo,
  type WriteFileRequest,
  WriteFileRequestSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import type { SandboxFiles, SandboxFilesOptions } from "../../agent/files.ts";
import type { Runtime } from "../../agent/runtime.ts";

/** The running case's view. */
export interface Harness {
  readonly runtime: Runtime;
  readonly id: string;
  readonly dir: string;
  readonly confined: boolean;
  readonly files: SandboxFiles;
  /** SandboxFiles with options of the case's own. */
  filesWith(opts: SandboxFilesOptions): SandboxFiles;
  /** `dir` joined with `parts`. */
  path(...parts: string[]): string;
  /** Runs `script` with the sandbox's busybox (`"$0" APPLET`), args as `$1`...; its stdout. */
  sh(script: string, ...args: string[]): Promise<string>;
}

/** Registers one case of the contract. */
export type FilesCase = (title: string, fn: (h: Harness) => Promise<void>) => void;

/** `n` random bytes. */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(out.subarray(at, at + 65536));
  return out;
}

/** A write's requests: start, then `data` in chunks of `chunk` bytes. */
export async function* writeRequests(
  start: Record<string, unknown>,
  data: Uint8Array = new Uint8Array(),
  chunk = 256 * 1024,
): AsyncIterable<WriteFileRequest> {
  yield create(WriteFileRequestSchema, { msg: { case: "start", value: start } });
  for (let at = 0; at < data.length; at += chunk) {
    yield create(WriteFileRequestSchema, {
      msg: { case: "data", value: data.subarray(at, at + chunk) },
    });
  }
}

/** A read's bytes, the info of its first chunk, and how many chunks carried one. */
export async function readAll(
  files: SandboxFiles,
  id: string,
  path: string,
  opts: { archive?: boolean; maxBytes?: number } = {},
): Promise<{ data: Uint8Array; info: FileInfo; infos: number }> {
  const parts: Uint8Array[] = [];
  let info: FileInfo | undefined;
  let infos = 0;
  const req = { path, archive: opts.archive ?? false, maxBytes: BigInt(opts.maxBytes ?? 0) };
  for await (const chunk of files.readFile(id, req)) {
    if (chunk.info !== undefined) {
      assert.equal(parts.length, 0, "only the first chunk carries info");
      info ??= chunk.info;
      infos++;
    }
    parts.push(chunk.data);
  }
  assert.ok(info !== undefined, "the first chunk carries info");
  const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    data.set(part, at);
    at += part.length;
  }
  return { data, info, infos };
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Asserts that `promise` rejects with `cls` and exactly `message`. */
export async function rejectsWith(
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

/** The names in `dir` (the case's own unless told), sorted. */
export async function listing(h: Harness, dir = h.dir): Promise<string[]> {
  return (await h.files.listDir(h.id, { path: dir })).entries.map((e) => e.path);
}
