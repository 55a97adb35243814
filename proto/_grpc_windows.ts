/**
 * HTTP/2 flow-control windows wider than Node's default, for RpcServer's
 * sessions and RpcChannel's. Private to `proto/`.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type { Http2Session } from "node:http2";

/**
 * HTTP/2 flow-control window for what peers send us, per stream and per
 * connection. Node's default of 64 KiB holds a Deno fetch client's upload to
 * about 2 MB/s here (a window per round trip through node:http2's event
 * loop). 4 MiB keeps several 256 KiB file chunks in flight on each hop of a
 * copy through the controller (100 MiB at 80-125 MB/s; 1 MiB gave 70-115)
 * while it still bounds what a peer can push at us unread.
 */
export const FLOW_CONTROL_WINDOW = 4 * 1024 * 1024;

/** grpc-js's internals that {@linkcode widenServerWindows} relies on (pinned at 1.14.7). */
interface GrpcServerInternals {
  commonServerOptions?: { settings?: Record<string, unknown> };
  http2Servers?: Map<{ on(event: "session", fn: (session: Http2Session) => void): void }, unknown>;
}

/**
 * Makes the streams of the server's future HTTP/2 sessions advertise
 * {@linkcode FLOW_CONTROL_WINDOW}. grpc-js has no server option for it (its
 * `grpc-node.flow_control_window` is the client's), so this sets the
 * settings grpc-js passes to `http2.createServer`.
 */
export function widenServerWindows(server: grpc.Server): void {
  const internals = server as unknown as GrpcServerInternals;
  if (internals.commonServerOptions === undefined) return;
  internals.commonServerOptions.settings = {
    ...internals.commonServerOptions.settings,
    initialWindowSize: FLOW_CONTROL_WINDOW,
  };
}

/**
 * Widens the connection-level window of each session of the HTTP/2 server
 * that `createConnectionInjector` just made (the last one grpc-js keeps):
 * the stream windows alone still leave the connection at 64 KiB.
 */
export function widenSessionWindows(server: grpc.Server): void {
  const servers = (server as unknown as GrpcServerInternals).http2Servers;
  const h2 = servers === undefined ? undefined : [...servers.keys()].at(-1);
  h2?.on("session", (session) => {
    try {
      session.setLocalWindowSize(FLOW_CONTROL_WINDOW);
    } catch {
      // A session already closing: nothing to widen.
    }
  });
}
