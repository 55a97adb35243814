/**
 * Server reflection, seen by a generic client: grpc-js with the reflection
 * messages encoded and decoded by hand from grpc/reflection/v1/reflection.proto's
 * field numbers, so nothing here shares the server's descriptors.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { Code, RpcError, RpcServer, type RpcServerOptions } from "../../proto/grpc.ts";
import { isLoopbackPeer } from "../../proto/reflection.ts";
import { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { AgentRegistry } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { ServiceImpl } from "../../proto/rpc.ts";
import { makeTestCerts } from "../support/certs.ts";
import { startCluster } from "../support/cluster.ts";

// --- a hand-made reflection client ------------------------------------------

type Version = "v1" | "v1alpha";

/** One ServerReflectionRequest: `field` is the message_request member's number. */
function request(field: 3 | 4 | 6 | 7, value: string): Uint8Array {
  return new BinaryWriter().tag(field, WireType.LengthDelimited).string(value).finish();
}
const listServices = () => request(7, "");
const fileByFilename = (name: string) => request(3, name);
const fileContainingSymbol = (symbol: string) => request(4, symbol);
const allExtensionNumbersOfType = (type: string) => request(6, type);
function fileContainingExtension(type: string, number: number): Uint8Array {
  const ext = new BinaryWriter().tag(1, WireType.LengthDelimited).string(type)
    .tag(2, WireType.Varint).int32(number).finish();
  return new BinaryWriter().tag(5, WireType.LengthDelimited).bytes(ext).finish();
}

/** A decoded ServerReflectionResponse (the parts the tests look at). */
interface Answer {
  validHost: string;
  originalRequest: Uint8Array;
  services?: string[];
  files?: FileDescriptorProto[];
  extensionNumbers?: { base: string; numbers: number[] };
  error?: { code: number; message: string };
}

function fields(bytes: Uint8Array, each: (no: number, r: BinaryReader, wt: WireType) => void) {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    const before = r.pos;
    each(no, r, wt);
    if (r.pos === before) r.skip(wt);
  }
}

function decodeAnswer(bytes: Uint8Array): Answer {
  const out: Answer = { validHost: "", originalRequest: new Uint8Array() };
  fields(bytes, (no, r) => {
    if (no === 1) out.validHost = r.string();
    else if (no === 2) out.originalRequest = r.bytes();
    else if (no === 4) {
      out.files = [];
      fields(r.bytes(), (n, rr) => {
        if (n === 1) out.files!.push(fromBinary(FileDescriptorProtoSchema, rr.bytes()));
      });
    } else if (no === 5) {
      const ext = { base: "", numbers: [] as number[] };
      fields(r.bytes(), (n, rr, wt) => {
        if (n === 1) ext.base = rr.string();
        else if (n === 2 && wt === WireType.LengthDelimited) {
          const packed = new BinaryReader(rr.bytes());
          while (packed.pos < packed.len) ext.numbers.push(packed.int32());
        } else if (n === 2) ext.numbers.push(rr.int32());
      });
      out.extensionNumbers = ext;
    } else if (no === 6) {
      out.services = [];
      fields(r.bytes(), (n, rr) => {
        if (n !== 1) return;
        fields(rr.bytes(), (m, rrr) => {
          if (m === 1) out.services!.push(rrr.string());
        });
      });
    } else if (no === 7) {
      const err = { code: 0, message: "" };
      fields(r.bytes(), (n, rr) => {
        if (n === 1) err.code = rr.int32();
        else if (n === 2) err.message = rr.string();
      });
      out.error = err;
    }
  });
  return out;
}

/**
 * Sends `requests` on one ServerReflectionInfo stream, half-closes, and
 * resolves to the answers (or rejects with the call's status).
 */
