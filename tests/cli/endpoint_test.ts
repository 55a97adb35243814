import assert from "node:assert/strict";
import { DEFAULT_ENDPOINT, resolveEndpoint, UsageError } from "../../cli/mod.ts";

interface Dirs {
  cwd: string;
  home: string;
}

async function withDirs(fn: (dirs: Dirs) => void | Promise<void>): Promise<void> {
  const cwd = await Deno.makeTempDir({ prefix: "fsb-cli-cwd-" });
  const home = await Deno.makeTempDir({ prefix: "fsb-cli-home-" });
  try {
    await fn({ cwd, home });
  } finally {
    await Deno.remove(cwd, { recursive: true });
    await Deno.remove(home, { recursive: true });
  }
}

function writeConfig(dir: string, text: string): string {
  Deno.mkdirSync(`${dir}/.fsb`, { recursive: true });
  Deno.writeTextFileSync(`${dir}/.fsb/config.json`, text);
  return `${dir}/.fsb/config.json`;
}

function throwsUsage(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("resolveEndpoint() prefers --endpoint over everything else", () =>
  withDirs(({ cwd, home }) => {
    writeConfig(cwd, '{"endpoint": "10.0.0.2:9090"}');
    writeConfig(home, '{"endpoint": "10.0.0.3:9090"}');
    const env = { FSB_ENDPOINT: "10.0.0.1:9090" };
    assert.deepEqual(resolveEndpoint({ flag: "10.0.0.9:1234", env, cwd, home }), {
      address: "10.0.0.9:1234",
      source: "--endpoint",
    });
  }));

Deno.test("resolveEndpoint() prefers FSB_ENDPOINT over the config files", () =>
  withDirs(({ cwd, home }) => {
    writeConfig(cwd, '{"endpoint": "10.0.0.2:9090"}');
    writeConfig(home, '{"endpoint": "10.0.0.3:9090"}');
    assert.deepEqual(resolveEndpoint({ env: { FSB_ENDPOINT: "10.0.0.1:9090" }, cwd, home }), {
      address: "10.0.0.1:9090",
      source: "FSB_ENDPOINT",
    });
  }));

Deno.test("resolveEndpoint() treats an empty FSB_ENDPOINT as unset", () =>
  withDirs(({ cwd, home }) => {
    const local = writeConfig(cwd, '{"endpoint": "10.0.0.2:9090"}');
    assert.deepEqual(resolveEndpoint({ env: { FSB_ENDPOINT: "" }, cwd, home }), {
      address: "10.0.0.2:9090",
      source: local,
    });
  }));

Deno.test("resolveEndpoint() prefers ./.fsb/config.json over ~/.fsb/config.json", () =>
  withDirs(({ cwd, home }) => {
    const local = writeConfig(cwd, '{"endpoint": "10.0.0.2:9090"}');
    writeConfig(home, '{"endpoint": "10.0.0.3:9090"}');
    assert.deepEqual(resolveEndpoint({ env: {}, cwd, home }), {
      address: "10.0.0.2:9090",
      source: local,
    });
  }));

Deno.test("resolveEndpoint() reads ~/.fsb/config.json when the working directory has none", () =>
  withDirs(({ cwd, home }) => {
    const global = writeConfig(home, '{"endpoint": "10.0.0.3:9090"}');
    assert.deepEqual(resolveEndpoint({ env: {}, cwd, home }), {
      address: "10.0.0.3:9090",
      source: global,
    });
  }));

Deno.test("resolveEndpoint() skips a config file without an endpoint key", () =>
  withDirs(({ cwd, home }) => {
    writeConfig(cwd, '{"other": true}');
    const global = writeConfig(home, '{"endpoint": "10.0.0.3:9090"}');
    assert.deepEqual(resolveEndpoint({ env: {}, cwd, home }), {
      address: "10.0.0.3:9090",
      source: global,
    });
  }));

Deno.test("resolveEndpoint() falls back to 127.0.0.1:9090", () =>
  withDirs(({ cwd, home }) => {
    assert.equal(DEFAULT_ENDPOINT, "127.0.0.1:9090");
    assert.deepEqual(resolveEndpoint({ env: {}, cwd, home }), {
      address: DEFAULT_ENDPOINT,
      source: "default",
    });
  }));

Deno.test("resolveEndpoint() skips an unknown (empty) home or working directory", () => {
  assert.deepEqual(resolveEndpoint({ env: {}, cwd: "", home: "" }), {
    address: DEFAULT_ENDPOINT,
    source: "default",
  });
});

Deno.test("resolveEndpoint() accepts IPv6 and unix socket endpoints", () =>
  withDirs(({ cwd, home }) => {
    assert.equal(resolveEndpoint({ flag: "[::1]:9090", env: {}, cwd, home }).address, "[::1]:9090");
    assert.equal(
      resolveEndpoint({ flag: "unix:///run/fsb.sock", env: {}, cwd, home }).address,
      "unix:///run/fsb.sock",
    );
  }));

Deno.test("resolveEndpoint() rejects an endpoint without a port, naming where it came from", () =>
  withDirs(({ cwd, home }) => {
    throwsUsage(
      () => resolveEndpoint({ env: { FSB_ENDPOINT: "controller" }, cwd, home }),
      'Invalid endpoint "controller" from FSB_ENDPOINT: expected HOST:PORT',
    );
    throwsUsage(
      () => resolveEndpoint({ flag: "http://h:1", env: {}, cwd, home }),
      'Invalid endpoint "http://h:1" from --endpoint: expected HOST:PORT',
    );
    const local = writeConfig(cwd, '{"endpoint": "h:port"}');
    throwsUsage(
      () => resolveEndpoint({ env: {}, cwd, home }),
      `Invalid endpoint "h:port" from ${local}: expected HOST:PORT`,
    );
  }));

Deno.test("resolveEndpoint() rejects a config file that is not JSON", () =>
  withDirs(({ cwd, home }) => {
    const text = "{endpoint: 1";
    const local = writeConfig(cwd, text);
    let parseMessage = "";
    try {
      JSON.parse(text);
    } catch (err) {
      parseMessage = (err as Error).message;
    }
    throwsUsage(
      () => resolveEndpoint({ env: {}, cwd, home }),
      `Cannot parse ${local}: ${parseMessage}`,
    );
  }));

Deno.test("resolveEndpoint() rejects a config file whose endpoint is not a string", () =>
  withDirs(({ cwd, home }) => {
    const local = writeConfig(cwd, '{"endpoint": 9090}');
    throwsUsage(
      () => resolveEndpoint({ env: {}, cwd, home }),
      `Cannot use ${local}: "endpoint" must be a string like "HOST:PORT"`,
    );
    writeConfig(cwd, '["127.0.0.1:9090"]');
    throwsUsage(
      () => resolveEndpoint({ env: {}, cwd, home }),
      `Cannot use ${local}: expected a JSON object like {"endpoint": "HOST:PORT"}`,
    );
  }));
