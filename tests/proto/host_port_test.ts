import assert from "node:assert/strict";
import { formatHostPort, parseHostPort } from "../../proto/host_port.ts";
import { Code, RpcError } from "../../proto/rpc.ts";

Deno.test("parseHostPort() reads names, IPv4 and bracketed IPv6 hosts", () => {
  assert.deepEqual(parseHostPort("127.0.0.1:9090"), { host: "127.0.0.1", port: 9090 });
  assert.deepEqual(parseHostPort("fsb.example:443"), { host: "fsb.example", port: 443 });
  assert.deepEqual(parseHostPort("[::1]:9090"), { host: "::1", port: 9090 });
  assert.deepEqual(parseHostPort("[fe80::1%eth0]:1"), { host: "fe80::1%eth0", port: 1 });
});

Deno.test("parseHostPort() allows an empty host and port 0 for listen addresses only", () => {
  assert.deepEqual(parseHostPort(":9090", { listen: true }), { host: "", port: 9090 });
  assert.deepEqual(parseHostPort("127.0.0.1:0", { listen: true }), { host: "127.0.0.1", port: 0 });
  for (
    const [address, rule] of [
      [":9090", "the host is missing"],
      ["127.0.0.1:0", "the port must be within 1..65535"],
    ]
  ) {
    assert.throws(() => parseHostPort(address, { what: "endpoint" }), (err) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, Code.INVALID_ARGUMENT);
      assert.equal(err.message, `Invalid endpoint "${address}": ${rule}`);
      return true;
    });
  }
});

Deno.test("parseHostPort() refuses what is not HOST:PORT, naming the rule", () => {
  const cases: [string, string][] = [
    ["localhost", "expected HOST:PORT"],
    ["host:http", "the port must be a number within 0..65535"],
    ["host:65536", "the port must be within 1..65535"],
    ["host:123456", "the port must be a number within 0..65535"],
    ["host: 80", "the port must be a number within 0..65535"],
    ["::1:9090", "an IPv6 host goes in brackets: [::1]:9090"],
    ["[::1:9090", "an IPv6 host goes in brackets: [::1]:9090"],
    ["[not-v6]:9090", "an IPv6 host goes in brackets: [::1]:9090"],
    ["a]:80", "the host must be a name or an IP address"],
    ["a/b:80", "expected HOST:PORT, without a scheme, path or spaces"],
    ["a,b:80", "expected HOST:PORT, without a scheme, path or spaces"],
    ["http://h:1", "expected HOST:PORT, without a scheme, path or spaces"],
  ];
  for (const [address, rule] of cases) {
    assert.throws(() => parseHostPort(address), (err) => {
      assert.ok(err instanceof RpcError, address);
      assert.equal(err.message, `Invalid address "${address}": ${rule}`);
      return true;
    });
  }
});

Deno.test("formatHostPort() brackets IPv6 hosts", () => {
  assert.equal(formatHostPort("::1", 80), "[::1]:80");
  assert.equal(formatHostPort("10.0.0.1", 80), "10.0.0.1:80");
});
