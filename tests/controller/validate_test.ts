import assert from "node:assert/strict";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { InvalidArgumentError } from "../../registry/mod.ts";
import { type SandboxSpec, SandboxSpecSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import {
  ConsistencyMode,
  CreateSandboxRequestSchema,
  Egress,
  FailurePolicy,
  NetworkMode,
  UpdateSandboxRequestSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import {
  checkDnsLabel,
  checkLabelCount,
  checkLabels,
  checkMergedLabels,
  DEFAULT_NAMESPACE,
  DEFAULT_POOL,
  failurePolicyName,
  MAX_SPEC_BYTES,
  newSandboxId,
  sameRequest,
  utf8Bytes,
  validateCreate,
  validateName,
  validateUpdate,
} from "../../controller/_validate.ts";

// A fixed instant, so that every expiry boundary below is exact.
const NOW_MS = 1_700_000_000_500;
const NOW_SEC = 1_700_000_000;
const DNS_RULE =
  "must be a DNS-1123 label (lowercase a-z, 0-9 and '-', starting and ending alphanumeric)";
const LABEL_KEY_RULE =
  "key name must be 1-63 characters of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric";
const LABEL_VALUE_RULE =
  "value must be at most 63 characters of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric";
const LABEL_PREFIX_RULE = "key prefix must be a DNS subdomain (e.g. example.com)";
const KIB = 1024;

/** `n` distinct well-formed labels. */
function manyLabels(n: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: n }, (_, i) => [`l${i}`, "v"]));
}

/** `n` distinct well-formed env entries, each `E<i>=x`. */
function manyEnvs(n: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: n }, (_, i) => [`E${i}`, "x"]));
}

type CreateInit = MessageInitShape<typeof CreateSandboxRequestSchema>;
type UpdateInit = MessageInitShape<typeof UpdateSandboxRequestSchema>;

function validCreate(init: CreateInit, defaultMode: "fast" | "strong" = "fast") {
  return validateCreate(create(CreateSandboxRequestSchema, init), {
    nowMs: NOW_MS,
    defaultMode,
  });
}

function validUpdate(init: UpdateInit) {
  return validateUpdate(create(UpdateSandboxRequestSchema, init), { nowMs: NOW_MS });
}

