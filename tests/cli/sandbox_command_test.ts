import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { SandboxInfoSchema } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { type CliIo, sandboxCommand, sandboxUsage } from "../../cli/mod.ts";
import { startFakeFastPath } from "./fake_fastpath.ts";

interface Captured {
  io: CliIo;
  stdout: () => string;
  stderr: () => string;
}

function capture(more: Partial<CliIo> = {}): Captured {
  let out = "";
  let err = "";
  const decoder = new TextDecoder();
  return {
    io: {
      stdout: (s) => out += s,
      stdoutBytes: (b) => {
        out += decoder.decode(b);
      },
      stderr: (s) => err += s,
      env: {},
      home: "/nonexistent-home",
      ...more,
    },
    stdout: () => out,
    stderr: () => err,
  };
}

/** A loopback port that nothing listens on (bound, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

const CREATE_USAGE = "Usage: fsb sandbox create [NAME] --image IMG [flags] [-- CMD ARGS...]\n";

async function usageCase(args: string[], stderr: string): Promise<void> {
  const c = capture();
  assert.equal(await sandboxCommand(args, c.io), 2, args.join(" "));
  assert.equal(c.stderr(), stderr);
  assert.equal(c.stdout(), "");
}

Deno.test("sandboxCommand() exits 2 with the message and a one-line usage on bad usage", async () => {
  await usageCase(
    [],
    "fsb: Missing command\nUsage: fsb sandbox <create|get|list|delete|update|reset|logs|exec|attach|ps|kill|wait|cp> [flags]\n",
  );
  await usageCase(["create", "demo"], "fsb: Missing --image\n" + CREATE_USAGE);
  await usageCase(
    ["create", "--image", "b", "--bogus"],
    "fsb: Unknown flag --bogus\n" + CREATE_USAGE,
  );
  await usageCase(
    ["create", "--image", "b", "--port", "http"],
    'fsb: Flag --port needs a number, got "http"\n' + CREATE_USAGE,
  );
  await usageCase(
    ["create", "--image", "b", "--expire", "soon"],
    'fsb: Invalid --expire "soon": use a duration such as 90s or 1h30m, unix seconds, or 0 for never\n' +
      CREATE_USAGE,
  );
  await usageCase(["get"], "fsb: Missing NAME\nUsage: fsb sandbox get NAME [flags]\n");
  await usageCase(
    ["logs", "x", "-f", "-v", "lots"],
    'fsb: Flag -v needs a whole number, got "lots"\nUsage: fsb sandbox logs NAME [-f] [flags]\n',
  );
});

Deno.test("sandboxCommand() exits 2 without a usage line when the endpoint is malformed", async () => {
  const c = capture({ env: { FSB_ENDPOINT: "controller" } });
  assert.equal(await sandboxCommand(["get", "x"], c.io), 2);
  assert.equal(
    c.stderr(),
    'fsb: Invalid endpoint "controller" from FSB_ENDPOINT: expected HOST:PORT\n',
  );
});

Deno.test("sandboxCommand() prints help to stdout and exits 0", async () => {
  for (
    const [args, text] of [
      [["-h"], sandboxUsage.sandbox],
      [["create", "-h"], sandboxUsage.create],
      [["rm", "--help"], sandboxUsage.delete],
    ] as const
  ) {
    const c = capture();
    assert.equal(await sandboxCommand(args, c.io), 0);
    assert.equal(c.stdout(), text);
    assert.equal(c.stderr(), "");
  }
});

Deno.test("sandboxCommand() exits 1 naming the endpoint when nothing listens there", async () => {
  const port = freePort();
  const c = capture();
  assert.equal(await sandboxCommand(["get", "x", "--endpoint", `127.0.0.1:${port}`], c.io), 1);
  assert.equal(
    c.stderr(),
    `fsb: UNAVAILABLE: Cannot reach the controller at 127.0.0.1:${port} (from --endpoint): ` +
      `Connection refused\n`,
  );
  assert.equal(c.stdout(), "");
});

Deno.test("sandboxCommand() says which source named an endpoint it cannot reach", async () => {
  const port = freePort();
  const c = capture({ env: { FSB_ENDPOINT: `127.0.0.1:${port}` } });
  assert.equal(
    await sandboxCommand(["create", "--image", "busybox", "--", "sleep", "1"], c.io),
    1,
  );
  assert.match(
    c.stderr(),
    new RegExp(
      `^fsb: UNAVAILABLE: Cannot reach the controller at 127\\.0\\.0\\.1:${port} \\(from FSB_ENDPOINT\\): `,
    ),
  );

  const home = await Deno.makeTempDir({ prefix: "fsb-cli-home-" });
  try {
    await Deno.mkdir(`${home}/.fsb`);
    await Deno.writeTextFile(
      `${home}/.fsb/config.json`,
      JSON.stringify({ endpoint: `127.0.0.1:${port}` }),
    );
    const d = capture({ home });
    assert.equal(await sandboxCommand(["ls"], d.io), 1);
    assert.match(
      d.stderr(),
      new RegExp(
        `^fsb: UNAVAILABLE: Cannot reach the controller at 127\\.0\\.0\\.1:${port} \\(from ${home}/\\.fsb/config\\.json\\): `,
      ),
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("sandboxCommand() reports an unreachable endpoint once for several deletes", async () => {
  const port = freePort();
  const c = capture();
  assert.equal(
    await sandboxCommand(["rm", "a", "b", "c", "--endpoint", `127.0.0.1:${port}`], c.io),
    1,
  );
  assert.equal(c.stderr().split("\n").filter((l) => l !== "").length, 1, c.stderr());
  assert.equal(c.stdout(), "");
});

Deno.test("sandboxCommand() exits 1 when logs -f cannot reach the endpoint", async () => {
  const port = freePort();
  const c = capture({ signal: new AbortController().signal });
  assert.equal(
    await sandboxCommand(["logs", "x", "-f", "--endpoint", `127.0.0.1:${port}`], c.io),
    1,
  );
  assert.match(c.stderr(), /^fsb: UNAVAILABLE: Cannot reach the controller at /);
});

Deno.test("sandboxCommand() tries a comma-separated endpoint list in order, past a closed port", async () => {
  const info = create(SandboxInfoSchema, {
    sandboxId: "0123456789abcdef0123456789abcdef",
    name: "x",
    namespace: "default",
    phase: "Running",
  });
  const fake = startFakeFastPath(() => ({ message: info }));
  try {
    const closed = `127.0.0.1:${freePort()}`;
    const c = capture();
    const args = ["get", "x", "-o", "json", "--endpoint", `${closed},${fake.endpoint}`];
    assert.equal(await sandboxCommand(args, c.io), 0, c.stderr());
    assert.equal(JSON.parse(c.stdout()).sandboxId, info.sandboxId);
    assert.equal(fake.calls.length, 1);

    const closed2 = `127.0.0.1:${freePort()}`;
    const d = capture();
    assert.equal(await sandboxCommand(["ls", "--endpoint", `${closed},${closed2}`], d.io), 1);
    assert.equal(
      d.stderr(),
      `fsb: UNAVAILABLE: Cannot reach the controller at ${closed},${closed2} (from --endpoint): ` +
        `Connection refused\n`,
    );
  } finally {
    await fake.close();
  }
});

Deno.test("sandboxCommand() exits 125 from exec, attach and wait when nothing listens, 1 from ps, kill and cp", async () => {
  const port = freePort();
  const endpoint = ["--endpoint", `127.0.0.1:${port}`];
  const cases: [string[], number][] = [
    [["exec", "x", "--", "true"], 125],
    [["exec", "-d", "x", "--", "true"], 125],
    [["attach", "x", "e-1"], 125],
    [["wait", "x"], 125],
    [["ps", "x"], 1],
    [["kill", "x", "e-1"], 1],
    [["cp", "x:/etc/hostname", "-"], 1],
  ];
  for (const [args, status] of cases) {
    const c = capture();
    // Flags before the command's words: after them they would be the command's.
    const line = [args[0], ...endpoint, ...args.slice(1)];
    assert.equal(await sandboxCommand(line, c.io), status, args.join(" "));
    assert.equal(
      c.stderr(),
      `fsb: UNAVAILABLE: Cannot reach the controller at 127.0.0.1:${port} (from --endpoint): ` +
        `Connection refused\n`,
      args.join(" "),
    );
  }
});
