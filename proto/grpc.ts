/**
 * The one module that touches `@grpc/grpc-js`: typed servers and clients for
 * protobuf-es service descriptors, and the single error-to-status mapping.
 *
 * The work is done in private `_grpc_*.ts` files beside this one, one job
 * each; this is their public surface, and nothing outside `proto/` imports them.
 *
 * @module
 */
export {
  type CallContext,
  type CallOptions,
  Code,
  type CodeName,
  codeName,
  RpcError,
  type ServiceClient,
  type ServiceImpl,
  statusFromError,
} from "./rpc.ts";
export type {
  RpcReflectionOptions,
  RpcServerOptions,
  RpcServerTls,
} from "./_grpc_server_options.ts";
export { RpcServer } from "./_grpc_server.ts";
export type { RpcChannelTls } from "./_grpc_tls.ts";
export { RpcChannel, type RpcChannelOptions } from "./_grpc_channel.ts";
