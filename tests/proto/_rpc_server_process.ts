/**
 * An RpcServer in a process of its own, for tests that need the server to
 * outlive what its clients do (a crash takes only this process): serves
 * FastPath's ListSandboxes (empty) on loopback and prints its address.
 *
 * @module
 */
import { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcError, RpcServer, type ServiceImpl } from "../../proto/grpc.ts";

const impl: Record<string, unknown> = {};
for (const m of FastPath.methods) {
  impl[m.localName] = () => {
    throw new RpcError(Code.UNIMPLEMENTED, m.name);
  };
}
impl.listSandboxes = () => ({ sandboxes: [] });
const server = new RpcServer();
server.add(FastPath, impl as ServiceImpl<typeof FastPath.method>);
console.log(await server.listen("127.0.0.1:0"));
