import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fromJson } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../../../proto/gen/fsb/agent/v1/agent_pb.ts";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  UnauthenticatedError,
} from "../../../registry/errors.ts";
import {
  ContainerdClient,
  ContainerdRuntime,
  DigestMismatchError,
  IMAGE_PULL_USAGE,
  imagePull,
  isNotFound,
  parseDockerAuth,
  parseReference,
  pullImage,
} from "../../../agent/containerd/mod.ts";
import { parseChallenges } from "../../../agent/containerd/_registry_client.ts";
import { chainIds, hostPlatform } from "../../../agent/containerd/image.ts";
import { UsageError } from "../../../cli/usage_error.ts";
import { buildBusyboxImage } from "../../support/busybox_image.ts";
import { type ContainerdServer, startContainerd } from "../../support/containerd.ts";
import {
  getManifest,
  pushBlob,
  pushManifest,
  type RegistryServer,
  type RegistryUser,
  startCountingProxy,
  startRegistry,
} from "../../support/registry.ts";
import { ignoreWithout } from "../../support/real_parts.ts";

const IGNORE_REGISTRY = ignoreWithout("containerd", "root", "docker-registry", "skopeo");
const IGNORE_CONTAINERD = ignoreWithout("containerd", "root");
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

// ---------------------------------------------------------------------------
// Pure parts: references, challenges, the auth file.

Deno.test("parseReference() normalizes like the rest of fsb and splits registry, repository, tag and digest", () => {
  const digest = `sha256:${"a".repeat(64)}`;
  assert.deepEqual(parseReference("busybox"), {
    name: "docker.io/library/busybox:latest",
    registry: "docker.io",
    repository: "library/busybox",
    tag: "latest",
    digest: undefined,
  });
  assert.deepEqual(parseReference("127.0.0.1:5000/team/app:v1.2"), {
    name: "127.0.0.1:5000/team/app:v1.2",
    registry: "127.0.0.1:5000",
    repository: "team/app",
    tag: "v1.2",
    digest: undefined,
  });
  assert.deepEqual(parseReference(`localhost:5000/app@${digest}`), {
    name: `localhost:5000/app@${digest}`,
    registry: "localhost:5000",
    repository: "app",
    tag: undefined,
    digest,
  });
  assert.throws(() => parseReference("Busybox"), InvalidArgumentError);
  assert.throws(() => parseReference("busybox@md5:00"), InvalidArgumentError);
  assert.throws(() => parseReference(""), InvalidArgumentError);
});

Deno.test("parseChallenges() reads Bearer and Basic challenges with quoted parameters", () => {
  assert.deepEqual(
    parseChallenges(
      'Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull,push"',
    ),
    [{
      scheme: "bearer",
      params: {
        realm: "https://auth.example/token",
        service: "reg.example",
        scope: "repository:a/b:pull,push",
      },
    }],
  );
  assert.deepEqual(parseChallenges('Basic realm="x, \\"y\\"", Bearer realm=r'), [
    { scheme: "basic", params: { realm: 'x, "y"' } },
    { scheme: "bearer", params: { realm: "r" } },
  ]);
  assert.deepEqual(parseChallenges(""), []);
});

Deno.test("parseDockerAuth() reads Docker's config.json: auth or username/password, Docker Hub under docker.io", () => {
  const auth = parseDockerAuth(JSON.stringify({
    auths: {
      "127.0.0.1:5000": { auth: btoa("alice:s3cr:et") },
      "https://index.docker.io/v1/": { username: "bob", password: "pw" },
      "ghcr.io": { identitytoken: "ignored" },
    },
  }));
  assert.deepEqual(auth.get("127.0.0.1:5000"), { username: "alice", password: "s3cr:et" });
  assert.deepEqual(auth.get("docker.io"), { username: "bob", password: "pw" });
  assert.equal(auth.has("ghcr.io"), false);
  assert.throws(() => parseDockerAuth("{"), InvalidArgumentError);
  assert.throws(
    () => parseDockerAuth(JSON.stringify({ auths: { h: { auth: btoa("nocolon") } } })),
    InvalidArgumentError,
  );
});

