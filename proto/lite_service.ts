/**
 * A service described by hand-written codecs rather than protobuf-es schemas,
 * for clients that must start fast (see `fastpath_lite.ts`). Types only:
 * importing this module loads nothing.
 *
 * @module
 */
import type { CallOptions } from "./rpc.ts";

/**
 * Whether a method takes one request or a stream of them, and answers once
 * or streams its answers (protobuf-es's names for the four kinds).
 */
export type LiteMethodKind = "unary" | "server_streaming" | "client_streaming" | "bidi_streaming";

/** One method of a {@linkcode LiteService}: its name on the wire and its codecs. */
export interface LiteMethod<I, O, K extends LiteMethodKind = LiteMethodKind> {
  /** The method's name in the .proto file, e.g. `CreateSandbox`. */
  readonly name: string;
  /** Unary, or which side streams. */
  readonly kind: K;
  /** Serializes a request (one message of a request stream). */
  readonly encode: (req: I) => Uint8Array;
  /** Parses one response message. */
  readonly decode: (bytes: Uint8Array) => O;
}

/** A gRPC service: its full name and its methods, keyed by the client's method names. */
export interface LiteService {
  /** The fully qualified service name, e.g. `fsb.fastpath.v1.FastPath`. */
  readonly typeName: string;
  /** The methods, keyed by lowerCamelCase name (`createSandbox`). */
  readonly methods: Readonly<Record<string, LiteMethod<never, unknown>>>;
}

/**
 * A typed client for a {@linkcode LiteService}: unary methods resolve to the
 * response, server streams are async iterables of responses; client and
 * bidirectional streams take their requests as an async iterable (its end
 * half-closes the call) and resolve to the response, or give an async
 * iterable of responses.
 */
export type LiteClient<S extends LiteService> = {
  readonly [K in keyof S["methods"]]: S["methods"][K] extends LiteMethod<infer I, infer O, "unary">
    ? (req: I, opts?: CallOptions) => Promise<O>
    : S["methods"][K] extends LiteMethod<infer I, infer O, "server_streaming">
      ? (req: I, opts?: CallOptions) => AsyncIterable<O>
    : S["methods"][K] extends LiteMethod<infer I, infer O, "client_streaming">
      ? (reqs: AsyncIterable<I>, opts?: CallOptions) => Promise<O>
    : S["methods"][K] extends LiteMethod<infer I, infer O, "bidi_streaming">
      ? (reqs: AsyncIterable<I>, opts?: CallOptions) => AsyncIterable<O>
    : never;
};