function reflect(
  address: string,
  requests: Uint8Array[],
  opts: {
    version?: Version;
    metadata?: Record<string, string>;
    credentials?: grpc.ChannelCredentials;
  } = {},
): Promise<Answer[]> {
  const client = new grpc.Client(address, opts.credentials ?? grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
  const call = client.makeBidiStreamRequest(
    `/grpc.reflection.${opts.version ?? "v1"}.ServerReflection/ServerReflectionInfo`,
    (b: Uint8Array) => Buffer.from(b),
    (b: Buffer) => new Uint8Array(b),
    md,
    { deadline: Date.now() + 10_000 },
  );
  return new Promise<Answer[]>((resolve, reject) => {
    const answers: Answer[] = [];
    call.on("data", (b: Uint8Array) => answers.push(decodeAnswer(b)));
    call.on("error", (err: grpc.ServiceError) => reject(new RpcError(err.code, err.details)));
    call.on("status", (s: grpc.StatusObject) => {
      if (s.code === grpc.status.OK) resolve(answers);
    });
    for (const r of requests) call.write(r);
    call.end();
  }).finally(() => client.close());
}

// --- servers -----------------------------------------------------------------

/** Handlers that refuse every call: reflection never calls them. */
function unimplemented<S extends GenServiceMethods>(service: GenService<S>): ServiceImpl<S> {
  const impl: Record<string, unknown> = {};
  for (const m of service.methods) {
    const fail = () => {
      throw new RpcError(Code.UNIMPLEMENTED, m.name);
    };
    impl[m.localName] = m.methodKind === "server_streaming"
      ? async function* () {
        yield fail();
      }
      : fail;
  }
  return impl as ServiceImpl<S>;
}

async function withServer(
  opts: RpcServerOptions,
  fn: (address: string, port: number) => Promise<void>,
  listen = "127.0.0.1:0",
): Promise<void> {
  const server = new RpcServer(opts);
  server.add(FastPath, unimplemented(FastPath));
  server.add(AgentRegistry, unimplemented(AgentRegistry));
  const address = await server.listen(listen);
  try {
    await fn(address, Number(address.slice(address.lastIndexOf(":") + 1)));
  } finally {
    await server.close();
  }
}

const FASTPATH_FILE = "fsb/fastpath/v1/fastpath.proto";
const AGENT_FILE = "fsb/agent/v1/agent.proto";

// --- tests -------------------------------------------------------------------

for (const version of ["v1", "v1alpha"] as const) {
  Deno.test(`reflection ${version}: lists the services, FastPath among them`, async () => {
    await withServer({ reflection: {} }, async (address) => {
      const [answer] = await reflect(address, [listServices()], { version });
      assert.deepEqual(answer.services, [
        "fsb.agent.v1.AgentRegistry",
        "fsb.fastpath.v1.FastPath",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]);
      assert.deepEqual(answer.originalRequest, listServices());
    });
  });

  Deno.test(`reflection ${version}: the file declaring FastPath describes every method`, async () => {
    await withServer({ reflection: {} }, async (address) => {
      const [answer] = await reflect(address, [fileContainingSymbol("fsb.fastpath.v1.FastPath")], {
        version,
      });
      assert.equal(answer.error, undefined);
      const files = answer.files!;
      assert.equal(files[0].name, FASTPATH_FILE);
      assert.equal(files[0].package, "fsb.fastpath.v1");
      // Everything the file needs came along: a registry builds from the answer alone.
      const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: files }));
      const service = registry.getService("fsb.fastpath.v1.FastPath");
      assert.ok(service);
      assert.deepEqual(
        service.methods.map((m) => [m.name, m.methodKind, m.input.typeName, m.output.typeName]),
        FastPath.methods.map((m) => [m.name, m.methodKind, m.input.typeName, m.output.typeName]),
      );
      // Field names, numbers and JSON names as generated, so grpcurl's -d JSON works.
      const req = registry.getMessage("fsb.fastpath.v1.CreateSandboxRequest");
      assert.deepEqual(
        req?.fields.map((f) => [f.name, f.number, f.jsonName]),
        FastPath.method.createSandbox.input.fields.map((f) => [f.name, f.number, f.jsonName]),
      );
    });
  });
}

Deno.test("reflection: a file comes with its imports, each import once per stream", async () => {
  await withServer({ reflection: {} }, async (address) => {
    const answers = await reflect(address, [
      fileContainingSymbol("fsb.agent.v1.AgentRegistry"),
      fileContainingSymbol("fsb.agent.v1.AgentRegistry"),
      fileContainingSymbol("fsb.fastpath.v1.FastPath"),
    ]);
    const names = answers.map((a) => a.files!.map((f) => f.name));
    assert.deepEqual(names, [
      [AGENT_FILE, FASTPATH_FILE],
      // Already sent on this stream: only the asked-for file again.
      [AGENT_FILE],
      [FASTPATH_FILE],
    ]);
    const registry = createFileRegistry(
      create(FileDescriptorSetSchema, { file: answers[0].files!.toReversed() }),
    );
    assert.ok(registry.getService("fsb.agent.v1.AgentRegistry"));
    // A new stream starts afresh.
    const [again] = await reflect(address, [fileContainingSymbol("fsb.agent.v1.AgentRegistry")]);
    assert.deepEqual(again.files!.map((f) => f.name), [AGENT_FILE, FASTPATH_FILE]);
  });
});

