// SandboxFiles on the process runtime: the contract's cases, with the
// sandbox's paths being the host's (it isolates nothing), so each case works
// in a temporary directory of its own.
import assert from "node:assert/strict";
import { join } from "node:path";
import { fromJson } from "@bufbuild/protobuf";
import { SandboxSpecSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import { LIST_BATCH } from "../../agent/_file_scripts.ts";
import { filesContract } from "./files_contract.ts";

filesContract("SandboxFiles on ProcessRuntime", async () => {
  const root = await Deno.makeTempDir({ prefix: "fsb_files_" });
  const runtime = new ProcessRuntime({ stateDir: join(root, "state") });
  const sandboxId = crypto.randomUUID().replaceAll("-", "");
  const spec = fromJson(SandboxSpecSchema, {
    sandboxId,
    image: "busybox",
    command: ["sleep", "300"],
  });
  await runtime.create(spec, { logPath: join(root, "logs", `${sandboxId}.log`) });
  const dir = join(root, "work");
  await Deno.mkdir(dir);
  return {
    runtime,
    sandboxId,
    dir,
    confined: false,
    async cleanup() {
      await runtime.delete(sandboxId, 0);
      await runtime.close();
      await Deno.remove(root, { recursive: true });
    },
  };
});

Deno.test("The listing helper skips a name gone before its stat and keeps the others exact", async () => {
  // What a directory changing under ListDir looks like to one batch of names:
  // the batch's single stat fails, and each name is then stat'ed alone.
  const dir = await Deno.makeTempDir({ prefix: "fsb_files_" });
  try {
    await Deno.writeTextFile(join(dir, "a\nb"), "1");
    await Deno.symlink("x\ny", join(dir, "l"));
    const busybox = ["/usr/bin/busybox", "/bin/busybox"].find((p) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    });
    assert.ok(busybox !== undefined, "the host has busybox (busybox-static)");
    const out = await new Deno.Command(busybox, {
      args: ["sh", "-c", LIST_BATCH, busybox, "./a\nb", "./gone", "./l"],
      cwd: dir,
    }).output();
    assert.equal(out.code, 0);
    const records = new TextDecoder().decode(out.stdout).split("\0");
    assert.deepEqual(records.length, 5, JSON.stringify(records));
    assert.equal(records[0], "a\nb");
    assert.match(records[1], /^81a4 0 0 1 \d+\n$/);
    assert.equal(records[2], "l");
    assert.match(records[3], /^a1ff 0 0 3 \d+\nx\ny$/);
    assert.equal(records[4], "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
