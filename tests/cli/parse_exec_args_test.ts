import assert from "node:assert/strict";
import { commandStart, copyPlace, EXEC_SPECS } from "../../cli/parse_exec_args.ts";
import { parseSandboxArgs, type SandboxPlan } from "../../cli/parse_sandbox_args.ts";
import { sandboxUsage, UsageError } from "../../cli/mod.ts";

function parse(...args: string[]): SandboxPlan {
  return parseSandboxArgs(args, { nowSec: 0 });
}

function throwsUsage(args: string[], message: string, sub: keyof typeof sandboxUsage): void {
  assert.throws(() => parse(...args), (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${err}`);
    assert.equal(err.message, message, args.join(" "));
    assert.equal(err.usage, sandboxUsage[sub].slice(0, sandboxUsage[sub].indexOf("\n")));
    return true;
  });
}

const NO_CONNECTION = { endpoint: undefined, token: undefined, tlsCa: undefined, verbose: 0 };

Deno.test("parseSandboxArgs() reads every exec flag, the command after --", () => {
  assert.deepEqual(
    parse(
      "exec",
      "-n",
      "team",
      "box",
      "-i",
      "-t",
      "--env",
      "A=1",
      "-e",
      "B=x=y",
      "-w",
      "/srv",
      "--",
      "sh",
      "-c",
      "echo hi; exit 7",
    ),
    {
      kind: "exec",
      ...NO_CONNECTION,
      name: "box",
      namespace: "team",
      command: ["sh", "-c", "echo hi; exit 7"],
      env: { A: "1", B: "x=y" },
      workingDir: "/srv",
      interactive: true,
      tty: true,
      detach: false,
    },
  );
});

Deno.test("parseSandboxArgs() ends exec's flags at the command, as docker exec does", () => {
  const plan = parse("exec", "-it", "box", "ls", "-l", "--color", "-n", "x");
  assert.equal(plan.kind, "exec");
  if (plan.kind !== "exec") return;
  assert.equal(plan.name, "box");
  assert.deepEqual(plan.command, ["ls", "-l", "--color", "-n", "x"]);
  assert.equal(plan.namespace, "");
  assert.ok(plan.interactive && plan.tty);
  // A "--" after the command is the command's own.
  const after = parse("exec", "box", "-d", "sh", "--", "x");
  assert.ok(after.kind === "exec" && after.detach);
  assert.deepEqual(after.kind === "exec" && after.command, ["sh", "--", "x"]);
});

Deno.test("commandStart() skips flag values, attached or not, and short clusters", () => {
  const spec = EXEC_SPECS.exec;
  assert.equal(commandStart(["box", "ls"], spec), 1);
  assert.equal(commandStart(["-n", "ns", "box", "ls"], spec), 3);
  assert.equal(commandStart(["-nns", "box", "ls"], spec), 2);
  assert.equal(commandStart(["-itn", "ns", "box", "ls"], spec), 3);
  assert.equal(commandStart(["--env", "A=1", "box", "ls"], spec), 3);
  assert.equal(commandStart(["--env=A=1", "box", "ls"], spec), 2);
  assert.equal(commandStart(["-v", "2", "box", "ls"], spec), 3);
  assert.equal(commandStart(["box", "-i", "--", "ls"], spec), -1);
  assert.equal(commandStart(["box"], spec), -1);
});

Deno.test("parseSandboxArgs() parses attach, ps, kill and wait", () => {
  assert.deepEqual(parse("attach", "box", "e1", "-n", "t"), {
    kind: "attach",
    ...NO_CONNECTION,
    name: "box",
    namespace: "t",
    execId: "e1",
  });
  assert.deepEqual(parse("ps", "box", "-o", "json"), {
    kind: "ps",
    ...NO_CONNECTION,
    name: "box",
    namespace: "",
    output: "json",
  });
  assert.equal((parse("ps", "box") as { output: string }).output, "table");
  assert.deepEqual(parse("kill", "box", "e1", "-s", "TERM"), {
    kind: "kill",
    ...NO_CONNECTION,
    name: "box",
    namespace: "",
    execId: "e1",
    signal: "TERM",
  });
  assert.equal((parse("kill", "box", "e1") as { signal: string }).signal, "");
  assert.deepEqual(parse("wait", "box", "--endpoint", "h:1"), {
    kind: "wait",
    ...NO_CONNECTION,
    endpoint: "h:1",
    name: "box",
    namespace: "",
  });
});

Deno.test("parseSandboxArgs() parses cp with one side in a sandbox", () => {
  assert.deepEqual(parse("cp", "./a:b", "box:/tmp/", "-n", "t"), {
    kind: "cp",
    ...NO_CONNECTION,
    namespace: "t",
    source: { kind: "local", path: "./a:b" },
    destination: { kind: "sandbox", name: "box", path: "/tmp/" },
  });
  assert.deepEqual(parse("cp", "box:/etc/.", "-"), {
    kind: "cp",
    ...NO_CONNECTION,
    namespace: "",
    source: { kind: "sandbox", name: "box", path: "/etc/." },
    destination: { kind: "stdio" },
  });
});

Deno.test("copyPlace() tells local paths from NAME:PATH as docker cp does", () => {
  assert.deepEqual(copyPlace("-"), { kind: "stdio" });
  assert.deepEqual(copyPlace("/abs/a:b"), { kind: "local", path: "/abs/a:b" });
  assert.deepEqual(copyPlace("./a:b"), { kind: "local", path: "./a:b" });
  assert.deepEqual(copyPlace("../x"), { kind: "local", path: "../x" });
  assert.deepEqual(copyPlace("file.txt"), { kind: "local", path: "file.txt" });
  assert.deepEqual(copyPlace("box:rel"), { kind: "sandbox", name: "box", path: "rel" });
  assert.deepEqual(copyPlace("box:"), { kind: "sandbox", name: "box", path: "" });
  assert.throws(() => copyPlace(":x"), new UsageError('Missing NAME before ":" in ":x"'));
});

Deno.test("parseSandboxArgs() exits 2 on exec family misuse, with the subcommand's usage", () => {
  throwsUsage(["exec"], "Missing NAME", "exec");
  throwsUsage(["exec", "box"], "Missing CMD: give it after NAME or after --", "exec");
  throwsUsage(["exec", "box", "--"], "Missing CMD: give it after NAME or after --", "exec");
  throwsUsage(["exec", "box", "--bogus", "ls"], "Unknown flag --bogus", "exec");
  throwsUsage(
    ["exec", "box", "-e", "NOEQUALS", "ls"],
    'Expected KEY=VALUE for --env, got "NOEQUALS"',
    "exec",
  );
  throwsUsage(
    ["exec", "-d", "-i", "box", "ls"],
    "Flag --detach cannot be combined with --interactive",
    "exec",
  );
  throwsUsage(
    ["exec", "-d", "-t", "box", "ls"],
    "Flag --detach cannot be combined with --tty",
    "exec",
  );
  throwsUsage(["exec", "box", "-w"], "Flag -w needs a value", "exec");
  throwsUsage(["attach", "box"], "Missing EXEC_ID", "attach");
  throwsUsage(["attach", "box", "e", "f"], 'Unexpected argument "f"', "attach");
  throwsUsage(["ps"], "Missing NAME", "ps");
  throwsUsage(["ps", "box", "-o", "yaml"], 'Flag --output must be table or json, got "yaml"', "ps");
  throwsUsage(["kill", "box"], "Missing EXEC_ID", "kill");
  throwsUsage(["wait", "a", "b"], 'Unexpected argument "b"', "wait");
  throwsUsage(["cp", "a"], "Missing DST", "cp");
  throwsUsage(
    ["cp", "a:/x", "b:/y"],
    "Cannot copy between sandboxes: one side must be a local path or -",
    "cp",
  );
  throwsUsage(["cp", "./a", "-"], "One side must be NAME:PATH, a path inside a sandbox", "cp");
  throwsUsage(["cp", "", "b:/y"], "Empty path", "cp");
});

Deno.test("parseSandboxArgs() gives the help of each new subcommand", () => {
  for (const sub of ["exec", "attach", "ps", "kill", "wait", "cp"] as const) {
    assert.deepEqual(parse(sub, "-h"), { kind: "help", text: sandboxUsage[sub] });
    assert.match(sandboxUsage[sub], new RegExp(`^Usage: fsb sandbox ${sub} `));
    assert.ok(sandboxUsage.sandbox.includes(`  ${sub} `), `the group's help lists ${sub}`);
  }
});
