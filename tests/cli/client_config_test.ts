import assert from "node:assert/strict";
import {
  callMetadata,
  type ClientConfigSources,
  type ConnectionFlags,
  DEFAULT_ENDPOINT,
  resolveClientConfig,
  UsageError,
} from "../../cli/mod.ts";
import { clientOptions } from "../../cli/_channel.ts";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const NO_FLAGS: ConnectionFlags = { endpoint: undefined, token: undefined, tlsCa: undefined };

async function withHome(fn: (home: string) => void | Promise<void>): Promise<void> {
  const home = await Deno.makeTempDir({ prefix: "fsb-cli-home-" });
  try {
    await fn(home);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

function writeConfig(dir: string, config: unknown): string {
  Deno.mkdirSync(`${dir}/.fsb`, { recursive: true });
  const text = typeof config === "string" ? config : JSON.stringify(config);
  Deno.writeTextFileSync(`${dir}/.fsb/config.json`, text);
  return `${dir}/.fsb/config.json`;
}

function resolve(
  home: string,
  more: { flags?: Partial<ConnectionFlags>; env?: ClientConfigSources["env"] } = {},
) {
  return resolveClientConfig({
    flags: { ...NO_FLAGS, ...more.flags },
    env: more.env ?? {},
    home,
  });
}

function throwsUsage(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

// --- endpoint -------------------------------------------------------------------

Deno.test("resolveClientConfig() takes the endpoint from --endpoint, FSB_ENDPOINT, the config, the default", () =>
  withHome((home) => {
    const path = writeConfig(home, { endpoint: "10.0.0.3:9090" });
    const env = { FSB_ENDPOINT: "10.0.0.1:9090" };
    assert.deepEqual(resolve(home, { flags: { endpoint: "10.0.0.9:1234" }, env }).endpoint, {
      address: "10.0.0.9:1234",
      source: "--endpoint",
    });
    assert.deepEqual(resolve(home, { env }).endpoint, {
      address: "10.0.0.1:9090",
      source: "FSB_ENDPOINT",
    });
    assert.deepEqual(resolve(home, { env: { FSB_ENDPOINT: "" } }).endpoint, {
      address: "10.0.0.3:9090",
      source: path,
    });
    writeConfig(home, { token: "t" });
    assert.deepEqual(resolve(home).endpoint, { address: DEFAULT_ENDPOINT, source: "default" });
  }));

Deno.test("resolveClientConfig() falls back to 127.0.0.1:9090 without a config file or a home", () =>
  withHome((home) => {
    assert.equal(DEFAULT_ENDPOINT, "127.0.0.1:9090");
    assert.deepEqual(resolve(home), {
      endpoint: { address: DEFAULT_ENDPOINT, source: "default" },
      token: undefined,
      tlsCa: undefined,
    });
    assert.deepEqual(resolve(""), resolve(home));
  }));

Deno.test("resolveClientConfig() accepts IPv6 and unix socket endpoints", () =>
  withHome((home) => {
    assert.equal(
      resolve(home, { flags: { endpoint: "[::1]:9090" } }).endpoint.address,
      "[::1]:9090",
    );
    assert.equal(
      resolve(home, { flags: { endpoint: "unix:///run/fsb.sock" } }).endpoint.address,
      "unix:///run/fsb.sock",
    );
  }));

Deno.test("resolveClientConfig() rejects an endpoint without a port, naming where it came from", () =>
  withHome((home) => {
    throwsUsage(
      () => resolve(home, { env: { FSB_ENDPOINT: "controller" } }),
      'Invalid endpoint "controller" from FSB_ENDPOINT: expected HOST:PORT',
    );
    throwsUsage(
      () => resolve(home, { flags: { endpoint: "http://h:1" } }),
      'Invalid endpoint "http://h:1" from --endpoint: expected HOST:PORT, without a scheme, path or spaces',
    );
    const path = writeConfig(home, { endpoint: "h:port" });
    throwsUsage(
      () => resolve(home),
      `Invalid endpoint "h:port" from ${path}: the port must be a number within 0..65535`,
    );
  }));

Deno.test("resolveClientConfig() takes a comma-separated list of endpoints, checking each", () =>
  withHome((home) => {
    assert.deepEqual(
      resolve(home, { flags: { endpoint: "10.0.0.1:9090,[::1]:9090,unix:///run/fsb.sock" } })
        .endpoint,
      { address: "10.0.0.1:9090,[::1]:9090,unix:///run/fsb.sock", source: "--endpoint" },
    );
    throwsUsage(
      () => resolve(home, { env: { FSB_ENDPOINT: "10.0.0.1:9090,controller" } }),
      'Invalid endpoint "10.0.0.1:9090,controller" from FSB_ENDPOINT: expected HOST:PORT',
    );
    throwsUsage(
      () => resolve(home, { flags: { endpoint: "10.0.0.1:9090," } }),
      'Invalid endpoint "10.0.0.1:9090," from --endpoint: expected HOST:PORT',
    );
  }));

// --- token ------------------------------------------------------------------------

Deno.test("resolveClientConfig() takes the token from --token, FSB_TOKEN, the config, else none", () =>
  withHome((home) => {
    const path = writeConfig(home, { token: "from-config" });
    const env = { FSB_TOKEN: "from-env" };
    assert.deepEqual(resolve(home, { flags: { token: "from-flag" }, env }).token, {
      secret: "from-flag",
      source: "--token",
    });
    assert.deepEqual(resolve(home, { env }).token, { secret: "from-env", source: "FSB_TOKEN" });
    assert.deepEqual(resolve(home, { env: { FSB_TOKEN: "" } }).token, {
      secret: "from-config",
      source: path,
    });
    writeConfig(home, { endpoint: "10.0.0.3:9090" });
    assert.equal(resolve(home).token, undefined);
  }));

Deno.test("resolveClientConfig() resolves endpoint and token each on its own", () =>
  withHome((home) => {
    const path = writeConfig(home, { endpoint: "10.0.0.3:9090", token: "from-config" });
    const a = resolve(home, { flags: { endpoint: "10.0.0.9:1" } });
    assert.deepEqual(a.endpoint, { address: "10.0.0.9:1", source: "--endpoint" });
    assert.deepEqual(a.token, { secret: "from-config", source: path });
    const b = resolve(home, { env: { FSB_TOKEN: "from-env" } });
    assert.deepEqual(b.endpoint, { address: "10.0.0.3:9090", source: path });
    assert.deepEqual(b.token, { secret: "from-env", source: "FSB_TOKEN" });
  }));

Deno.test("resolveClientConfig() rejects a token that cannot be a header, without printing it", () =>
  withHome((home) => {
    const message = (source: string) =>
      `Invalid token from ${source}: expected the secret fsb token create printed ` +
      `(printable ASCII, no spaces)`;
    throwsUsage(() => resolve(home, { flags: { token: "" } }), message("--token"));
    throwsUsage(() => resolve(home, { flags: { token: "two words" } }), message("--token"));
    throwsUsage(() => resolve(home, { env: { FSB_TOKEN: "secret\n" } }), message("FSB_TOKEN"));
    const path = writeConfig(home, { token: "sécret" });
    throwsUsage(() => resolve(home), message(path));
  }));

Deno.test("callMetadata() is the Bearer header when a token is known, and nothing otherwise", () => {
  assert.deepEqual(callMetadata({ token: undefined }), {});
  assert.deepEqual(callMetadata({ token: { secret: "s3cret", source: "--token" } }), {
    authorization: "Bearer s3cret",
  });
});

// --- TLS CA -----------------------------------------------------------------------

Deno.test("resolveClientConfig() reads the TLS CA from --tls-ca, FSB_TLS_CA, the config", () =>
  withHome((home) => {
    const flagCa = `${home}/flag.pem`;
    const envCa = `${home}/env.pem`;
    Deno.writeTextFileSync(flagCa, PEM + "flag");
    Deno.writeTextFileSync(envCa, PEM + "env");
    Deno.mkdirSync(`${home}/.fsb`);
    Deno.writeTextFileSync(`${home}/.fsb/ca.pem`, PEM + "config");
    // A relative path in the config file is taken from ~/.fsb/.
    const path = writeConfig(home, { tlsCa: "ca.pem" });
    const env = { FSB_TLS_CA: envCa };
    assert.deepEqual(resolve(home, { flags: { tlsCa: flagCa }, env }).tlsCa, {
      pem: PEM + "flag",
      path: flagCa,
      source: "--tls-ca",
    });
    assert.deepEqual(resolve(home, { env }).tlsCa, {
      pem: PEM + "env",
      path: envCa,
      source: "FSB_TLS_CA",
    });
    assert.deepEqual(resolve(home, { env: { FSB_TLS_CA: "" } }).tlsCa, {
      pem: PEM + "config",
      path: `${home}/.fsb/ca.pem`,
      source: path,
    });
    writeConfig(home, { tlsCa: flagCa });
    assert.equal(resolve(home).tlsCa?.path, flagCa);
  }));

Deno.test("resolveClientConfig() rejects a TLS CA it cannot read or that holds no certificate", () =>
  withHome((home) => {
    const missing = `${home}/missing.pem`;
    let notFound = "";
    try {
      Deno.readTextFileSync(missing);
    } catch (err) {
      notFound = (err as Error).message;
    }
    throwsUsage(
      () => resolve(home, { flags: { tlsCa: missing } }),
      `Cannot read the TLS CA ${missing} (from --tls-ca): ${notFound}`,
    );
    const junk = `${home}/junk.pem`;
    Deno.writeTextFileSync(junk, "not a certificate\n");
    throwsUsage(
      () => resolve(home, { env: { FSB_TLS_CA: junk } }),
      `Cannot use the TLS CA ${junk} (from FSB_TLS_CA): it holds no PEM certificate`,
    );
    const path = writeConfig(home, { tlsCa: "junk.pem" });
    Deno.writeTextFileSync(`${home}/.fsb/junk.pem`, "junk");
    throwsUsage(
      () => resolve(home),
      `Cannot use the TLS CA ${home}/.fsb/junk.pem (from ${path}): it holds no PEM certificate`,
    );
  }));

Deno.test("clientOptions() hands the endpoint, the token's secret and the CA's PEM on", () =>
  withHome((home) => {
    const ca = `${home}/ca.pem`;
    Deno.writeTextFileSync(ca, PEM);
    assert.deepEqual(clientOptions(resolve(home)), { endpoint: DEFAULT_ENDPOINT });
    assert.deepEqual(
      clientOptions(
        resolve(home, {
          flags: { token: "abc", endpoint: "10.0.0.1:9090,10.0.0.2:9090" },
          env: { FSB_TLS_CA: ca },
        }),
      ),
      { endpoint: "10.0.0.1:9090,10.0.0.2:9090", token: "abc", tlsCa: PEM },
    );
  }));

// --- the config file ----------------------------------------------------------------

Deno.test("resolveClientConfig() reads the config file only when flags and environment leave a gap", () =>
  withHome((home) => {
    writeConfig(home, "{not json");
    const ca = `${home}/ca.pem`;
    Deno.writeTextFileSync(ca, PEM);
    const config = resolve(home, {
      flags: { endpoint: "10.0.0.9:1", token: "t" },
      env: { FSB_TLS_CA: ca },
    });
    assert.equal(config.endpoint.address, "10.0.0.9:1");
    assert.throws(() => resolve(home, { flags: { endpoint: "10.0.0.9:1" } }), UsageError);
  }));

Deno.test("resolveClientConfig() rejects a config file that is not JSON", () =>
  withHome((home) => {
    const text = "{endpoint: 1";
    const path = writeConfig(home, text);
    let parseMessage = "";
    try {
      JSON.parse(text);
    } catch (err) {
      parseMessage = (err as Error).message;
    }
    throwsUsage(() => resolve(home), `Cannot parse ${path}: ${parseMessage}`);
  }));

Deno.test("resolveClientConfig() rejects a config file of the wrong shape, naming the key", () =>
  withHome((home) => {
    const path = writeConfig(home, { endpoint: 9090 });
    throwsUsage(
      () => resolve(home),
      `Cannot use ${path}: "endpoint" must be a string like "HOST:PORT"`,
    );
    writeConfig(home, { token: 42 });
    throwsUsage(
      () => resolve(home),
      `Cannot use ${path}: "token" must be a string like "SECRET"`,
    );
    writeConfig(home, { tlsCa: ["a.pem"] });
    throwsUsage(
      () => resolve(home),
      `Cannot use ${path}: "tlsCa" must be a string like "/path/to/ca.pem"`,
    );
    writeConfig(home, ["127.0.0.1:9090"]);
    throwsUsage(
      () => resolve(home),
      `Cannot use ${path}: expected a JSON object like ` +
        `{"endpoint": "HOST:PORT", "token": "SECRET", "tlsCa": "ca.pem"}`,
    );
  }));

Deno.test("resolveClientConfig() rejects a config file it cannot read", () =>
  withHome((home) => {
    // A directory where the file should be: reading it fails with something other than NotFound.
    Deno.mkdirSync(`${home}/.fsb/config.json`, { recursive: true });
    assert.throws(
      () => resolve(home),
      (err: unknown) =>
        err instanceof UsageError &&
        err.message.startsWith(`Cannot read ${home}/.fsb/config.json: `),
    );
  }));
