/**
 * A typed client for the fsb controller's FastPath API (`@fsb/fsb/client`),
 * the one the `fsb` CLI is built on. It speaks gRPC over Deno's own `fetch`
 * (HTTP/2, TLS when given a CA) with hand-written codecs, so importing it
 * loads neither grpc-js nor protobuf-es: a script that creates a sandbox
 * starts as fast as `fsb sandbox create` does.
 *
 * Besides sandboxes and tokens it works inside a running sandbox: runs
 * commands ({@linkcode FsbClient.exec} attached, {@linkcode FsbClient.run}
 * collecting their output, {@linkcode FsbExecs.start} detached), reads and
 * writes its files ({@linkcode FsbFiles}), and waits for it to end
 * ({@linkcode FsbClient.wait}).
 *
 * Data goes in and comes out plain: requests are objects whose fields are all
 * optional (`{ name, image, command, envs, exposedPorts, ... }`, lowerCamelCase
 * as in `fsb/fastpath/v1/fastpath.proto`), int64 fields are `bigint` (unix
 * seconds for times), enums are their numbers (`failurePolicy: 2` is
 * `FAILURE_POLICY_AUTO_RECREATE`). Failures are {@linkcode RpcError}s whose
 * `code` is a gRPC status ({@linkcode Code}): `NOT_FOUND`, `ALREADY_EXISTS`,
 * `INVALID_ARGUMENT` naming the field, `UNAUTHENTICATED`, `PERMISSION_DENIED`,
 * `RESOURCE_EXHAUSTED`, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...
 *
 * @example Create a sandbox, read its output, delete it
 * ```ts
 * import assert from "node:assert/strict";
 *
 * // Nothing listens on port 2 here, so the first call fails with UNAVAILABLE;
 * // against a running controller (`fsb up`) it prints "hello".
 * const fsb = connect({ endpoint: "127.0.0.1:2", token: "fsb_0123456789ab_secret" });
 * try {
 *   const info = await fsb.sandboxes.create({
 *     name: "demo",
 *     image: "busybox",
 *     command: ["sh", "-c", "echo hello"],
 *   });
 *   for await (const chunk of fsb.logs(info.name)) {
 *     console.log(new TextDecoder().decode(chunk));
 *   }
 *   await fsb.sandboxes.delete(info.name);
 * } catch (err) {
 *   assert.ok(err instanceof RpcError);
 *   assert.equal(err.codeName, "UNAVAILABLE");
 * } finally {
 *   fsb.close();
 * }
 * ```
 *
 * @module
 */
