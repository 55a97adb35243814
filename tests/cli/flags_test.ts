import assert from "node:assert/strict";
import { parseFlags, UsageError } from "../../cli/mod.ts";

const SPEC = {
  image: { type: "string" },
  namespace: { type: "string", short: "n" },
  port: { type: "string", multiple: true },
  "all-namespaces": { type: "boolean", short: "A" },
  follow: { type: "boolean", short: "f" },
} as const;

function usageError(args: string[], message: string): void {
  assert.throws(() => parseFlags(args, SPEC), (err: unknown) => {
    assert.ok(err instanceof UsageError);
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("parseFlags() reads long, short, attached and = forms alike", () => {
  for (
    const args of [
      ["--image", "busybox", "--namespace", "team"],
      ["--image=busybox", "--namespace=team"],
      ["--image", "busybox", "-n", "team"],
      ["--image", "busybox", "-nteam"],
      ["--image", "busybox", "-n=team"],
    ]
  ) {
    const f = parseFlags(args, SPEC);
    assert.equal(f.values.image, "busybox", args.join(" "));
    assert.equal(f.values.namespace, "team", args.join(" "));
  }
});

Deno.test("parseFlags() defaults booleans to false, repeatables to [] and strings to undefined", () => {
  const f = parseFlags([], SPEC);
  assert.deepEqual(f.values, {
    image: undefined,
    namespace: undefined,
    port: [],
    "all-namespaces": false,
    follow: false,
  });
  assert.deepEqual(f.positionals, []);
  assert.deepEqual(f.passthrough, []);
  assert.equal(f.verbose, 0);
  assert.equal(f.help, false);
});

Deno.test("parseFlags() collects a repeated flag in order and lets a single flag's last value win", () => {
  const f = parseFlags(["--port", "80", "--port=443", "--image", "a", "--image", "b"], SPEC);
  assert.deepEqual(f.values.port, ["80", "443"]);
  assert.equal(f.values.image, "b");
});

Deno.test("parseFlags() takes grouped short booleans", () => {
  const f = parseFlags(["-Af"], SPEC);
  assert.equal(f.values["all-namespaces"], true);
  assert.equal(f.values.follow, true);
});

Deno.test("parseFlags() keeps positionals around flags in order", () => {
  const f = parseFlags(["demo", "--image", "busybox", "extra", "-A", "last"], SPEC);
  assert.deepEqual(f.positionals, ["demo", "extra", "last"]);
});

Deno.test("parseFlags() returns everything after -- untouched and parses none of it", () => {
  const f = parseFlags(
    ["demo", "--image", "busybox", "--", "sh", "-c", "echo hi", "--bogus", "-n", "--"],
    SPEC,
  );
  assert.deepEqual(f.positionals, ["demo"]);
  assert.deepEqual(f.passthrough, ["sh", "-c", "echo hi", "--bogus", "-n", "--"]);
  assert.equal(f.values.namespace, undefined);
});

Deno.test("parseFlags() reads -v N, -v=N, -vN and --verbose N on any spec", () => {
  for (const args of [["-v", "2"], ["-v=2"], ["-v2"], ["--verbose", "2"], ["--verbose=2"]]) {
    assert.equal(parseFlags(args, {}).verbose, 2, args.join(" "));
  }
});

Deno.test("parseFlags() reads -h and --help on any spec", () => {
  assert.equal(parseFlags(["-h"], {}).help, true);
  assert.equal(parseFlags(["x", "--help"], {}).help, true);
});

Deno.test("parseFlags() rejects an unknown long flag, naming it", () => {
  usageError(["--bogus"], "Unknown flag --bogus");
  usageError(["--bogus=1"], "Unknown flag --bogus");
});

Deno.test("parseFlags() rejects an unknown short flag, also inside a group", () => {
  usageError(["-x"], "Unknown flag -x");
  usageError(["-Ax"], "Unknown flag -x");
});

Deno.test("parseFlags() rejects a string flag at the end without its value", () => {
  usageError(["--image"], "Flag --image needs a value");
  usageError(["-n"], "Flag -n needs a value");
});

Deno.test("parseFlags() rejects a string flag followed by another flag or --", () => {
  usageError(["--image", "--namespace", "x"], "Flag --image needs a value");
  usageError(["--image", "--", "sh"], "Flag --image needs a value");
});

Deno.test("parseFlags() accepts a value starting with - when attached with =", () => {
  assert.equal(parseFlags(["--image=-odd"], SPEC).values.image, "-odd");
});

Deno.test("parseFlags() rejects a value given to a boolean flag", () => {
  usageError(["--follow=true"], "Flag --follow takes no value");
});

Deno.test("parseFlags() rejects a -v that is not a whole number", () => {
  usageError(["-v", "x"], 'Flag -v needs a whole number, got "x"');
  usageError(["--verbose=-1"], 'Flag --verbose needs a whole number, got "-1"');
  usageError(["-v"], "Flag -v needs a value");
});

Deno.test("parseFlags() refuses a spec that redefines -v or -h", () => {
  assert.throws(
    () => parseFlags([], { help: { type: "boolean" } }),
    { message: "Flag spec must not redefine --help: -v and -h belong to every command" },
  );
  assert.throws(
    () => parseFlags([], { version: { type: "boolean", short: "v" } }),
    { message: "Flag spec must not redefine --version: -v and -h belong to every command" },
  );
});

Deno.test("parseFlags() does not mistake inherited object keys for flags", () => {
  usageError(["--constructor"], "Unknown flag --constructor");
  usageError(["--toString=1"], "Unknown flag --toString");
});

Deno.test("parseFlags() types each value by its spec", () => {
  const f = parseFlags(["--listen", "h:1", "--port", "1", "-A"], {
    listen: { type: "string" },
    port: { type: "string", multiple: true },
    all: { type: "boolean", short: "A" },
  });
  const listen: string | undefined = f.values.listen;
  const ports: string[] = f.values.port;
  const all: boolean = f.values.all;
  // @ts-expect-error a string flag is not a boolean
  const wrong: boolean = f.values.listen;
  assert.deepEqual([listen, ports, all, wrong], ["h:1", ["1"], true, "h:1"]);
});