Deno.test("imagePull() refuses bad command lines with its usage", async () => {
  const out: string[] = [];
  const io = { stdout: (s: string) => out.push(s) };
  assert.equal(await imagePull(["--help"], io), 0);
  assert.match(out.join(""), /^Usage: fsb image pull REF/);
  await assert.rejects(imagePull([], io), (err) => {
    assert.ok(err instanceof UsageError);
    assert.match(err.usage ?? "", /fsb image pull REF/);
    return true;
  });
  await assert.rejects(
    imagePull(["busybox", "--insecure-registry", "http://x/"], io),
    new UsageError('Flag --insecure-registry needs HOST:PORT, got "http://x/"', {
      usage: IMAGE_PULL_USAGE,
    }),
  );
  await assert.rejects(imagePull(["busybox", "--bogus"], io), UsageError);
});

// ---------------------------------------------------------------------------
// Real parts: docker-registry, skopeo, containerd.

interface Scene {
  readonly dir: string;
  readonly registry: RegistryServer;
  readonly containerd: ContainerdServer;
  readonly client: ContainerdClient;
}

async function withRegistry(
  fn: (s: Scene) => Promise<void>,
  opts: { auth?: RegistryUser } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb_pull_test_" });
  let registry: RegistryServer | undefined;
  let containerd: ContainerdServer | undefined;
  let client: ContainerdClient | undefined;
  try {
    const tar = await buildBusyboxImage(dir, { gzip: true });
    [registry, containerd] = await Promise.all([startRegistry(opts), startContainerd()]);
    await registry.push(tar, "busybox:1");
    client = new ContainerdClient(containerd.socket);
    await fn({ dir, registry, containerd, client });
  } finally {
    client?.close();
    await containerd?.stop();
    await registry?.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

function sandboxSpec(image: string, command: string[]): SandboxSpec {
  const id = crypto.randomUUID().replaceAll("-", "");
  return fromJson(SandboxSpecSchema, {
    sandboxId: id,
    name: `sb-${id.slice(0, 8)}`,
    namespace: "default",
    pool: "default-pool",
    image,
    command,
    failurePolicy: "MANUAL",
  });
}

async function readLog(runtime: ContainerdRuntime, id: string): Promise<string> {
  let text = "";
  for await (const chunk of runtime.logs(id, { follow: true })) text += decoder.decode(chunk);
  return text;
}

/** Ingests (partial writes) containerd holds: a pull must leave none behind. */
async function ingests(containerd: ContainerdServer): Promise<string[]> {
  const dir = join(containerd.root, "root", "io.containerd.content.v1.content", "ingest");
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out;
}

async function contentExists(client: ContainerdClient, digest: string): Promise<boolean> {
  try {
    await client.content.info({ digest });
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

Deno.test({
  name:
    "pullImage() by tag stores, records and unpacks the image, a create runs it, and a pull by digest fetches only the manifest",
  ignore: IGNORE_REGISTRY,
}, async () => {
  await withRegistry(async ({ dir, registry, containerd, client }) => {
    const host = registry.host;
    const served = await getManifest(host, "busybox", "1");
    const digest = `sha256:${createHash("sha256").update(served.bytes).digest("hex")}`;
    const manifest = JSON.parse(decoder.decode(served.bytes));

    const out: string[] = [];
    const code = await imagePull(
      [`${host}/busybox:1`, "--containerd-socket", containerd.socket, "--insecure-registry", host],
      { stdout: (s) => out.push(s) },
    );
    assert.equal(code, 0);
    assert.equal(out.join(""), `pulled ${host}/busybox:1 (${digest})\n`);

    const { image } = await client.images.get({ name: `${host}/busybox:1` });
    assert.equal(image?.target?.digest, digest);
    assert.equal(image?.target?.mediaType, served.mediaType);
    assert.equal(Number(image?.target?.size), served.bytes.byteLength);
    // Every blob is in the store with its size, and the layers were unpacked.
    for (const blob of [manifest.config, ...manifest.layers]) {
      const { info } = await client.content.info({ digest: blob.digest });
      assert.equal(Number(info?.size), blob.size);
    }
    const config = JSON.parse(decoder.decode(await client.readBlob(manifest.config.digest)));
    const chain = chainIds(config.rootfs.diff_ids);
    await client.snapshots.stat({ snapshotter: "overlayfs", key: chain[chain.length - 1] });
    assert.deepEqual(await ingests(containerd), []);

    // By digest: another image record on the same content; only the manifest is fetched.
    const byDigest = await pullImage(`${host}/busybox@${digest}`, {
      socket: containerd.socket,
      insecure: [host],
    });
    assert.equal(byDigest.name, `${host}/busybox@${digest}`);
    assert.equal(byDigest.target.digest, digest);
    assert.equal(byDigest.blobsPresent, manifest.layers.length);
    assert.equal(byDigest.bytes, served.bytes.byteLength + manifest.config.size);

    // The pulled image runs, without a pull by the runtime.
    const runtime = new ContainerdRuntime({ socket: containerd.socket, stateDir: dir });
    try {
      const s = sandboxSpec(`${host}/busybox:1`, ["sh", "-c", "echo pulled-ok"]);
      const res = await runtime.create(s, { logPath: join(dir, "logs", `${s.sandboxId}.log`) });
      assert.equal(res.stageMs.image_pull, undefined);
      assert.equal(await readLog(runtime, s.sandboxId), "pulled-ok\n");
      await runtime.delete(s.sandboxId, 0);
    } finally {
      await runtime.close();
    }
  });
});

Deno.test({
  name: "pullImage() of an index pulls only the host platform's manifest and records the index",
  ignore: IGNORE_REGISTRY,
}, async () => {
  await withRegistry(async ({ registry, containerd, client }) => {
    const host = registry.host;
    const amd = await getManifest(host, "busybox", "1");
    const amdJson = JSON.parse(decoder.decode(amd.bytes));
    const configRes = await fetch(`http://${host}/v2/busybox/blobs/${amdJson.config.digest}`);
    const config = JSON.parse(await configRes.text());
    // A second platform: same layers, another architecture in its config.
    const want = hostPlatform();
    const otherArch = want.architecture === "amd64" ? "arm64" : "amd64";
    const otherConfig = encoder.encode(JSON.stringify({ ...config, architecture: otherArch }));
    const otherConfigDigest = await pushBlob(host, "busybox", otherConfig);
    const otherManifest = encoder.encode(JSON.stringify({
      ...amdJson,
      config: { ...amdJson.config, digest: otherConfigDigest, size: otherConfig.byteLength },
    }));
    const otherDigest = await pushManifest(
      host,
      "busybox",
      `sha256:${createHash("sha256").update(otherManifest).digest("hex")}`,
      OCI_MANIFEST,
      otherManifest,
    );
    const hostDigest = `sha256:${createHash("sha256").update(amd.bytes).digest("hex")}`;
    // The other platform first, so that picking the first entry would be wrong.
    const index = encoder.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: otherDigest,
          size: otherManifest.byteLength,
          platform: { os: "linux", architecture: otherArch },
        },
        {
          mediaType: amd.mediaType,
          digest: hostDigest,
          size: amd.bytes.byteLength,
          platform: { os: "linux", architecture: want.architecture },
        },
      ],
    }));
    const indexDigest = await pushManifest(host, "busybox", "multi", OCI_INDEX, index);

    const res = await pullImage(`${host}/busybox:multi`, {
      socket: containerd.socket,
      insecure: [host],
    });
    assert.deepEqual(res.target, { mediaType: OCI_INDEX, digest: indexDigest, size: index.length });
    assert.equal(res.manifest.digest, hostDigest);
    const { image } = await client.images.get({ name: `${host}/busybox:multi` });
    assert.equal(image?.target?.digest, indexDigest);
    assert.equal(image?.target?.mediaType, OCI_INDEX);
    assert.ok(await contentExists(client, hostDigest));
    assert.ok(await contentExists(client, amdJson.config.digest));
    assert.equal(await contentExists(client, otherDigest), false);
    assert.equal(await contentExists(client, otherConfigDigest), false);
  });
});

