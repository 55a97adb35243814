/**
 * The request side of RpcChannel's client-streaming and bidirectional calls.
 * Private to `proto/`.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";

/** The requests of a client or bidirectional call being sent; see pumpRequests. */
export interface RequestPump {
  /** Stops pulling requests and asks the caller's iterator to finish. */
  stop(): void;
  /** What the caller's iterable threw, once it has (the call is then cancelled). */
  readonly failure: { err: unknown } | undefined;
}

/**
 * Writes a caller's requests into a grpc-js client call, pulling the next only
 * once the call takes more (`drain`), and half-closes the call at their end. If
 * the iterable throws, the call is cancelled. `stop()` asks the caller's iterator
 * to finish (`return()`, which for a generator parked on its own await, e.g.
 * reading stdin, takes effect once that await is over).
 */
export function pumpRequests(
  call: grpc.ClientWritableStream<unknown>,
  reqs: AsyncIterable<unknown>,
): RequestPump {
  let stopped = false;
  let failure: { err: unknown } | undefined;
  let iterator: AsyncIterator<unknown> | undefined;
  let wake: (() => void) | undefined;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    wake?.();
    const it = iterator;
    iterator = undefined;
    if (it?.return !== undefined) Promise.resolve().then(() => it.return!()).catch(() => {});
  };
  const pump = async () => {
    iterator = reqs[Symbol.asyncIterator]();
    while (!stopped) {
      const next = await iterator.next();
      if (stopped) return;
      if (next.done) {
        iterator = undefined;
        stopped = true;
        call.end();
        return;
      }
      if (!call.write(next.value)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            call.off("drain", done);
            wake = undefined;
            resolve();
          };
          wake = done;
          call.once("drain", done);
        });
      }
    }
  };
  pump().catch((err) => {
    if (stopped) return;
    // An iterator that threw is finished: nothing to return().
    iterator = undefined;
    stopped = true;
    failure = { err };
    call.cancel();
  });
  return {
    stop,
    get failure() {
      return failure;
    },
  };
}
