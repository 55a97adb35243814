import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  CreateTokenRequestSchema,
  CreateTokenResponseSchema,
  ListTokensResponseSchema,
  RevokeTokenRequestSchema,
  TokenInfoSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code } from "../../proto/rpc.ts";
import { type CliIo, tokenCommand, tokenUsage } from "../../cli/mod.ts";
import { parseTokenArgs } from "../../cli/parse_token_args.ts";
import { type FakeAnswer, type FakeCall, startFakeFastPath } from "./fake_fastpath.ts";

const NOW = 1_700_000_000;

function capture(more: Partial<CliIo> = {}) {
  let out = "";
  let err = "";
  const io: CliIo = {
    stdout: (s) => out += s,
    stdoutBytes: () => {},
    stderr: (s) => err += s,
    env: {},
    home: "/nonexistent-home",
    now: () => NOW * 1000,
    ...more,
  };
  return { io, stdout: () => out, stderr: () => err };
}

// --- parsing ---------------------------------------------------------------------

const NO_CONNECTION = { endpoint: undefined, token: undefined, tlsCa: undefined, verbose: 0 };

Deno.test("parseTokenArgs() reads every create flag", () => {
  assert.deepEqual(
    parseTokenArgs([
      "create",
      "-n",
      "team-a",
      "--namespace",
      "team-b",
      "--namespace=team-c",
      "--admin",
      "--ttl",
      "1h30m",
      "--quota",
      "10",
      "-o",
      "json",
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
      kind: "create",
      endpoint: "10.0.0.1:9090",
      token: "adm1n",
      tlsCa: "/etc/fsb/ca.pem",
      verbose: 2,
      output: "json",
      request: {
        namespaces: ["team-a", "team-b", "team-c"],
        admin: true,
        ttlSeconds: 5400n,
        quota: 10,
      },
    },
  );
});

Deno.test("parseTokenArgs() leaves what create was not told to the controller", () => {
  assert.deepEqual(parseTokenArgs(["create", "-n", "team-a"]), {
    kind: "create",
    ...NO_CONNECTION,
    output: "secret",
    request: { namespaces: ["team-a"], admin: false, ttlSeconds: undefined, quota: undefined },
  });
  assert.deepEqual(parseTokenArgs(["create", "--admin", "-o", "secret"]), {
    kind: "create",
    ...NO_CONNECTION,
    output: "secret",
    request: { namespaces: [], admin: true, ttlSeconds: undefined, quota: undefined },
  });
});

Deno.test("parseTokenArgs() rounds --ttl up to whole seconds, 0 is never, and --quota 0 is sent", () => {
  const ttl = (value: string) => {
    const plan = parseTokenArgs(["create", "--admin", "--ttl", value]);
    assert.equal(plan.kind, "create");
    return plan.request.ttlSeconds;
  };
  assert.equal(ttl("90s"), 90n);
  assert.equal(ttl("250ms"), 1n);
  assert.equal(ttl("1.5s"), 2n);
  assert.equal(ttl("30d"), 30n * 86_400n);
  assert.equal(ttl("0"), 0n);
  const plan = parseTokenArgs(["create", "-n", "a", "--quota", "0"]);
  assert.equal(plan.kind, "create");
  assert.equal(plan.request.quota, 0);
  const max = parseTokenArgs(["create", "-n", "a", "--quota", "4294967295"]);
  assert.equal(max.kind, "create");
  assert.equal(max.request.quota, 4294967295);
});

Deno.test("parseTokenArgs() reads list, its ls alias, and revoke", () => {
  assert.deepEqual(parseTokenArgs(["list"]), { kind: "list", ...NO_CONNECTION, output: "table" });
  assert.deepEqual(parseTokenArgs(["ls", "-o", "json", "--token=t"]), {
    kind: "list",
    ...NO_CONNECTION,
    token: "t",
    output: "json",
  });
  assert.deepEqual(parseTokenArgs(["revoke", "tok-123"]), {
    kind: "revoke",
    ...NO_CONNECTION,
    output: "table",
    request: { id: "tok-123" },
  });
  assert.deepEqual(parseTokenArgs(["revoke", "-o", "json", "--", "-odd-id"]), {
    kind: "revoke",
    ...NO_CONNECTION,
    output: "json",
    request: { id: "-odd-id" },
  });
});

const CREATE_USAGE =
  "Usage: fsb token create (-n NS... | --admin) [--ttl DURATION] [--quota N] [flags]\n";
const LIST_USAGE = "Usage: fsb token list [flags]\n";
const REVOKE_USAGE = "Usage: fsb token revoke ID [flags]\n";
const TOKEN_USAGE = "Usage: fsb token <create|list|revoke> [flags]\n";

Deno.test("tokenCommand() exits 2 with the message and a one-line usage on bad usage", async () => {
  const cases: [string[], string][] = [
    [[], "fsb: Missing command\n" + TOKEN_USAGE],
    [["mint"], 'fsb: Unknown command "mint"\n' + TOKEN_USAGE],
    [["create"], "fsb: Missing --namespace or --admin\n" + CREATE_USAGE],
    [["create", "team-a"], 'fsb: Unexpected argument "team-a"\n' + CREATE_USAGE],
    [["create", "-n"], "fsb: Flag -n needs a value\n" + CREATE_USAGE],
    [["create", "-n", "a", "--admin=yes"], "fsb: Flag --admin takes no value\n" + CREATE_USAGE],
    [
      ["create", "-n", "a", "--ttl", "1y"],
      'fsb: Invalid duration "1y" for --ttl: use numbers with units, e.g. 90s, 5m, 1h30m or 250ms\n' +
      CREATE_USAGE,
    ],
    [
      ["create", "-n", "a", "--ttl", "3600"],
      'fsb: Invalid duration "3600" for --ttl: use numbers with units, e.g. 90s, 5m, 1h30m or 250ms\n' +
      CREATE_USAGE,
    ],
    [
      ["create", "-n", "a", "--quota", "ten"],
      'fsb: Flag --quota needs a whole number, got "ten"\n' + CREATE_USAGE,
    ],
    [
      ["create", "-n", "a", "--quota", "-1"],
      "fsb: Flag --quota needs a value\n" + CREATE_USAGE,
    ],
    [
      ["create", "-n", "a", "--quota=-1"],
      'fsb: Flag --quota needs a whole number, got "-1"\n' + CREATE_USAGE,
    ],
    [
      ["create", "-n", "a", "--quota", "4294967296"],
      'fsb: Flag --quota needs a whole number, got "4294967296"\n' + CREATE_USAGE,
    ],
    [
      ["create", "-n", "a", "-o", "table"],
      'fsb: Flag --output must be secret or json, got "table"\n' + CREATE_USAGE,
    ],
    [["create", "-n", "a", "--bogus"], "fsb: Unknown flag --bogus\n" + CREATE_USAGE],
    [["list", "x"], 'fsb: Unexpected argument "x"\n' + LIST_USAGE],
    [["list", "-n", "a"], "fsb: Unknown flag -n\n" + LIST_USAGE],
    [["ls", "-o", "yaml"], 'fsb: Flag --output must be table or json, got "yaml"\n' + LIST_USAGE],
    [["revoke"], "fsb: Missing ID\n" + REVOKE_USAGE],
    [["revoke", "a", "b"], 'fsb: Unexpected argument "b"\n' + REVOKE_USAGE],
    [
      ["revoke", "a", "-o", "secret"],
      'fsb: Flag --output must be table or json, got "secret"\n' +
      REVOKE_USAGE,
    ],
    [["revoke", "a", "-v", "x"], 'fsb: Flag -v needs a whole number, got "x"\n' + REVOKE_USAGE],
  ];
  for (const [args, stderr] of cases) {
    const c = capture();
    assert.equal(await tokenCommand(args, c.io), 2, args.join(" "));
    assert.equal(c.stderr(), stderr, args.join(" "));
    assert.equal(c.stdout(), "");
  }
});

Deno.test("tokenCommand() exits 2 without a usage line on a bad endpoint, token or CA", async () => {
  const cases: [Partial<CliIo>, string[], string][] = [
    [
      { env: { FSB_ENDPOINT: "controller" } },
      ["list"],
      'fsb: Invalid endpoint "controller" from FSB_ENDPOINT: expected HOST:PORT\n',
    ],
    [
      {},
      ["list", "--token", "a b"],
      "fsb: Invalid token from --token: expected the secret fsb token create printed " +
      "(printable ASCII, no spaces)\n",
    ],
  ];
  for (const [more, args, stderr] of cases) {
    const c = capture(more);
    assert.equal(await tokenCommand(args, c.io), 2);
    assert.equal(c.stderr(), stderr);
  }
  const c = capture();
  assert.equal(await tokenCommand(["list", "--tls-ca", "/nonexistent/ca.pem"], c.io), 2);
  assert.match(
    c.stderr(),
    /^fsb: Cannot read the TLS CA \/nonexistent\/ca\.pem \(from --tls-ca\): /,
  );
});

Deno.test("tokenCommand() prints help to stdout and exits 0", async () => {
  for (
    const [args, text] of [
      [["-h"], tokenUsage.token],
      [["help"], tokenUsage.token],
      [["create", "-h"], tokenUsage.create],
      [["ls", "--help"], tokenUsage.list],
      [["revoke", "-h"], tokenUsage.revoke],
    ] as const
  ) {
    const c = capture();
    assert.equal(await tokenCommand(args, c.io), 0);
    assert.equal(c.stdout(), text);
    assert.equal(c.stderr(), "");
  }
});

// --- calls -------------------------------------------------------------------------

const TOKEN = create(TokenInfoSchema, {
  id: "tok-1a2b",
  namespaces: ["team-a", "team-b"],
  admin: false,
  expireTime: BigInt(NOW + 3600),
  createdAt: BigInt(NOW - 120),
});

async function withFake(
  answer: (call: FakeCall) => FakeAnswer,
  fn: (endpoint: string, calls: FakeCall[]) => Promise<void>,
): Promise<void> {
  const fake = startFakeFastPath(answer);
  try {
    await fn(fake.endpoint, fake.calls);
  } finally {
    await fake.close();
  }
}

const created = () => ({
  message: create(CreateTokenResponseSchema, { token: TOKEN, secret: "fsb_s3cret" }),
});

Deno.test("token create prints the secret alone and sends the request with the token", () =>
  withFake(created, async (endpoint, calls) => {
    const c = capture({ env: { FSB_TOKEN: "adm1n" } });
    const args = ["create", "-n", "team-a", "-n", "team-b", "--ttl", "1h", "--quota", "5"];
    assert.equal(await tokenCommand([...args, "--endpoint", endpoint], c.io), 0, c.stderr());
    assert.equal(c.stdout(), "fsb_s3cret\n");
    assert.equal(c.stderr(), "");
    assert.equal(calls.length, 1);
    assert.equal(calls[0].method, "CreateToken");
    assert.equal(calls[0].headers.get("authorization"), "Bearer adm1n");
    assert.deepEqual(
      calls[0].request,
      create(CreateTokenRequestSchema, {
        namespaces: ["team-a", "team-b"],
        ttlSeconds: 3600n,
        quota: 5,
      }),
    );
  }));

Deno.test("token create -o json prints id, secret, namespaces, admin and expireTime", () =>
  withFake(created, async (endpoint, calls) => {
    const c = capture();
    assert.equal(
      await tokenCommand(["create", "--admin", "-o", "json", "--endpoint", endpoint], c.io),
      0,
    );
    assert.equal(
      c.stdout(),
      JSON.stringify(
        {
          id: "tok-1a2b",
          secret: "fsb_s3cret",
          namespaces: ["team-a", "team-b"],
          admin: false,
          expireTime: String(NOW + 3600),
        },
        null,
        2,
      ) + "\n",
    );
    // No token anywhere: no authorization header.
    assert.equal(calls[0].headers.get("authorization"), null);
    assert.deepEqual(calls[0].request, create(CreateTokenRequestSchema, { admin: true }));
  }));

Deno.test("token list prints a table, JSON without secrets, or says there are none", async () => {
  const tokens = [
    TOKEN,
    create(TokenInfoSchema, { id: "admin-0", admin: true, createdAt: BigInt(NOW - 3 * 86_400) }),
    create(TokenInfoSchema, {
      id: "old",
      namespaces: ["ci"],
      expireTime: BigInt(NOW - 5),
      createdAt: BigInt(NOW - 7200),
    }),
  ];
  let answer = create(ListTokensResponseSchema, { tokens });
  await withFake(() => ({ message: answer }), async (endpoint, calls) => {
    const c = capture({ env: { FSB_ENDPOINT: endpoint, FSB_TOKEN: "adm1n" } });
    assert.equal(await tokenCommand(["list"], c.io), 0, c.stderr());
    assert.equal(
      c.stdout(),
      [
        "ID         NAMESPACES      ADMIN   EXPIRES   CREATED",
        "tok-1a2b   team-a,team-b   no      in 1h     2m ago",
        "admin-0    *               yes     never     3d ago",
        "old        ci              no      expired   2h ago",
        "",
      ].join("\n"),
    );
    assert.equal(calls[0].method, "ListTokens");
    assert.equal(calls[0].headers.get("authorization"), "Bearer adm1n");

    const j = capture({ env: { FSB_ENDPOINT: endpoint } });
    assert.equal(await tokenCommand(["ls", "-o", "json"], j.io), 0, j.stderr());
    const json = JSON.parse(j.stdout());
    assert.ok(Array.isArray(json));
    assert.deepEqual(json[0], {
      id: "tok-1a2b",
      namespaces: ["team-a", "team-b"],
      admin: false,
      expireTime: String(NOW + 3600),
      createdAt: String(NOW - 120),
    });
    assert.deepEqual(json[1].expireTime, "0");
    assert.ok(!j.stdout().includes("secret"));

    answer = create(ListTokensResponseSchema, { tokens: [] });
    const e = capture({ env: { FSB_ENDPOINT: endpoint } });
    assert.equal(await tokenCommand(["list"], e.io), 0);
    assert.equal(e.stdout(), "");
    assert.equal(e.stderr(), "No tokens\n");
    const ej = capture({ env: { FSB_ENDPOINT: endpoint } });
    assert.equal(await tokenCommand(["list", "-o", "json"], ej.io), 0);
    assert.equal(ej.stdout(), "[]\n");
  });
});

Deno.test("token revoke says what it revoked, or prints it as JSON", () =>
  withFake(() => ({ message: TOKEN }), async (endpoint, calls) => {
    const c = capture({ env: { FSB_ENDPOINT: endpoint, FSB_TOKEN: "adm1n" } });
    assert.equal(await tokenCommand(["revoke", "tok-1a2b"], c.io), 0, c.stderr());
    assert.equal(c.stdout(), 'Revoked token "tok-1a2b"\n');
    assert.deepEqual(calls[0].request, create(RevokeTokenRequestSchema, { id: "tok-1a2b" }));
    assert.equal(calls[0].headers.get("authorization"), "Bearer adm1n");
    const j = capture({ env: { FSB_ENDPOINT: endpoint } });
    assert.equal(await tokenCommand(["revoke", "tok-1a2b", "-o", "json"], j.io), 0);
    assert.equal(JSON.parse(j.stdout()).id, "tok-1a2b");
  }));

Deno.test("token commands exit 1 with the gRPC code name when the controller refuses", () =>
  withFake((call) => {
    if (call.headers.get("authorization") === null) {
      return { code: Code.UNAUTHENTICATED, error: "missing token" };
    }
    if (call.method === "RevokeToken") return { code: Code.NOT_FOUND, error: 'No token "x"' };
    return { code: Code.PERMISSION_DENIED, error: "tokens need an admin token" };
  }, async (endpoint) => {
    const cases: [Partial<CliIo>, string[], string][] = [
      [
        {},
        ["create", "-n", "a"],
        "fsb: UNAUTHENTICATED: missing token (no token: pass --token, set FSB_TOKEN, " +
        "or run fsb up, which writes ~/.fsb/config.json)\n",
      ],
      [
        { env: { FSB_TOKEN: "team" } },
        ["list"],
        "fsb: PERMISSION_DENIED: tokens need an admin token\n",
      ],
      [{}, ["revoke", "x", "--token", "adm1n"], 'fsb: NOT_FOUND: No token "x"\n'],
    ];
    for (const [more, args, stderr] of cases) {
      const c = capture(more);
      assert.equal(await tokenCommand([...args, "--endpoint", endpoint], c.io), 1);
      assert.equal(c.stderr(), stderr);
      assert.equal(c.stdout(), "");
    }
  }));

Deno.test("tokenCommand() exits 1 naming the endpoint when nothing listens there", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const c = capture();
  assert.equal(await tokenCommand(["list", "--endpoint", `127.0.0.1:${port}`], c.io), 1);
  assert.equal(
    c.stderr(),
    `fsb: UNAVAILABLE: Cannot reach the controller at 127.0.0.1:${port} (from --endpoint): ` +
      `Connection refused\n`,
  );
});
