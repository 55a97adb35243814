// A command runs as long as it runs: no timeout inside fsb cuts a quiet exec.
// The only internal limit on a quiet connection is RpcServer's idle-socket
// timeout (5 minutes), here made 1 s on the controller and the agent, while
// the command stays silent three times as long, through the SDK (Deno's
// fetch) and through grpc-js.
import assert from "node:assert/strict";
import { connect } from "../../cli/client.ts";
import { startCluster } from "../support/cluster.ts";

const decoder = new TextDecoder();

async function* start() {
  yield {
    msg: {
      case: "start" as const,
      value: { name: "box", command: ["sh", "-c", "sleep 3; echo again"] },
    },
  };
}

Deno.test("An exec silent for longer than every idle timeout of fsb's runs to its end", async () => {
  const cluster = await startCluster({ idleSocketMs: 1000 });
  const fsb = connect({ endpoint: cluster.controller.address, token: cluster.adminToken });
  try {
    await fsb.sandboxes.create({ name: "box", image: "busybox", command: ["sleep", "600"] });
    const started = performance.now();
    const res = await fsb.run("box", ["sh", "-c", "sleep 3; echo done; exit 4"]);
    assert.ok(performance.now() - started >= 3000, "it ran its whole time");
    assert.equal(decoder.decode(res.stdout), "done\n");
    assert.equal(res.exitCode, 4);

    // The same over grpc-js, whose own pings would keep a connection busy:
    // here the call alone must keep it.
    let out = "";
    let exit: number | undefined;
    for await (const r of cluster.client.exec(start(), { timeoutMs: 60_000 })) {
      if (r.msg.case === "stdout") out += decoder.decode(r.msg.value);
      if (r.msg.case === "exit") exit = r.msg.value.exitCode;
    }
    assert.equal(out, "again\n");
    assert.equal(exit, 0);

    // A detached one attached to while it is quiet.
    const id = await fsb.execs.start("box", ["sh", "-c", "sleep 3; echo late"]);
    const session = fsb.execs.attach("box", id);
    let late = "";
    for await (const o of session) late += decoder.decode(o.data);
    assert.equal(late, "late\n");
    assert.equal((await session.exit).exitCode, 0);
  } finally {
    fsb.close();
    await cluster.close();
  }
});
