import assert from "node:assert/strict";
import { ConsistencyMode, FailurePolicy } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { parseSandboxArgs, type SandboxPlan } from "../../cli/parse_sandbox_args.ts";
import { sandboxUsage, UsageError } from "../../cli/mod.ts";

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
    "-o",
    "json",
    "--endpoint",
    "10.0.0.1:9090",
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
    },
  });
});

Deno.test("parseSandboxArgs() leaves what create was not told to the controller", () => {
  assert.deepEqual(parse("create", "--image", "busybox"), {
    kind: "create",
    endpoint: undefined,
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
    },
  });
});

Deno.test("parseSandboxArgs() maps --mode fast and --failure-policy manual to the proto enums", () => {
  const plan = parse("create", "--image", "b", "--mode", "fast", "--failure-policy", "manual");
  assert.equal(plan.kind, "create");
  assert.equal(plan.request.consistencyMode, ConsistencyMode.FAST);
  assert.equal(plan.request.failurePolicy, FailurePolicy.MANUAL);
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
    verbose: 0,
    output: "json",
    request: { name: "demo", namespace: "team", reset: true },
  });
});

Deno.test("parseSandboxArgs() reads logs with and without -f", () => {
  assert.deepEqual(parse("logs", "demo", "-f"), {
    kind: "logs",
    endpoint: undefined,
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

Deno.test("parseSandboxArgs() rejects a missing or unknown command with the group's usage", () => {
  const usage = "Usage: fsb sandbox <create|get|list|delete|update|reset|logs> [flags]";
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
