/**
 * A real containerd with busybox imported and a cluster whose one agent
 * (`ctrd`) runs on it, on runc or gVisor, with a private test network: the
 * scene of the FastPath tests that need real containers.
 *
 * @module
 */
import { join } from "node:path";
import { ContainerdRuntime, importImage } from "../../agent/containerd/mod.ts";
import type { BridgeNetwork } from "../../agent/network/mod.ts";
import { buildBusyboxImage } from "./busybox_image.ts";
import { type Cluster, startCluster } from "./cluster.ts";
import { type ContainerdServer, startContainerd } from "./containerd.ts";
import { startTestNetwork } from "./network.ts";

/** What runs each sandbox under containerd's runc shim. */
export type Oci = "runc" | "runsc";

/** The OCI runtimes the containerd suites run on. */
export const OCI_RUNTIMES: readonly Oci[] = ["runc", "runsc"];

/** What a scene hands its test. */
export interface ContainerdScene {
  readonly cluster: Cluster;
  readonly containerd: ContainerdServer;
  /** A temporary directory of the scene's, removed after. */
  readonly dir: string;
  readonly oci: Oci;
  /** The agent's network (to give a restarted agent's runtime the same one). */
  readonly network: BridgeNetwork;
}

/**
 * Runs `fn` in a fresh scene on `oci`, then removes all of it, whatever
 * happened. `opts.warm` gives the agent warm pools (`--warm IMAGE=N`);
 * `opts.prepared` has it keep that many snapshots (and network namespaces)
 * per image ready for creates the warm pool does not serve.
 */
export async function withContainerdCluster(
  oci: Oci,
  fn: (scene: ContainerdScene) => Promise<void>,
  opts: {
    warm?: Record<string, number>;
    prepared?: Record<string, number>;
    capacity?: number;
  } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_ctrd_scene_" });
  const containerd = await startContainerd();
  let cluster: Cluster | undefined;
  let network: BridgeNetwork | undefined;
  try {
    await importImage(await buildBusyboxImage(dir), { socket: containerd.socket });
    network = await startTestNetwork(join(dir, "net"));
    cluster = await startCluster({
      agents: [{
        id: "ctrd",
        capacity: opts.capacity,
        runtime: new ContainerdRuntime({
          socket: containerd.socket,
          stateDir: join(dir, "state"),
          network,
          ociRuntime: oci,
          warm: opts.warm,
          prepared: opts.prepared,
        }),
      }],
    });
    await fn({ cluster, containerd, dir, oci, network });
  } finally {
    await cluster?.close();
    await network?.teardown();
    await containerd.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** `n` random bytes (crypto.getRandomValues gives at most 64 KiB a call). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(n, at + 65536)));
  }
  return out;
}
