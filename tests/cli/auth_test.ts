// What the CLI sends the controller to prove who it is: the Authorization
// header on every call, taken from --token, FSB_TOKEN or ~/.fsb/config.json
// (never from the working directory), and what it says when the controller
// answers UNAUTHENTICATED.
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  ListSandboxesResponseSchema,
  SandboxInfoSchema,
} from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code } from "../../proto/rpc.ts";
import { type CliIo, sandboxCommand } from "../../cli/mod.ts";
import { makeTestCerts } from "../support/certs.ts";
import { type FakeCall, startFakeFastPath } from "./fake_fastpath.ts";

function capture(more: Partial<CliIo> = {}) {
  let out = "";
  let err = "";
  const io: CliIo = {
    stdout: (s) => out += s,
    stdoutBytes: () => {},
    stderr: (s) => err += s,
    env: {},
    home: "/nonexistent-home",
    now: () => 1_700_000_000_000,
    ...more,
  };
  return { io, stdout: () => out, stderr: () => err };
}

async function withHome(config: unknown, fn: (home: string) => Promise<void>): Promise<void> {
  const home = await Deno.makeTempDir({ prefix: "fsb-cli-home-" });
  try {
    if (config !== undefined) {
      await Deno.mkdir(`${home}/.fsb`);
      await Deno.writeTextFile(`${home}/.fsb/config.json`, JSON.stringify(config));
    }
    await fn(home);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

/** A controller that knows one token, as the real one does: none or another is UNAUTHENTICATED. */
function controllerWithToken(secret: string, tls?: { cert: string; key: string }) {
  return startFakeFastPath((call: FakeCall) => {
    const auth = call.headers.get("authorization");
    if (auth === null) return { code: Code.UNAUTHENTICATED, error: "missing token" };
    if (auth !== `Bearer ${secret}`) return { code: Code.UNAUTHENTICATED, error: "unknown token" };
    if (call.method === "ListSandboxes") {
      return { message: create(ListSandboxesResponseSchema, { sandboxes: [] }) };
    }
    return { message: create(SandboxInfoSchema, { name: "x", namespace: "default" }) };
  }, tls);
}

Deno.test("every sandbox command sends authorization: Bearer with the token", async () => {
  const fake = controllerWithToken("s3cret");
  try {
    const commands = [
      ["create", "x", "--image", "busybox"],
      ["get", "x"],
      ["list"],
      ["rm", "x", "y"],
      ["update", "x", "--label", "a=b"],
      ["reset", "x"],
    ];
    for (const args of commands) {
      const c = capture();
      const code = await sandboxCommand(
        [...args, "--endpoint", fake.endpoint, "--token", "s3cret"],
        c.io,
      );
      assert.equal(code, 0, `${args.join(" ")}: ${c.stderr()}`);
    }
    assert.deepEqual(fake.calls.map((c) => c.method), [
      "CreateSandbox",
      "GetSandbox",
      "ListSandboxes",
      "DeleteSandbox",
      "DeleteSandbox",
      "UpdateSandbox",
      "UpdateSandbox",
    ]);
    for (const call of fake.calls) {
      assert.equal(call.headers.get("authorization"), "Bearer s3cret", call.method);
    }
  } finally {
    await fake.close();
  }
});

Deno.test("logs sends the token too", async () => {
  const fake = startFakeFastPath(() => ({ code: Code.NOT_FOUND, error: "no such sandbox" }));
  try {
    const c = capture();
    assert.equal(
      await sandboxCommand(["logs", "x", "--endpoint", fake.endpoint, "--token", "t0k"], c.io),
      1,
    );
    assert.equal(c.stderr(), "fsb: NOT_FOUND: no such sandbox\n");
    assert.equal(fake.calls[0].method, "StreamLogs");
    assert.equal(fake.calls[0].headers.get("authorization"), "Bearer t0k");
  } finally {
    await fake.close();
  }
});

Deno.test("the token comes from --token, else FSB_TOKEN, else ~/.fsb/config.json", async () => {
  const fake = startFakeFastPath(() => ({
    message: create(ListSandboxesResponseSchema, { sandboxes: [] }),
  }));
  try {
    await withHome({ endpoint: fake.endpoint, token: "from-config" }, async (home) => {
      const cases: [Partial<CliIo>, string[], string][] = [
        [{ env: { FSB_TOKEN: "from-env" } }, ["--token", "from-flag"], "from-flag"],
        [{ env: { FSB_TOKEN: "from-env" } }, [], "from-env"],
        [{ env: { FSB_TOKEN: "" } }, [], "from-config"],
      ];
      for (const [more, flags, want] of cases) {
        const c = capture({ home, ...more });
        assert.equal(await sandboxCommand(["ls", ...flags], c.io), 0, c.stderr());
        assert.equal(fake.calls.at(-1)?.headers.get("authorization"), `Bearer ${want}`);
      }
    });
  } finally {
    await fake.close();
  }
});

Deno.test("without a token no authorization is sent, and UNAUTHENTICATED says how to get one", async () => {
  const fake = controllerWithToken("s3cret");
  try {
    const c = capture({ env: { FSB_ENDPOINT: fake.endpoint } });
    assert.equal(await sandboxCommand(["get", "x"], c.io), 1);
    assert.equal(fake.calls.length, 1);
    assert.equal(fake.calls[0].headers.get("authorization"), null);
    assert.equal(
      c.stderr(),
      "fsb: UNAUTHENTICATED: missing token (no token: pass --token, set FSB_TOKEN, " +
        "or run fsb up, which writes ~/.fsb/config.json)\n",
    );
    assert.equal(c.stdout(), "");
  } finally {
    await fake.close();
  }
});

Deno.test("UNAUTHENTICATED with a token says where that token came from", async () => {
  const fake = controllerWithToken("s3cret");
  try {
    const c = capture({ env: { FSB_ENDPOINT: fake.endpoint, FSB_TOKEN: "stale" } });
    assert.equal(await sandboxCommand(["ls"], c.io), 1);
    assert.equal(c.stderr(), "fsb: UNAUTHENTICATED: unknown token (token from FSB_TOKEN)\n");
    await withHome({ endpoint: fake.endpoint, token: "old" }, async (home) => {
      const d = capture({ home });
      assert.equal(await sandboxCommand(["ls"], d.io), 1);
      assert.equal(
        d.stderr(),
        `fsb: UNAUTHENTICATED: unknown token (token from ${home}/.fsb/config.json)\n`,
      );
    });
  } finally {
    await fake.close();
  }
});

Deno.test("-v 4 says where the endpoint and token came from, never the token", async () => {
  const fake = controllerWithToken("s3cret");
  try {
    const c = capture({ env: { FSB_TOKEN: "s3cret" } });
    assert.equal(await sandboxCommand(["ls", "--endpoint", fake.endpoint, "-v", "4"], c.io), 0);
    assert.equal(
      c.stderr().split("\n")[0],
      `fsb: endpoint ${fake.endpoint} (--endpoint), token from FSB_TOKEN, no TLS`,
    );
    assert.ok(!c.stderr().includes("s3cret"));
  } finally {
    await fake.close();
  }
});

Deno.test("a malformed token is a usage error that does not print it", async () => {
  const c = capture({ env: { FSB_TOKEN: "has space" } });
  assert.equal(await sandboxCommand(["ls"], c.io), 2);
  assert.equal(
    c.stderr(),
    "fsb: Invalid token from FSB_TOKEN: expected the secret fsb token create printed " +
      "(printable ASCII, no spaces)\n",
  );
});

Deno.test("with a TLS CA the token goes over TLS, and a CA that did not sign the server fails", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-cli-tls-" });
  const certs = await makeTestCerts(dir);
  const fake = controllerWithToken("s3cret", {
    cert: certs.serverCertPem,
    key: certs.serverKeyPem,
  });
  try {
    await Deno.writeTextFile(`${dir}/ca.pem`, certs.caPem);
    await Deno.writeTextFile(`${dir}/other.pem`, certs.otherCaPem);
    const c = capture();
    const args = ["get", "x", "--endpoint", fake.endpoint, "--token", "s3cret"];
    assert.equal(await sandboxCommand([...args, "--tls-ca", `${dir}/ca.pem`], c.io), 0, c.stderr());
    assert.equal(fake.calls.length, 1);
    assert.equal(fake.calls[0].headers.get("authorization"), "Bearer s3cret");

    // The CA from ~/.fsb/config.json, as a path relative to ~/.fsb/.
    await withHome({ endpoint: fake.endpoint, token: "s3cret", tlsCa: "ca.pem" }, async (home) => {
      await Deno.copyFile(`${dir}/ca.pem`, `${home}/.fsb/ca.pem`);
      const d = capture({ home });
      assert.equal(await sandboxCommand(["ls"], d.io), 0, d.stderr());
    });
    assert.equal(fake.calls.length, 2);

    // Another CA: the handshake fails and nothing reaches the server.
    const e = capture({ env: { FSB_TLS_CA: `${dir}/other.pem` } });
    assert.equal(await sandboxCommand(args, e.io), 1);
    assert.match(e.stderr(), /^fsb: UNAVAILABLE: .*unknown authority/);
    assert.ok(e.stderr().includes(fake.endpoint), e.stderr());
    assert.equal(fake.calls.length, 2);

    // Without a CA the CLI speaks cleartext HTTP/2, which a TLS server does not answer.
    const f = capture();
    assert.equal(await sandboxCommand(args, f.io), 1);
    assert.equal(fake.calls.length, 2);
  } finally {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});

// The whole program, as a user runs it from inside a cloned repository that
// holds a .fsb/config.json of its own: neither its endpoint nor its token is used.
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/** Deno's cache, which a changed HOME would otherwise move. */
async function denoDir(): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
  return JSON.parse(new TextDecoder().decode(out.stdout)).denoDir;
}

async function fsbIn(cwd: string, home: string, args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", CONFIG, MAIN, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: {
      HOME: home,
      DENO_DIR: await denoDir(),
      NO_COLOR: "1",
      FSB_ENDPOINT: "",
      FSB_TOKEN: "",
      FSB_TLS_CA: "",
      ...env,
    },
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("fsb ignores .fsb/config.json in the working directory: endpoint and token", async () => {
  const fake = controllerWithToken("from-home");
  const cwd = await Deno.makeTempDir({ prefix: "fsb-cli-cwd-" });
  try {
    // A free port nothing listens on: a CLI that took this endpoint would fail to connect.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const bogus = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    listener.close();
    await Deno.mkdir(`${cwd}/.fsb`);
    await Deno.writeTextFile(
      `${cwd}/.fsb/config.json`,
      JSON.stringify({ endpoint: bogus, token: "bogus-from-cwd" }),
    );

    // The home config names the fake and its token: those are what is used.
    await withHome({ endpoint: fake.endpoint, token: "from-home" }, async (home) => {
      const res = await fsbIn(cwd, home, ["sandbox", "list", "-o", "json"], {});
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout, "[]\n");
    });
    assert.equal(fake.calls.length, 1);
    assert.equal(fake.calls[0].headers.get("authorization"), "Bearer from-home");

    // With no home config and the endpoint from FSB_ENDPOINT, no token at all is sent.
    await withHome(undefined, async (home) => {
      const res = await fsbIn(cwd, home, ["sandbox", "get", "x"], { FSB_ENDPOINT: fake.endpoint });
      assert.equal(res.code, 1);
      assert.match(res.stderr, /^fsb: UNAUTHENTICATED: missing token \(no token: /);
    });
    assert.equal(fake.calls.length, 2);
    assert.equal(fake.calls[1].headers.get("authorization"), null);
  } finally {
    await fake.close();
    await Deno.remove(cwd, { recursive: true });
  }
});