/** Asserts that `fn` throws an InvalidArgumentError for `field` with exactly `rule`. */
function throwsInvalid(fn: () => unknown, field: string, rule: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${err}`);
    assert.equal(err.field, field);
    assert.equal(err.rule, rule);
    assert.equal(err.message, `Invalid ${field}: ${rule}`);
    assert.equal(err.status, "INVALID_ARGUMENT");
    return true;
  });
}

const BASE: CreateInit = { name: "box", image: "busybox", command: ["sleep", "60"] };

Deno.test("validateCreate() fills in the defaults", () => {
  const { spec, mode } = validCreate({ image: "busybox" });
  assert.match(spec.name, /^sb-[a-z0-9]{8}$/);
  assert.equal(spec.namespace, DEFAULT_NAMESPACE);
  assert.equal(spec.namespace, "default");
  assert.equal(spec.pool, DEFAULT_POOL);
  assert.equal(spec.pool, "default-pool");
  assert.equal(spec.failurePolicy, "MANUAL");
  assert.match(spec.sandboxId, /^[0-9a-f]{32}$/);
  assert.equal(spec.expireTime, 0n);
  assert.equal(spec.createdAt, BigInt(NOW_SEC), "created_at is the clock's second, rounded down");
  assert.equal(spec.workingDir, "");
  assert.deepEqual(spec.exposedPorts, []);
  assert.deepEqual(spec.labels, {});
  assert.equal(mode, "fast");
});

Deno.test("validateCreate() generates a fresh name and sandbox id on every call", () => {
  const names = new Set<string>();
  const ids = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const { spec } = validCreate({ image: "busybox" });
    names.add(spec.name);
    ids.add(spec.sandboxId);
  }
  assert.equal(ids.size, 50);
  // 36^8 names: a collision among 50 would mean the generator is broken.
  assert.equal(names.size, 50);
});

Deno.test("validateCreate() keeps what the request sets", () => {
  const { spec } = validCreate({
    name: "web",
    namespace: "team-a",
    pool: "gpu",
    image: `ghcr.io/acme/tool@sha256:${"ab".repeat(32)}`,
    command: ["sh", "-c"],
    args: ["echo hi"],
    envs: { _A1: "x", PATH: "/bin" },
    workingDir: "/",
    exposedPorts: [1, 65535],
    expireTime: BigInt(NOW_SEC + 1),
    failurePolicy: FailurePolicy.AUTO_RECREATE,
    labels: { "example.com/app": "web", tier: "" },
  });
  assert.equal(spec.name, "web");
  assert.equal(spec.namespace, "team-a");
  assert.equal(spec.pool, "gpu");
  assert.equal(spec.image, `ghcr.io/acme/tool@sha256:${"ab".repeat(32)}`);
  assert.deepEqual(spec.command, ["sh", "-c"]);
  assert.deepEqual(spec.args, ["echo hi"]);
  assert.deepEqual(spec.envs, { _A1: "x", PATH: "/bin" });
  assert.equal(spec.workingDir, "/");
  assert.deepEqual(spec.exposedPorts, [1, 65535]);
  assert.equal(spec.expireTime, BigInt(NOW_SEC + 1));
  assert.equal(spec.failurePolicy, "AUTO_RECREATE");
  assert.deepEqual(spec.labels, { "example.com/app": "web", tier: "" });
});

Deno.test("validateCreate() takes the mode from the request, else the default", () => {
  assert.equal(validCreate(BASE, "strong").mode, "strong");
  assert.equal(
    validCreate({ ...BASE, consistencyMode: ConsistencyMode.FAST }, "strong").mode,
    "fast",
  );
  assert.equal(validCreate({ ...BASE, consistencyMode: ConsistencyMode.STRONG }).mode, "strong");
  assert.equal(
    validCreate({ ...BASE, failurePolicy: FailurePolicy.MANUAL }).spec.failurePolicy,
    "MANUAL",
  );
});

Deno.test("validateCreate() accepts a 63-character name and the edges of every range", () => {
  const name = "a".repeat(63);
  assert.equal(validCreate({ ...BASE, name }).spec.name, name);
  assert.equal(validCreate({ ...BASE, name: "0" }).spec.name, "0");
  assert.equal(validCreate({ ...BASE, image: "a".repeat(512) }).spec.image.length, 512);
  assert.deepEqual(validCreate({ ...BASE, exposedPorts: [65535, 1] }).spec.exposedPorts, [
    65535,
    1,
  ]);
  assert.equal(validCreate({ ...BASE, expireTime: 0n }).spec.expireTime, 0n);
  assert.deepEqual(
    validCreate({ ...BASE, labels: { ["k".repeat(63)]: "v".repeat(63) } }).spec.labels,
    { ["k".repeat(63)]: "v".repeat(63) },
  );
});

/** Each rule of validateCreate, with the field it must name and the exact rule text. */
const CREATE_RULES: { what: string; req: CreateInit; field: string; rule: string }[] = [
  { what: "an empty image", req: { ...BASE, image: "" }, field: "image", rule: "is required" },
  {
    what: "an image with a space",
    req: { ...BASE, image: "busy box" },
    field: "image",
    rule: 'must be an image reference like busybox:1.36, got "busy box"',
  },
  {
    what: "an image starting with '-'",
    req: { ...BASE, image: "-busybox" },
    field: "image",
    rule: 'must be an image reference like busybox:1.36, got "-busybox"',
  },
  {
    what: "an image of 513 characters",
    req: { ...BASE, image: "a".repeat(513) },
    field: "image",
    rule: "must be at most 512 characters, got 513",
  },
  {
    what: "an image of 10 MiB (not quoted back)",
    req: { ...BASE, image: "a".repeat(10 * KIB * KIB) },
    field: "image",
    rule: `must be at most 512 characters, got ${10 * KIB * KIB}`,
  },
  {
    what: "an uppercase name",
    req: { ...BASE, name: "Box" },
    field: "name",
    rule: `${DNS_RULE}, got "Box"`,
  },
  {
    what: "a name of 64 characters",
    req: { ...BASE, name: "a".repeat(64) },
    field: "name",
    rule: "must be at most 63 characters, got 64",
  },
  {
    what: "a name starting with '-'",
    req: { ...BASE, name: "-box" },
    field: "name",
    rule: `${DNS_RULE}, got "-box"`,
  },
  {
    what: "a name ending with '-'",
    req: { ...BASE, name: "box-" },
    field: "name",
    rule: `${DNS_RULE}, got "box-"`,
  },
  {
    what: "a name with a dot",
    req: { ...BASE, name: "a.b" },
    field: "name",
    rule: `${DNS_RULE}, got "a.b"`,
  },
  {
    what: "a bad namespace",
    req: { ...BASE, namespace: "Team_A" },
    field: "namespace",
    rule: `${DNS_RULE}, got "Team_A"`,
  },
  {
    what: "a bad pool",
    req: { ...BASE, pool: "gpu pool" },
    field: "pool",
    rule: `${DNS_RULE}, got "gpu pool"`,
  },
  {
    what: "port 0",
    req: { ...BASE, exposedPorts: [0] },
    field: "exposed_ports[0]",
    rule: "must be within 1..65535, got 0",
  },
  {
    what: "port 70000",
    req: { ...BASE, exposedPorts: [8080, 70000] },
    field: "exposed_ports[1]",
    rule: "must be within 1..65535, got 70000",
  },
  {
    what: "a repeated port",
    req: { ...BASE, exposedPorts: [8080, 9090, 8080] },
    field: "exposed_ports[2]",
    rule: "repeats port 8080",
  },
  {
    what: "an unknown consistency mode",
    req: { ...BASE, consistencyMode: 7 as ConsistencyMode },
    field: "consistency_mode",
    rule: "must be FAST or STRONG, got 7",
  },
  {
    what: "an unknown failure policy",
    req: { ...BASE, failurePolicy: 9 as FailurePolicy },
    field: "failure_policy",
    rule: "must be MANUAL or AUTO_RECREATE, got 9",
  },
  {
    what: "an expire time in the past",
    req: { ...BASE, expireTime: BigInt(NOW_SEC - 1) },
    field: "expire_time",
    rule: `must be in the future (now is ${NOW_SEC}), got ${NOW_SEC - 1}`,
  },
  {
    what: "an expire time of exactly now",
    req: { ...BASE, expireTime: BigInt(NOW_SEC) },
    field: "expire_time",
    rule: `must be in the future (now is ${NOW_SEC}), got ${NOW_SEC}`,
  },
  {
    what: "a negative expire time",
    req: { ...BASE, expireTime: -5n },
    field: "expire_time",
    rule: "must be unix seconds or 0 for never, got -5",
  },
  {
    what: "a label key with a space",
    req: { ...BASE, labels: { "bad key": "v" } },
    field: 'labels["bad key"]',
    rule: LABEL_KEY_RULE,
  },
  {
    what: "an empty label key",
    req: { ...BASE, labels: { "": "v" } },
    field: 'labels[""]',
    rule: LABEL_KEY_RULE,
  },
  {
    what: "a label key of 64 characters",
    req: { ...BASE, labels: { ["k".repeat(64)]: "v" } },
    field: `labels["${"k".repeat(64)}"]`,
    rule: LABEL_KEY_RULE,
  },
  {
    what: "a label key with an uppercase prefix",
    req: { ...BASE, labels: { "Example.com/app": "v" } },
    field: 'labels["Example.com/app"]',
    rule: LABEL_PREFIX_RULE,
  },
  {
    what: "a label key with an empty prefix",
    req: { ...BASE, labels: { "/app": "v" } },
    field: 'labels["/app"]',
    rule: LABEL_PREFIX_RULE,
  },
  {
    what: "a label key with a prefix and no name",
    req: { ...BASE, labels: { "example.com/": "v" } },
    field: 'labels["example.com/"]',
    rule: LABEL_KEY_RULE,
  },
  {
    what: "a label value with a space",
    req: { ...BASE, labels: { app: "has space" } },
    field: 'labels["app"]',
    rule: LABEL_VALUE_RULE,
  },
  {
    what: "a label value of 64 characters",
    req: { ...BASE, labels: { app: "v".repeat(64) } },
    field: 'labels["app"]',
    rule: LABEL_VALUE_RULE,
  },
  {
    what: "a label value starting with '-'",
    req: { ...BASE, labels: { app: "-v" } },
    field: 'labels["app"]',
    rule: LABEL_VALUE_RULE,
  },
  {
    what: "an env name starting with a digit",
    req: { ...BASE, envs: { "1ABC": "x" } },
    field: 'envs["1ABC"]',
    rule: "name must match [A-Za-z_][A-Za-z0-9_]*",
  },
  {
    what: "an env name with '-'",
    req: { ...BASE, envs: { "A-B": "x" } },
    field: 'envs["A-B"]',
    rule: "name must match [A-Za-z_][A-Za-z0-9_]*",
  },
  {
    what: "an empty env name",
    req: { ...BASE, envs: { "": "x" } },
    field: 'envs[""]',
    rule: "name must match [A-Za-z_][A-Za-z0-9_]*",
  },
  {
    what: "an env value with a NUL byte",
    req: { ...BASE, envs: { A: "x\0y" } },
    field: 'envs["A"]',
    rule: "must not contain NUL bytes",
  },
  {
    what: "a command with a NUL byte",
    req: { ...BASE, command: ["sh", "-c\0"] },
    field: "command[1]",
    rule: "must not contain NUL bytes",
  },
  {
    what: "an argument with a NUL byte",
    req: { ...BASE, args: ["a\0"] },
    field: "args[0]",
    rule: "must not contain NUL bytes",
  },
  {
    what: "a relative working dir",
    req: { ...BASE, workingDir: "tmp" },
    field: "working_dir",
    rule: 'must be an absolute path, got "tmp"',
  },
  {
    what: "a working dir with a NUL byte",
    req: { ...BASE, workingDir: "/tmp\0" },
    field: "working_dir",
    rule: "must not contain NUL bytes",
  },
  {
    what: "a deny CIDR that does not parse",
    req: { ...BASE, network: { denyCidrs: ["10.0.0.0/8", "10.0.0.0/33"] } },
    field: "network.deny_cidrs[1]",
    rule: 'must be an IPv4 CIDR like 10.0.0.0/8, got "10.0.0.0/33"',
  },
  {
    what: "an allow CIDR that is not IPv4",
    req: { ...BASE, network: { allowCidrs: ["fd00::/8"] } },
    field: "network.allow_cidrs[0]",
    rule: 'must be an IPv4 CIDR like 10.0.0.0/8, got "fd00::/8"',
  },
  {
    what: "an unknown network mode",
    req: { ...BASE, network: { mode: 7 as NetworkMode } },
    field: "network.mode",
    rule: "must be PRIVATE or NONE, got 7",
  },
  {
    what: "egress rules on a sandbox with no network",
    req: { ...BASE, network: { mode: NetworkMode.NONE, egress: Egress.DENY } },
    field: "network.mode",
    rule: "NONE gives only loopback, so it takes no egress, allow_cidrs or deny_cidrs",
  },
  {
    what: "65 labels",
    req: { ...BASE, labels: manyLabels(65) },
    field: "labels",
    rule: "must hold at most 64 labels, got 65",
  },
  {
    what: "65 labels, one malformed (the count comes first)",
    req: { ...BASE, labels: { ...manyLabels(64), "bad key": "v" } },
    field: "labels",
    rule: "must hold at most 64 labels, got 65",
  },
  {
    what: "130,000 labels",
    req: { ...BASE, labels: manyLabels(130_000) },
    field: "labels",
    rule: "must hold at most 64 labels, got 130000",
  },
  {
    what: "a label key of 100 KiB with a bad value (the key is quoted clipped)",
    req: { ...BASE, labels: { ["k".repeat(100 * KIB)]: "a b" } },
    field: `labels["${"k".repeat(64)}..."]`,
    rule: LABEL_KEY_RULE,
  },
  {
    what: "257 env entries",
    req: { ...BASE, envs: manyEnvs(257) },
    field: "envs",
    rule: "must hold at most 256 entries, got 257",
  },
  {
    what: "257 env entries, one malformed (the count comes first)",
    req: { ...BASE, envs: { ...manyEnvs(256), "1BAD": "x" } },
    field: "envs",
    rule: "must hold at most 256 entries, got 257",
  },
  {
    what: "128 KiB + 1 byte of env in one value",
    req: { ...BASE, envs: { A: "x".repeat(128 * KIB) } },
    field: "envs",
    rule: "must total at most 131072 bytes (128 KiB) of names and values, got 131073",
  },
  {
    what: "128 KiB + 1 byte of env counting names",
    req: { ...BASE, envs: { ABCD: "x".repeat(64 * KIB - 4), EFGH: "y".repeat(64 * KIB - 3) } },
    field: "envs",
    rule: "must total at most 131072 bytes (128 KiB) of names and values, got 131073",
  },
  {
    what: "64 Ki two-byte characters of env (bytes, not characters)",
    req: { ...BASE, envs: { A: "é".repeat(64 * KIB) } },
    field: "envs",
    rule: "must total at most 131072 bytes (128 KiB) of names and values, got 131073",
  },
  {
    what: "an env name of 100 KiB that breaks the rule (quoted clipped)",
    req: { ...BASE, envs: { ["A-".repeat(50 * KIB)]: "x" } },
    field: `envs["${"A-".repeat(32)}..."]`,
    rule: "name must match [A-Za-z_][A-Za-z0-9_]*",
  },
  {
    what: "257 command entries",
    req: { ...BASE, command: Array(257).fill("x"), args: [] },
    field: "command and args",
    rule: "must hold at most 256 entries in all, got 257",
  },
  {
    what: "257 command and args entries together",
    req: { ...BASE, command: Array(200).fill("x"), args: Array(57).fill("y") },
    field: "command and args",
    rule: "must hold at most 256 entries in all, got 257",
  },
  {
    what: "257 args, one with a NUL byte (the count comes first)",
    req: { ...BASE, command: [], args: [...Array(256).fill("y"), "\0"] },
    field: "command and args",
    rule: "must hold at most 256 entries in all, got 257",
  },
  {
    what: "128 KiB + 1 byte of command and args together",
    req: { ...BASE, command: ["sh", "-c"], args: ["x".repeat(128 * KIB - 3)] },
    field: "command and args",
    rule: "must total at most 131072 bytes (128 KiB) in all, got 131073",
  },
  {
    what: "128 KiB + 1 byte of args in three-byte characters (43,693 characters)",
    req: { ...BASE, command: ["abc"], args: ["€".repeat(43_690)] },
    field: "command and args",
    rule: "must total at most 131072 bytes (128 KiB) in all, got 131073",
  },
  {
    what: "a working dir of 4097 bytes",
    req: { ...BASE, workingDir: "/" + "d".repeat(4096) },
    field: "working_dir",
    rule: "must be at most 4096 bytes, got 4097",
  },
  {
    what: "a working dir of 2049 characters and 4097 bytes",
    req: { ...BASE, workingDir: "/" + "é".repeat(2048) },
    field: "working_dir",
    rule: "must be at most 4096 bytes, got 4097",
  },
  {
    what: "a long relative working dir (quoted clipped)",
    req: { ...BASE, workingDir: "w".repeat(4000) },
    field: "working_dir",
    rule: `must be an absolute path, got "${"w".repeat(64)}..."`,
  },
  {
    what: "65 exposed ports",
    req: { ...BASE, exposedPorts: Array.from({ length: 65 }, (_, i) => 8000 + i) },
    field: "exposed_ports",
    rule: "must hold at most 64 ports, got 65",
  },
  {
    what: "65 allow CIDRs",
    req: { ...BASE, network: { allowCidrs: Array(65).fill("10.0.0.0/8") } },
    field: "network.allow_cidrs",
    rule: "must hold at most 64 CIDRs, got 65",
  },
  {
    what: "memory below 4 MiB",
    req: { ...BASE, resources: { memoryBytes: 4n * 1024n * 1024n - 1n } },
    field: "resources.memory_bytes",
    rule: "must be at least 4194304 (4 MiB), got 4194303",
  },
  {
    what: "zero CPUs",
    req: { ...BASE, resources: { cpuMillis: 0n } },
    field: "resources.cpu_millis",
    rule: "must be at least 10 (1000 = one CPU), got 0",
  },
  {
    what: "negative CPUs",
    req: { ...BASE, resources: { cpuMillis: -500n } },
    field: "resources.cpu_millis",
    rule: "must be at least 10 (1000 = one CPU), got -500",
  },
  {
    what: "zero processes",
    req: { ...BASE, resources: { pids: 0n } },
    field: "resources.pids",
    rule: "must be from 1 to 4194304, got 0",
  },
];

for (const c of CREATE_RULES) {
  Deno.test(`validateCreate() rejects ${c.what}, naming ${c.field}`, () => {
    throwsInvalid(() => validCreate(c.req), c.field, c.rule);
  });
}

Deno.test("validateUpdate() leaves unset fields undefined and defaults the namespace", () => {
  assert.deepEqual(validUpdate({ name: "box" }), {
    name: "box",
    namespace: "default",
    expireTime: undefined,
    failurePolicy: undefined,
    labels: {},
    reset: false,
  });
});

Deno.test("validateUpdate() takes expiry, policy, labels and reset", () => {
  assert.deepEqual(
    validUpdate({
      name: "box",
      namespace: "team-a",
      expireTime: BigInt(NOW_SEC + 1),
      failurePolicy: FailurePolicy.AUTO_RECREATE,
      labels: { a: "1" },
      reset: true,
    }),
    {
      name: "box",
      namespace: "team-a",
      expireTime: NOW_SEC + 1,
      failurePolicy: "AUTO_RECREATE",
      labels: { a: "1" },
      reset: true,
    },
  );
  assert.equal(validUpdate({ name: "box", expireTime: 0n }).expireTime, 0, "0 clears the expiry");
  assert.equal(
    validUpdate({ name: "box", failurePolicy: FailurePolicy.MANUAL }).failurePolicy,
    "MANUAL",
  );
});

const UPDATE_RULES: { what: string; req: UpdateInit; field: string; rule: string }[] = [
  { what: "a missing name", req: { name: "" }, field: "name", rule: "is required" },
  {
    what: "an uppercase name",
    req: { name: "Box" },
    field: "name",
    rule: `${DNS_RULE}, got "Box"`,
  },
  {
    what: "a bad namespace",
    req: { name: "box", namespace: "-ns" },
    field: "namespace",
    rule: `${DNS_RULE}, got "-ns"`,
  },
  {
    what: "an expire time in the past",
    req: { name: "box", expireTime: BigInt(NOW_SEC - 1) },
    field: "expire_time",
    rule: `must be in the future (now is ${NOW_SEC}), got ${NOW_SEC - 1}`,
  },
  {
    what: "a negative expire time",
    req: { name: "box", expireTime: -1n },
    field: "expire_time",
    rule: "must be unix seconds or 0 for never, got -1",
  },
  {
    what: "an unknown failure policy",
    req: { name: "box", failurePolicy: 9 as FailurePolicy },
    field: "failure_policy",
    rule: "must be MANUAL or AUTO_RECREATE, got 9",
  },
  {
    what: "a malformed label key",
    req: { name: "box", labels: { ok: "1", "bad key": "x" } },
    field: 'labels["bad key"]',
    rule: LABEL_KEY_RULE,
  },
  {
    what: "a malformed label value",
    req: { name: "box", labels: { app: "a b" } },
    field: 'labels["app"]',
    rule: LABEL_VALUE_RULE,
  },
  {
    what: "65 labels",
    req: { name: "box", labels: manyLabels(65) },
    field: "labels",
    rule: "must hold at most 64 labels, got 65",
  },
  {
    what: "130,000 labels",
    req: { name: "box", labels: manyLabels(130_000) },
    field: "labels",
    rule: "must hold at most 64 labels, got 130000",
  },
];

for (const c of UPDATE_RULES) {
  Deno.test(`validateUpdate() rejects ${c.what}, naming ${c.field}`, () => {
    throwsInvalid(() => validUpdate(c.req), c.field, c.rule);
  });
}

Deno.test("validateName() defaults the namespace and checks both parts", () => {
  assert.deepEqual(validateName({ name: "box", namespace: "" }), {
    name: "box",
    namespace: "default",
  });
  assert.deepEqual(validateName({ name: "box", namespace: "ns" }), {
    name: "box",
    namespace: "ns",
  });
  throwsInvalid(() => validateName({ name: "", namespace: "" }), "name", "is required");
  throwsInvalid(
    () => validateName({ name: "b_x", namespace: "" }),
    "name",
    `${DNS_RULE}, got "b_x"`,
  );
  throwsInvalid(
    () => validateName({ name: "box", namespace: "N" }),
    "namespace",
    `${DNS_RULE}, got "N"`,
  );
});

Deno.test("checkDnsLabel() names the field it is given", () => {
  checkDnsLabel("pool", "a-0");
  throwsInvalid(() => checkDnsLabel("pool", ""), "pool", `${DNS_RULE}, got ""`);
  throwsInvalid(
    () => checkDnsLabel("pool", "p".repeat(100)),
    "pool",
    "must be at most 63 characters, got 100",
  );
});

Deno.test("validateCreate() rejects a port that is not an integer, naming its index", () => {
  throwsInvalid(
    () => validCreate({ ...BASE, exposedPorts: [80, 1.5] }),
    "exposed_ports[1]",
    "must be an integer, got 1.5",
  );
  throwsInvalid(
    () => validCreate({ ...BASE, exposedPorts: [80, 80] }),
    "exposed_ports[1]",
    "repeats port 80",
  );
});

Deno.test("checkLabels() accepts a prefixed key and an empty value", () => {
  checkLabels({ "fsb.io/team": "", "a.b-c_d": "A.b-C_d", x: "y" });
  throwsInvalid(
    () => checkLabels({ [`${"d".repeat(254)}/x`]: "v" }),
    `labels["${"d".repeat(64)}..."]`,
    LABEL_PREFIX_RULE,
  );
  throwsInvalid(
    () => checkLabels({ [`${"d".repeat(62)}/x`]: "v", "a/b/c": "v" }),
    'labels["a/b/c"]',
    LABEL_KEY_RULE,
  );
  throwsInvalid(() => checkLabels({ "a/b/c": "v" }), 'labels["a/b/c"]', LABEL_KEY_RULE);
});

Deno.test("failurePolicyName() maps the enum and names the field of an unknown value", () => {
  assert.equal(failurePolicyName(FailurePolicy.UNSPECIFIED, "f"), undefined);
  assert.equal(failurePolicyName(FailurePolicy.MANUAL, "f"), "MANUAL");
  assert.equal(failurePolicyName(FailurePolicy.AUTO_RECREATE, "f"), "AUTO_RECREATE");
  throwsInvalid(
    () => failurePolicyName(3 as FailurePolicy, "spec.failure_policy"),
    "spec.failure_policy",
    "must be MANUAL or AUTO_RECREATE, got 3",
  );
});

Deno.test("newSandboxId() returns 32 hex characters, fresh each time", () => {
  const ids = new Set(Array.from({ length: 100 }, () => newSandboxId()));
  assert.equal(ids.size, 100);
  for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
});

function spec(init: MessageInitShape<typeof SandboxSpecSchema> = {}): SandboxSpec {
  return create(SandboxSpecSchema, {
    sandboxId: "0".repeat(32),
    name: "box",
    namespace: "default",
    pool: "default-pool",
    image: "busybox",
    command: ["sh", "-c"],
    args: ["sleep 60"],
    envs: { A: "1", B: "2" },
    workingDir: "/tmp",
    exposedPorts: [80, 443],
    expireTime: 100n,
    failurePolicy: "MANUAL",
    labels: { team: "a", tier: "web" },
    createdAt: 1n,
    ...init,
  });
}

Deno.test("sameRequest() ignores the sandbox id, the creation time and map order", () => {
  assert.equal(sameRequest(spec(), spec()), true);
  assert.equal(
    sameRequest(
      spec(),
      spec({
        sandboxId: "f".repeat(32),
        createdAt: 999n,
        envs: { B: "2", A: "1" },
        labels: { tier: "web", team: "a" },
      }),
    ),
    true,
  );
});

Deno.test("sameRequest() tells apart a change in any field the user set", () => {
  const changes: [string, MessageInitShape<typeof SandboxSpecSchema>][] = [
    ["image", { image: "alpine" }],
    ["pool", { pool: "gpu" }],
    ["working dir", { workingDir: "/" }],
    ["expiry", { expireTime: 101n }],
    ["failure policy", { failurePolicy: "AUTO_RECREATE" }],
    ["command", { command: ["sh"] }],
    ["command order", { command: ["-c", "sh"] }],
    ["command split differently from args", { command: ["sh", "-c", "sleep 60"], args: [] }],
    ["args", { args: ["sleep 61"] }],
    ["ports", { exposedPorts: [80] }],
    ["an env value", { envs: { A: "1", B: "3" } }],
    ["an env name", { envs: { A: "1", C: "2" } }],
    ["one env more", { envs: { A: "1", B: "2", C: "3" } }],
    ["a label value", { labels: { team: "b", tier: "web" } }],
    ["a label key", { labels: { team: "a", role: "web" } }],
    ["one label fewer", { labels: { team: "a" } }],
  ];
  for (const [what, change] of changes) {
    assert.equal(sameRequest(spec(), spec(change)), false, what);
    assert.equal(sameRequest(spec(change), spec()), false, `${what} (swapped)`);
  }
});

Deno.test({
  name: "validateCreate() rejects image references that break the reference grammar",
  fn: () => {
    for (
      const image of [
        "busybox:", // empty tag
        "Busybox", // uppercase repository
        "library//busybox", // empty path component
        "busybox/", // trailing slash
        "busybox@", // empty digest
        "busybox:1:2", // two tags
        "busybox@sha256:zz", // digest that is not hex
      ]
    ) {
      throwsInvalid(
        () => validCreate({ ...BASE, image }),
        "image",
        `must be an image reference like busybox:1.36, got "${image}"`,
      );
    }
  },
});

Deno.test({
  name: "validateCreate() quotes an out-of-range expire time as it was sent",
  fn: () => {
    throwsInvalid(
      () => validCreate({ ...BASE, expireTime: 9223372036854775807n }),
      "expire_time",
      "must be unix seconds or 0 for never, got 9223372036854775807",
    );
  },
});

Deno.test("validateCreate() keeps the network policy and limits in the spec, and sameRequest() tells them apart", () => {
  const network = { egress: Egress.DENY, allowCidrs: ["10.1.0.0/16"] };
  const resources = { memoryBytes: 64n * 1024n * 1024n, pids: 32n };
  const a = validCreate({ ...BASE, network, resources }).spec;
  assert.equal(a.network?.egress, 2);
  assert.deepEqual(a.network?.allowCidrs, ["10.1.0.0/16"]);
  assert.equal(a.resources?.memoryBytes, 64n * 1024n * 1024n);
  assert.equal(a.resources?.cpuMillis, undefined);
  assert.ok(sameRequest(a, validCreate({ ...BASE, network, resources }).spec));
  assert.ok(!sameRequest(a, validCreate({ ...BASE, network, resources: { pids: 32n } }).spec));
  assert.ok(!sameRequest(a, validCreate({ ...BASE, resources }).spec));
});

Deno.test("validateCreate() accepts every bound exactly", () => {
  const labels = manyLabels(64);
  assert.equal(Object.keys(validCreate({ ...BASE, labels }).spec.labels).length, 64);
  // 256 entries of exactly 128 KiB: names "E000".."E255" and 508-byte values.
  const envs = Object.fromEntries(
    Array.from({ length: 256 }, (_, i) => [`E${String(i).padStart(3, "0")}`, "é".repeat(254)]),
  );
  assert.equal(Object.keys(validCreate({ ...BASE, envs }).spec.envs).length, 256);
  // 256 entries of exactly 128 KiB, split between command and args.
  const command = Array(100).fill("c".repeat(512));
  const args = Array(156).fill("a".repeat(512));
  const argv = validCreate({ ...BASE, command, args }).spec;
  assert.equal(argv.command.length + argv.args.length, 256);
  const workingDir = "/" + "d".repeat(4095);
  assert.equal(validCreate({ ...BASE, workingDir }).spec.workingDir, workingDir);
  const exposedPorts = Array.from({ length: 64 }, (_, i) => 65535 - i);
  assert.deepEqual(validCreate({ ...BASE, exposedPorts }).spec.exposedPorts, exposedPorts);
});

Deno.test("utf8Bytes() counts what protobuf encodes", () => {
  const enc = new TextEncoder();
  for (
    const text of [
      "",
      "abc",
      "é",
      "€",
      "😀",
      "a😀é€",
      "\ud800", // a lone high surrogate: U+FFFD, 3 bytes
      "\udc00x", // a lone low surrogate
      "\ud800\ud800\udc00", // a lone one, then a pair
      "x\ud83d", // a high surrogate at the end
    ]
  ) {
    assert.equal(utf8Bytes(text), enc.encode(text).length, JSON.stringify(text));
  }
});

Deno.test("checkLabelCount() names the field it is given and allows 64", () => {
  checkLabelCount("labels", 0);
  checkLabelCount("labels", 64);
  throwsInvalid(
    () => checkLabelCount("labels", 65),
    "labels",
    "must hold at most 64 labels, got 65",
  );
  throwsInvalid(
    () => checkLabelCount("spec.labels", 1000),
    "spec.labels",
    "must hold at most 64 labels, got 1000",
  );
});

Deno.test("checkMergedLabels() counts the labels an upsert leaves, before it is applied", () => {
  const current = manyLabels(60);
  // Overwriting existing keys adds nothing.
  checkMergedLabels(current, manyLabels(60));
  checkMergedLabels(current, { ...manyLabels(10), a: "1", b: "2", c: "3", d: "4" });
  checkMergedLabels({}, manyLabels(64));
  throwsInvalid(
    () => checkMergedLabels(current, { l0: "x", a: "1", b: "2", c: "3", d: "4", e: "5" }),
    "labels",
    "must hold at most 64 labels, got 65 once merged with the sandbox's 60",
  );
  throwsInvalid(
    () => checkMergedLabels(manyLabels(64), { new: "1" }),
    "labels",
    "must hold at most 64 labels, got 65 once merged with the sandbox's 64",
  );
  // Keys inherited from Object.prototype are not labels the sandbox has.
  throwsInvalid(
    () => checkMergedLabels(manyLabels(64), { toString: "1" }),
    "labels",
    "must hold at most 64 labels, got 65 once merged with the sandbox's 64",
  );
  assert.equal(Object.keys(current).length, 60, "nothing is merged");
});

Deno.test("a spec at every bound encodes to at most MAX_SPEC_BYTES, and not far below", () => {
  const prefix = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
  assert.equal(prefix.length, 253);
  const labels = Object.fromEntries(
    Array.from({ length: 64 }, (_, i) => [
      `${prefix}/n${String(i).padStart(2, "0")}${"x".repeat(60)}`,
      "v".repeat(63),
    ]),
  );
  // Names of 4 bytes and values of 508 bytes in two-byte characters: 256 × 512 = 128 KiB.
  const envs = Object.fromEntries(
    Array.from({ length: 256 }, (_, i) => [`E${String(i).padStart(3, "0")}`, "é".repeat(254)]),
  );
  // Eight entries of 16 KiB (each with a three-byte length) fill the 128 KiB; 248 empty ones.
  const long = Array(8).fill("L".repeat(16 * KIB));
  const short = Array(248).fill("");
  const cidrs = (o: number) =>
    Array.from({ length: 64 }, (_, i) => `${100 + i}.${200 + o}.255.255/32`);
  const { spec } = validCreate({
    name: "n".repeat(63),
    namespace: "s".repeat(63),
    pool: "p".repeat(63),
    image: "i".repeat(512),
    command: long,
    args: short,
    envs,
    workingDir: "/" + "é".repeat(2047) + "w",
    exposedPorts: Array.from({ length: 64 }, (_, i) => 65535 - i),
    expireTime: BigInt(Number.MAX_SAFE_INTEGER),
    failurePolicy: FailurePolicy.AUTO_RECREATE,
    labels,
    network: { egress: Egress.DENY, allowCidrs: cidrs(0), denyCidrs: cidrs(1) },
    resources: {
      cpuMillis: 2n ** 63n - 1n,
      memoryBytes: 2n ** 63n - 1n,
      pids: 4_194_304n,
    },
  });
  const argvBytes = [...spec.command, ...spec.args].reduce((n, a) => n + utf8Bytes(a), 0);
  assert.equal(argvBytes, 128 * KIB);
  assert.equal(spec.command.length + spec.args.length, 256);
  const size = toBinary(SandboxSpecSchema, spec).length;
  assert.ok(size <= MAX_SPEC_BYTES, `${size} > ${MAX_SPEC_BYTES}`);
  assert.ok(size > MAX_SPEC_BYTES - 4 * KIB, `${size} is far below ${MAX_SPEC_BYTES}`);
  assert.equal(MAX_SPEC_BYTES, 298_811);
});

Deno.test("validateCreate() drops unknown fields of the network policy and limits", () => {
  const known = create(CreateSandboxRequestSchema, {
    ...BASE,
    network: { egress: Egress.DENY, allowCidrs: ["10.0.0.0/8"] },
    resources: { pids: 32n },
  });
  // Protobuf merges a repeated message field: these carry 1 MiB of unknown field 99 each.
  const junk = new Uint8Array(1024 * KIB);
  const extra = new BinaryWriter()
    .tag(14, WireType.LengthDelimited).fork().tag(99, WireType.LengthDelimited).bytes(junk).join()
    .tag(15, WireType.LengthDelimited).fork().tag(99, WireType.LengthDelimited).bytes(junk).join()
    .finish();
  const wire = toBinary(CreateSandboxRequestSchema, known);
  const req = fromBinary(CreateSandboxRequestSchema, new Uint8Array([...wire, ...extra]));
  assert.ok((req.network?.$unknown?.length ?? 0) > 0, "the request keeps the unknown field");
  assert.ok((req.resources?.$unknown?.length ?? 0) > 0, "the request keeps the unknown field");
  const { spec } = validateCreate(req, { nowMs: NOW_MS, defaultMode: "fast" });
  assert.deepEqual(spec.network?.allowCidrs, ["10.0.0.0/8"]);
  assert.equal(spec.network?.egress, Egress.DENY);
  assert.equal(spec.resources?.pids, 32n);
  assert.equal(spec.resources?.cpuMillis, undefined);
  assert.equal(spec.resources?.memoryBytes, undefined);
  const size = toBinary(SandboxSpecSchema, spec).length;
  assert.ok(size < 1024, `the spec encodes to ${size} bytes`);
  const plain = validCreate({
    ...BASE,
    network: { egress: Egress.DENY, allowCidrs: ["10.0.0.0/8"] },
    resources: { pids: 32n },
  }).spec;
  assert.ok(sameRequest(spec, plain));
});