Deno.test({
  name:
    "pullImage() answers a registry's bearer challenge with credentials from --registry-auth, and names the registry when refused",
  ignore: IGNORE_REGISTRY,
}, async () => {
  const user = { username: "puller", password: "correct horse" };
  await withRegistry(async ({ dir, registry, containerd, client }) => {
    const host = registry.host;
    const ref = `${host}/busybox:1`;
    const writeAuth = async (name: string, password: string) => {
      const path = join(dir, name);
      await Deno.writeTextFile(
        path,
        JSON.stringify({ auths: { [host]: { auth: btoa(`${user.username}:${password}`) } } }),
      );
      return path;
    };
    const opts = { socket: containerd.socket, insecure: [host] };

    await assert.rejects(pullImage(ref, opts), (err) => {
      assert.ok(err instanceof UnauthenticatedError, String(err));
      assert.match(err.message, new RegExp(`registry ${host} requires credentials`));
      return true;
    });
    const wrong = await writeAuth("wrong.json", "battery staple");
    await assert.rejects(pullImage(ref, { ...opts, authFile: wrong }), (err) => {
      assert.ok(err instanceof UnauthenticatedError, String(err));
      assert.match(
        err.message,
        new RegExp(`registry ${host} refused the credentials of user "puller"`),
      );
      return true;
    });

    const right = await writeAuth("config.json", user.password);
    registry.tokenRequests.length = 0;
    const res = await pullImage(ref, { ...opts, authFile: right });
    assert.equal((await client.images.get({ name: ref })).image?.target?.digest, res.target.digest);
    // One token for the whole pull: manifest, config and layer.
    assert.deepEqual(registry.tokenRequests, [
      { user: "puller", scope: "repository:busybox:pull" },
    ]);
    assert.deepEqual(await ingests(containerd), []);
  }, { auth: user });
});

