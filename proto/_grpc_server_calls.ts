/**
 * What RpcServer's call handlers share: the calls' contexts and statuses,
 * and the bridges between grpc-js server streams and a handler's async
 * iterables. Private to `proto/`.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { Socket } from "node:net";
import { type CallContext, Code, RpcError, statusFromError } from "./rpc.ts";

/** A call's metadata as a record, its text values only. */
export function metadataRecord(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) {
    if (typeof v === "string") out[k] = v;
  }
  return out;
}

/** The grpc-js error that sends `err`'s status (see statusFromError). */
export function toServiceError(err: unknown): grpc.ServiceError {
  const { code, message } = statusFromError(err);
  return Object.assign(new Error(message), {
    code,
    details: message,
    metadata: new grpc.Metadata(),
  });
}

/** Resolves when `call` can take more writes or `signal` aborts, leaving no listener behind. */
export function drainOrAbort(
  call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.once("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * The peer name grpc-js gives the calls on `socket` (ServerInterceptingCall's
 * getPeer): `ADDRESS:PORT`, or "unknown" without an address (a unix socket).
 */
export function peerOf(socket: Socket): string {
  if (!socket.remoteAddress) return "unknown";
  return socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : socket.remoteAddress;
}

/** What a streaming handler returns; if it throws instead, a stream that fails with that. */
export function started(handler: () => AsyncIterable<unknown>): AsyncIterable<unknown> {
  try {
    return handler();
  } catch (err) {
    return { [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(err) }) };
  }
}

/**
 * Why a call's context aborts: its deadline passed, or the client cancelled it.
 * The client's deadline passes a little before ours (ours counts from when the
 * request arrived), and its cancel may then beat our own timer: a cancel that
 * close to the deadline is the deadline.
 */
export function cancelReason(call: { getDeadline(): grpc.Deadline }): RpcError {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return at <= Date.now() + DEADLINE_SLACK_MS
    ? new RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
    : new RpcError(Code.CANCELLED, "call cancelled");
}

/** How early a cancel may come for the deadline's; see cancelReason. */
const DEADLINE_SLACK_MS = 1000;

/**
 * The requests of a streaming call, pulled one at a time with `read()`:
 * grpc-js asks HTTP/2 for another message only while its Readable holds fewer
 * than its high-water mark (16 messages), so requests the handler has not read
 * soon stop the client (HTTP/2 flow control). Reading starts with the first
 * `next()`. Events and `read()` rather than `for await` over the Readable:
 * ending that iteration destroys the stream, and then the call's status is
 * never sent.
 *
 * It ends at the client's half-close, and throws the abort reason once `signal`
 * aborts (cancelled, deadline passed). After the call was answered it just ends.
 */
export function requestStream(call: StreamingCall, signal: AbortSignal): AsyncIterable<unknown> {
  let opened = false;
  let ended = false;
  let closed = false;
  let returned = false;
  let waiting: (() => void)[] = [];
  const wake = () => {
    const resolvers = waiting;
    waiting = [];
    for (const resolve of resolvers) resolve();
  };
  const open = () => {
    opened = true;
    call.on("readable", wake);
    call.once("end", () => {
      ended = true;
      wake();
    });
    call.once("close", () => {
      closed = true;
      wake();
    });
    signal.addEventListener("abort", wake, { once: true });
  };
  const next = async (): Promise<IteratorResult<unknown>> => {
    if (!opened) open();
    while (true) {
      if (returned || ended) return { done: true, value: undefined };
      if (signal.aborted) throw signal.reason;
      if (closed) return { done: true, value: undefined };
      const value: unknown = call.read();
      if (value !== null) return { done: false, value };
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
  };
  return {
    [Symbol.asyncIterator]: () => ({
      next,
      return: () => {
        returned = true;
        wake();
        return Promise.resolve({ done: true, value: undefined });
      },
    }),
  };
}

/** A unary handler, untyped. */
export type UnaryFn = (req: unknown, ctx: CallContext) => unknown;
/** A server-streaming handler, untyped. */
export type StreamFn = (req: unknown, ctx: CallContext) => AsyncIterable<unknown>;
/** A client-streaming handler, untyped. */
export type ClientStreamFn = (reqs: AsyncIterable<unknown>, ctx: CallContext) => unknown;
/** A bidirectional-streaming handler, untyped. */
export type BidiFn = (reqs: AsyncIterable<unknown>, ctx: ServerContext) => AsyncIterable<unknown>;
/** A grpc-js server call with a request stream. */
export type StreamingCall =
  | grpc.ServerReadableStream<unknown, unknown>
  | grpc.ServerDuplexStream<unknown, unknown>;
/** What RpcServer's bookkeeping needs of a grpc-js server call of any kind. */
export interface ServerCall {
  readonly metadata: grpc.Metadata;
  getPeer(): string;
  getDeadline(): grpc.Deadline;
  on(event: "cancelled", listener: () => void): unknown;
  once(event: "cancelled", listener: () => void): unknown;
  off(event: "cancelled", listener: () => void): unknown;
}

/** A streaming handler's context, with the peer for the server's own reflection service. */
export interface ServerContext extends CallContext {
  readonly peer: string;
}

/** A streaming call being served. */
export interface OpenCall {
  readonly ctx: ServerContext;
  /** Marks the call answered; false when it was cancelled first (grpc-js sent its status). */
  readonly answered: () => boolean;
  /** Says the handler is done (see RpcServer's #enter). */
  readonly done: () => void;
}
