/**
 * The transport-neutral half of our gRPC layer: status codes, the error that
 * carries one, the single error-to-status mapping, and the shapes of typed
 * clients and handlers. Importing it loads no transport.
 *
 * @module
 */
import type { MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";

/** gRPC status codes, so that callers never import the transport. */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** A gRPC status code name, e.g. `"NOT_FOUND"`. */
export type CodeName = keyof typeof Code;

const codeNames: Record<number, CodeName> = Object.fromEntries(
  Object.entries(Code).map(([name, code]) => [code, name as CodeName]),
);

/** The name of a numeric gRPC status code (`UNKNOWN` for codes outside the table). */
export function codeName(code: number): CodeName {
  return codeNames[code] ?? "UNKNOWN";
}

/** An error with a gRPC status: what clients receive and what handlers may throw. */
export class RpcError extends Error {
  /** The numeric gRPC status code. */
  readonly code: number;

  /** Creates an error carrying `code`. */
  constructor(code: number, message: string) {
    super(message);
    this.name = "RpcError";
    this.code = code;
  }

  /** The status code's name, e.g. `NOT_FOUND`. */
  get codeName(): CodeName {
    return codeName(this.code);
  }
}

/**
 * Maps any thrown value to a gRPC status. Domain errors declare the status they
 * stand for as a `status` property holding a code name (see `registry/errors.ts`);
 * this is the only place where such names become wire codes.
 */
export function statusFromError(err: unknown): { code: number; message: string } {
  if (err instanceof RpcError) return { code: err.code, message: err.message };
  if (err instanceof Error) {
    const status = (err as { status?: unknown }).status;
    if (typeof status === "string" && status in Code) {
      return { code: Code[status as CodeName], message: err.message };
    }
    return { code: Code.INTERNAL, message: err.message };
  }
  return { code: Code.INTERNAL, message: String(err) };
}

/** What a handler learns about its call besides the request. */
export interface CallContext {
  /**
   * Aborted when the client cancels or the deadline passes, with an RpcError
   * (CANCELLED or DEADLINE_EXCEEDED) as its reason.
   */
  readonly signal: AbortSignal;
  /** Request metadata (ASCII values only). */
  readonly metadata: Readonly<Record<string, string>>;
}

type Method = GenServiceMethods[string];
type In<M extends Method> = MessageShape<M["input"]>;
type Out<M extends Method> = MessageInitShape<M["output"]>;

/**
 * The implementation of a service: unary methods return a message, server
 * streams yield them; client streams read their requests and return one
 * message, bidirectional streams read requests and yield responses as they go.
 *
 * A request stream is pulled: requests not yet read wait (a few) in the server,
 * and then in the client, which stops sending. It ends when the client has sent
 * its last request; it throws `ctx.signal.reason` (CANCELLED, or DEADLINE_EXCEEDED)
 * once the call is cancelled or its deadline passes, so that a cut-off upload
 * never passes for a complete one. Once the call is answered it just ends.
 */
export type ServiceImpl<S extends GenServiceMethods> = {
  [K in keyof S]: S[K]["methodKind"] extends "unary"
    ? (req: In<S[K]>, ctx: CallContext) => Promise<Out<S[K]>> | Out<S[K]>
    : S[K]["methodKind"] extends "server_streaming"
      ? (req: In<S[K]>, ctx: CallContext) => AsyncIterable<Out<S[K]>>
    : S[K]["methodKind"] extends "client_streaming" ? (
        reqs: AsyncIterable<In<S[K]>>,
        ctx: CallContext,
      ) => Promise<Out<S[K]>> | Out<S[K]>
    : S[K]["methodKind"] extends "bidi_streaming"
      ? (reqs: AsyncIterable<In<S[K]>>, ctx: CallContext) => AsyncIterable<Out<S[K]>>
    : never;
};

/** Per-call options for client calls. */
export interface CallOptions {
  /** Milliseconds until the call fails with DEADLINE_EXCEEDED. */
  timeoutMs?: number;
  /** Cancels the call. */
  signal?: AbortSignal;
  /** Metadata for this call, over the channel's own (e.g. a credential that changes). */
  metadata?: Readonly<Record<string, string>>;
}

/**
 * A typed client: unary methods resolve to the response, server streams are
 * async iterables. Client and bidirectional streams take the requests as an
 * async iterable, pulled only as fast as the server reads them; its end ends
 * the requests (half-close), and an error it throws cancels the call and is
 * what the call then fails with. Once the response side is done, the requests
 * are no longer pulled (the iterable's `return()` is called). A bidirectional
 * call, like a server stream, starts when its responses are first pulled.
 */
export type ServiceClient<S extends GenServiceMethods> = {
  [K in keyof S]: S[K]["methodKind"] extends "unary" ? (
      req: MessageInitShape<S[K]["input"]>,
      opts?: CallOptions,
    ) => Promise<MessageShape<S[K]["output"]>>
    : S[K]["methodKind"] extends "server_streaming" ? (
        req: MessageInitShape<S[K]["input"]>,
        opts?: CallOptions,
      ) => AsyncIterable<MessageShape<S[K]["output"]>>
    : S[K]["methodKind"] extends "client_streaming" ? (
        reqs: AsyncIterable<MessageInitShape<S[K]["input"]>>,
        opts?: CallOptions,
      ) => Promise<MessageShape<S[K]["output"]>>
    : S[K]["methodKind"] extends "bidi_streaming" ? (
        reqs: AsyncIterable<MessageInitShape<S[K]["input"]>>,
        opts?: CallOptions,
      ) => AsyncIterable<MessageShape<S[K]["output"]>>
    : never;
};
