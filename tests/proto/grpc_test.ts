import assert from "node:assert/strict";
import { Code, RpcChannel, RpcError, RpcServer } from "../../proto/grpc.ts";
import { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";

/** A FastPath server whose GetSandbox fails with the given status. */
async function failingServer(
  code: number,
  message: string,
): Promise<{ server: RpcServer; address: string }> {
  const server = new RpcServer();
  const fail = () => {
    throw new RpcError(code, message);
  };
  server.add(FastPath, {
    createSandbox: fail,
    getSandbox: fail,
    listSandboxes: fail,
    deleteSandbox: fail,
    updateSandbox: fail,
    async *streamLogs() {
      yield fail();
    },
    createToken: fail,
    listTokens: fail,
    revokeToken: fail,
    async *profile() {
      yield fail();
    },
  });
  return { server, address: await server.listen("127.0.0.1:0") };
}

Deno.test("RpcChannel reads a Go server's UNKNOWN context deadline as DEADLINE_EXCEEDED", async () => {
  const { server, address } = await failingServer(
    Code.UNKNOWN,
    "context deadline exceeded: unknown",
  );
  const channel = new RpcChannel(address);
  try {
    await assert.rejects(channel.client(FastPath).getSandbox({ name: "x" }), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.codeName, "DEADLINE_EXCEEDED");
      assert.equal(err.message, "context deadline exceeded: unknown");
      return true;
    });
  } finally {
    channel.close();
    await server.close();
  }
});

Deno.test("RpcChannel keeps other statuses as the server sent them", async () => {
  const { server, address } = await failingServer(Code.UNKNOWN, "something else");
  const channel = new RpcChannel(address);
  try {
    await assert.rejects(channel.client(FastPath).getSandbox({ name: "x" }), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.codeName, "UNKNOWN");
      assert.equal(err.message, "something else");
      return true;
    });
  } finally {
    channel.close();
    await server.close();
  }
});