Deno.test({
  name: "pullImage() of an unknown tag or repository is NotFoundError naming the reference",
  ignore: IGNORE_REGISTRY,
}, async () => {
  await withRegistry(async ({ registry, containerd, client }) => {
    const host = registry.host;
    const opts = { socket: containerd.socket, insecure: [host] };
    await assert.rejects(
      pullImage(`${host}/busybox:nope`, opts),
      new NotFoundError(
        `Cannot pull ${host}/busybox:nope as registry ${host} has no tag nope in busybox`,
      ),
    );
    // distribution answers MANIFEST_UNKNOWN (not NAME_UNKNOWN) for a repository it lacks.
    await assert.rejects(
      pullImage(`${host}/absent/thing:1`, opts),
      new NotFoundError(
        `Cannot pull ${host}/absent/thing:1 as registry ${host} has no tag 1 in absent/thing`,
      ),
    );
    const digest = `sha256:${"0".repeat(64)}`;
    await assert.rejects(pullImage(`${host}/busybox@${digest}`, opts), (err) => {
      assert.ok(err instanceof NotFoundError);
      assert.match(err.message, new RegExp(`Cannot pull ${host}/busybox@${digest} as`));
      return true;
    });
    assert.deepEqual((await client.images.list({})).images, []);
  });
});

/**
 * A fake registry on loopback serving one small image (`fake:1`), for
 * failures a real registry will not produce: a corrupt layer, a manifest
 * that does not match its digest, Basic auth.
 */
