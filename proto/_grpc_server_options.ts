/**
 * The options of {@linkcode RpcServer} (in `_grpc_server.ts`). Private to
 * `proto/`; `grpc.ts` exports them.
 *
 * @module
 */
import type { CallContext } from "./rpc.ts";

/** TLS for an {@linkcode RpcServer}: PEM texts, not file names. */
export interface RpcServerTls {
  /** The server's certificate (chain), PEM. */
  cert: string;
  /** The certificate's private key, PEM (unencrypted). */
  key: string;
  /**
   * CA certificate(s), PEM. When set, every client must present a certificate
   * signed by one of them (mutual TLS); a client without one is refused in the handshake.
   */
  ca?: string;
}

/** Options for {@linkcode RpcServer}. */
export interface RpcServerOptions {
  /** Called with errors that map to INTERNAL or UNKNOWN, i.e. bugs rather than refusals. */
  onInternalError?: (err: unknown, method: string) => void;
  /** Serve TLS only (ALPN `h2`); without it the server speaks plaintext HTTP/2. */
  tls?: RpcServerTls;
  /**
   * The largest request message accepted, in bytes (16 MiB by default); a
   * larger one fails with RESOURCE_EXHAUSTED.
   */
  maxReceiveBytes?: number;
  /**
   * Drop a connection after this many milliseconds without traffic while no
   * call is in flight on it (5 minutes by default). A call in flight keeps its
   * connection however long it stays silent: an exec may print nothing for an
   * hour, and not every client pings (Deno's fetch does not).
   */
  idleSocketMs?: number;
  /**
   * Serve gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), describing
   * every service added, so that `grpcurl` and the like need no .proto files.
   * Off unless set. Callers on loopback (or a unix socket) are always let in;
   * any other caller only when `admit` returns for its call (throw an error,
   * e.g. PERMISSION_DENIED, to refuse it); without `admit`, loopback only.
   */
  reflection?: RpcReflectionOptions;
}

/** Who may use server reflection; see {@linkcode RpcServerOptions.reflection}. */
export interface RpcReflectionOptions {
  /** Called once per reflection stream from a caller not on loopback; throws to refuse it. */
  admit?: (ctx: CallContext) => void | Promise<void>;
}