import type {
  CreateSandboxRequestInit as LiteCreateSandboxRequestInit,
  CreateTokenRequestInit as LiteCreateTokenRequestInit,
  ExecStartInit,
  UpdateSandboxRequestInit as LiteUpdateSandboxRequestInit,
} from "../proto/fastpath_lite.ts";
import type {
  CreateTokenResponse as GenCreateTokenResponse,
  ExecInfo as GenExecInfo,
  FileInfo as GenFileInfo,
  SandboxInfo as GenSandboxInfo,
  TokenInfo as GenTokenInfo,
  WaitResponse as GenWaitResponse,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { type CallOptions as RpcCallOptions, Code, RpcError } from "../proto/rpc.ts";
import { hostPortProblem } from "../proto/host_port.ts";
import { Endpoints, endpointsOf } from "./_client_transport.ts";
import {
  attachSession,
  collect,
  execSession,
  startDetached,
  stdinOf,
  terminalSize,
} from "./_client_exec.ts";
import { fileRead, uint32, writeRequests, writeStart } from "./_client_files.ts";

/**
 * The error every failed call rejects with: `code` is the gRPC status
 * ({@linkcode Code}), `codeName` its name, `message` the server's words.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const fsb = connect({ endpoint: "127.0.0.1:2" }); // nothing listens there
 * try {
 *   await fsb.sandboxes.get("demo");
 *   assert.fail("expected an error");
 * } catch (err) {
 *   if (!(err instanceof RpcError)) throw err;
 *   assert.equal(err.code, Code.UNAVAILABLE);
 *   assert.equal(err.codeName, "UNAVAILABLE");
 * } finally {
 *   fsb.close();
 * }
 * ```
 */
export { Code, RpcError };

/**
 * A gRPC status code's name, as {@linkcode RpcError}'s `codeName` gives it.
 *
 * @example
 * ```ts
 * const retryable: CodeName[] = ["UNAVAILABLE", "DEADLINE_EXCEEDED"];
 * console.log(retryable.includes(new RpcError(Code.NOT_FOUND, "gone").codeName)); // false
 * ```
 */
export type { CodeName } from "../proto/rpc.ts";

/**
 * A sandbox as the controller reports it: `sandboxId`, `name`, `namespace`,
 * `phase` (`Pending`, `Creating`, `Running`, `Exited`, `Failed`,
 * `Terminating`, `Expired`, `Lost`), `agent`, `endpoints`, `ip`, `image`,
 * `command`, `createdAt` and `expireTime` (unix seconds, `bigint`), `labels`,
 * `envs`, `message`, ...
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const running = (list: SandboxInfo[]) => list.filter((s) => s.phase === "Running");
 * assert.deepEqual(running([]), []);
 * ```
 */
export type SandboxInfo = GenSandboxInfo;

/**
 * An access token as the controller describes it (never its secret): `id`,
 * `namespaces`, `admin`, `expireTime` and `createdAt` (unix seconds, `bigint`,
 * 0 for never).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const expired = (t: TokenInfo, nowSec: bigint) => t.expireTime !== 0n && t.expireTime <= nowSec;
 * const token: TokenInfo = {
 *   $typeName: "fsb.fastpath.v1.TokenInfo",
 *   id: "0123456789ab",
 *   namespaces: ["team-a"],
 *   admin: false,
 *   expireTime: 1_700_000_000n,
 *   createdAt: 1_600_000_000n,
 * };
 * assert.equal(expired(token, 1_800_000_000n), true);
 * ```
 */
export type TokenInfo = GenTokenInfo;

/**
 * What {@linkcode FsbTokens.create} gives back: the new token's `secret`,
 * shown this once, and its `token` info.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const header = (res: CreateTokenResponse) => `Bearer ${res.secret}`;
 * assert.equal(
 *   header({ $typeName: "fsb.fastpath.v1.CreateTokenResponse", secret: "fsb_0123456789ab_x" }),
 *   "Bearer fsb_0123456789ab_x",
 * );
 * ```
 */
export type CreateTokenResponse = GenCreateTokenResponse;

/**
 * A sandbox to create; every field is optional but `image`. `command` is the
 * process's whole argv; `envs` and `labels` are maps; `exposedPorts` are TCP
 * ports; `expireTime` is unix seconds (`bigint`, 0 for never);
 * `consistencyMode` 1 fast or 2 strong; `failurePolicy` 1 manual or 2
 * auto-recreate; `network` (`mode` 1 private or 2 none, `egress` 1 allow or 2
 * deny, `allowCidrs`, `denyCidrs`) and `resources` (`cpuMillis`,
 * `memoryBytes`, `pids`, each a `bigint`) as in `fsb sandbox create`.
 *
 * @example
 * ```ts
 * const request: CreateSandboxRequest = {
 *   name: "web",
 *   namespace: "team-a",
 *   image: "busybox",
 *   command: ["httpd", "-f", "-p", "8080"],
 *   envs: { GREETING: "hello" },
 *   exposedPorts: [8080],
 *   expireTime: BigInt(Math.floor(Date.now() / 1000) + 3600),
 *   failurePolicy: 2,
 *   resources: { memoryBytes: 64n << 20n },
 * };
 * console.log(request.name);
 * ```
 */
export type CreateSandboxRequest = LiteCreateSandboxRequestInit;

/**
 * Changes to a sandbox, named by `name` (and `namespace`): `expireTime`
 * (absent: unchanged, `0n`: never), `failurePolicy`, `labels` (upserted), or
 * `reset` to recreate it on a fresh placement.
 *
 * @example
 * ```ts
 * const extend: UpdateSandboxRequest = {
 *   name: "web",
 *   expireTime: BigInt(Math.floor(Date.now() / 1000) + 7200),
 *   labels: { owner: "ci" },
 * };
 * console.log(extend.name);
 * ```
 */
export type UpdateSandboxRequest = LiteUpdateSandboxRequestInit;

/**
 * A token to create: the `namespaces` it may use, or `admin`; `ttlSeconds`
 * (`bigint`, 0 or absent: never expires); `quota`, the most sandboxes at
 * once in each of its namespaces.
 *
 * @example
 * ```ts
 * const request: CreateTokenRequest = { namespaces: ["team-a"], ttlSeconds: 86_400n, quota: 10 };
 * console.log(request.namespaces);
 * ```
 */
export type CreateTokenRequest = LiteCreateTokenRequestInit;

/**
 * Options of every call.
 *
 * @example
 * ```ts
 * const controller = new AbortController();
 * const opts: CallOptions = { timeoutMs: 5_000, signal: controller.signal };
 * console.log(opts.timeoutMs);
 * ```
 */
export interface CallOptions {
  /**
   * Milliseconds until the call fails with DEADLINE_EXCEEDED, all endpoints
   * tried included; `Infinity` for none. Defaults per call: create 60 s,
   * delete 30 s, reset 90 s, logs 60 s (none with `follow`), a detached exec's
   * start 60 s, removing a file 60 s; none for an attached exec, `run`,
   * attach, reading and writing files, and wait; the rest 10 s.
   */
  readonly timeoutMs?: number;
  /** Aborting it cancels the call (CANCELLED); a followed log then just ends. */
  readonly signal?: AbortSignal;
}

/**
 * Options of the calls that name a sandbox.
 *
 * @example
 * ```ts
 * const opts: SandboxCallOptions = { namespace: "team-a", timeoutMs: 2_000 };
 * console.log(opts.namespace);
 * ```
 */
export interface SandboxCallOptions extends CallOptions {
  /** The sandbox's namespace; `default` when absent. */
  readonly namespace?: string;
}

/**
 * Options of {@linkcode FsbSandboxes.list}.
 *
 * @example
 * ```ts
 * const everywhere: ListOptions = { allNamespaces: true };
 * console.log(everywhere.allNamespaces);
 * ```
 */
export interface ListOptions extends CallOptions {
  /** The namespace to list; `default` when absent. */
  readonly namespace?: string;
  /** Every namespace the token may see, instead of one. */
  readonly allNamespaces?: boolean;
}

/**
 * Options of {@linkcode FsbClient.logs}.
 *
 * @example
 * ```ts
 * const tail: LogsOptions = { follow: true, signal: AbortSignal.timeout(60_000) };
 * console.log(tail.follow);
 * ```
 */
export interface LogsOptions extends SandboxCallOptions {
  /**
   * Keep streaming new output until the sandbox ends or `signal` aborts
   * (which ends the stream quietly); without it, what was written so far.
   */
  readonly follow?: boolean;
}

/**
 * Where the controller is and what to send it.
 *
 * @example
 * ```ts
 * const opts: ConnectOptions = {
 *   endpoint: ["10.0.0.1:9090", "10.0.0.2:9090"],
 *   token: "fsb_0123456789ab_secret",
 * };
 * console.log(opts.endpoint);
 * ```
 */
export interface ConnectOptions {
  /**
   * The controller: `HOST:PORT` (`[::1]:9090` for IPv6) or `unix:PATH`, or a
   * list of them (an array, or one string separated by commas). Calls go to
   * the endpoint that answered last, the first at the start; a call that
   * fails with UNAVAILABLE is tried on the next one, once round the list.
   */
  readonly endpoint: string | readonly string[];
  /** The token secret, sent as `authorization: Bearer <token>`; no header when absent. */
  readonly token?: string;
  /**
   * The PEM text (not a file name) of the CA that signed the controller's
   * certificate: calls then go over TLS. Cleartext when absent.
   */
  readonly tlsCa?: string;
}

/**
 * The sandbox calls of an {@linkcode FsbClient}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * async function names(sandboxes: FsbSandboxes): Promise<string[]> {
 *   return (await sandboxes.list({ allNamespaces: true })).map((s) => s.name);
 * }
 * const fsb = connect({ endpoint: "127.0.0.1:2" }); // nothing listens there
 * await assert.rejects(names(fsb.sandboxes), { name: "RpcError", code: Code.UNAVAILABLE });
 * fsb.close();
 * ```
 */
export interface FsbSandboxes {
  /** Creates a sandbox and resolves once it runs (idempotent by name for an identical request). */
  create(request: CreateSandboxRequest, opts?: CallOptions): Promise<SandboxInfo>;
  /** One sandbox; NOT_FOUND when it does not exist. */
  get(name: string, opts?: SandboxCallOptions): Promise<SandboxInfo>;
  /** The sandboxes of a namespace, or of every namespace the token may see. */
  list(opts?: ListOptions): Promise<SandboxInfo[]>;
  /** Stops and removes a sandbox; resolves to it as it was last seen. */
  delete(name: string, opts?: SandboxCallOptions): Promise<SandboxInfo>;
  /** Changes expiry, failure policy or labels. */
  update(request: UpdateSandboxRequest, opts?: CallOptions): Promise<SandboxInfo>;
  /** Deletes the sandbox's container and creates it again on a fresh placement. */
  reset(name: string, opts?: SandboxCallOptions): Promise<SandboxInfo>;
}

/**
 * The token calls of an {@linkcode FsbClient}; each needs an admin token.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * async function teamToken(tokens: FsbTokens, team: string): Promise<string> {
 *   return (await tokens.create({ namespaces: [team], ttlSeconds: 3600n })).secret;
 * }
 * const fsb = connect({ endpoint: "127.0.0.1:2" }); // nothing listens there
 * await assert.rejects(teamToken(fsb.tokens, "team-a"), RpcError);
 * fsb.close();
 * ```
 */
export interface FsbTokens {
  /** Makes a token; its secret is in the answer, this once. */
  create(request: CreateTokenRequest, opts?: CallOptions): Promise<CreateTokenResponse>;
  /** Every token (never their secrets). */
  list(opts?: CallOptions): Promise<TokenInfo[]>;
  /** Revokes a token at once; resolves to it. */
  revoke(id: string, opts?: CallOptions): Promise<TokenInfo>;
}

/**
 * An exec as the sandbox's agent reports it: `execId`, `command`, `tty`,
 * `detached`, `running`, its `exit` once it ended, `startedAt` and `endedAt`
 * (unix milliseconds, `bigint`, 0 while unknown).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const running = (execs: ExecInfo[]) => execs.filter((e) => e.running).map((e) => e.execId);
 * assert.deepEqual(running([]), []);
 * ```
 */
export type ExecInfo = GenExecInfo;

/**
 * A file as seen inside the sandbox (a final symlink not followed): `path`
 * (the full path, or the entry's name in a listing), `type` (`file`, `dir`,
 * `symlink` or `other`), `mode` (permission bits), `size` and `mtime` (unix
 * seconds), both `bigint`, `uid`, `gid`, and a symlink's `linkTarget`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const octal = (info: FileInfo) => info.mode.toString(8).padStart(4, "0");
 * const info: FileInfo = {
 *   $typeName: "fsb.fastpath.v1.FileInfo",
 *   path: "/etc/hostname",
 *   type: "file",
 *   mode: 0o644,
 *   size: 8n,
 *   uid: 0,
 *   gid: 0,
 *   mtime: 1_700_000_000n,
 *   linkTarget: "",
 * };
 * assert.equal(octal(info), "0644");
 * ```
 */
export type FileInfo = GenFileInfo;

/**
 * What {@linkcode FsbClient.wait} resolves to once a sandbox's process ended:
 * its `exitCode` (128+N when signal N ended it), the sandbox's `phase` after
 * (`Exited`, `Failed`, ...) and a `message` saying why.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const ok = (res: WaitResponse) => res.exitCode === 0;
 * assert.ok(!ok({ $typeName: "fsb.fastpath.v1.WaitResponse", exitCode: 1, phase: "Exited", message: "" }));
 * ```
 */
export type WaitResponse = GenWaitResponse;

/**
 * Options of {@linkcode FsbClient.exec}. No deadline unless `timeoutMs` is
 * given: a command runs until it ends, the sandbox ends, or `signal` aborts
 * (which kills it).
 *
 * @example
 * ```ts
 * const opts: ExecOptions = {
 *   namespace: "team-a",
 *   env: { LANG: "C.UTF-8" },
 *   workingDir: "/srv",
 *   tty: true,
 *   size: { cols: 120, rows: 40 },
 * };
 * console.log(opts.tty);
 * ```
 */
export interface ExecOptions extends SandboxCallOptions {
  /** Added to the sandbox's environment (or overriding it). */
  readonly env?: Readonly<Record<string, string>>;
  /** An absolute path; the sandbox's working directory when absent. */
  readonly workingDir?: string;
  /** Run on a pseudo-terminal: all output comes as `stdout`, with the terminal's line endings. */
  readonly tty?: boolean;
  /**
   * The command's stdin, attached only when given: read as the command
   * takes it, and its end closes the command's stdin. Without it the command
   * reads an empty stdin.
   */
  readonly stdin?: AsyncIterable<Uint8Array>;
  /** The terminal's size at the start, with `tty`. */
  readonly size?: { readonly cols: number; readonly rows: number };
}

/**
 * Options of {@linkcode FsbClient.run}: like {@linkcode ExecOptions}, with
 * all of stdin given at once (text is sent as UTF-8) and no terminal.
 *
 * @example
 * ```ts
 * const opts: RunOptions = { stdin: "hello\n", env: { A: "1" }, timeoutMs: 30_000 };
 * console.log(opts.stdin);
 * ```
 */
export interface RunOptions extends SandboxCallOptions {
  /** Added to the sandbox's environment (or overriding it). */
  readonly env?: Readonly<Record<string, string>>;
  /** An absolute path; the sandbox's working directory when absent. */
  readonly workingDir?: string;
  /** The command's whole stdin; an empty one when absent. */
  readonly stdin?: Uint8Array | string;
}

/**
 * Options of {@linkcode FsbExecs.start}: a detached command has no stdin and
 * no terminal.
 *
 * @example
 * ```ts
 * const opts: ExecStartOptions = { namespace: "team-a", env: { MODE: "batch" } };
 * console.log(opts.env);
 * ```
 */
export type ExecStartOptions = Omit<ExecOptions, "stdin" | "tty" | "size">;

/**
 * Options of {@linkcode FsbExecs.kill}: `killSignal` is the signal to send
 * (`signal`, as in every call, is an AbortSignal for the call itself).
 *
 * @example
 * ```ts
 * const gently: ExecKillOptions = { killSignal: "TERM", timeoutMs: 5_000 };
 * console.log(gently.killSignal);
 * ```
 */
export interface ExecKillOptions extends SandboxCallOptions {
  /** A name with or without SIG (`TERM`, `SIGINT`) or a number (`"9"`); KILL when absent. */
  readonly killSignal?: string;
}

/**
 * A chunk of an exec's output: bytes the command wrote to `stdout` or `stderr`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const text = (out: ExecOutput) => `${out.stream}: ${new TextDecoder().decode(out.data)}`;
 * assert.equal(text({ stream: "stdout", data: new TextEncoder().encode("hi") }), "stdout: hi");
 * ```
 */
export type ExecOutput = { readonly stream: "stdout" | "stderr"; readonly data: Uint8Array };

/**
 * How an exec ended: the command's `exitCode` (128+N when signal N ended it;
 * 126 when it could not be run, 127 when it was not found, as Docker has
 * it), the `signal`'s name (`KILL`) when one ended it, and a `message`
 * saying why it could not run, when it could not.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const notFound = (exit: ExecExit) => exit.exitCode === 127;
 * assert.ok(notFound({ exitCode: 127, signal: "", message: 'exec: "nope": not found' }));
 * ```
 */
export interface ExecExit {
  /** The command's exit code. */
  readonly exitCode: number;
  /** The name of the signal that ended it (`KILL`, `TERM`), or "". */
  readonly signal: string;
  /** Why it could not run (with 126 and 127), or "". */
  readonly message: string;
}

/**
 * What {@linkcode FsbClient.run} resolves to: the exit, and all the command
 * wrote to stdout and stderr.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const lines = (res: ExecResult) => new TextDecoder().decode(res.stdout).split("\n");
 * const res: ExecResult = {
 *   exitCode: 0,
 *   signal: "",
 *   message: "",
 *   stdout: new TextEncoder().encode("a\nb"),
 *   stderr: new Uint8Array(0),
 * };
 * assert.deepEqual(lines(res), ["a", "b"]);
 * ```
 */
export interface ExecResult extends ExecExit {
  /** Everything written to stdout (with a terminal: to it). */
  readonly stdout: Uint8Array;
  /** Everything written to stderr. */
  readonly stderr: Uint8Array;
}

/**
 * A running command: iterate it for its output, chunk by chunk, as the
 * command writes it. Output is fetched as it is read, so output nobody reads
 * holds the command up once the buffers on the way are full; `exit` settles
 * once the output was read to its end. The call starts at once: `id`
 * settles without iterating.
 *
 * Leaving the loop early (`break`), `cancel()` and the call's `signal` end
 * the call, which kills an attached command; `exit` then rejects with
 * CANCELLED (the loop just ends). A call that fails throws from the loop and
 * rejects `id` and `exit` with the same {@linkcode RpcError}. As the CLI's
 * transport cannot read a status that comes after output, a stream that
 * ends without an exit fails with UNKNOWN.
 *
 * @example Interactive: stdin, a signal, and the exit
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const fsb = connect({ endpoint: "127.0.0.1:2" }); // nothing listens there
 * async function* input() {
 *   yield new TextEncoder().encode("print(6 * 7)\n");
 * }
 * const session = fsb.exec("demo", ["python3", "-i"], { stdin: input(), tty: true });
 * try {
 *   for await (const out of session) {
 *     console.log(out.stream, new TextDecoder().decode(out.data));
 *     if (new TextDecoder().decode(out.data).includes("42")) session.signal("TERM");
 *   }
 *   console.log("exit code", (await session.exit).exitCode);
 * } catch (err) {
 *   assert.ok(err instanceof RpcError && err.code === Code.UNAVAILABLE);
 *   await assert.rejects(session.exit, { name: "RpcError", code: Code.UNAVAILABLE });
 * } finally {
 *   fsb.close();
 * }
 * ```
 */
export interface ExecSession extends AsyncIterable<ExecOutput> {
  /** The exec's id (for {@linkcode FsbExecs.attach} and `kill`), from the call's first answer. */
  readonly id: Promise<string>;
  /** How the command ended, once its output was read to the end; rejects when the call failed. */
  readonly exit: Promise<ExecExit>;
  /**
   * Tells the command's terminal its new size (with `tty`; nothing for an
   * attached detached exec, which has no terminal).
   *
   * @throws {RpcError} INVALID_ARGUMENT for a size that is not a whole number from 0 to 2^32-1.
   */
  resize(cols: number, rows: number): void;
  /**
   * Sends the command a signal: a name with or without SIG (`TERM`,
   * `SIGINT`) or a number (`"9"`). After the end, nothing.
   *
   * @throws {RpcError} INVALID_ARGUMENT for an empty name.
   */
  signal(signal: string): void;
  /** Ends the call: the agent kills an attached command (a detached one runs on). */
  cancel(): void;
}

/**
 * Commands that run on without a caller: started detached, followed,
 * listed and signalled by their exec id. Their output is kept on the agent.
 *
 * @example Start, list, follow, kill
 * ```ts
 * import assert from "node:assert/strict";
 *
 * async function startAndFollow(execs: FsbExecs): Promise<number> {
 *   const id = await execs.start("demo", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 1; done"]);
 *   console.log((await execs.list("demo")).map((e) => `${e.execId} ${e.running}`));
 *   const session = execs.attach("demo", id);
 *   for await (const out of session) console.log(new TextDecoder().decode(out.data));
 *   await execs.kill("demo", id, { killSignal: "TERM" }).catch(() => {}); // already over: no harm
 *   return (await session.exit).exitCode;
 * }
 * const fsb = connect({ endpoint: "127.0.0.1:2" }); // nothing listens there
 * await assert.rejects(startAndFollow(fsb.execs), { name: "RpcError", code: Code.UNAVAILABLE });
 * fsb.close();
 * ```
 */
export interface FsbExecs {
  /**
   * Starts `command` detached and resolves to its exec id at once; its
   * output is kept for {@linkcode FsbExecs.attach}. A command that cannot
   * be started fails the call: NOT_FOUND when it was not found (exit code
   * 127), else FAILED_PRECONDITION.
   */
  start(name: string, command: readonly string[], opts?: ExecStartOptions): Promise<string>;
  /**
   * Follows a detached exec: what it wrote so far, then on to its end and
   * its exit. Cancelling leaves the exec running; `signal()` goes through
   * {@linkcode FsbExecs.kill}.
   */
  attach(name: string, execId: string, opts?: SandboxCallOptions): ExecSession;
  /** The sandbox's execs, running and ended. */
  list(name: string, opts?: SandboxCallOptions): Promise<ExecInfo[]>;
  /** Sends an exec a signal (KILL unless `killSignal` says otherwise); resolves to the exec. */
  kill(name: string, execId: string, opts?: ExecKillOptions): Promise<ExecInfo>;
}

/**
 * Options of {@linkcode FsbFiles.write}.
 *
 * @example
 * ```ts
 * const script: FileWriteOptions = { mode: 0o755, parents: true };
 * console.log(script.mode);
 * ```
 */
export interface FileWriteOptions extends SandboxCallOptions {
  /** Permission bits (setuid, setgid and sticky too); 0o644 when absent. */
  readonly mode?: number;
  /** The owner's uid; root's when absent. */
  readonly uid?: number;
  /** The owner's gid; root's when absent. */
  readonly gid?: number;
  /**
   * How many bytes the data has, when known: more or fewer fail the write.
   * Data given as bytes or text has its own length here unless this says otherwise.
   */
  readonly size?: number;
  /** Make missing parent directories. */
  readonly parents?: boolean;
  /** The data is a tar archive, extracted into the directory `path` (made if missing). */
  readonly archive?: boolean;
}

/**
 * Options of {@linkcode FsbFiles.read}.
 *
 * @example
 * ```ts
 * const small: FileReadOptions = { maxBytes: 1 << 20 };
 * console.log(small.maxBytes);
 * ```
 */
export interface FileReadOptions extends SandboxCallOptions {
  /** Fail with OUT_OF_RANGE rather than read a file bigger than this many bytes. */
  readonly maxBytes?: number;
  /** Read a tar archive of `path` (a file or a directory) rather than its bytes. */
  readonly archive?: boolean;
}

/**
 * Options of {@linkcode FsbFiles.mkdir}.
 *
 * @example
 * ```ts
 * const opts: MakeDirOptions = { mode: 0o700, parents: true };
 * console.log(opts.parents);
 * ```
 */
export interface MakeDirOptions extends SandboxCallOptions {
  /** Permission bits; 0o755 when absent. */
  readonly mode?: number;
  /** Make missing parents too; a directory that exists is then no error. */
  readonly parents?: boolean;
}

/**
 * Options of {@linkcode FsbFiles.remove}.
 *
 * @example
 * ```ts
 * const opts: RemoveOptions = { recursive: true };
 * console.log(opts.recursive);
 * ```
 */
export interface RemoveOptions extends SandboxCallOptions {
  /** Remove a directory and everything under it. */
  readonly recursive?: boolean;
}

/**
 * A file's bytes as they come (iterate it), and its `info`, which settles
 * with the first chunk, without iterating. The call starts at once; leaving
 * the loop early ends it. A file that comes shorter than its info said fails
 * with DATA_LOSS (not with an archive).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * async function text(read: FileRead): Promise<string> {
 *   let out = "";
 *   const decoder = new TextDecoder();
 *   for await (const chunk of read) out += decoder.decode(chunk, { stream: true });
 *   return out + decoder.decode();
 * }
 * const fsb = connect({ endpoint: "127.0.0.1:2" }); // nothing listens there
 * const read = fsb.files.read("demo", "/etc/os-release");
 * await assert.rejects(text(read), { name: "RpcError", code: Code.UNAVAILABLE });
 * await assert.rejects(read.info, { name: "RpcError", code: Code.UNAVAILABLE });
 * fsb.close();
 * ```
 */
export interface FileRead extends AsyncIterable<Uint8Array> {
  /** The file's info (`size`, `mode`, `type`, ...); rejects when the call failed before it. */
  readonly info: Promise<FileInfo>;
}

/**
 * The file calls of an {@linkcode FsbClient}. Every path is absolute and
 * resolved inside the sandbox's root (a symlink out of it never reaches the
 * host's files); the sandbox must be running.
 *
 * @example Write a script, run it, read what it wrote
 * ```ts
 * import assert from "node:assert/strict";
 *
 * async function roundTrip(fsb: FsbClient): Promise<string> {
 *   await fsb.files.write("demo", "/work/hello.sh", "echo hi > /work/out\n", {
 *     mode: 0o755,
 *     parents: true,
 *   });
 *   const res = await fsb.run("demo", ["/work/hello.sh"]);
 *   assert.equal(res.exitCode, 0);
 *   console.log((await fsb.files.list("demo", "/work")).map((f) => `${f.path} ${f.size}`));
 *   let out = "";
 *   for await (const chunk of fsb.files.read("demo", "/work/out")) {
 *     out += new TextDecoder().decode(chunk);
 *   }
 *   await fsb.files.remove("demo", "/work", { recursive: true });
 *   return out;
 * }
 * const fsb = connect({ endpoint: "127.0.0.1:2" }); // nothing listens there
 * await assert.rejects(roundTrip(fsb), { name: "RpcError", code: Code.UNAVAILABLE });
 * fsb.close();
 * ```
 */
export interface FsbFiles {
  /**
   * Writes a file (or, with `archive`, extracts a tar archive into the
   * directory `path`): `data` as bytes, text (UTF-8) or a stream of bytes,
   * sent in chunks of at most 256 KiB as the connection takes them. The file
   * appears only once all data arrived. Resolves to what was written.
   */
  write(
    name: string,
    path: string,
    data: Uint8Array | string | AsyncIterable<Uint8Array>,
    opts?: FileWriteOptions,
  ): Promise<FileInfo>;
  /**
   * Reads a file (or, with `archive`, a tar archive of a file or directory) as it comes.
   *
   * @throws {RpcError} INVALID_ARGUMENT for a `maxBytes` that is not a whole number >= 0.
   */
  read(name: string, path: string, opts?: FileReadOptions): FileRead;
  /** A directory's entries, sorted by name; `path` of each is its name. */
  list(name: string, path: string, opts?: SandboxCallOptions): Promise<FileInfo[]>;
  /** What is at `path` (a final symlink not followed); NOT_FOUND when nothing is. */
  stat(name: string, path: string, opts?: SandboxCallOptions): Promise<FileInfo>;
  /** Makes a directory. */
  mkdir(name: string, path: string, opts?: MakeDirOptions): Promise<FileInfo>;
  /** Removes a file or an empty directory (any, with `recursive`); resolves to whether it was there. */
  remove(name: string, path: string, opts?: RemoveOptions): Promise<boolean>;
}

/**
 * A connection to an fsb controller, made by {@linkcode connect}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * using fsb = connect({ endpoint: "127.0.0.1:2,127.0.0.1:3" }); // closed at the end of the scope
 * assert.deepEqual(fsb.endpoints, ["127.0.0.1:2", "127.0.0.1:3"]);
 * await assert.rejects(fsb.ready(200), { name: "RpcError", code: Code.UNAVAILABLE });
 * ```
 */
export interface FsbClient extends Disposable {
  /** The endpoints, in the order they are tried. */
  readonly endpoints: readonly string[];
  /** Sandbox calls. */
  readonly sandboxes: FsbSandboxes;
  /** Token calls (admin). */
  readonly tokens: FsbTokens;
  /** Detached commands. */
  readonly execs: FsbExecs;
  /** Files inside sandboxes. */
  readonly files: FsbFiles;
  /**
   * Runs `command` (its whole argv; `command[0]` is looked up in the
   * sandbox's PATH) in a running sandbox, attached: see
   * {@linkcode ExecSession}. A command that cannot be run is no error: it
   * exits with 126, or 127 when not found, and a message.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   *
   * const fsb = connect({ endpoint: "127.0.0.1:2" }); // nothing listens there
   * const session = fsb.exec("demo", ["sh", "-c", "echo hi; echo oops >&2; exit 3"]);
   * const decoder = new TextDecoder();
   * try {
   *   for await (const out of session) console.log(out.stream, decoder.decode(out.data));
   *   console.log("exit code", (await session.exit).exitCode); // 3
   * } catch (err) {
   *   assert.ok(err instanceof RpcError && err.code === Code.UNAVAILABLE);
   * } finally {
   *   fsb.close();
   * }
   * ```
   *
   * @throws {RpcError} INVALID_ARGUMENT for a terminal size out of range.
   */
  exec(name: string, command: readonly string[], opts?: ExecOptions): ExecSession;
  /**
   * Runs `command` to its end and resolves to its exit and all it wrote
   * (kept in memory: for big output, iterate {@linkcode FsbClient.exec}).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   *
   * const fsb = connect({ endpoint: "127.0.0.1:2" }); // nothing listens there
   * try {
   *   const res = await fsb.run("demo", ["wc", "-c"], { stdin: "hello" });
   *   console.log(res.exitCode, new TextDecoder().decode(res.stdout)); // 0 5
   * } catch (err) {
   *   assert.ok(err instanceof RpcError && err.code === Code.UNAVAILABLE);
   * } finally {
   *   fsb.close();
   * }
   * ```
   */
  run(name: string, command: readonly string[], opts?: RunOptions): Promise<ExecResult>;
  /**
   * Resolves once the sandbox's main process ended (at once if it has): its
   * exit code and the sandbox's phase. No deadline unless given.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   *
   * const fsb = connect({ endpoint: "127.0.0.1:2" }); // nothing listens there
   * await assert.rejects(fsb.wait("job", { signal: AbortSignal.timeout(60_000) }), {
   *   name: "RpcError",
   *   code: Code.UNAVAILABLE,
   * });
   * fsb.close();
   * ```
   */
  wait(name: string, opts?: SandboxCallOptions): Promise<WaitResponse>;
  /**
   * A sandbox's stdout and stderr bytes as they were written, chunk by chunk;
   * with `follow`, until the sandbox ends or `signal` aborts. A stream that
   * the controller did not end as it should (it or the sandbox's agent failed
   * partway) rejects with UNKNOWN "The log stream ended before its end (the
   * server or its agent failed)" after the chunks that came.
   */
  logs(name: string, opts?: LogsOptions): AsyncIterable<Uint8Array>;
  /**
   * Resolves once some endpoint accepts a connection; rejects with
   * UNAVAILABLE when none does within `timeoutMs`. Calls need not wait for it.
   */
  ready(timeoutMs: number): Promise<void>;
  /** Closes the connections; calls made after it fail with FAILED_PRECONDITION. */
  close(): void;
}

// The CLI's deadlines: create waits for the agent to start the process, delete
// waits out the container's stop grace (10 s by default), reset does both.
const TIMEOUT_MS = {
  create: 60_000,
  get: 10_000,
  list: 10_000,
  delete: 30_000,
  update: 10_000,
  reset: 90_000,
  logs: 60_000,
  tokens: 10_000,
  execStart: 60_000,
  execs: 10_000,
  files: 10_000,
  remove: 60_000,
} as const;

/**
 * Connects to a controller (lazily: nothing is dialled until the first call).
 *
 * @throws {RpcError} INVALID_ARGUMENT when an endpoint is not `HOST:PORT` or
 * `unix:PATH`, the token is not printable ASCII, or `tlsCa` is not a PEM
 * certificate.
 *
 * @example Against a list of endpoints, the first of them down
 * ```ts
 * import assert from "node:assert/strict";
 *
 * // Nothing listens on ports 2 and 3 here: both are tried, then the call fails.
 * const fsb = connect({ endpoint: ["127.0.0.1:2", "127.0.0.1:3"], token: "s3cret" });
 * try {
 *   const sandboxes = await fsb.sandboxes.list({ namespace: "team-a" });
 *   console.log(sandboxes.map((s) => `${s.name} ${s.phase}`));
 * } catch (err) {
 *   assert.ok(err instanceof RpcError && err.code === Code.UNAVAILABLE);
 * } finally {
 *   fsb.close();
 * }
 * ```
 *
 * @example Bad options fail at once
 * ```ts
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => connect({ endpoint: "controller" }), {
 *   name: "RpcError",
 *   code: Code.INVALID_ARGUMENT,
 * });
 * ```
 */
export function connect(opts: ConnectOptions): FsbClient {
  const addresses = typeof opts.endpoint === "string"
    ? opts.endpoint.split(",")
    : opts.endpoint.slice();
  if (addresses.length === 0) {
    throw new RpcError(Code.INVALID_ARGUMENT, "No endpoint: expected HOST:PORT");
  }
  for (const address of addresses) {
    const problem = address.startsWith("unix:") ? undefined : hostPortProblem(address);
    if (problem !== undefined) {
      throw new RpcError(
        Code.INVALID_ARGUMENT,
        `Invalid endpoint "${address}": ${problem} (or unix:PATH)`,
      );
    }
  }
  const { token, tlsCa } = opts;
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) {
    throw new RpcError(
      Code.INVALID_ARGUMENT,
      "Invalid token: expected the secret fsb token create printed (printable ASCII, no spaces)",
    );
  }
  if (tlsCa !== undefined && !tlsCa.includes("-----BEGIN CERTIFICATE-----")) {
    throw new RpcError(
      Code.INVALID_ARGUMENT,
      "Invalid tlsCa: expected the PEM text of a CA certificate (the file's contents, not its name)",
    );
  }
  const endpoints = new Endpoints({
    addresses,
    metadata: token === undefined ? {} : { authorization: `Bearer ${token}` },
    ...(tlsCa === undefined ? {} : { tlsCa }),
  });

  const sandboxes: FsbSandboxes = {
    create: (request, o) =>
      endpoints.unary("createSandbox", request, callOptions(o, TIMEOUT_MS.create)),
    get: (name, o) =>
      endpoints.unary(
        "getSandbox",
        { name, namespace: o?.namespace ?? "" },
        callOptions(o, TIMEOUT_MS.get),
      ),
    list: async (o) =>
      (await endpoints.unary(
        "listSandboxes",
        { namespace: o?.namespace ?? "", allNamespaces: o?.allNamespaces ?? false },
        callOptions(o, TIMEOUT_MS.list),
      )).sandboxes,
    delete: (name, o) =>
      endpoints.unary(
        "deleteSandbox",
        { name, namespace: o?.namespace ?? "" },
        callOptions(o, TIMEOUT_MS.delete),
      ),
    update: (request, o) =>
      endpoints.unary("updateSandbox", request, callOptions(o, TIMEOUT_MS.update)),
    reset: (name, o) =>
      endpoints.unary(
        "updateSandbox",
        { name, namespace: o?.namespace ?? "", reset: true },
        callOptions(o, TIMEOUT_MS.reset),
      ),
  };
  const tokens: FsbTokens = {
    create: (request, o) =>
      endpoints.unary("createToken", request, callOptions(o, TIMEOUT_MS.tokens)),
    list: async (o) =>
      (await endpoints.unary("listTokens", {}, callOptions(o, TIMEOUT_MS.tokens))).tokens,
    revoke: (id, o) => endpoints.unary("revokeToken", { id }, callOptions(o, TIMEOUT_MS.tokens)),
  };
  const execs: FsbExecs = {
    start: (name, command, o) =>
      startDetached(
        endpoints,
        execStart(name, command, o),
        callOptions(o, TIMEOUT_MS.execStart),
      ),
    attach: (name, execId, o) =>
      attachSession(
        endpoints,
        { name, namespace: o?.namespace ?? "", execId },
        callOptions(o, Infinity),
      ),
    list: async (name, o) =>
      (await endpoints.unary(
        "execList",
        { name, namespace: o?.namespace ?? "" },
        callOptions(o, TIMEOUT_MS.execs),
      )).execs,
    kill: (name, execId, o) =>
      endpoints.unary(
        "execKill",
        { name, namespace: o?.namespace ?? "", execId, signal: o?.killSignal ?? "" },
        callOptions(o, TIMEOUT_MS.execs),
      ),
  };
  const files: FsbFiles = {
    // Async, so that options it refuses reject rather than throw.
    write: async (name, path, data, o = {}) =>
      await endpoints.clientStream(
        "writeFile",
        writeRequests(writeStart({ name, namespace: o.namespace ?? "", path }, data, o), data),
        callOptions(o, Infinity),
      ),
    read: (name, path, o) => {
      const maxBytes = o?.maxBytes ?? 0;
      if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
        throw new RpcError(
          Code.INVALID_ARGUMENT,
          `Invalid maxBytes ${maxBytes}: expected a whole number >= 0`,
        );
      }
      const archive = o?.archive ?? false;
      const call = callOptions(o, Infinity);
      const request = {
        name,
        namespace: o?.namespace ?? "",
        path,
        archive,
        maxBytes: BigInt(maxBytes),
      };
      return fileRead(endpoints.stream("readFile", request, call), {
        path,
        archive,
        signal: call.signal,
      });
    },
    list: async (name, path, o) =>
      (await endpoints.unary(
        "listDir",
        { name, namespace: o?.namespace ?? "", path },
        callOptions(o, TIMEOUT_MS.files),
      )).entries,
    stat: (name, path, o) =>
      endpoints.unary(
        "stat",
        { name, namespace: o?.namespace ?? "", path },
        callOptions(o, TIMEOUT_MS.files),
      ),
    mkdir: async (name, path, o) =>
      await endpoints.unary(
        "makeDir",
        {
          name,
          namespace: o?.namespace ?? "",
          path,
          mode: uint32("mode", o?.mode) ?? 0,
          parents: o?.parents ?? false,
        },
        callOptions(o, TIMEOUT_MS.files),
      ),
    remove: async (name, path, o) =>
      (await endpoints.unary(
        "remove",
        { name, namespace: o?.namespace ?? "", path, recursive: o?.recursive ?? false },
        callOptions(o, TIMEOUT_MS.remove),
      )).existed,
  };
  const client: FsbClient = {
    endpoints: endpoints.addresses,
    sandboxes,
    tokens,
    execs,
    files,
    exec: (name, command, o) => {
      const start = execStart(name, command, o);
      if (o?.tty === true) start.tty = true;
      if (o?.size !== undefined) start.size = terminalSize(o.size);
      return execSession(endpoints, start, {
        ...(o?.stdin === undefined ? {} : { stdin: o.stdin }),
        call: callOptions(o, Infinity),
      });
    },
    run: (name, command, o) => {
      const stdin = stdinOf(o?.stdin);
      return collect(
        execSession(endpoints, execStart(name, command, o), {
          ...(stdin === undefined ? {} : { stdin }),
          call: callOptions(o, Infinity),
        }),
      );
    },
    wait: (name, o) =>
      endpoints.unary(
        "wait",
        { name, namespace: o?.namespace ?? "" },
        callOptions(o, Infinity),
      ),
    logs: (name, o) => logChunks(endpoints, name, o),
    ready: (timeoutMs) => endpoints.ready(timeoutMs),
    close: () => endpoints.close(),
    [Symbol.dispose]: () => endpoints.close(),
  };
  endpointsOf.set(client, endpoints);
  return client;
}

