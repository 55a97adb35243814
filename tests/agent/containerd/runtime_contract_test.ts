import { join } from "node:path";
import { ContainerdRuntime, importImage } from "../../../agent/containerd/mod.ts";
import { buildBusyboxImage } from "../../support/busybox_image.ts";
import { startContainerd } from "../../support/containerd.ts";
import { runtimeContract } from "../runtime_contract.ts";
import { ignoreWithout } from "../../support/real_parts.ts";

// runtimeContract() registers its cases with Deno.test(name, fn); for the
// length of that call, registration goes through this wrapper, which ignores
// them where containerd cannot run (see tests/support/real_parts.ts).
const deno = Deno as { test: typeof Deno.test };
const register = deno.test;
const ignore = ignoreWithout("containerd", "root");
deno.test =
  ((name: string, fn: () => Promise<void>) => register({ name, fn, ignore })) as typeof Deno.test;
try {
  // Each case gets a containerd of its own (about 0.3 s to start and import),
  // so that no case can see another's containers and each cleans up whole.
  runtimeContract("ContainerdRuntime", async () => {
    const dir = await Deno.makeTempDir({ prefix: "fsb_containerd_contract_" });
    const logDir = join(dir, "logs");
    await Deno.mkdir(logDir);
    const server = await startContainerd();
    try {
      await importImage(await buildBusyboxImage(dir), { socket: server.socket });
    } catch (err) {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
      throw err;
    }
    const opts = { socket: server.socket, stateDir: join(dir, "state") };
    let runtime = new ContainerdRuntime(opts);
    return {
      runtime,
      image: "busybox",
      logDir,
      tty: true,
      mergedDetachedOutput: true,
      async restart() {
        await runtime.close();
        runtime = new ContainerdRuntime(opts);
        return runtime;
      },
      async cleanup() {
        await runtime.close();
        await server.stop();
        await Deno.remove(dir, { recursive: true });
      },
    };
  });
} finally {
  deno.test = register;
}
