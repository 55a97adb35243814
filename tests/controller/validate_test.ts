import assert from "node:assert/strict";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
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
  checkLabels,
  DEFAULT_NAMESPACE,
  DEFAULT_POOL,
  failurePolicyName,
  newSandboxId,
  sameRequest,
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
    rule: `must be an image reference like busybox:1.36, got "${"a".repeat(513)}"`,
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
    what: "memory below 4 MiB",
    req: { ...BASE, resources: { memoryBytes: 4n * 1024n * 1024n - 1n } },
    field: "resources.memory_bytes",
    rule: "must be at least 4194304 (4 MiB), got 4194303",
  },
  {
    what: "zero CPUs",
    req: { ...BASE, resources: { cpuMillis: 0n } },
    field: "resources.cpu_millis",
    rule: "must be positive (1000 = one CPU), got 0",
  },
  {
    what: "negative CPUs",
    req: { ...BASE, resources: { cpuMillis: -500n } },
    field: "resources.cpu_millis",
    rule: "must be positive (1000 = one CPU), got -500",
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
    `labels["${"d".repeat(254)}/x"]`,
    LABEL_PREFIX_RULE,
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
