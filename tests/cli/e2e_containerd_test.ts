import assert from "node:assert/strict";
import { ContainerdClient } from "../../agent/containerd/mod.ts";
import { waitFor } from "../support/cluster.ts";
import { startContainerd } from "../support/containerd.ts";
import { createWhenReady, fsb, startUp } from "../support/fsb_process.ts";
import { ignoreWithout } from "../support/real_parts.ts";

Deno.test({
  name:
    "the quick start on a host with containerd runs real containers, with busybox seeded from the host",
  ignore: ignoreWithout("containerd", "root"),
}, async () => {
  const containerd = await startContainerd();
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-e2e-ctrd-" });
  const ctr = new ContainerdClient(containerd.socket);
  // No --runtime: fsb up must find containerd on the socket by itself.
  const up = await startUp(dataDir, ["--containerd-socket", containerd.socket]);
  try {
    assert.match(
      up.banner,
      /imported docker\.io\/library\/busybox:latest, built from \/usr\/bin\/busybox/,
    );
    assert.match(up.banner, /runtime: containerd \(containerd answers on /);
    const ep = ["--endpoint", up.endpoint];
    const created = await createWhenReady(up, "demo", ["sh", "-c", "echo hello; sleep 60"]);
    assert.match(created.stdout, /demo\s+default\s+Running/);
    const id =
      JSON.parse((await fsb(["sandbox", "get", "demo", "-o", "json", ...ep])).stdout).sandboxId;
    assert.deepEqual((await ctr.containers.list({})).containers.map((c) => c.id), [id]);
    await waitFor(async () => (await fsb(["sandbox", "logs", "demo", ...ep])).stdout === "hello\n");
    const del = await fsb(["sandbox", "delete", "demo", ...ep]);
    assert.equal(del.code, 0, del.stderr);
    assert.deepEqual((await ctr.containers.list({})).containers, []);
  } finally {
    up.child.kill("SIGTERM");
    await up.child.status;
    ctr.close();
    await containerd.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