Deno.test("reflection: every kind of symbol, and files by name", async () => {
  await withServer({ reflection: {} }, async (address) => {
    const symbols = [
      "fsb.fastpath.v1.FastPath.CreateSandbox", // method
      "fsb.fastpath.v1.SandboxInfo", // message
      ".fsb.fastpath.v1.SandboxInfo", // with the leading dot of type references
      "fsb.fastpath.v1.SandboxInfo.sandbox_id", // field
      "fsb.fastpath.v1.CreateSandboxRequest.EnvsEntry", // map entry
      "fsb.fastpath.v1.ConsistencyMode", // enum
      "fsb.fastpath.v1.CONSISTENCY_MODE_FAST", // enum value, scoped beside its enum
    ];
    const answers = await reflect(address, [
      ...symbols.map(fileContainingSymbol),
      fileByFilename(FASTPATH_FILE),
    ]);
    for (const [i, a] of answers.entries()) {
      assert.equal(a.error, undefined, symbols[i]);
      assert.equal(a.files![0].name, FASTPATH_FILE, symbols[i]);
    }
    const [own] = await reflect(address, [
      fileContainingSymbol("grpc.reflection.v1.ServerReflection"),
    ]);
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: own.files! }));
    const info = registry.getService("grpc.reflection.v1.ServerReflection")?.methods[0];
    assert.equal(info?.name, "ServerReflectionInfo");
    assert.equal(info?.methodKind, "bidi_streaming");
    assert.deepEqual(
      registry.getMessage("grpc.reflection.v1.ServerReflectionRequest")?.fields.map((f) => [
        f.name,
        f.number,
      ]),
      [
        ["host", 1],
        ["file_by_filename", 3],
        ["file_containing_symbol", 4],
        ["file_containing_extension", 5],
        ["all_extension_numbers_of_type", 6],
        ["list_services", 7],
      ],
    );
  });
});

Deno.test("reflection: unknown names get NOT_FOUND and the stream goes on", async () => {
  await withServer({ reflection: {} }, async (address) => {
    const answers = await reflect(address, [
      fileContainingSymbol("fsb.fastpath.v1.Nope"),
      fileByFilename("nope.proto"),
      fileContainingExtension("fsb.fastpath.v1.SandboxInfo", 1000),
      allExtensionNumbersOfType("fsb.fastpath.v1.Nope"),
      allExtensionNumbersOfType("fsb.fastpath.v1.SandboxInfo"),
      listServices(),
    ]);
    assert.deepEqual(answers.slice(0, 4).map((a) => a.error?.code), Array(4).fill(Code.NOT_FOUND));
    assert.match(answers[0].error!.message, /fsb\.fastpath\.v1\.Nope/);
    assert.deepEqual(answers[4].extensionNumbers, {
      base: "fsb.fastpath.v1.SandboxInfo",
      numbers: [],
    });
    assert.ok(answers[5].services!.includes("fsb.fastpath.v1.FastPath"));
  });
});

Deno.test("reflection: a request that asks nothing ends the stream with INVALID_ARGUMENT", async () => {
  await withServer({ reflection: {} }, async (address) => {
    await assert.rejects(
      reflect(address, [new Uint8Array()]),
      (err: unknown) => err instanceof RpcError && err.code === Code.INVALID_ARGUMENT,
    );
  });
});

Deno.test("reflection: a server not asked to serve it answers UNIMPLEMENTED", async () => {
  await withServer({}, async (address) => {
    await assert.rejects(
      reflect(address, [listServices()]),
      (err: unknown) => err instanceof RpcError && err.code === Code.UNIMPLEMENTED,
    );
  });
});

/** This host's first non-loopback IPv4 address, if it has one. */
function outsideAddress(): string | undefined {
  return Deno.networkInterfaces().find((i) => i.family === "IPv4" && !i.address.startsWith("127."))
    ?.address;
}