function fakeRegistry(
  opts: { corruptLayer?: boolean; shortLayer?: boolean; basic?: RegistryUser } = {},
) {
  const layer = encoder.encode("not really a tar, never unpacked".repeat(100));
  const layerDigest = `sha256:${createHash("sha256").update(layer).digest("hex")}`;
  const config = encoder.encode(JSON.stringify({
    architecture: hostPlatform().architecture,
    os: "linux",
    config: { Cmd: ["sh"] },
    rootfs: { type: "layers", diff_ids: [layerDigest] },
  }));
  const configDigest = `sha256:${createHash("sha256").update(config).digest("hex")}`;
  const manifest = encoder.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: configDigest,
      size: config.byteLength,
    },
    layers: [{
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: layerDigest,
      size: layer.byteLength,
    }],
  }));
  const manifestDigest = `sha256:${createHash("sha256").update(manifest).digest("hex")}`;
  const requests: string[] = [];
  const expected = opts.basic === undefined
    ? undefined
    : `Basic ${btoa(`${opts.basic.username}:${opts.basic.password}`)}`;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    requests.push(`${req.method} ${path}`);
    if (expected !== undefined && req.headers.get("authorization") !== expected) {
      return new Response("{}", {
        status: 401,
        headers: { "www-authenticate": 'Basic realm="fake"' },
      });
    }
    if (path === "/v2/fake/manifests/1" || path === `/v2/fake/manifests/${manifestDigest}`) {
      return new Response(manifest, { headers: { "content-type": OCI_MANIFEST } });
    }
    // Served under a digest it does not have.
    const wrongDigest = `sha256:${"1".repeat(64)}`;
    if (path === `/v2/fake/manifests/${wrongDigest}`) {
      return new Response(manifest, { headers: { "content-type": OCI_MANIFEST } });
    }
    if (path === `/v2/fake/blobs/${configDigest}`) return new Response(config);
    if (path === `/v2/fake/blobs/${layerDigest}`) {
      const body = layer.slice();
      if (opts.corruptLayer) body[body.length - 1] ^= 1;
      // Chunked, so the size is only found out at the end of the stream.
      const bytes = opts.shortLayer ? body.subarray(0, body.length - 10) : body;
      return new Response(ReadableStream.from([bytes]));
    }
    return Response.json({ errors: [{ code: "MANIFEST_UNKNOWN" }] }, { status: 404 });
  });
  return {
    host: `127.0.0.1:${server.addr.port}`,
    layerDigest,
    layerSize: layer.byteLength,
    manifestDigest,
    requests,
    stop: () => server.shutdown(),
  };
}

Deno.test({
  name:
    "pullImage() refuses a blob or manifest whose bytes do not match its digest, naming the digest, and keeps nothing",
  ignore: IGNORE_CONTAINERD,
}, async () => {
  const containerd = await startContainerd();
  const client = new ContainerdClient(containerd.socket);
  const corrupt = fakeRegistry({ corruptLayer: true });
  const short = fakeRegistry({ shortLayer: true });
  try {
    const opts = { socket: containerd.socket, insecure: [corrupt.host, short.host] };
    await assert.rejects(pullImage(`${corrupt.host}/fake:1`, opts), (err) => {
      assert.ok(err instanceof DigestMismatchError, String(err));
      assert.equal(err.digest, corrupt.layerDigest);
      assert.match(
        err.message,
        new RegExp(`blob ${corrupt.layerDigest} from registry ${corrupt.host} has digest sha256:`),
      );
      return true;
    });
    await assert.rejects(pullImage(`${short.host}/fake:1`, opts), (err) => {
      assert.ok(err instanceof DigestMismatchError, String(err));
      assert.equal(err.digest, short.layerDigest);
      assert.match(
        err.message,
        new RegExp(`is ${short.layerSize - 10} bytes, not ${short.layerSize}`),
      );
      return true;
    });
    const wrong = `sha256:${"1".repeat(64)}`;
    await assert.rejects(pullImage(`${corrupt.host}/fake@${wrong}`, opts), (err) => {
      assert.ok(err instanceof DigestMismatchError, String(err));
      assert.equal(err.digest, wrong);
      assert.match(err.message, new RegExp(`served manifest ${wrong} with digest`));
      return true;
    });
    assert.deepEqual((await client.images.list({})).images, []);
    assert.equal(await contentExists(client, corrupt.layerDigest), false);
    assert.deepEqual(await ingests(containerd), []);
  } finally {
    client.close();
    await corrupt.stop();
    await short.stop();
    await containerd.stop();
  }
});

