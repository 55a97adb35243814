import assert from "node:assert/strict";
import { create, toJson } from "@bufbuild/protobuf";
import {
  Egress,
  FailurePolicy,
  NetworkMode,
  SandboxInfoSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { sandboxJson } from "../../cli/sandbox_json.ts";

const FULL = create(SandboxInfoSchema, {
  sandboxId: "0123456789abcdef0123456789abcdef",
  name: "demo",
  namespace: "default",
  phase: "Running",
  agent: "agent-1",
  endpoints: ["10.0.0.5:8080"],
  image: "docker.io/library/busybox:latest",
  pool: "default-pool",
  command: ["sh", "-c", "echo hi"],
  createdAt: 1_700_000_000n,
  expireTime: 1_700_003_600n,
  failurePolicy: FailurePolicy.AUTO_RECREATE,
  labels: { team: "ci" },
  envs: { A: "1" },
  workingDir: "/tmp",
  exposedPorts: [8080],
  ip: "10.209.0.12",
  runtime: "runsc",
  path: "warm",
  network: { mode: NetworkMode.PRIVATE, egress: Egress.DENY, allowCidrs: ["10.1.0.0/16"] },
  resources: { cpuMillis: 500n, memoryBytes: 64n * 1024n * 1024n },
});

Deno.test("sandboxJson() prints the proto3 JSON mapping with lowerCamelCase names", () => {
  assert.deepEqual(JSON.parse(sandboxJson(FULL)), {
    sandboxId: "0123456789abcdef0123456789abcdef",
    name: "demo",
    namespace: "default",
    phase: "Running",
    agent: "agent-1",
    endpoints: ["10.0.0.5:8080"],
    image: "docker.io/library/busybox:latest",
    pool: "default-pool",
    command: ["sh", "-c", "echo hi"],
    args: [],
    createdAt: "1700000000",
    expireTime: "1700003600",
    failurePolicy: "FAILURE_POLICY_AUTO_RECREATE",
    labels: { team: "ci" },
    message: "",
    envs: { A: "1" },
    workingDir: "/tmp",
    exposedPorts: [8080],
    ip: "10.209.0.12",
    runtime: "runsc",
    path: "warm",
    network: {
      mode: "NETWORK_MODE_PRIVATE",
      egress: "EGRESS_DENY",
      allowCidrs: ["10.1.0.0/16"],
      denyCidrs: [],
    },
    // Limits have explicit presence: pids was not set, so it is not printed.
    resources: { cpuMillis: "500", memoryBytes: "67108864" },
  });
});

Deno.test("sandboxJson() keeps fields that hold their default, so scripts always find them", () => {
  assert.deepEqual(JSON.parse(sandboxJson(create(SandboxInfoSchema, { name: "x" }))), {
    sandboxId: "",
    name: "x",
    namespace: "",
    phase: "",
    agent: "",
    endpoints: [],
    image: "",
    pool: "",
    command: [],
    args: [],
    createdAt: "0",
    expireTime: "0",
    failurePolicy: "FAILURE_POLICY_UNSPECIFIED",
    labels: {},
    message: "",
    envs: {},
    workingDir: "",
    exposedPorts: [],
    ip: "",
    runtime: "",
    path: "",
  });
});

Deno.test("sandboxJson() prints network and resources when set, even when empty, and only then", () => {
  const empty = create(SandboxInfoSchema, { name: "x", network: {}, resources: {} });
  const parsed = JSON.parse(sandboxJson(empty));
  assert.deepEqual(parsed.network, {
    mode: "NETWORK_MODE_UNSPECIFIED",
    egress: "EGRESS_UNSPECIFIED",
    allowCidrs: [],
    denyCidrs: [],
  });
  assert.deepEqual(parsed.resources, {});
  const unset = JSON.parse(sandboxJson(create(SandboxInfoSchema, { name: "x" })));
  assert.ok(!("network" in unset) && !("resources" in unset));
});

Deno.test("sandboxJson() prints enums of network by name, and int64 limits as strings", () => {
  const info = create(SandboxInfoSchema, {
    network: { mode: NetworkMode.NONE, egress: Egress.ALLOW, denyCidrs: ["0.0.0.0/0"] },
    resources: { cpuMillis: 0n, memoryBytes: 2n ** 63n - 1n, pids: -1n },
  });
  const parsed = JSON.parse(sandboxJson(info));
  assert.deepEqual(parsed.network, {
    mode: "NETWORK_MODE_NONE",
    egress: "EGRESS_ALLOW",
    allowCidrs: [],
    denyCidrs: ["0.0.0.0/0"],
  });
  assert.deepEqual(parsed.resources, {
    cpuMillis: "0",
    memoryBytes: "9223372036854775807",
    pids: "-1",
  });
});

Deno.test("sandboxJson() prints a list as an array, an empty one included", () => {
  const other = create(SandboxInfoSchema, { name: "other" });
  const parsed = JSON.parse(sandboxJson([FULL, other]));
  assert.ok(Array.isArray(parsed));
  assert.deepEqual(parsed.map((s: { name: string }) => s.name), ["demo", "other"]);
  assert.equal(sandboxJson([]), "[]\n");
});

Deno.test("sandboxJson() indents by two spaces and ends with a newline", () => {
  const text = sandboxJson(FULL);
  assert.ok(text.startsWith('{\n  "sandboxId": "0123456789abcdef0123456789abcdef",\n'));
  assert.ok(text.endsWith("\n}\n"));
});

Deno.test("sandboxJson() prints what protobuf-es's toJson prints, byte for byte", () => {
  const odd = create(SandboxInfoSchema, {
    name: "ünïcødé-😀",
    labels: { "": "empty key", "10": "ten", "2": "two", ["__proto__"]: "own key" },
    createdAt: -(2n ** 63n),
    expireTime: 2n ** 63n - 1n,
    failurePolicy: 7 as FailurePolicy,
    exposedPorts: [0, 4294967295],
    network: { mode: 9 as NetworkMode, egress: -1 as Egress, allowCidrs: ["", "x"] },
    resources: { pids: 0n },
  });
  const reference = (info: typeof FULL) =>
    toJson(SandboxInfoSchema, info, { alwaysEmitImplicit: true });
  for (const info of [FULL, odd, create(SandboxInfoSchema)]) {
    assert.equal(sandboxJson(info), JSON.stringify(reference(info), null, 2) + "\n");
  }
  assert.equal(
    sandboxJson([FULL, odd]),
    JSON.stringify([FULL, odd].map(reference), null, 2) + "\n",
  );
});
