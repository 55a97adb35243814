import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  ProfileChunkSchema,
  ProfileRequestSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code } from "../../proto/rpc.ts";
import { type CliIo, debugCommand, debugUsage } from "../../cli/mod.ts";
import { parseDebugArgs } from "../../cli/debug_command.ts";
import { flameGraphSvg, parseCpuProfile } from "../../cli/flamegraph.ts";
import { type FakeAnswer, type FakeCall, startFakeFastPath } from "./fake_fastpath.ts";

function capture(more: Partial<CliIo> = {}) {
  let out = "";
  let err = "";
  const bytes: Uint8Array[] = [];
  const io: CliIo = {
    stdout: (s) => out += s,
    stdoutBytes: (b) => {
      bytes.push(b.slice());
    },
    stderr: (s) => err += s,
    env: {},
    home: "/nonexistent-home",
    ...more,
  };
  return {
    io,
    stdout: () => out,
    stderr: () => err,
    stdoutBytes: () => new TextDecoder().decode(concat(bytes)),
  };
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// --- parsing ---------------------------------------------------------------------

const NO_CONNECTION = { endpoint: undefined, token: undefined, tlsCa: undefined, verbose: 0 };

Deno.test("parseDebugArgs() reads every profile flag", () => {
  assert.deepEqual(
    parseDebugArgs([
      "profile",
      "--seconds",
      "5",
      "--agent",
      "agent-1",
      "-o",
      "agent.cpuprofile",
      "--endpoint",
      "10.0.0.1:9090",
      "--token",
      "adm1n",
      "--tls-ca",
      "/etc/fsb/ca.pem",
      "-v",
      "2",
    ]),
    {
      kind: "profile",
      endpoint: "10.0.0.1:9090",
      token: "adm1n",
      tlsCa: "/etc/fsb/ca.pem",
      verbose: 2,
      request: { kind: "cpu", seconds: 5, agentId: "agent-1" },
      output: "agent.cpuprofile",
    },
  );
});

Deno.test("parseDebugArgs() samples 30 s by default, and --heap asks for a snapshot", () => {
  assert.deepEqual(parseDebugArgs(["profile", "-o", "controller.cpuprofile"]), {
    kind: "profile",
    ...NO_CONNECTION,
    request: { kind: "cpu", seconds: 30 },
    output: "controller.cpuprofile",
  });
  assert.deepEqual(
    parseDebugArgs(["profile", "--heap", "--output=-"]),
    {
      kind: "profile",
      ...NO_CONNECTION,
      request: { kind: "heap" },
      output: "-",
    },
  );
  const max = parseDebugArgs(["profile", "--seconds", "300", "-o", "p"]);
  assert.equal(max.kind === "profile" && max.request.seconds, 300);
  const one = parseDebugArgs(["profile", "--seconds", "1", "-o", "p", "--agent", "a"]);
  assert.deepEqual(one.kind === "profile" && one.request, {
    kind: "cpu",
    seconds: 1,
    agentId: "a",
  });
});

Deno.test("parseDebugArgs() reads flamegraph: a file or stdin, a title, --idle", () => {
  assert.deepEqual(parseDebugArgs(["flamegraph", "controller.cpuprofile", "-o", "flame.svg"]), {
    kind: "flamegraph",
    input: "controller.cpuprofile",
    output: "flame.svg",
    title: "Flame graph: controller.cpuprofile",
    idle: false,
    verbose: 0,
  });
  assert.deepEqual(
    parseDebugArgs(["flamegraph", "-o", "-", "--title", "Under load", "--idle", "--", "-"]),
    {
      kind: "flamegraph",
      input: "-",
      output: "-",
      title: "Under load",
      idle: true,
      verbose: 0,
    },
  );
  const stdin = parseDebugArgs(["flamegraph", "-", "-o", "f.svg"]);
  assert.equal(stdin.kind === "flamegraph" && stdin.title, "Flame graph: stdin");
});

const DEBUG_USAGE = "Usage: fsb debug <profile|flamegraph> [flags]\n";
const PROFILE_USAGE =
  "Usage: fsb debug profile -o FILE [--seconds N] [--agent ID] [--heap] [flags]\n";
const FLAME_USAGE =
  "Usage: fsb debug flamegraph FILE.cpuprofile -o FILE.svg [--title TEXT] [--idle]\n";

Deno.test("debugCommand() exits 2 with the message and a one-line usage on bad usage", async () => {
  const cases: [string[], string][] = [
    [[], "fsb: Missing command\n" + DEBUG_USAGE],
    [["pprof"], 'fsb: Unknown command "pprof"\n' + DEBUG_USAGE],
    [["profile"], "fsb: Missing -o FILE (- writes to stdout)\n" + PROFILE_USAGE],
    [["profile", "-o"], "fsb: Flag -o needs a value\n" + PROFILE_USAGE],
    [
      ["profile", "-o="],
      "fsb: Flag --output needs a file name (- writes to stdout)\n" + PROFILE_USAGE,
    ],
    [["profile", "-o", "p", "extra"], 'fsb: Unexpected argument "extra"\n' + PROFILE_USAGE],
    [["profile", "-o", "p", "--", "x"], 'fsb: Unexpected argument "x"\n' + PROFILE_USAGE],
    [
      ["profile", "-o", "p", "--seconds", "0"],
      'fsb: Flag --seconds needs a whole number from 1 to 300, got "0"\n' + PROFILE_USAGE,
    ],
    [
      ["profile", "-o", "p", "--seconds", "301"],
      'fsb: Flag --seconds needs a whole number from 1 to 300, got "301"\n' + PROFILE_USAGE,
    ],
    [
      ["profile", "-o", "p", "--seconds", "30s"],
      'fsb: Flag --seconds needs a whole number from 1 to 300, got "30s"\n' + PROFILE_USAGE,
    ],
    [
      ["profile", "-o", "p", "--seconds=1.5"],
      'fsb: Flag --seconds needs a whole number from 1 to 300, got "1.5"\n' + PROFILE_USAGE,
    ],
    [
      ["profile", "-o", "p", "--seconds", "-1"],
      "fsb: Flag --seconds needs a value\n" + PROFILE_USAGE,
    ],
    [
      ["profile", "-o", "p", "--heap", "--seconds", "5"],
      "fsb: Flag --seconds is for CPU profiles: --heap takes a snapshot at once\n" + PROFILE_USAGE,
    ],
    [["profile", "-o", "p", "--agent="], "fsb: Flag --agent needs an agent ID\n" + PROFILE_USAGE],
    [["profile", "-o", "p", "--heap=yes"], "fsb: Flag --heap takes no value\n" + PROFILE_USAGE],
    [["profile", "-o", "p", "--idle"], "fsb: Unknown flag --idle\n" + PROFILE_USAGE],
    [
      ["profile", "-o", "p", "-v", "x"],
      'fsb: Flag -v needs a whole number, got "x"\n' + PROFILE_USAGE,
    ],
    [["flamegraph"], "fsb: Missing FILE.cpuprofile\n" + FLAME_USAGE],
    [["flamegraph", "p.cpuprofile"], "fsb: Missing -o FILE (- writes to stdout)\n" + FLAME_USAGE],
    [
      ["flamegraph", "a.cpuprofile", "b.cpuprofile", "-o", "f.svg"],
      'fsb: Unexpected argument "b.cpuprofile"\n' + FLAME_USAGE,
    ],
    [
      ["flamegraph", "p", "-o", "f", "--seconds", "3"],
      "fsb: Unknown flag --seconds\n" + FLAME_USAGE,
    ],
    [["flamegraph", "p", "-o", "f", "--token", "t"], "fsb: Unknown flag --token\n" + FLAME_USAGE],
    [["flamegraph", "p", "-o", "f", "--title"], "fsb: Flag --title needs a value\n" + FLAME_USAGE],
  ];
  for (const [args, stderr] of cases) {
    const c = capture();
    assert.equal(await debugCommand(args, c.io), 2, args.join(" "));
    assert.equal(c.stderr(), stderr, args.join(" "));
    assert.equal(c.stdout(), "");
  }
});

Deno.test("debugCommand() exits 2 without a usage line on a bad endpoint or token", async () => {
  const cases: [Partial<CliIo>, string[], string][] = [
    [
      { env: { FSB_ENDPOINT: "controller" } },
      ["profile", "-o", "p"],
      'fsb: Invalid endpoint "controller" from FSB_ENDPOINT: expected HOST:PORT\n',
    ],
    [
      {},
      ["profile", "-o", "p", "--token", "a b"],
      "fsb: Invalid token from --token: expected the secret fsb token create printed " +
      "(printable ASCII, no spaces)\n",
    ],
  ];
  for (const [more, args, stderr] of cases) {
    const c = capture(more);
    assert.equal(await debugCommand(args, c.io), 2);
    assert.equal(c.stderr(), stderr);
  }
});

Deno.test("debugCommand() prints help to stdout and exits 0", async () => {
  for (
    const [args, text] of [
      [["-h"], debugUsage.debug],
      [["help"], debugUsage.debug],
      [["--help"], debugUsage.debug],
      [["profile", "-h"], debugUsage.profile],
      [["profile", "--help", "--seconds", "0"], debugUsage.profile],
      [["flamegraph", "-h"], debugUsage.flamegraph],
    ] as const
  ) {
    const c = capture();
    assert.equal(await debugCommand(args, c.io), 0);
    assert.equal(c.stdout(), text);
    assert.equal(c.stderr(), "");
  }
  assert.ok(debugUsage.profile.startsWith(PROFILE_USAGE));
  assert.ok(debugUsage.flamegraph.startsWith(FLAME_USAGE));
});

// --- profile, against a fake FastPath -------------------------------------------------

const PROFILE_JSON = JSON.stringify({
  nodes: [
    {
      id: 1,
      callFrame: { functionName: "(root)", url: "", lineNumber: -1, columnNumber: -1 },
      children: [2],
    },
    {
      id: 2,
      callFrame: {
        functionName: "createSandbox",
        url: "file:///c.ts",
        lineNumber: 9,
        columnNumber: 2,
      },
    },
  ],
  startTime: 5_000_000,
  endTime: 7_000_000,
  samples: [2, 2, 1],
  timeDeltas: [1000, 1000, 1000],
});

const chunk = (text: string) => ({
  message: create(ProfileChunkSchema, { data: new TextEncoder().encode(text) }),
});

async function withFake(
  answer: (call: FakeCall) => FakeAnswer,
  fn: (endpoint: string, calls: FakeCall[], dir: string) => Promise<void>,
): Promise<void> {
  const fake = startFakeFastPath(answer);
  const dir = await Deno.makeTempDir({ prefix: "fsb-debug-test-" });
  try {
    await fn(fake.endpoint, fake.calls, dir);
  } finally {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function filesIn(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("debug profile writes the profile, says what it wrote, and sends the token", () =>
  withFake(() => chunk(PROFILE_JSON), async (endpoint, calls, dir) => {
    const c = capture({ env: { FSB_TOKEN: "adm1n", FSB_ENDPOINT: endpoint } });
    const out = `${dir}/controller.cpuprofile`;
    assert.equal(await debugCommand(["profile", "--seconds", "2", "-o", out], c.io), 0, c.stderr());
    assert.equal(await Deno.readTextFile(out), PROFILE_JSON);
    assert.equal(
      c.stderr(),
      `CPU profile of the controller: 3 samples over 2.00 s, ${PROFILE_JSON.length} bytes ` +
        `written to ${out}\n`,
    );
    assert.equal(c.stdout(), "");
    assert.equal(calls.length, 1);
    assert.equal(calls[0].method, "Profile");
    assert.equal(calls[0].headers.get("authorization"), "Bearer adm1n");
    assert.deepEqual(calls[0].request, create(ProfileRequestSchema, { kind: "cpu", seconds: 2 }));
    // Made mode 0600 beside the target, then renamed: nothing else is left behind.
    assert.deepEqual(await filesIn(dir), ["controller.cpuprofile"]);
    assert.equal((await Deno.stat(out)).mode! & 0o777, 0o600);
  }));

Deno.test("debug profile --agent names the agent; -o - writes the bytes to stdout", () =>
  withFake(() => chunk(PROFILE_JSON), async (endpoint, calls) => {
    const c = capture({ env: { FSB_ENDPOINT: endpoint } });
    assert.equal(await debugCommand(["profile", "--agent", "agent-7", "-o", "-"], c.io), 0);
    assert.equal(c.stdoutBytes(), PROFILE_JSON);
    assert.equal(
      c.stderr(),
      `CPU profile of agent "agent-7": 3 samples over 2.00 s, ${PROFILE_JSON.length} bytes ` +
        `written to stdout\n`,
    );
    assert.deepEqual(
      calls[0].request,
      create(ProfileRequestSchema, { kind: "cpu", seconds: 30, agentId: "agent-7" }),
    );
    assert.equal(calls[0].headers.get("authorization"), null);
  }));

Deno.test("debug profile --heap writes the snapshot and counts only bytes", () =>
  withFake(() => chunk('{"snapshot":{},"nodes":[]}'), async (endpoint, calls, dir) => {
    const c = capture({ env: { FSB_ENDPOINT: endpoint } });
    const out = `${dir}/heap.heapsnapshot`;
    assert.equal(await debugCommand(["profile", "--heap", "-o", out], c.io), 0, c.stderr());
    assert.equal(await Deno.readTextFile(out), '{"snapshot":{},"nodes":[]}');
    assert.equal(c.stderr(), `Heap snapshot of the controller: 26 bytes written to ${out}\n`);
    assert.deepEqual(calls[0].request, create(ProfileRequestSchema, { kind: "heap" }));
  }));

Deno.test("debug profile leaves the file as it was when what came is not whole", async () => {
  const cases: [string, string[], string][] = [
    [
      '{"nodes":',
      [],
      "fsb: CPU profile of the controller: the controller sent 9 bytes that are not JSON: ",
    ],
    [
      '{"nodes":[]}',
      [],
      'fsb: CPU profile of the controller: the controller sent 12 bytes that are not a V8 CPU profile: no "nodes"',
    ],
    [
      '{"snapshot":{"meta',
      ["--heap"],
      "fsb: Heap snapshot of the controller: cut short after 18 bytes",
    ],
    ["", [], "fsb: CPU profile of the controller: the controller sent nothing"],
  ];
  for (const [reply, flags, message] of cases) {
    await withFake(() => chunk(reply), async (endpoint, _calls, dir) => {
      const out = `${dir}/p.out`;
      await Deno.writeTextFile(out, "before");
      const c = capture({ env: { FSB_ENDPOINT: endpoint } });
      assert.equal(await debugCommand(["profile", ...flags, "-o", out], c.io), 1, reply);
      assert.ok(c.stderr().startsWith(message), c.stderr());
      assert.ok(c.stderr().endsWith(` (${out} not written)\n`), c.stderr());
      assert.equal(await Deno.readTextFile(out), "before");
      assert.deepEqual(await filesIn(dir), ["p.out"]);
    });
  }
});

Deno.test("debug profile exits 1 with the gRPC code name when the controller refuses", () =>
  withFake((call) => {
    if (call.headers.get("authorization") === null) {
      return { code: Code.UNAUTHENTICATED, error: "missing token" };
    }
    if ((call.request as { agentId: string }).agentId === "ghost") {
      return { code: Code.NOT_FOUND, error: 'Agent "ghost" not found' };
    }
    return { code: Code.PERMISSION_DENIED, error: "take profiles needs an admin token" };
  }, async (endpoint, _calls, dir) => {
    const out = `${dir}/p.cpuprofile`;
    const cases: [Partial<CliIo>, string[], string][] = [
      [
        {},
        ["profile", "-o", out],
        "fsb: UNAUTHENTICATED: missing token (no token: pass --token, set FSB_TOKEN, " +
        "or run fsb up, which writes ~/.fsb/config.json)\n",
      ],
      [
        { env: { FSB_TOKEN: "team" } },
        ["profile", "-o", out],
        "fsb: PERMISSION_DENIED: take profiles needs an admin token\n",
      ],
      [
        {},
        ["profile", "--agent", "ghost", "-o", out, "--token", "adm1n"],
        'fsb: NOT_FOUND: Agent "ghost" not found\n',
      ],
    ];
    for (const [more, args, stderr] of cases) {
      const c = capture(more);
      assert.equal(await debugCommand([...args, "--endpoint", endpoint], c.io), 1);
      assert.equal(c.stderr(), stderr);
      assert.equal(c.stdout(), "");
      assert.deepEqual(await filesIn(dir), []);
    }
  }));

Deno.test("debug profile fails before calling when the file cannot be written", () =>
  withFake(() => chunk(PROFILE_JSON), async (endpoint, calls, dir) => {
    const c = capture({ env: { FSB_ENDPOINT: endpoint } });
    const out = `${dir}/no/such/dir/p.cpuprofile`;
    assert.equal(await debugCommand(["profile", "-o", out], c.io), 1);
    assert.match(c.stderr(), new RegExp(`^fsb: Cannot write ${out}: No such file or directory`));
    assert.equal(calls.length, 0);
  }));

Deno.test("debug profile exits 1 naming the endpoint when nothing listens there", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const dir = await Deno.makeTempDir({ prefix: "fsb-debug-test-" });
  try {
    const c = capture();
    const args = ["profile", "-o", `${dir}/p`, "--endpoint", `127.0.0.1:${port}`];
    assert.equal(await debugCommand(args, c.io), 1);
    assert.equal(
      c.stderr(),
      `fsb: UNAVAILABLE: Cannot reach the controller at 127.0.0.1:${port} (from --endpoint): ` +
        `Connection refused\n`,
    );
    assert.deepEqual(await filesIn(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// --- flamegraph -------------------------------------------------------------------------

Deno.test("debug flamegraph draws the SVG to a file or stdout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-debug-test-" });
  try {
    const input = `${dir}/p.cpuprofile`;
    await Deno.writeTextFile(input, PROFILE_JSON);
    const expected = flameGraphSvg(parseCpuProfile(PROFILE_JSON), {
      title: `Flame graph: ${input}`,
    });
    const c = capture();
    assert.equal(await debugCommand(["flamegraph", input, "-o", `${dir}/f.svg`], c.io), 0);
    assert.equal(c.stderr(), "");
    assert.equal(await Deno.readTextFile(`${dir}/f.svg`), expected);
    assert.ok(expected.includes("<title>createSandbox (file:///c.ts:10:3): 2 samples, 66.67%"));

    const s = capture();
    assert.equal(
      await debugCommand(["flamegraph", input, "-o", "-", "--title", "T", "--idle"], s.io),
      0,
    );
    assert.equal(
      s.stdout(),
      flameGraphSvg(parseCpuProfile(PROFILE_JSON), { title: "T", idle: true }),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("debug flamegraph exits 1 when the profile cannot be read, drawn or written", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-debug-test-" });
  try {
    await Deno.writeTextFile(`${dir}/bad.cpuprofile`, '{"nodes": 1}');
    await Deno.writeTextFile(`${dir}/ok.cpuprofile`, PROFILE_JSON);
    const cases: [string[], RegExp][] = [
      [
        ["flamegraph", `${dir}/missing.cpuprofile`, "-o", `${dir}/f.svg`],
        new RegExp(`^fsb: Cannot read ${dir}/missing\\.cpuprofile: No such file or directory`),
      ],
      [
        ["flamegraph", `${dir}/bad.cpuprofile`, "-o", `${dir}/f.svg`],
        new RegExp(
          `^fsb: Cannot draw ${dir}/bad\\.cpuprofile: not a V8 CPU profile: no "nodes"\n$`,
        ),
      ],
      [
        ["flamegraph", `${dir}/ok.cpuprofile`, "-o", `${dir}/no/f.svg`],
        new RegExp(`^fsb: Cannot write ${dir}/no/f\\.svg: No such file or directory`),
      ],
    ];
    for (const [args, message] of cases) {
      const c = capture();
      assert.equal(await debugCommand(args, c.io), 1, args.join(" "));
      assert.match(c.stderr(), message);
      assert.equal(c.stdout(), "");
    }
    assert.deepEqual(await filesIn(dir), ["bad.cpuprofile", "ok.cpuprofile"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
