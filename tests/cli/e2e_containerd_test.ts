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
  // No --runtime: fsb up must find containerd on the socket by itself. A bridge and subnet
  // of the test's own keep it off the host's fsb0.
  const tag = crypto.getRandomValues(new Uint16Array(1))[0].toString(16).padStart(4, "0");
  const bridge = `fsbt${tag}`;
  const up = await startUp(dataDir, [
    "--containerd-socket",
    containerd.socket,
    "--bridge",
    bridge,
    "--sandbox-cidr",
    `10.${210 + (parseInt(tag, 16) % 30)}.${parseInt(tag, 16) % 256}.0/24`,
  ]);
  try {
    assert.match(
      up.banner,
      /imported docker\.io\/library\/busybox:latest, built from \/usr\/bin\/busybox/,
    );
    assert.match(up.banner, /runtime: containerd \(containerd answers on /);
    // No --endpoint or --token: the CLI reads what fsb up wrote into HOME.
    const ep: string[] = [];
    const created = await createWhenReady(up, "demo", ["sh", "-c", "echo hello; sleep 60"]);
    assert.match(created.stdout, /demo\s+default\s+Running/);
    const id = JSON.parse((await fsb(["sandbox", "get", "demo", "-o", "json", ...ep], up)).stdout)
      .sandboxId;
    assert.deepEqual((await ctr.containers.list({})).containers.map((c) => c.id), [id]);
    const info = JSON.parse((await fsb(["sandbox", "get", "demo", "-o", "json"], up)).stdout);
    assert.match(info.ip, /^10\.\d+\.\d+\.\d+$/, "the quick start's sandbox has a private address");
    assert.equal(info.runtime, "runc");
    await waitFor(async () =>
      (await fsb(["sandbox", "logs", "demo", ...ep], up)).stdout === "hello\n"
    );
    const del = await fsb(["sandbox", "delete", "demo", ...ep], up);
    assert.equal(del.code, 0, del.stderr);
    assert.deepEqual((await ctr.containers.list({})).containers, []);
  } finally {
    up.child.kill("SIGTERM");
    await up.child.status;
    ctr.close();
    await containerd.stop();
    // What a real agent keeps between runs; a test's bridge goes with the test.
    await new Deno.Command("sh", {
      args: ["-c", `nft delete table inet fsb_${bridge}; ip link del ${bridge}; true`],
    }).output();
    await Deno.remove(dataDir, { recursive: true });
  }
});
