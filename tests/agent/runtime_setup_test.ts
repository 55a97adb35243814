import assert from "node:assert/strict";
import { isolationOptions } from "../../agent/runtime_setup.ts";
import { UsageError } from "../../cli/usage_error.ts";

Deno.test("isolationOptions() defaults to a private network on fsb0 with one CPU, 512 MiB and 1024 processes", () => {
  assert.deepEqual(isolationOptions({}), {
    network: "private",
    sandboxCidr: "10.209.0.0/16",
    bridge: "fsb0",
    ociRuntime: "runc",
    defaults: { cpuMillis: 1000, memoryBytes: 512 * 1024 * 1024, pids: 1024 },
    alwaysDeny: [],
    logMaxBytes: 10 * 1024 * 1024,
  });
});

Deno.test("isolationOptions() reads every flag", () => {
  const o = isolationOptions({
    network: "host",
    "sandbox-cidr": "10.1.0.0/24",
    bridge: "br9",
    "oci-runtime": "runsc",
    "default-cpus": "0.5",
    "default-memory": "64Mi",
    "default-pids": "32",
    "log-max-bytes": "1Mi",
    "always-deny": ["192.0.2.0/24"],
  });
  assert.deepEqual(o, {
    network: "host",
    sandboxCidr: "10.1.0.0/24",
    bridge: "br9",
    ociRuntime: "runsc",
    defaults: { cpuMillis: 500, memoryBytes: 64 * 1024 * 1024, pids: 32 },
    alwaysDeny: ["192.0.2.0/24"],
    logMaxBytes: 1024 * 1024,
  });
});

Deno.test("isolationOptions() refuses values it cannot read, naming the flag", () => {
  const cases: [Record<string, string>, string][] = [
    [{ network: "bridge" }, 'Flag --network must be one of private, host, got "bridge"'],
    [{ "oci-runtime": "kata" }, 'Flag --oci-runtime must be one of runc, runsc, got "kata"'],
    [
      { "default-cpus": "0.001" },
      'Flag --default-cpus needs a number of at least 0.01, got "0.001"',
    ],
    [{ "default-pids": "0" }, 'Flag --default-pids needs a positive whole number, got "0"'],
  ];
  for (const [values, message] of cases) {
    assert.throws(() => isolationOptions(values), new UsageError(message));
  }
  assert.throws(() => isolationOptions({ "default-memory": "lots" }), UsageError);
});
