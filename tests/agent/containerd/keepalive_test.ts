// Why fsb's containerd client sends no keepalive pings: containerd (Go gRPC,
// default enforcement: one ping per 5 minutes) ends a connection that pings
// more often, failing the calls on it. A quiet exec's Wait lasts as long as
// the command, so 30 s pings cut every exec quiet for about 90 s (seen: a
// `sleep 130` exec lost its exit status). Here the interval is 1 s, so the
// policy shows in seconds.
import assert from "node:assert/strict";
import { join } from "node:path";
import { fromJson } from "@bufbuild/protobuf";
import { SandboxSpecSchema } from "../../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { ContainerdClient, ContainerdRuntime, importImage } from "../../../agent/containerd/mod.ts";
import { buildBusyboxImage } from "../../support/busybox_image.ts";
import { startContainerd } from "../../support/containerd.ts";
import { ignoreWithout } from "../../support/real_parts.ts";

Deno.test({
  name: "a long quiet Wait outlives containerd's ping policy only without keepalive pings",
  ignore: ignoreWithout("containerd", "root"),
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb_keepalive_" });
  const server = await startContainerd();
  const runtime = new ContainerdRuntime({ socket: server.socket, stateDir: join(dir, "state") });
  const pinging = new ContainerdClient(server.socket, { keepaliveMs: 1000 });
  const quiet = new ContainerdClient(server.socket);
  const id = crypto.randomUUID().replaceAll("-", "");
  try {
    await importImage(await buildBusyboxImage(dir), { socket: server.socket });
    await runtime.create(
      fromJson(SandboxSpecSchema, { sandboxId: id, image: "busybox", command: ["sleep", "8"] }),
      { logPath: join(dir, "sb.log") },
    );
    const [withPings, withoutPings] = await Promise.allSettled([
      pinging.tasks.wait({ containerId: id }, { timeoutMs: 60_000 }),
      quiet.tasks.wait({ containerId: id }, { timeoutMs: 60_000 }),
    ]);
    assert.equal(withPings.status, "rejected", "containerd ends a connection pinging every second");
    assert.equal(
      withoutPings.status,
      "fulfilled",
      String((withoutPings as { reason?: unknown }).reason),
    );
    assert.equal(withoutPings.value.exitStatus, 0);
  } finally {
    pinging.close();
    quiet.close();
    await runtime.delete(id, 0).catch(() => {});
    await runtime.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
