/**
 * A service described by hand-written codecs rather than protobuf-es schemas,
 * for clients that must start fast (see `fastpath_lite.ts`). Types only:
 * importing this module loads nothing.
 *
 * @module
 */
import type { CallOptions } from "./rpc.ts";

/** Whether a method answers once or streams its answers. */
export type LiteMethodKind = "unary" | "server_streaming";

/** One method of a {@linkcode LiteService}: its name on the wire and its codecs. */
export interface LiteMethod<I, O, K extends LiteMethodKind = LiteMethodKind> {
  /** The method's name in the .proto file, e.g. `CreateSandbox`. */
  readonly name: string;
  /** Unary, or a server stream. */
  readonly kind: K;
  /** Serializes a request. */
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
 * response, server streams are async iterables of responses.
 */
export type LiteClient<S extends LiteService> = {
  readonly [K in keyof S["methods"]]: S["methods"][K] extends LiteMethod<infer I, infer O, "unary">
    ? (req: I, opts?: CallOptions) => Promise<O>
    : S["methods"][K] extends LiteMethod<infer I, infer O, "server_streaming">
      ? (req: I, opts?: CallOptions) => AsyncIterable<O>
    : never;
};
