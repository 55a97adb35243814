import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ConsistencyMode,
  CreateSandboxRequestSchema,
  Egress,
  FailurePolicy,
  NetworkMode,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { parseSandboxArgs, type SandboxPlan } from "../../cli/parse_sandbox_args.ts";
import { sandboxUsage, UsageError } from "../../cli/mod.ts";
import { encodeCreateSandboxRequest } from "../../proto/fastpath_lite.ts";

const NOW = 1_700_000_000;

function parse(...args: string[]): SandboxPlan {
  return parseSandboxArgs(args, { nowSec: NOW });
}

function throwsUsage(args: string[], message: string, usage: string): void {
  assert.throws(() => parse(...args), (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${err}`);
    assert.equal(err.message, message);
    assert.equal(err.usage, usage);
    return true;
  });
}

Deno.test("parseSandboxArgs() builds a create request from every create flag", () => {
  const plan = parse(
    "create",
    "demo",
    "--image",
    "busybox",
    "--pool",
    "gpu",
    "-n",
    "team",
    "--port",
    "8080",
    "--port=9000",
    "--env",
    "A=1",
    "--env",
    "B=x=y",
    "--workdir",
    "/srv",
    "--mode",
    "strong",
    "--expire",
    "1h",
    "--failure-policy",
    "auto-recreate",
    "--label",
    "team=ci",
    "--network",
    "private",
    "--egress",
    "deny",
    "--allow",
    "10.1.0.0/16",
    "--allow=192.168.1.0/24",
    "--deny",
    "10.1.2.0/24",
    "--cpus",
    "1.5",
    "--memory",
    "512Mi",
    "--pids",
    "256",
    "-o",
    "json",
    "--endpoint",
    "10.0.0.1:9090",
    "--token",
    "s3cret",
    "--tls-ca=/etc/fsb/ca.pem",
    "-v",
    "2",
    "--",
    "sh",
    "-c",
    "echo hi; sleep 60",
  );
  assert.deepEqual(plan, {
    kind: "create",
    endpoint: "10.0.0.1:9090",
    token: "s3cret",
    tlsCa: "/etc/fsb/ca.pem",
    verbose: 2,
    output: "json",
    request: {
      name: "demo",
      namespace: "team",
      image: "busybox",
      pool: "gpu",
      command: ["sh", "-c", "echo hi; sleep 60"],
      envs: { A: "1", B: "x=y" },
      workingDir: "/srv",
      exposedPorts: [8080, 9000],
      consistencyMode: ConsistencyMode.STRONG,
      expireTime: BigInt(NOW + 3600),
      failurePolicy: FailurePolicy.AUTO_RECREATE,
      labels: { team: "ci" },
      network: {
        mode: NetworkMode.PRIVATE,
        egress: Egress.DENY,
        allowCidrs: ["10.1.0.0/16", "192.168.1.0/24"],
        denyCidrs: ["10.1.2.0/24"],
      },
      resources: { cpuMillis: 1500n, memoryBytes: 512n * 1024n * 1024n, pids: 256n },
    },
  });
});

Deno.test("parseSandboxArgs() takes Docker's short flags: -e, -p, -w, -l on create, -l on update", () => {
  const long = parse(
    "create",
    "demo",
    "--image",
    "busybox",
    "--env",
    "A=1",
    "--env",
    "B=2",
    "--port",
    "8080",
    "--port",
    "9000",
    "--workdir",
    "/srv",
    "--label",
    "team=ci",
    "--",
    "sleep",
    "9",
  );
  const short = parse(
    "create",
    "demo",
    "--image",
    "busybox",
    "-e",
    "A=1",
    "-eB=2",
    "-p",
    "8080",
    "-p=9000",
    "-w",
    "/srv",
    "-l",
    "team=ci",
    "--",
    "sleep",
    "9",
  );
  assert.deepEqual(short, long);
  assert.equal(short.kind, "create");
  assert.deepEqual(short.request.envs, { A: "1", B: "2" });
  assert.deepEqual(short.request.exposedPorts, [8080, 9000]);
  assert.equal(short.request.workingDir, "/srv");
  assert.deepEqual(
    parse("update", "demo", "-l", "a=b", "-l", "c=d"),
    parse("update", "demo", "--label", "a=b", "--label", "c=d"),
  );
  // The long name is what messages say, whichever was typed.
  throwsUsage(
    ["create", "--image", "b", "-p", "http"],
    'Flag --port needs a number, got "http"',
    "Usage: fsb sandbox create [NAME] --image IMG [flags] [-- CMD ARGS...]",
  );
  const others = [["get", "-e"], ["logs", "-l"], ["reset", "-w"], ["list", "-p"]] as const;
  for (const [sub, flag] of others) {
    throwsUsage([sub, "x", flag, "v"], `Unknown flag ${flag}`, oneLine(sandboxUsage[sub]));
  }
});

function oneLine(text: string): string {
  return text.slice(0, text.indexOf("\n"));
}

Deno.test("parseSandboxArgs() leaves what create was not told to the controller", () => {
  assert.deepEqual(parse("create", "--image", "busybox"), {
    kind: "create",
    endpoint: undefined,
    token: undefined,
    tlsCa: undefined,
    verbose: 0,
    output: "table",
    request: {
      name: "",
      namespace: "",
      image: "busybox",
      pool: "",
      command: [],
      envs: {},
      workingDir: "",
      exposedPorts: [],
      consistencyMode: undefined,
      expireTime: undefined,
      failurePolicy: undefined,
      labels: {},
      network: undefined,
      resources: undefined,
    },
  });
});

Deno.test("parseSandboxArgs() maps --mode fast and --failure-policy manual to the proto enums", () => {
  const plan = parse("create", "--image", "b", "--mode", "fast", "--failure-policy", "manual");
  assert.equal(plan.kind, "create");
  assert.equal(plan.request.consistencyMode, ConsistencyMode.FAST);
  assert.equal(plan.request.failurePolicy, FailurePolicy.MANUAL);
});

function createRequest(...flags: string[]) {
  const plan = parse("create", "--image", "b", ...flags);
  assert.equal(plan.kind, "create");
  return plan.request;
}

Deno.test("parseSandboxArgs() maps --network private|none and --egress allow|deny to the proto enums", () => {
  assert.deepEqual(createRequest("--network", "private").network, { mode: NetworkMode.PRIVATE });
  assert.deepEqual(createRequest("--network", "none").network, { mode: NetworkMode.NONE });
  assert.deepEqual(createRequest("--egress", "allow").network, { egress: Egress.ALLOW });
  assert.deepEqual(createRequest("--egress", "deny").network, { egress: Egress.DENY });
});

Deno.test("parseSandboxArgs() passes --allow and --deny CIDRs through as written, in order", () => {
  // Whether a CIDR is valid is the controller's to judge: all clients get the same answer.
  const req = createRequest(
    "--deny",
    "10.0.0.0/8",
    "--allow",
    "not-a-cidr",
    "--allow",
    "10.1.0.0/16",
    "--deny=::1/128",
    "--allow=",
  );
  assert.deepEqual(req.network, {
    allowCidrs: ["not-a-cidr", "10.1.0.0/16", ""],
    denyCidrs: ["10.0.0.0/8", "::1/128"],
  });
});

Deno.test("parseSandboxArgs() maps --cpus 0.5 to cpu_millis 500, rounding to a thousandth", () => {
  const cases: [string, bigint][] = [
    ["0.5", 500n],
    ["2", 2000n],
    [".25", 250n],
    ["0.0015", 2n],
    ["1.23449", 1234n],
    ["0.0004", 0n],
    ["64", 64000n],
  ];
  for (const [cpus, millis] of cases) {
    assert.deepEqual(createRequest("--cpus", cpus).resources, { cpuMillis: millis }, cpus);
  }
});

Deno.test("parseSandboxArgs() passes --cpus 0 and negative counts on to the controller", () => {
  assert.deepEqual(createRequest("--cpus", "0").resources, { cpuMillis: 0n });
  assert.deepEqual(createRequest("--cpus=-1.5").resources, { cpuMillis: -1500n });
  assert.deepEqual(createRequest("--cpus=-0.0001").resources, { cpuMillis: 0n });
});

Deno.test("parseSandboxArgs() maps --memory 64Mi to memory_bytes", () => {
  assert.deepEqual(createRequest("--memory", "64Mi").resources, { memoryBytes: 67_108_864n });
  assert.deepEqual(createRequest("--memory", "1.5Gi").resources, { memoryBytes: 1_610_612_736n });
  assert.deepEqual(createRequest("--memory", "512Ki").resources, { memoryBytes: 524_288n });
});

Deno.test("parseSandboxArgs() maps --memory in plain bytes, 0 included, to memory_bytes", () => {
  assert.deepEqual(createRequest("--memory", "1048576").resources, { memoryBytes: 1_048_576n });
  assert.deepEqual(createRequest("--memory", "0").resources, { memoryBytes: 0n });
});

Deno.test("parseSandboxArgs() maps --pids N to pids, 0 and negative numbers included", () => {
  assert.deepEqual(createRequest("--pids", "100").resources, { pids: 100n });
  assert.deepEqual(createRequest("--pids", "0").resources, { pids: 0n });
  assert.deepEqual(createRequest("--pids=-5").resources, { pids: -5n });
  assert.deepEqual(createRequest("--pids", "9223372036854775807").resources, {
    pids: 9_223_372_036_854_775_807n,
  });
});

Deno.test("parseSandboxArgs() sends only the network and resources fields whose flags were given", () => {
  const req = createRequest("--egress", "deny", "--pids", "10");
  assert.deepEqual(req.network, { egress: Egress.DENY });
  assert.deepEqual(req.resources, { pids: 10n });
  // Absent, not merely undefined: an unset limit is the agent's default.
  assert.ok(req.resources !== undefined && !("cpuMillis" in req.resources));
  assert.ok(!("memoryBytes" in req.resources));
  const none = createRequest("--port", "80");
  assert.equal(none.network, undefined);
  assert.equal(none.resources, undefined);
});

Deno.test("parseSandboxArgs() create requests go on the wire as protobuf-es would send them", () => {
  const requests = [
    createRequest(),
    createRequest("--network", "none"),
    createRequest("--allow", "10.0.0.0/8", "--cpus", "0", "--pids", "0"),
    createRequest("--memory", "64Mi", "--egress", "deny", "--deny", "1.2.3.4/32"),
  ];
  for (const req of requests) {
    const theirs = toBinary(CreateSandboxRequestSchema, create(CreateSandboxRequestSchema, req));
    assert.deepEqual(encodeCreateSandboxRequest(req), theirs, Deno.inspect(req));
  }
});

Deno.test("parseSandboxArgs() passes ports that are numbers but not valid ports on to the controller", () => {
  const plan = parse("create", "--image", "b", "--port", "0", "--port", "70000", "--port", "0");
  assert.equal(plan.kind, "create");
  assert.deepEqual(plan.request.exposedPorts, [0, 70000, 0]);
});

Deno.test("parseSandboxArgs() passes an expiry in the past on to the controller", () => {
  const plan = parse("create", "--image", "b", "--expire", "5");
  assert.equal(plan.kind, "create");
  assert.equal(plan.request.expireTime, 5n);
});

Deno.test("parseSandboxArgs() reads list and its ls alias, with -A", () => {
  const want = {
    kind: "list",
    endpoint: undefined,
    token: undefined,
    tlsCa: undefined,
    verbose: 0,
    output: "json",
    request: { namespace: "", allNamespaces: true },
  };
  assert.deepEqual(parse("list", "-A", "-o", "json"), want);
  assert.deepEqual(parse("ls", "--all-namespaces", "--output=json"), want);
  assert.deepEqual(parse("ls", "-n", "team"), {
    ...want,
    output: "table",
    request: { namespace: "team", allNamespaces: false },
  });
});

Deno.test("parseSandboxArgs() reads delete and rm with several names, also after --", () => {
  const plan = parse("rm", "a", "-n", "team", "b", "--", "-odd");
  assert.deepEqual(plan, {
    kind: "delete",
    endpoint: undefined,
    token: undefined,
    tlsCa: undefined,
    verbose: 0,
    output: "table",
    requests: [
      { name: "a", namespace: "team" },
      { name: "b", namespace: "team" },
      { name: "-odd", namespace: "team" },
    ],
  });
  assert.equal(parse("delete", "a").kind, "delete");
});

Deno.test("parseSandboxArgs() sends no expiry on update unless told, and 0 to clear it", () => {
  const untouched = parse("update", "demo", "--label", "a=b", "--label", "c=");
  assert.deepEqual(untouched, {
    kind: "update",
    endpoint: undefined,
    token: undefined,
    tlsCa: undefined,
    verbose: 0,
    output: "table",
    request: {
      name: "demo",
      namespace: "",
      expireTime: undefined,
      failurePolicy: undefined,
      labels: { a: "b", c: "" },
    },
  });
  const cleared = parse("update", "demo", "--expire", "0", "--failure-policy", "manual");
  assert.equal(cleared.kind, "update");
  assert.equal(cleared.request.expireTime, 0n);
  assert.equal(cleared.request.failurePolicy, FailurePolicy.MANUAL);
  const later = parse("update", "demo", "--expire", "90s");
  assert.equal(later.kind, "update");
  assert.equal(later.request.expireTime, BigInt(NOW + 90));
});

Deno.test("parseSandboxArgs() turns reset into an update with reset set", () => {
  assert.deepEqual(parse("reset", "demo", "-n", "team", "-o", "json"), {
    kind: "reset",
    endpoint: undefined,
    token: undefined,
    tlsCa: undefined,
    verbose: 0,
    output: "json",
    request: { name: "demo", namespace: "team", reset: true },
  });
});

Deno.test("parseSandboxArgs() reads logs with and without -f", () => {
  assert.deepEqual(parse("logs", "demo", "-f"), {
    kind: "logs",
    endpoint: undefined,
    token: undefined,
    tlsCa: undefined,
    verbose: 0,
    request: { name: "demo", namespace: "", follow: true },
  });
  const once = parse("logs", "demo");
  assert.equal(once.kind, "logs");
  assert.equal(once.request.follow, false);
});

Deno.test("parseSandboxArgs() answers -h with the subcommand's help, even without required flags", () => {
  assert.deepEqual(parse("create", "-h"), { kind: "help", text: sandboxUsage.create });
  assert.deepEqual(parse("ls", "--help"), { kind: "help", text: sandboxUsage.list });
  assert.deepEqual(parse("-h"), { kind: "help", text: sandboxUsage.sandbox });
  assert.deepEqual(parse("help"), { kind: "help", text: sandboxUsage.sandbox });
});

Deno.test("the create help lists the network and limit flags, and help lines fit 88 columns", () => {
  for (
    const flag of ["--network", "--egress", "--allow", "--deny", "--cpus", "--memory", "--pids"]
  ) {
    assert.match(sandboxUsage.create, new RegExp(`^      ${flag} `, "m"), flag);
  }
  for (const [sub, text] of Object.entries(sandboxUsage)) {
    // The one-line usage (first) may run longer: it is printed alone after an error.
    for (const line of text.split("\n").slice(1)) {
      assert.ok(line.length <= 88, `${sub}: ${line.length} columns: ${line}`);
    }
  }
});

Deno.test("parseSandboxArgs() rejects a missing or unknown command with the group's usage", () => {
  const usage =
    "Usage: fsb sandbox <create|get|list|delete|update|reset|logs|exec|attach|ps|kill|wait|cp> [flags]";
  throwsUsage([], "Missing command", usage);
  throwsUsage(["start"], 'Unknown command "start"', usage);
  throwsUsage(["-n", "x"], 'Unknown command "-n"', usage);
});

Deno.test("parseSandboxArgs() rejects create without --image or with two names", () => {
  const usage = "Usage: fsb sandbox create [NAME] --image IMG [flags] [-- CMD ARGS...]";
  throwsUsage(["create", "demo"], "Missing --image", usage);
  throwsUsage(["create", "a", "b", "--image", "x"], 'Unexpected argument "b"', usage);
});

Deno.test("parseSandboxArgs() rejects a port that is not a number", () => {
  const usage = "Usage: fsb sandbox create [NAME] --image IMG [flags] [-- CMD ARGS...]";
  for (const port of ["http", "80x", "-1", "8.5", "", "99999999999"]) {
    throwsUsage(
      ["create", "--image", "b", `--port=${port}`],
      `Flag --port needs a number, got "${port}"`,
      usage,
    );
  }
});

Deno.test("parseSandboxArgs() rejects words outside the enums' vocabulary", () => {
  const usage = "Usage: fsb sandbox create [NAME] --image IMG [flags] [-- CMD ARGS...]";
  throwsUsage(
    ["create", "--image", "b", "--mode", "quick"],
    'Flag --mode must be fast or strong, got "quick"',
    usage,
  );
  throwsUsage(
    ["create", "--image", "b", "--failure-policy", "retry"],
    'Flag --failure-policy must be manual or auto-recreate, got "retry"',
    usage,
  );
  throwsUsage(
    ["get", "x", "-o", "yaml"],
    'Flag --output must be table or json, got "yaml"',
    "Usage: fsb sandbox get NAME [flags]",
  );
});

Deno.test("parseSandboxArgs() rejects --network and --egress words outside their vocabulary", () => {
  const usage = "Usage: fsb sandbox create [NAME] --image IMG [flags] [-- CMD ARGS...]";
  for (const network of ["host", "PRIVATE", "", "bridge"]) {
    throwsUsage(
      ["create", "--image", "b", `--network=${network}`],
      `Flag --network must be private or none, got "${network}"`,
      usage,
    );
  }
  for (const egress of ["block", "Deny", ""]) {
    throwsUsage(
      ["create", "--image", "b", `--egress=${egress}`],
      `Flag --egress must be allow or deny, got "${egress}"`,
      usage,
    );
  }
});

Deno.test("parseSandboxArgs() rejects a --cpus that is not a decimal number", () => {
  const usage = "Usage: fsb sandbox create [NAME] --image IMG [flags] [-- CMD ARGS...]";
  for (const cpus of ["half", "", "1e3", "0x10", "1.", "1,5", "Infinity", "NaN", " 1", "1m"]) {
    throwsUsage(
      ["create", "--image", "b", `--cpus=${cpus}`],
      `Flag --cpus needs a number, got "${cpus}"`,
      usage,
    );
  }
  // Too many CPUs to count in thousandths exactly.
  throwsUsage(
    ["create", "--image", "b", "--cpus", "99999999999999"],
    'Flag --cpus needs a number, got "99999999999999"',
    usage,
  );
});

Deno.test("parseSandboxArgs() rejects a --memory that is not a size, with parseSize's message", () => {
  const usage = "Usage: fsb sandbox create [NAME] --image IMG [flags] [-- CMD ARGS...]";
  for (const memory of ["64MB", "64m", "lots", "", "-1", "1.5.5Gi"]) {
    throwsUsage(
      ["create", "--image", "b", `--memory=${memory}`],
      `invalid --memory value "${memory}": use bytes or a number with Ki, Mi, Gi or Ti, e.g. 64Mi`,
      usage,
    );
  }
});

Deno.test("parseSandboxArgs() rejects a --pids that is not a whole number that fits int64", () => {
  const usage = "Usage: fsb sandbox create [NAME] --image IMG [flags] [-- CMD ARGS...]";
  for (const pids of ["many", "", "1.5", "1e3", "+5", "9223372036854775808"]) {
    throwsUsage(
      ["create", "--image", "b", `--pids=${pids}`],
      `Flag --pids needs a whole number, got "${pids}"`,
      usage,
    );
  }
});

Deno.test("parseSandboxArgs() takes the network and limit flags on create only", () => {
  for (
    const flag of ["--network", "--egress", "--allow", "--deny", "--cpus", "--memory", "--pids"]
  ) {
    throwsUsage(
      ["update", "x", flag, "1"],
      `Unknown flag ${flag}`,
      "Usage: fsb sandbox update NAME [--expire WHEN] [--failure-policy P] [--label K=V]... [flags]",
    );
  }
});

Deno.test("parseSandboxArgs() rejects a missing or extra NAME", () => {
  throwsUsage(["get"], "Missing NAME", "Usage: fsb sandbox get NAME [flags]");
  throwsUsage(["get", "a", "b"], 'Unexpected argument "b"', "Usage: fsb sandbox get NAME [flags]");
  throwsUsage(["rm"], "Missing NAME", "Usage: fsb sandbox delete NAME... [flags]");
  throwsUsage(["logs", "-f"], "Missing NAME", "Usage: fsb sandbox logs NAME [-f] [flags]");
  throwsUsage(["list", "x"], 'Unexpected argument "x"', "Usage: fsb sandbox list [flags]");
});

Deno.test("parseSandboxArgs() rejects flags a subcommand does not take", () => {
  throwsUsage(["get", "x", "-A"], "Unknown flag -A", "Usage: fsb sandbox get NAME [flags]");
  throwsUsage(
    ["logs", "x", "-o", "json"],
    "Unknown flag -o",
    "Usage: fsb sandbox logs NAME [-f] [flags]",
  );
  throwsUsage(
    ["update", "x", "--image", "b"],
    "Unknown flag --image",
    "Usage: fsb sandbox update NAME [--expire WHEN] [--failure-policy P] [--label K=V]... [flags]",
  );
});

Deno.test("parseSandboxArgs() takes --endpoint, --token and --tls-ca on every subcommand", () => {
  const flags = ["--endpoint", "h:1", "--token", "t0k", "--tls-ca", "ca.pem"];
  for (
    const args of [
      ["create", "--image", "b"],
      ["get", "x"],
      ["list"],
      ["delete", "x"],
      ["update", "x"],
      ["reset", "x"],
      ["logs", "x"],
    ]
  ) {
    const plan = parse(...args, ...flags);
    assert.ok(plan.kind !== "help");
    assert.deepEqual(
      { endpoint: plan.endpoint, token: plan.token, tlsCa: plan.tlsCa },
      { endpoint: "h:1", token: "t0k", tlsCa: "ca.pem" },
      args.join(" "),
    );
  }
});
