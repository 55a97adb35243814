// SandboxFiles on real containerd, on runc and on gVisor: the files contract
// with paths confined to each sandbox's own root (its helper busybox is the
// agent host's, bind-mounted read-only).
import { join } from "node:path";
import { fromJson } from "@bufbuild/protobuf";
import { SandboxSpecSchema } from "../../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { ContainerdRuntime, importImage } from "../../../agent/containerd/mod.ts";
import { buildBusyboxImage } from "../../support/busybox_image.ts";
import { startContainerd } from "../../support/containerd.ts";
import { ignoreWithout } from "../../support/real_parts.ts";
import { filesContract } from "../files_contract.ts";

// filesContract() registers its cases with Deno.test(name, fn); for the
// length of that call, registration goes through this wrapper, which ignores
// them where containerd cannot run (see tests/support/real_parts.ts).
const deno = Deno as { test: typeof Deno.test };
const register = deno.test;
deno.test =
  ((name: string, fn: () => Promise<void>) =>
    register({ name, fn, ignore: ignoreWithout("containerd", "root") })) as typeof Deno.test;
try {
  for (const oci of ["runc", "runsc"] as const) {
    filesContract(`SandboxFiles on ContainerdRuntime (${oci})`, async () => {
      const root = await Deno.makeTempDir({ prefix: "fsb_ctrd_files_" });
      const server = await startContainerd();
      let runtime: ContainerdRuntime | undefined;
      try {
        await importImage(await buildBusyboxImage(root), { socket: server.socket });
        runtime = new ContainerdRuntime({
          socket: server.socket,
          stateDir: join(root, "state"),
          ociRuntime: oci,
        });
        const sandboxId = crypto.randomUUID().replaceAll("-", "");
        await runtime.create(
          fromJson(SandboxSpecSchema, {
            sandboxId,
            image: "busybox",
            command: ["sleep", "600"],
          }),
          { logPath: join(root, `${sandboxId}.log`) },
        );
        const made = runtime;
        return {
          runtime: made,
          sandboxId,
          // A fresh busybox sandbox's /tmp is empty.
          dir: "/tmp",
          confined: true,
          async cleanup() {
            await made.delete(sandboxId, 0);
            await made.close();
            await server.stop();
            await Deno.remove(root, { recursive: true });
          },
        };
      } catch (err) {
        await runtime?.close();
        await server.stop();
        await Deno.remove(root, { recursive: true });
        throw err;
      }
    });
  }
} finally {
  deno.test = register;
}
