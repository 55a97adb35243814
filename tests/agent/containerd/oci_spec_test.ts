import assert from "node:assert/strict";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { FailedPreconditionError } from "../../../registry/errors.ts";
import {
  buildOciSpec,
  DEFAULT_CAPABILITIES,
  processArgs,
  processEnv,
  processUser,
} from "../../../agent/containerd/oci_spec.ts";

function spec(extra: JsonObject = {}): SandboxSpec {
  return fromJson(SandboxSpecSchema, { sandboxId: "a1", image: "example.com/app:1", ...extra });
}

const image = {
  Entrypoint: ["/entry"],
  Cmd: ["--serve"],
  Env: ["PATH=/bin", "MODE=prod"],
  WorkingDir: "/app",
};
const opts = {
  namespace: "fsb",
  resources: { pids: 1024 },
  netns: { kind: "host" as const },
  hostFiles: ["/etc/resolv.conf"],
};

Deno.test("processArgs() follows Docker: a command drops the image's Cmd, args alone replace it", () => {
  assert.deepEqual(processArgs(spec(), image), ["/entry", "--serve"]);
  assert.deepEqual(processArgs(spec({ args: ["--debug"] }), image), ["/entry", "--debug"]);
  assert.deepEqual(processArgs(spec({ command: ["sh"] }), image), ["sh"]);
  assert.deepEqual(processArgs(spec({ command: ["sh"], args: ["-c", "true"] }), image), [
    "sh",
    "-c",
    "true",
  ]);
  assert.deepEqual(processArgs(spec(), { Cmd: ["sh"], Entrypoint: null }), ["sh"]);
});

Deno.test("processEnv() sets the request's variables over the image's, keeping the image's order", () => {
  assert.deepEqual(processEnv(spec({ envs: { MODE: "dev", EXTRA: "1" } }), image), [
    "PATH=/bin",
    "MODE=dev",
    "EXTRA=1",
  ]);
});

Deno.test("processUser() takes numeric users and root, and refuses names it cannot resolve", () => {
  assert.deepEqual(processUser({}, "i"), { uid: 0, gid: 0 });
  assert.deepEqual(processUser({ User: "root" }, "i"), { uid: 0, gid: 0 });
  assert.deepEqual(processUser({ User: "1000" }, "i"), { uid: 1000, gid: 1000 });
  assert.deepEqual(processUser({ User: "1000:50" }, "i"), { uid: 1000, gid: 50 });
  assert.throws(
    () => processUser({ User: "nginx" }, "example.com/web:1"),
    new FailedPreconditionError(
      'Cannot run image "example.com/web:1" as its user "nginx" is not numeric (uid[:gid])',
    ),
  );
});

Deno.test("buildOciSpec() confines the process, without CAP_NET_RAW, and in --network host shares only the host's network", () => {
  const oci = buildOciSpec(spec({ workingDir: "/work" }), image, {
    ...opts,
    annotations: { "io.kubernetes.cri.sandbox-id": "g" },
  }) as {
    process: {
      cwd: string;
      noNewPrivileges: boolean;
      capabilities: Record<string, string[]>;
      user: unknown;
    };
    linux: {
      namespaces: { type: string }[];
      resources: { pids: { limit: number } };
      cgroupsPath: string;
    };
    mounts: { destination: string; type: string; options: string[] }[];
    annotations: Record<string, string>;
  };
  assert.equal(oci.process.cwd, "/work");
  assert.equal(oci.process.noNewPrivileges, true);
  for (const set of ["bounding", "effective", "permitted"]) {
    assert.deepEqual(oci.process.capabilities[set], DEFAULT_CAPABILITIES);
  }
  assert.ok(!DEFAULT_CAPABILITIES.includes("CAP_SYS_ADMIN"));
  assert.ok(!DEFAULT_CAPABILITIES.includes("CAP_NET_RAW"));
  assert.deepEqual(oci.linux.namespaces.map((n) => n.type).sort(), ["ipc", "mount", "pid", "uts"]);
  assert.equal(oci.linux.resources.pids.limit, 1024);
  assert.equal(oci.linux.cgroupsPath, "/fsb/a1");
  const resolv = oci.mounts.find((m) => m.destination === "/etc/resolv.conf");
  assert.deepEqual([resolv?.type, resolv?.options.includes("ro")], ["bind", true]);
  for (
    const path of ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
  ) {
    assert.ok(oci.mounts.some((m) => m.destination === path), `mounts ${path}`);
  }
  assert.deepEqual(oci.annotations, { "io.kubernetes.cri.sandbox-id": "g" });
});

Deno.test("buildOciSpec() uses the image's working dir, else /", () => {
  const cwd = (config: object) =>
    (buildOciSpec(spec({ command: ["x"] }), config, opts) as { process: { cwd: string } }).process
      .cwd;
  assert.equal(cwd(image), "/app");
  assert.equal(cwd({}), "/");
});

Deno.test("buildOciSpec() refuses an image with no command when none is given", () => {
  assert.throws(
    () => buildOciSpec(spec(), {}, opts),
    new FailedPreconditionError(
      'Cannot create sandbox a1 as image "example.com/app:1" has no command and none was given',
    ),
  );
});

Deno.test("buildOciSpec() joins the network namespace chosen for the sandbox", () => {
  type Ns = { linux: { namespaces: { type: string; path?: string }[] } };
  const joined = buildOciSpec(spec(), image, {
    ...opts,
    netns: { kind: "path", path: "/run/netns/fsb0-0ad10002" },
  }) as Ns;
  assert.deepEqual(joined.linux.namespaces.find((n) => n.type === "network"), {
    type: "network",
    path: "/run/netns/fsb0-0ad10002",
  });
  const fresh = buildOciSpec(spec(), image, { ...opts, netns: { kind: "new" } }) as Ns;
  assert.deepEqual(fresh.linux.namespaces.find((n) => n.type === "network"), { type: "network" });
});

Deno.test("buildOciSpec() turns limits into cgroup settings and carries the seccomp profile", () => {
  const seccomp = { defaultAction: "SCMP_ACT_ERRNO" };
  const oci = buildOciSpec(spec(), image, {
    ...opts,
    resources: { cpuMillis: 500, memoryBytes: 64 * 1024 * 1024, pids: 32 },
    seccomp,
  }) as { linux: { resources: Record<string, unknown>; seccomp: unknown } };
  assert.deepEqual(oci.linux.resources.cpu, { quota: 50_000, period: 100_000 });
  assert.deepEqual(oci.linux.resources.memory, { limit: 64 * 1024 * 1024 });
  assert.deepEqual(oci.linux.resources.pids, { limit: 32 });
  assert.equal(oci.linux.seccomp, seccomp);
  const unlimited = buildOciSpec(spec(), image, opts) as { linux: { resources: object } };
  assert.ok(!("memory" in unlimited.linux.resources) && !("cpu" in unlimited.linux.resources));
});