Deno.test({
  name: "reflection: callers off loopback need admit's consent",
  ignore: outsideAddress() === undefined,
  fn: async () => {
    const host = outsideAddress()!;
    // Loopback only: a caller reaching a non-loopback address is refused.
    await withServer({ reflection: {} }, async (_address, port) => {
      await assert.rejects(
        reflect(`${host}:${port}`, [listServices()]),
        (err: unknown) =>
          err instanceof RpcError && err.code === Code.PERMISSION_DENIED &&
          /loopback/.test(err.message),
      );
      // The same server still answers on loopback.
      const [ok] = await reflect(`127.0.0.1:${port}`, [listServices()]);
      assert.ok(ok.services!.includes("fsb.fastpath.v1.FastPath"));
    }, "0.0.0.0:0");
    // With admit: its verdict, from the call's metadata, decides.
    const seen: string[] = [];
    const admit = (ctx: { metadata: Readonly<Record<string, string>> }) => {
      seen.push(ctx.metadata.authorization ?? "");
      if (ctx.metadata.authorization !== "Bearer admin") {
        throw new RpcError(Code.PERMISSION_DENIED, "Only an admin token may use reflection");
      }
    };
    await withServer({ reflection: { admit } }, async (_address, port) => {
      await assert.rejects(
        reflect(`${host}:${port}`, [listServices()], { metadata: { authorization: "Bearer x" } }),
        (err: unknown) => err instanceof RpcError && err.code === Code.PERMISSION_DENIED,
      );
      const [ok] = await reflect(`${host}:${port}`, [listServices()], {
        metadata: { authorization: "Bearer admin" },
      });
      assert.ok(ok.services!.includes("fsb.fastpath.v1.FastPath"));
      // Loopback callers are not asked.
      await reflect(`127.0.0.1:${port}`, [listServices()]);
      assert.deepEqual(seen, ["Bearer x", "Bearer admin"]);
    }, "0.0.0.0:0");
  },
});

Deno.test("reflection: a client that goes away mid-stream does not hold up close", async () => {
  const server = new RpcServer({ reflection: {} });
  server.add(FastPath, unimplemented(FastPath));
  const address = await server.listen("127.0.0.1:0");
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    const call = client.makeBidiStreamRequest(
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => new Uint8Array(b),
      new grpc.Metadata(),
      {},
    );
    call.on("error", () => {});
    const first = new Promise((resolve) => call.once("data", resolve));
    call.write(listServices());
    await first;
    call.cancel();
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    await server.close(5_000);
    assert.ok(Date.now() - t0 < 1_000, `close waited ${Date.now() - t0} ms`);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("reflection over TLS: the peer is still known, and loopback let in", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-reflection-tls-" });
  try {
    const certs = await makeTestCerts(dir);
    const tls = { cert: certs.serverCertPem, key: certs.serverKeyPem };
    await withServer({ reflection: {}, tls }, async (_address, port) => {
      const [answer] = await reflect(`localhost:${port}`, [listServices()], {
        credentials: grpc.credentials.createSsl(Buffer.from(certs.caPem)),
      });
      assert.ok(answer.services!.includes("fsb.fastpath.v1.FastPath"));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the controller's FastPath port serves reflection to a loopback caller", async () => {
  const cluster = await startCluster({ agents: [] });
  try {
    const [services, file] = await reflect(cluster.controller.address, [
      listServices(),
      fileContainingSymbol("fsb.fastpath.v1.FastPath"),
    ]);
    assert.ok(services.services!.includes("fsb.fastpath.v1.FastPath"), String(services.services));
    assert.equal(file.files![0].name, FASTPATH_FILE);
  } finally {
    await cluster.close();
  }
});

Deno.test("isLoopbackPeer reads grpc-js peer strings", () => {
  for (const peer of ["127.0.0.1:5000", "127.3.2.1:1", "[::1]:5000", "[::ffff:127.0.0.1]:80"]) {
    assert.equal(isLoopbackPeer(peer), true, peer);
  }
  assert.equal(isLoopbackPeer("unix:/run/fsb.sock"), true);
  for (const peer of ["192.0.2.2:5000", "[2001:db8::1]:80", "10.0.0.127:1", "unknown", ""]) {
    assert.equal(isLoopbackPeer(peer), false, peer);
  }
});
