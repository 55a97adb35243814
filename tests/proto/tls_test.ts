// TLS on a real RpcServer (grpc-js behind our own node:tls listener) with the
// two clients: RpcChannel (grpc-js, controller <-> agents) and FetchChannel
// (Deno's fetch, the CLI). Certificates come from Debian's openssl.
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { FastPath, SandboxInfoSchema } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { RpcChannel, type RpcChannelTls, RpcServer, type RpcServerTls } from "../../proto/grpc.ts";
import { Code, RpcError, type ServiceImpl } from "../../proto/rpc.ts";
import { FetchChannel } from "../../proto/fetch_client.ts";
import { FastPathLite } from "../../proto/fastpath_lite.ts";
import { makeTestCerts, type TestCerts } from "../support/certs.ts";

type Impl = ServiceImpl<typeof FastPath.method>;

let certsPromise: Promise<TestCerts> | undefined;

/** One set of certificates for the whole file: openssl takes a few tens of ms per key. */
function certs(): Promise<TestCerts> {
  return certsPromise ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "fsb-tls-test-" });
    try {
      return await makeTestCerts(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();
}

const LOGS = ["one\n", "two\n", "three\n"];

/**
 * Every FastPath method answers UNIMPLEMENTED except GetSandbox (echoes the
 * name back) and StreamLogs (three chunks), whatever methods the service has.
 */
function stubFastPath(): Impl {
  const impl: Record<string, unknown> = {};
  for (const method of FastPath.methods) {
    const fail = () => {
      throw new RpcError(Code.UNIMPLEMENTED, `${method.name} is not used by this test`);
    };
    impl[method.localName] = method.methodKind === "server_streaming"
      // deno-lint-ignore require-yield
      ? async function* () {
        fail();
      }
      : fail;
  }
  const used: Pick<Impl, "getSandbox" | "streamLogs"> = {
    getSandbox: (req) => create(SandboxInfoSchema, { name: req.name, phase: "Running" }),
    streamLogs: async function* () {
      for (const line of LOGS) yield { data: new TextEncoder().encode(line) };
    },
  };
  return { ...impl, ...used } as Impl;
}

async function withServer(
  tls: RpcServerTls | undefined,
  fn: (address: string) => Promise<void>,
): Promise<void> {
  const server = new RpcServer({ tls });
  server.add(FastPath, stubFastPath());
  const address = await server.listen("127.0.0.1:0");
  try {
    await fn(address);
  } finally {
    await server.close();
  }
}

async function serverTls(mutual = false): Promise<RpcServerTls> {
  const c = await certs();
  return { cert: c.serverCertPem, key: c.serverKeyPem, ...(mutual ? { ca: c.caPem } : {}) };
}

async function withRpcChannel(
  address: string,
  tls: RpcChannelTls | undefined,
  fn: (channel: RpcChannel) => Promise<void>,
): Promise<void> {
  const channel = new RpcChannel(address, { tls, timeoutMs: 5_000 });
  try {
    await fn(channel);
  } finally {
    channel.close();
  }
}

async function withFetchChannel(
  address: string,
  opts: ConstructorParameters<typeof FetchChannel>[1],
  fn: (channel: FetchChannel) => Promise<void>,
): Promise<void> {
  const channel = new FetchChannel(address, { timeoutMs: 5_000, ...opts });
  try {
    await fn(channel);
  } finally {
    channel.close();
  }
}

function isUnavailable(pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof RpcError, `expected an RpcError, got ${err}`);
    assert.equal(err.codeName, "UNAVAILABLE", err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

async function readLogs(stream: AsyncIterable<{ data: Uint8Array }>): Promise<string[]> {
  const got: string[] = [];
  for await (const chunk of stream) got.push(new TextDecoder().decode(chunk.data));
  return got;
}

Deno.test("makeTestCerts makes a CA-signed server certificate for 127.0.0.1 and localhost", async () => {
  const c = await certs();
  const { X509Certificate } = await import("node:crypto");
  const ca = new X509Certificate(c.caPem);
  const server = new X509Certificate(c.serverCertPem);
  const client = new X509Certificate(c.clientCertPem);
  assert.ok(ca.ca);
  assert.ok(server.verify(ca.publicKey));
  assert.ok(client.verify(ca.publicKey));
  assert.ok(!server.verify(new X509Certificate(c.otherCaPem).publicKey));
  assert.match(server.subjectAltName ?? "", /IP Address:127\.0\.0\.1/);
  assert.match(server.subjectAltName ?? "", /DNS:localhost/);
});

Deno.test("RpcChannel talks to an RpcServer over TLS", async () => {
  const c = await certs();
  await withServer(await serverTls(), async (address) => {
    await withRpcChannel(address, { ca: c.caPem }, async (channel) => {
      const client = channel.client(FastPath);
      assert.equal((await client.getSandbox({ name: "tls" })).name, "tls");
      assert.deepEqual(await readLogs(client.streamLogs({ name: "x" })), LOGS);
    });
  });
});

Deno.test("RpcChannel verifies a DNS name given as serverName against the certificate", async () => {
  const c = await certs();
  await withServer(await serverTls(), async (address) => {
    await withRpcChannel(address, { ca: c.caPem, serverName: "localhost" }, async (channel) => {
      assert.equal((await channel.client(FastPath).getSandbox({ name: "sni" })).name, "sni");
    });
    await withRpcChannel(address, { ca: c.caPem, serverName: "other.example" }, async (ch) => {
      await assert.rejects(
        ch.client(FastPath).getSandbox({ name: "x" }),
        isUnavailable(/over TLS: certificate not valid for this server's name/),
      );
    });
  });
});

Deno.test("RpcChannel trusting another CA fails with UNAVAILABLE naming TLS", async () => {
  const c = await certs();
  await withServer(await serverTls(), async (address) => {
    await withRpcChannel(address, { ca: c.otherCaPem }, async (channel) => {
      const expected = new RegExp(
        `^Cannot reach ${address} over TLS: certificate signed by an unknown authority`,
      );
      await assert.rejects(channel.ready(500), isUnavailable(expected));
      await assert.rejects(
        channel.client(FastPath).getSandbox({ name: "x" }),
        isUnavailable(expected),
      );
    });
  });
});

Deno.test("RpcChannel without TLS against a TLS server fails cleanly with UNAVAILABLE", async () => {
  await withServer(await serverTls(), async (address) => {
    await withRpcChannel(address, undefined, async (channel) => {
      await assert.rejects(channel.client(FastPath).getSandbox({ name: "x" }), isUnavailable(/./));
    });
  });
});

Deno.test("RpcChannel with TLS against a plaintext server fails cleanly with UNAVAILABLE", async () => {
  const c = await certs();
  await withServer(undefined, async (address) => {
    await withRpcChannel(address, { ca: c.caPem }, async (channel) => {
      await assert.rejects(
        channel.client(FastPath).getSandbox({ name: "x" }),
        isUnavailable(/over TLS: /),
      );
    });
  });
});

Deno.test("mutual TLS: RpcServer with a CA refuses a client without a certificate and serves one with", async () => {
  const c = await certs();
  await withServer(await serverTls(true), async (address) => {
    await withRpcChannel(address, { ca: c.caPem }, async (channel) => {
      await assert.rejects(
        channel.client(FastPath).getSandbox({ name: "x" }),
        isUnavailable(/over TLS: the server requires a client certificate/),
      );
    });
    const mtls = { ca: c.caPem, cert: c.clientCertPem, key: c.clientKeyPem };
    await withRpcChannel(address, mtls, async (channel) => {
      assert.equal((await channel.client(FastPath).getSandbox({ name: "m" })).name, "m");
    });
    await withFetchChannel(address, { tlsCa: c.caPem }, async (channel) => {
      await assert.rejects(
        channel.client(FastPathLite).getSandbox({ name: "x" }),
        isUnavailable(
          new RegExp(`^Cannot reach ${address} over TLS: the server requires a client certificate`),
        ),
      );
    });
    const fetchMtls = { tlsCa: c.caPem, tlsCert: c.clientCertPem, tlsKey: c.clientKeyPem };
    await withFetchChannel(address, fetchMtls, async (channel) => {
      assert.equal((await channel.client(FastPathLite).getSandbox({ name: "f" })).name, "f");
    });
  });
});

Deno.test("FetchChannel talks to an RpcServer over TLS, unary and server-streaming", async () => {
  const c = await certs();
  await withServer(await serverTls(), async (address) => {
    await withFetchChannel(address, { tlsCa: c.caPem }, async (channel) => {
      const client = channel.client(FastPathLite);
      assert.equal((await client.getSandbox({ name: "one" })).name, "one");
      assert.deepEqual(await readLogs(client.streamLogs({ name: "x" })), LOGS);
      // Calls share the channel's connection.
      const names = await Promise.all(
        ["a", "b", "c"].map(async (name) => (await client.getSandbox({ name })).name),
      );
      assert.deepEqual(names, ["a", "b", "c"]);
      await assert.rejects(
        client.listSandboxes({}),
        (err) => err instanceof RpcError && err.code === Code.UNIMPLEMENTED,
      );
    });
  });
});

Deno.test("FetchChannel trusting another CA fails with UNAVAILABLE and a clear message", async () => {
  const c = await certs();
  await withServer(await serverTls(), async (address) => {
    await withFetchChannel(address, { tlsCa: c.otherCaPem }, async (channel) => {
      const expected = `Cannot reach ${address} over TLS: ` +
        "certificate signed by an unknown authority (check --tls-ca)";
      const client = channel.client(FastPathLite);
      await assert.rejects(client.getSandbox({ name: "x" }), (err) => {
        assert.ok(err instanceof RpcError);
        assert.equal(err.codeName, "UNAVAILABLE");
        assert.equal(err.message, expected);
        return true;
      });
      await assert.rejects(
        readLogs(client.streamLogs({ name: "x" })),
        (err) => err instanceof RpcError && err.message === expected,
      );
    });
  });
});

Deno.test("FetchChannel without TLS against a TLS server fails cleanly, hinting at TLS", async () => {
  await withServer(await serverTls(), async (address) => {
    await withFetchChannel(address, {}, async (channel) => {
      await assert.rejects(
        channel.client(FastPathLite).getSandbox({ name: "x" }),
        isUnavailable(new RegExp(`^Cannot connect to ${address}: .*check --tls-ca`)),
      );
    });
  });
});

Deno.test("FetchChannel with TLS against a plaintext server fails cleanly with UNAVAILABLE", async () => {
  const c = await certs();
  await withServer(undefined, async (address) => {
    await withFetchChannel(address, { tlsCa: c.caPem }, async (channel) => {
      await assert.rejects(
        channel.client(FastPathLite).getSandbox({ name: "x" }),
        isUnavailable(
          new RegExp(`^Cannot reach ${address} over TLS: the server does not speak TLS`),
        ),
      );
    });
  });
});

Deno.test("RpcServer refuses TLS material that cannot work before it listens", async () => {
  const c = await certs();
  assert.throws(
    () => new RpcServer({ tls: { cert: "not a certificate", key: c.serverKeyPem } }),
    /TLS server certificate is not a PEM certificate/,
  );
  assert.throws(
    () => new RpcServer({ tls: { cert: c.serverCertPem, key: c.clientKeyPem } }),
    /TLS server key does not match the server certificate/,
  );
  assert.throws(
    () => new RpcChannel("127.0.0.1:1", { tls: { ca: c.caPem, cert: c.clientCertPem } }),
    /give both or neither/,
  );
  assert.throws(
    () => new FetchChannel("127.0.0.1:1", { tlsCa: "not a certificate" }),
    (err) => err instanceof RpcError && err.codeName === "INVALID_ARGUMENT",
  );
});

Deno.test("RpcServer maxReceiveBytes refuses larger requests with RESOURCE_EXHAUSTED", async () => {
  const server = new RpcServer({ maxReceiveBytes: 1024 });
  server.add(FastPath, stubFastPath());
  const address = await server.listen("127.0.0.1:0");
  try {
    await withRpcChannel(address, undefined, async (channel) => {
      const client = channel.client(FastPath);
      assert.equal((await client.getSandbox({ name: "small" })).name, "small");
      await assert.rejects(
        client.getSandbox({ name: "x".repeat(2048) }),
        (err) => err instanceof RpcError && err.codeName === "RESOURCE_EXHAUSTED",
      );
    });
  } finally {
    await server.close();
  }
});

Deno.test("closing a TLS RpcServer leaves its connected clients failing cleanly, and they reconnect", async () => {
  const c = await certs();
  const tls = await serverTls();
  let server = new RpcServer({ tls });
  server.add(FastPath, stubFastPath());
  const address = await server.listen("127.0.0.1:0");
  const rpc = new RpcChannel(address, { tls: { ca: c.caPem }, timeoutMs: 5_000 });
  const lite = new FetchChannel(address, { tlsCa: c.caPem, timeoutMs: 5_000 });
  try {
    assert.equal((await rpc.client(FastPath).getSandbox({ name: "a" })).name, "a");
    assert.equal((await lite.client(FastPathLite).getSandbox({ name: "a" })).name, "a");
    await server.close();
    await assert.rejects(rpc.client(FastPath).getSandbox({ name: "b" }), isUnavailable(/./));
    await assert.rejects(lite.client(FastPathLite).getSandbox({ name: "b" }), isUnavailable(/./));
    server = new RpcServer({ tls });
    server.add(FastPath, stubFastPath());
    await server.listen(address);
    await rpc.ready(5_000);
    assert.equal((await rpc.client(FastPath).getSandbox({ name: "c" })).name, "c");
  } finally {
    rpc.close();
    lite.close();
    await server.close();
  }
});
