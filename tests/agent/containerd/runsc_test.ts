import assert from "node:assert/strict";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { OptionsSchema } from "../../../proto/gen/containerd/runc/v1/options_pb.ts";
import { FailedPreconditionError } from "../../../registry/errors.ts";
import {
  DEFAULT_RUNC_ROOT,
  forceDeleteRunsc,
  RUNC_OPTIONS_TYPE_URL,
  runcOptions,
  runscFlags,
  runscNetworkFor,
  runscRoot,
  writeRunscWrapper,
} from "../../../agent/containerd/runsc.ts";

/** A stand-in for runsc: prints its arguments, one a line, then exits with $FAKE_RUNSC_EXIT. */
async function fakeRunsc(dir: string): Promise<string> {
  const path = join(dir, "fake-runsc");
  await Deno.writeTextFile(
    path,
    '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\necho oops >&2\nexit "${FAKE_RUNSC_EXIT:-0}"\n',
  );
  await Deno.chmod(path, 0o755);
  return path;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb-runsc-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("runscFlags() picks ptrace and the host network unless told, extra flags last", () => {
  assert.deepEqual(runscFlags(), ["--platform=ptrace", "--network=host"]);
  assert.deepEqual(
    runscFlags({ platform: "kvm", network: "none", extraFlags: ["--debug", "--debug-log=/x/"] }),
    ["--platform=kvm", "--network=none", "--debug", "--debug-log=/x/"],
  );
});

Deno.test("runscNetworkFor() gives a sandbox without network gVisor's loopback, others the namespace's", () => {
  assert.equal(runscNetworkFor({ kind: "new" }), "none");
  assert.equal(runscNetworkFor({ kind: "path" }), "host");
  assert.equal(runscNetworkFor({ kind: "host" }), "host");
});

Deno.test("writeRunscWrapper() writes an executable script that execs runsc with the flags, then the shim's arguments", async () => {
  await withTempDir(async (dir) => {
    const runsc = await fakeRunsc(dir);
    const path = await writeRunscWrapper(join(dir, "bin"), {
      runscPath: runsc,
      network: "none",
      extraFlags: ["--debug-log=/tmp/a b/"],
    });
    assert.equal(path, join(await Deno.realPath(dir), "bin", path.split("/").at(-1)!));
    assert.match(path, /\/runsc-none-[0-9a-f]{12}$/);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o755);
    const text = await Deno.readTextFile(path);
    assert.ok(text.startsWith("#!/bin/sh\n"));
    assert.ok(
      text.includes(
        `\nexec ${runsc} --platform=ptrace --network=none '--debug-log=/tmp/a b/' "$@"\n`,
      ),
      text,
    );
    // What the shim would run: every argument arrives intact, after the wrapper's flags.
    const out = await new Deno.Command(path, {
      args: ["--root", "/run/containerd/runc/fsb", "create", "--bundle", "/b", "it's"],
      stdout: "piped",
      stderr: "null",
    }).output();
    assert.ok(out.success);
    assert.deepEqual(new TextDecoder().decode(out.stdout).trimEnd().split("\n"), [
      "--platform=ptrace",
      "--network=none",
      "--debug-log=/tmp/a b/",
      "--root",
      "/run/containerd/runc/fsb",
      "create",
      "--bundle",
      "/b",
      "it's",
    ]);
  });
});

Deno.test("writeRunscWrapper() names wrappers by content: same flags, same file; other flags, another", async () => {
  await withTempDir(async (dir) => {
    const runsc = await fakeRunsc(dir);
    const a = await writeRunscWrapper(dir, { runscPath: runsc });
    const again = await writeRunscWrapper(dir, { runscPath: runsc });
    const other = await writeRunscWrapper(dir, { runscPath: runsc, platform: "kvm" });
    assert.equal(again, a);
    assert.notEqual(other, a);
    assert.match(a, /\/runsc-host-[0-9a-f]{12}$/);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    // No temporary files left behind.
    assert.deepEqual(
      names.sort(),
      ["fake-runsc", a.split("/").at(-1), other.split("/").at(-1)].sort(),
    );
  });
});

Deno.test("writeRunscWrapper() refuses a runsc that is not there", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      writeRunscWrapper(dir, { runscPath: join(dir, "nope") }),
      new FailedPreconditionError(
        `Cannot run sandboxes under gVisor as runsc is not at ${
          join(dir, "nope")
        } (Debian's package: runsc)`,
      ),
    );
  });
});

Deno.test("runcOptions() is containerd 1.6's runc options Any: bare type URL, binary name set, round trip", () => {
  const any = runcOptions("/var/lib/fsb/runsc-host-0123456789ab");
  assert.equal(any.$typeName, "google.protobuf.Any");
  assert.equal(any.typeUrl, "containerd.runc.v1.Options");
  assert.equal(any.typeUrl, RUNC_OPTIONS_TYPE_URL);
  const options = fromBinary(OptionsSchema, any.value);
  assert.equal(options.binaryName, "/var/lib/fsb/runsc-host-0123456789ab");
  assert.equal(options.root, "");
  assert.equal(options.systemdCgroup, false);
  // Field 6 (binary_name), wire type 2: the shim's field numbers.
  assert.equal(any.value[0], (6 << 3) | 2);
  assert.equal(fromBinary(OptionsSchema, runcOptions("runsc", { root: "/r" }).value).root, "/r");
});

Deno.test("runscRoot() is where the shim points runsc: ROOT/NAMESPACE", () => {
  assert.equal(DEFAULT_RUNC_ROOT, "/run/containerd/runc");
  assert.equal(runscRoot("fsb"), "/run/containerd/runc/fsb");
  assert.equal(runscRoot("fsb", ""), "/run/containerd/runc/fsb");
  assert.equal(runscRoot("fsb", "/var/run/x"), "/var/run/x/fsb");
});

Deno.test("forceDeleteRunsc() runs runsc --root ROOT delete --force ID and reports its failures", async () => {
  await withTempDir(async (dir) => {
    const recording = join(dir, "recording-runsc");
    await Deno.writeTextFile(recording, `#!/bin/sh\nprintf "%s\\n" "$@" > ${dir}/args\n`);
    await Deno.chmod(recording, 0o755);
    await forceDeleteRunsc("/run/containerd/runc/fsb", "sb-1", { runscPath: recording });
    assert.deepEqual((await Deno.readTextFile(join(dir, "args"))).trimEnd().split("\n"), [
      "--root",
      "/run/containerd/runc/fsb",
      "delete",
      "--force",
      "sb-1",
    ]);
    const failing = join(dir, "failing-runsc");
    await Deno.writeTextFile(failing, '#!/bin/sh\necho "it broke" >&2\nexit 3\n');
    await Deno.chmod(failing, 0o755);
    await assert.rejects(
      forceDeleteRunsc("/r/fsb", "sb-1", { runscPath: failing }),
      new Error("runsc --root /r/fsb delete --force sb-1 failed (exit 3): it broke"),
    );
    const slow = join(dir, "slow-runsc");
    await Deno.writeTextFile(slow, "#!/bin/sh\nexec sleep 5\n");
    await Deno.chmod(slow, 0o755);
    await assert.rejects(
      forceDeleteRunsc("/r/fsb", "sb-1", { runscPath: slow, timeoutMs: 100 }),
      /runsc --root \/r\/fsb delete --force sb-1 took over 100 ms/,
    );
  });
});
