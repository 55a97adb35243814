import assert from "node:assert/strict";
import { waitFor } from "../support/cluster.ts";
import { createWhenReady, fsb, startUp } from "../support/fsb_process.ts";
import { makeTestCerts } from "../support/certs.ts";

Deno.test("the quick start works: up, create, logs, list, delete, metrics", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-e2e-" });
  const up = await startUp(dataDir, ["--runtime", "process"]);
  try {
    assert.match(up.banner, /runtime: process/);
    assert.match(up.banner, /try: fsb sandbox create demo --image busybox/);
    // No --endpoint or --token: the CLI uses what fsb up wrote into the (fresh) HOME.
    const ep: string[] = [];
    const created = await createWhenReady(up, "demo", ["sh", "-c", "echo hello; sleep 60"]);
    assert.match(created.stdout, /demo\s+default\s+Running/);

    await waitFor(async () =>
      (await fsb(["sandbox", "logs", "demo", ...ep], up)).stdout === "hello\n"
    );
    const config = `${up.home}/.fsb/config.json`;
    assert.equal((await Deno.stat(config)).mode! & 0o777, 0o600);
    assert.match(JSON.parse(await Deno.readTextFile(config)).token, /^fsb_[0-9a-f]{12}_/);
    // Another HOME has no token: the controller refuses, and the CLI says how to get one.
    const stranger = await fsb(["sandbox", "list", "--endpoint", up.endpoint]);
    assert.equal(stranger.code, 1);
    assert.match(stranger.stderr, /^fsb: UNAUTHENTICATED: .*no token: pass --token/);

    const list = await fsb(["sandbox", "list", "-o", "json", ...ep], up);
    assert.equal(list.code, 0, list.stderr);
    const items = JSON.parse(list.stdout);
    assert.ok(Array.isArray(items));
    assert.equal(items.length, 1);
    assert.equal(items[0].name, "demo");
    assert.equal(items[0].phase, "Running");
    assert.match(items[0].sandboxId, /^[0-9a-f]{32}$/);

    const get = await fsb(["sandbox", "get", "demo", "-o", "json", ...ep], up);
    assert.equal(JSON.parse(get.stdout).sandboxId, items[0].sandboxId);

    const bad = await fsb([
      "sandbox",
      "create",
      "bad",
      "--image",
      "busybox",
      "--port",
      "70000",
      ...ep,
    ], up);
    assert.equal(bad.code, 1);
    assert.equal(
      bad.stderr,
      "fsb: INVALID_ARGUMENT: Invalid exposed_ports[0]: must be within 1..65535, got 70000\n",
    );
    const syntax = await fsb([
      "sandbox",
      "create",
      "bad",
      "--image",
      "busybox",
      "--port",
      "http",
      ...ep,
    ], up);
    assert.equal(syntax.code, 2);

    const health = await fetch(up.metrics.replace(/\/metrics$/, "/healthz"));
    assert.equal(await health.text(), "ok\n");
    const metrics = await (await fetch(`${up.metrics}`)).text();
    assert.match(
      metrics,
      /fastpath_create_sandbox_duration_seconds_bucket\{le="0.005",mode="fast",success="true",path="cold"\}/,
    );
    assert.match(
      metrics,
      /fastpath_create_sandbox_duration_seconds_count\{mode="fast",success="true",path="cold"\} 1/,
    );

    const del = await fsb(["sandbox", "delete", "demo", ...ep], up);
    assert.equal(del.code, 0, del.stderr);
    const gone = await fsb(["sandbox", "get", "demo", ...ep], up);
    assert.equal(gone.code, 1);
    assert.equal(gone.stderr, 'fsb: NOT_FOUND: Sandbox "default/demo" not found\n');
  } finally {
    up.child.kill("SIGTERM");
    const status = await up.child.status;
    await Deno.remove(dataDir, { recursive: true });
    assert.equal(status.code, 0, "fsb up exits cleanly on SIGTERM");
  }
});

Deno.test("fsb --help lists the commands and an unknown command exits 2", async () => {
  const help = await fsb(["--help"]);
  assert.equal(help.code, 0);
  for (const cmd of ["up", "controller serve", "agent run", "sandbox", "image import", "version"]) {
    assert.ok(help.stdout.includes(cmd), `help lists ${cmd}`);
  }
  const bad = await fsb(["nonsense"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^fsb: Unknown command "nonsense"\nUsage: fsb /);
  for (
    const args of [["up", "--bogus"], ["controller", "serve", "--bogus"], [
      "agent",
      "run",
      "--bogus",
    ]]
  ) {
    const r = await fsb(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, /Unknown flag --bogus/);
  }
  const noController = await fsb(["agent", "run"]);
  assert.equal(noController.code, 2);
  assert.match(noController.stderr, /Flag --controller is required/);
});

Deno.test("the quick start over TLS: fsb up with a certificate, the CLI verifying it; a wrong CA fails clearly", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-e2e-tls-" });
  await Deno.mkdir(`${dataDir}/certs`);
  const certs = await makeTestCerts(`${dataDir}/certs`);
  const file = async (name: string, pem: string) => {
    await Deno.writeTextFile(`${dataDir}/certs/${name}`, pem);
    return `${dataDir}/certs/${name}`;
  };
  const tlsFlags = [
    "--tls-cert",
    await file("server.pem", certs.serverCertPem),
    "--tls-key",
    await file("server-key.pem", certs.serverKeyPem),
    "--tls-ca",
    await file("ca.pem", certs.caPem),
  ];
  const up = await startUp(dataDir, ["--runtime", "process", ...tlsFlags]);
  try {
    // The config fsb up wrote carries the CA: no flags needed.
    const created = await createWhenReady(up, "secure", ["sleep", "30"]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /secure\s+default\s+Running/);
    const wrong = await fsb(
      ["sandbox", "list", "--tls-ca", await file("other-ca.pem", certs.otherCaPem)],
      up,
    );
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.stderr,
      /UNAVAILABLE: .*over TLS: certificate signed by an unknown authority/,
    );
    const plain = await fsb(["sandbox", "list", "--tls-ca", "", "--endpoint", up.endpoint], up);
    assert.equal(plain.code === 0, false, "a plain-text client gets nothing from a TLS port");
  } finally {
    up.child.kill("SIGTERM");
    await up.child.status;
    await Deno.remove(dataDir, { recursive: true });
  }
});
