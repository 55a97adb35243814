/**
 * A typed client for the fsb controller's FastPath API (`@fsb/fsb/client`),
 * the one the `fsb` CLI is built on. It speaks gRPC over Deno's own `fetch`
 * (HTTP/2, TLS when given a CA) with hand-written codecs, so importing it
 * loads neither grpc-js nor protobuf-es: a script that creates a sandbox
 * starts as fast as `fsb sandbox create` does.
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
  UpdateSandboxRequestInit as LiteUpdateSandboxRequestInit,
} from "../proto/fastpath_lite.ts";
import type {
  CreateTokenResponse as GenCreateTokenResponse,
  SandboxInfo as GenSandboxInfo,
  TokenInfo as GenTokenInfo,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { type CallOptions as RpcCallOptions, Code, RpcError } from "../proto/rpc.ts";
import { Endpoints, endpointsOf } from "./_client_transport.ts";

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
   * delete 30 s, reset 90 s, logs 60 s (none with `follow`), the rest 10 s.
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
  /**
   * A sandbox's stdout and stderr bytes as they were written, chunk by chunk;
   * with `follow`, until the sandbox ends or `signal` aborts.
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
} as const;

const ADDRESS = /^[^\s/,]+:\d+$/;

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
    if (!address.startsWith("unix:") && !ADDRESS.test(address)) {
      throw new RpcError(
        Code.INVALID_ARGUMENT,
        `Invalid endpoint "${address}": expected HOST:PORT or unix:PATH`,
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
  const client: FsbClient = {
    endpoints: endpoints.addresses,
    sandboxes,
    tokens,
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
  for await (const chunk of endpoints.stream("streamLogs", request, call)) {
    if (chunk.data.length > 0) yield chunk.data;
  }
}

/** The transport's options for a call: its own timeout, else the default; Infinity is none. */
function callOptions(opts: CallOptions | undefined, defaultMs: number): RpcCallOptions {
  const timeoutMs = opts?.timeoutMs ?? defaultMs;
  const out: RpcCallOptions = {};
  if (Number.isFinite(timeoutMs)) out.timeoutMs = timeoutMs;
  if (opts?.signal !== undefined) out.signal = opts.signal;
  return out;
}
