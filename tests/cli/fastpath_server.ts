// A real gRPC server (RpcServer, grpc-js over loopback or a unix socket)
// serving FastPath with handlers the test writes, for the SDK's exec and file
// calls: the controller's own Exec and file calls are not what these tests
// are about, so handlers play the controller; every method a test leaves out
// refuses with UNIMPLEMENTED.
import { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { RpcServer } from "../../proto/grpc.ts";
import { Code, RpcError, type ServiceImpl } from "../../proto/rpc.ts";

/** FastPath's handlers, as RpcServer takes them. */
export type FastPathImpl = ServiceImpl<typeof FastPath.method>;

/** A running server. */
export interface FastPathServer {
  /** `127.0.0.1:PORT`, or `unix:PATH` for the SDK. */
  readonly endpoint: string;
  /** Drops every connection and stops. */
  close(): Promise<void>;
}

function unimplemented(): never {
  throw new RpcError(Code.UNIMPLEMENTED, "not used by this test");
}

/** Every FastPath method refusing with UNIMPLEMENTED. */
function refusing(): FastPathImpl {
  const impl: Record<string, unknown> = {};
  for (const method of FastPath.methods) {
    impl[method.localName] = method.methodKind === "server_streaming" ||
        method.methodKind === "bidi_streaming"
      // deno-lint-ignore require-yield
      ? async function* () {
        unimplemented();
      }
      : unimplemented;
  }
  return impl as FastPathImpl;
}

/**
 * Starts FastPath with `impl` on a free loopback port, or on a unix socket in
 * a fresh temporary directory with `unix`.
 */
export async function startFastPathServer(
  impl: Partial<FastPathImpl>,
  opts: { unix?: boolean } = {},
): Promise<FastPathServer> {
  const server = new RpcServer();
  server.add(FastPath, { ...refusing(), ...impl });
  if (opts.unix === true) {
    const dir = await Deno.makeTempDir({ prefix: "fsb-fastpath-" });
    const path = `${dir}/fastpath.sock`;
    await server.listen(`unix://${path}`);
    return {
      endpoint: `unix:${path}`,
      close: async () => {
        await server.close();
        await Deno.remove(dir, { recursive: true });
      },
    };
  }
  const endpoint = await server.listen("127.0.0.1:0");
  return { endpoint, close: () => server.close() };
}