async function* logChunks(
  endpoints: Endpoints,
  name: string,
  opts: LogsOptions | undefined,
): AsyncGenerator<Uint8Array> {
  const follow = opts?.follow ?? false;
  // A followed log has no deadline unless asked for: it ends with the sandbox or the signal.
  const call = callOptions(opts, follow ? Infinity : TIMEOUT_MS.logs);
  const request = { name, namespace: opts?.namespace ?? "", follow };
  let ended = false;
  for await (const chunk of endpoints.stream("streamLogs", request, call)) {
    if (chunk.data.length > 0 && !ended) yield chunk.data;
    // Read on to the stream's own end rather than cancel it: the status comes next.
    if (chunk.end) ended = true;
  }
  // The caller's own abort ends the stream quietly, marker or not.
  if (!ended && opts?.signal?.aborted !== true) throw new RpcError(Code.UNKNOWN, LOGS_CUT_SHORT);
}

// Fetch cannot see a status that follows messages: a log stream that failed
// partway shows only as one that ended without the controller's end marker.
const LOGS_CUT_SHORT = "The log stream ended before its end (the server or its agent failed)";

/** The start of an Exec call: what every kind of exec has in common. */
function execStart(
  name: string,
  command: readonly string[],
  opts: ExecStartOptions | undefined,
): ExecStartInit {
  return {
    name,
    namespace: opts?.namespace ?? "",
    command: command.slice(),
    envs: { ...opts?.env },
    workingDir: opts?.workingDir ?? "",
  };
}

/** The transport's options for a call: its own timeout, else the default; Infinity is none. */
function callOptions(opts: CallOptions | undefined, defaultMs: number): RpcCallOptions {
  const timeoutMs = opts?.timeoutMs ?? defaultMs;
  const out: RpcCallOptions = {};
  if (Number.isFinite(timeoutMs)) out.timeoutMs = timeoutMs;
  if (opts?.signal !== undefined) out.signal = opts.signal;
  return out;
}
