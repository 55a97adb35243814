/**
 * A sandbox's log stream that outlives its agent restarting (issue 11: "agent
 * restarts during ... log streams: none of them fails for it").
 *
 * @module
 */
import { Code, RpcError } from "../proto/grpc.ts";

/** Options for {@linkcode followAcrossRestarts}. */
export interface FollowOptions {
  /**
   * Opens the agent's stream from the log's start; undefined when the
   * sandbox is gone or on no agent (after a break, the stream then fails
   * with the break's error).
   */
  readonly open: () => AsyncIterable<{ data: Uint8Array }> | undefined;
  /** Whether the caller follows; a one-shot read is not retried. */
  readonly follow: boolean;
  readonly signal: AbortSignal;
  /** How long to keep trying to reach the agent again before failing as it did. */
  readonly giveUpAfterMs: number;
}

const RETRY_MS = 200;

/**
 * The agent's log stream; when a followed one breaks because the agent
 * cannot be reached (UNAVAILABLE, as when its process restarts), it is
 * opened again every {@linkcode RETRY_MS} ms until the agent answers or
 * `giveUpAfterMs` passes, and the bytes already sent are skipped in the new
 * one (which starts from the log's head). A log capped meanwhile (its head
 * dropped) makes that skip too long: then some output is missed, never
 * repeated.
 */
export async function* followAcrossRestarts(
  opts: FollowOptions,
): AsyncGenerator<{ data: Uint8Array }> {
  let sent = 0;
  let brokenAt: number | undefined;
  let broken: unknown;
  for (;;) {
    const stream = opts.open();
    if (stream === undefined) {
      // Gone or unplaced since: after a break that is a failure, never a log that ended.
      if (broken !== undefined) throw broken;
      return;
    }
    let skip = sent;
    try {
      for await (const chunk of stream) {
        brokenAt = undefined;
        let data = chunk.data;
        if (skip > 0) {
          if (data.length <= skip) {
            skip -= data.length;
            continue;
          }
          data = data.subarray(skip);
          skip = 0;
        }
        sent += data.length;
        yield { data };
      }
      return;
    } catch (err) {
      const unreachable = err instanceof RpcError && err.code === Code.UNAVAILABLE;
      if (!opts.follow || !unreachable || opts.signal.aborted) throw err;
      broken = err;
      brokenAt ??= Date.now();
      if (Date.now() - brokenAt > opts.giveUpAfterMs) throw err;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      if (opts.signal.aborted) throw err;
    }
  }
}
