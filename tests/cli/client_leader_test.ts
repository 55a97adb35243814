// The SDK against several controllers of which one leads: the followers are
// real gRPC servers (RpcServer over loopback) answering as a follower does.
import assert from "node:assert/strict";
import { connect } from "../../cli/client.ts";
import { Code, RpcError } from "../../proto/rpc.ts";
import { type FastPathServer, startFastPathServer } from "./fastpath_server.ts";

Deno.test("client: a follower naming the leader sends the call there next, past endpoints not tried yet", async () => {
  const calls: string[] = [];
  const servers: FastPathServer[] = [];
  try {
    const leader = await startFastPathServer({
      listSandboxes: () => {
        calls.push("leader");
        return { sandboxes: [] };
      },
    });
    servers.push(leader);
    const bystander = await startFastPathServer({
      listSandboxes: () => {
        calls.push("bystander");
        throw new RpcError(
          Code.UNAVAILABLE,
          "This controller does not lead and no leader is elected yet; retry",
        );
      },
    });
    servers.push(bystander);
    const follower = await startFastPathServer({
      listSandboxes: () => {
        calls.push("follower");
        throw new RpcError(
          Code.UNAVAILABLE,
          `This controller does not lead; the leader is at ${leader.endpoint}`,
        );
      },
    });
    servers.push(follower);
    using fsb = connect({ endpoint: [follower.endpoint, bystander.endpoint, leader.endpoint] });
    assert.deepEqual(await fsb.sandboxes.list(), []);
    assert.deepEqual(calls, ["follower", "leader"]);
    // And the next call goes to the leader first.
    calls.length = 0;
    assert.deepEqual(await fsb.sandboxes.list(), []);
    assert.deepEqual(calls, ["leader"]);
  } finally {
    for (const s of servers) await s.close();
  }
});