Deno.test({
  name: "pullImage() answers a Basic challenge with the configured credentials",
  ignore: IGNORE_CONTAINERD,
}, async () => {
  const containerd = await startContainerd();
  const user = { username: "basic", password: "pw" };
  const fake = fakeRegistry({ basic: user });
  try {
    const opts = { socket: containerd.socket, insecure: [fake.host], unpack: false };
    await assert.rejects(pullImage(`${fake.host}/fake:1`, opts), UnauthenticatedError);
    await assert.rejects(
      pullImage(`${fake.host}/fake:1`, {
        ...opts,
        auth: new Map([[fake.host, { ...user, password: "nope" }]]),
      }),
      (err) => {
        assert.ok(err instanceof UnauthenticatedError, String(err));
        assert.match(
          err.message,
          new RegExp(`registry ${fake.host} refused the credentials of user "basic"`),
        );
        return true;
      },
    );
    const res = await pullImage(`${fake.host}/fake:1`, {
      ...opts,
      auth: new Map([[fake.host, user]]),
    });
    assert.equal(res.target.digest, fake.manifestDigest);
  } finally {
    await fake.stop();
    await containerd.stop();
  }
});

Deno.test({
  name:
    "ContainerdRuntime with pull if-missing: 10 concurrent creates of a missing image pull it once and all run",
  ignore: IGNORE_REGISTRY,
}, async () => {
  await withRegistry(async ({ dir, registry, containerd, client }) => {
    const proxy = startCountingProxy(registry.host);
    const runtime = new ContainerdRuntime({
      socket: containerd.socket,
      stateDir: join(dir, "state"),
      pull: "if-missing",
      registry: { insecure: [proxy.host] },
    });
    const never = new ContainerdRuntime({ socket: containerd.socket, stateDir: join(dir, "s2") });
    try {
      const image = `${proxy.host}/busybox:1`;
      // `never` (the runtime's default) keeps refusing a missing image without asking the registry.
      const refused = sandboxSpec(image, ["true"]);
      await assert.rejects(
        never.create(refused, { logPath: join(dir, "logs", "refused.log") }),
        new FailedPreconditionError(
          `Cannot create sandbox ${refused.sandboxId} as image "${image}" is not present on this host`,
        ),
      );
      assert.equal(proxy.requests.length, 0);

      const specs = Array.from({ length: 10 }, () => sandboxSpec(image, ["sleep", "30"]));
      const results = await Promise.all(
        specs.map((s) => runtime.create(s, { logPath: join(dir, "logs", `${s.sandboxId}.log`) })),
      );
      const blobGets = proxy.requests.filter((r) => r.startsWith("GET /v2/busybox/blobs/"));
      const manifestGets = proxy.requests.filter((r) => r.startsWith("GET /v2/busybox/manifests/"));
      assert.equal(manifestGets.length, 1, proxy.requests.join("\n"));
      assert.equal(blobGets.length, 2, proxy.requests.join("\n"));
      assert.equal(new Set(blobGets).size, 2);
      assert.ok(results.some((r) => r.stageMs.image_pull !== undefined));
      const listed = await runtime.list();
      assert.equal(listed.filter((s) => s.phase === "Running").length, 10);
      assert.ok((await runtime.images()).includes(image));
      await Promise.all(specs.map((s) => runtime.delete(s.sandboxId, 0)));

      // A missing tag: the create fails naming the sandbox, the image and the registry's answer.
      const missing = sandboxSpec(`${proxy.host}/busybox:absent`, ["true"]);
      await assert.rejects(
        runtime.create(missing, { logPath: join(dir, "logs", "missing.log") }),
        new FailedPreconditionError(
          `Cannot create sandbox ${missing.sandboxId} as image "${proxy.host}/busybox:absent" is not present on this host and pulling it failed: Cannot pull ${proxy.host}/busybox:absent as registry ${proxy.host} has no tag absent in busybox`,
        ),
      );
      assert.deepEqual((await client.containers.list({})).containers, []);
    } finally {
      await runtime.close();
      await never.close();
      await proxy.stop();
    }
  });
});
