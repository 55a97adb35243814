/**
 * A real OCI distribution registry for tests: Debian's `docker-registry`
 * (the CNCF distribution registry, 2.8) on a free loopback port over plain
 * HTTP, with a storage directory of its own, filled with `skopeo`.
 *
 * With `auth`, the registry uses token auth (`auth.token`), and the tokens
 * come from a small token server started here on loopback (Deno.serve):
 * it checks Basic credentials against the one user given and issues ES256
 * JWTs that the registry verifies against a certificate made with `openssl`
 * (the `kid` is libtrust's key id of that certificate's key). Anonymous
 * token requests get a token that grants nothing, as Docker Hub's do.
 *
 * @module
 */
import { createHash, createPrivateKey, createPublicKey, sign } from "node:crypto";
import { join } from "node:path";

/** A user the token server accepts. */
export interface RegistryUser {
  readonly username: string;
  readonly password: string;
}

/** Options for {@linkcode startRegistry}. */
export interface StartRegistryOptions {
  /** Require credentials: token auth with this one user (who may pull and push). */
  readonly auth?: RegistryUser;
}

/** A running registry started by {@linkcode startRegistry}. */
export interface RegistryServer {
  /** `127.0.0.1:PORT`. */
  readonly host: string;
  /** The temporary directory holding its config, storage and log. */
  readonly root: string;
  /** The token server's `127.0.0.1:PORT`, with `auth`. */
  readonly tokenHost?: string;
  /** Token requests seen so far (with `auth`): the user (or `""`) and the scope asked for. */
  readonly tokenRequests: { user: string; scope: string }[];
  /** The registry's log so far, for failure messages. */
  log(): Promise<string>;
  /**
   * Copies an OCI archive into the registry as `repoTag` (e.g. `busybox:1`)
   * with `skopeo copy`; with `auth`, as its user.
   */
  push(ociArchive: string, repoTag: string): Promise<void>;
  /** Stops the registry (and token server) and removes `root`. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const SERVICE = "fsb-test-registry";
const ISSUER = "fsb-test-token-issuer";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Starts `docker-registry` and resolves once `/v2/` answers. */
export async function startRegistry(opts: StartRegistryOptions = {}): Promise<RegistryServer> {
  const root = await Deno.makeTempDir({ prefix: "fsb-registry-" });
  const tokenRequests: { user: string; scope: string }[] = [];
  let token: { server: Deno.HttpServer; host: string } | undefined;
  let child: Deno.ChildProcess | undefined;
  const logPath = join(root, "registry.log");
  const stop = async () => {
    try {
      child?.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child?.status;
    await token?.server.shutdown();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  };
  try {
    const authLines: string[] = [];
    if (opts.auth !== undefined) {
      token = await startTokenServer(root, opts.auth, tokenRequests);
      authLines.push(
        "auth:",
        "  token:",
        `    realm: http://${token.host}/token`,
        `    service: ${SERVICE}`,
        `    issuer: ${ISSUER}`,
        `    rootcertbundle: ${join(root, "token.pem")}`,
      );
    }
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const config = join(root, "config.yml");
    await Deno.writeTextFile(
      config,
      [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        `    rootdirectory: ${join(root, "data")}`,
        "  delete:",
        "    enabled: true",
        "http:",
        `  addr: ${host}`,
        `  secret: ${crypto.randomUUID()}`,
        ...authLines,
        "",
      ].join("\n"),
    );
    child = new Deno.Command("sh", {
      args: ["-c", 'exec docker-registry serve "$1" >"$2" 2>&1', "sh", config, logPath],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitReady(host, child);
    const auth = opts.auth;
    return {
      host,
      root,
      tokenHost: token?.host,
      tokenRequests,
      log: () => Deno.readTextFile(logPath).catch(() => ""),
      push: (archive, repoTag) => skopeoPush(archive, `${host}/${repoTag}`, auth),
      stop,
    };
  } catch (err) {
    const log = await Deno.readTextFile(logPath).catch(() => "");
    await stop();
    throw new Error(
      `docker-registry did not start: ${(err as Error).message}\n${log.slice(-3000)}`,
    );
  }
}

async function waitReady(host: string, child: Deno.ChildProcess): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited) throw new Error("docker-registry exited");
    try {
      const res = await fetch(`http://${host}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no answer on ${host} within ${READY_TIMEOUT_MS} ms`);
}

async function skopeoPush(archive: string, dest: string, auth: RegistryUser | undefined) {
  const args = [
    "copy",
    "--quiet",
    "--insecure-policy",
    "--dest-tls-verify=false",
    ...(auth === undefined ? [] : ["--dest-creds", `${auth.username}:${auth.password}`]),
    `oci-archive:${archive}`,
    `docker://${dest}`,
  ];
  const out = await new Deno.Command("skopeo", { args, stdin: "null" }).output();
  if (!out.success) {
    throw new Error(`skopeo ${args.join(" ")} failed: ${decoder.decode(out.stderr).trim()}`);
  }
}

/**
 * `n` different ports that were free a moment ago on 127.0.0.1: each is held
 * until all are picked, as ports picked one at a time may repeat (the kernel
 * can hand out a port it just got back).
 */
export function freePorts(n: number): number[] {
  const held = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = held.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of held) l.close();
  return ports;
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  await Promise.resolve();
  return port;
}

/** Starts the token server; writes the certificate the registry trusts to `root/token.pem`. */
async function startTokenServer(
  root: string,
  user: RegistryUser,
  requests: { user: string; scope: string }[],
): Promise<{ server: Deno.HttpServer; host: string }> {
  const keyPath = join(root, "token.key");
  const certPath = join(root, "token.pem");
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyPath,
      "-out",
      certPath,
      "-days",
      "2",
      "-subj",
      "/CN=fsb test token issuer",
    ],
    stdin: "null",
  }).output();
  if (!out.success) throw new Error(`openssl failed: ${decoder.decode(out.stderr)}`);
  const key = createPrivateKey(await Deno.readTextFile(keyPath));
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  const kid = libtrustKeyId(new Uint8Array(spki));
  const expected = `Basic ${btoa(`${user.username}:${user.password}`)}`;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req) => {
      const url = new URL(req.url);
      if (url.pathname !== "/token") return new Response("not found", { status: 404 });
      const authorization = req.headers.get("authorization");
      let who = "";
      if (authorization !== null) {
        if (authorization !== expected) {
          return Response.json({ details: "bad credentials" }, { status: 401 });
        }
        who = user.username;
      }
      const scopes = url.searchParams.getAll("scope");
      for (const scope of scopes) requests.push({ user: who, scope });
      const access = who === "" ? [] : scopes.flatMap((s) => {
        const [type, name, actions] = s.split(":");
        return type === "repository" && name && actions
          ? [{ type, name, actions: actions.split(",") }]
          : [];
      });
      const now = Math.floor(Date.now() / 1000);
      const jwt = signJwt(
        { typ: "JWT", alg: "ES256", kid },
        {
          iss: ISSUER,
          sub: who,
          aud: url.searchParams.get("service") ?? SERVICE,
          exp: now + 300,
          nbf: now - 10,
          iat: now,
          jti: crypto.randomUUID(),
          access,
        },
        key,
      );
      return Response.json({ token: jwt, access_token: jwt, expires_in: 300 });
    },
  );
  return { server, host: `127.0.0.1:${server.addr.port}` };
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function signJwt(
  header: object,
  claims: object,
  key: ReturnType<typeof createPrivateKey>,
): string {
  const input = `${base64url(encoder.encode(JSON.stringify(header)))}.${
    base64url(encoder.encode(JSON.stringify(claims)))
  }`;
  // JOSE wants ES256 signatures as raw r||s.
  const signature = sign("sha256", encoder.encode(input), { key, dsaEncoding: "ieee-p1363" });
  return `${input}.${base64url(new Uint8Array(signature))}`;
}

/**
 * libtrust's key id (what distribution's token auth matches a JWT `kid`
 * against): SHA-256 of the DER public key, first 240 bits, base32 in
 * colon-separated groups of four.
 */
function libtrustKeyId(spkiDer: Uint8Array): string {
  const hash = createHash("sha256").update(spkiDer).digest().subarray(0, 30);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let s = "";
  for (const byte of hash) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      s += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) s += alphabet[(value << (5 - bits)) & 31];
  return s.match(/.{1,4}/g)!.join(":");
}

/** A counting HTTP proxy in front of a registry: what a pull asked for, request by request. */
export interface CountingProxy {
  /** `127.0.0.1:PORT`. */
  readonly host: string;
  /** `METHOD PATH` of every request so far. */
  readonly requests: string[];
  /** Stops the proxy. */
  stop(): Promise<void>;
}

/** Starts a proxy on loopback that forwards every request to `upstream` (`HOST:PORT`, http). */
export function startCountingProxy(upstream: string): CountingProxy {
  const requests: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const url = new URL(req.url);
      requests.push(`${req.method} ${url.pathname}`);
      const headers = new Headers(req.headers);
      headers.delete("host");
      const res = await fetch(`http://${upstream}${url.pathname}${url.search}`, {
        method: req.method,
        headers,
        body: req.body,
        redirect: "manual",
      });
      return new Response(res.body, { status: res.status, headers: res.headers });
    },
  );
  return {
    host: `127.0.0.1:${server.addr.port}`,
    requests,
    stop: () => server.shutdown(),
  };
}

/** Uploads `bytes` as a blob of `repo` on the (auth-less) registry `host`; resolves to its digest. */
export async function pushBlob(
  host: string,
  repo: string,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<string> {
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  const start = await fetch(`http://${host}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  await start.body?.cancel();
  if (start.status !== 202) throw new Error(`blob upload start answered ${start.status}`);
  const location = new URL(start.headers.get("location")!, `http://${host}`);
  location.searchParams.set("digest", digest);
  const put = await fetch(location, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream" },
    body: bytes,
  });
  await put.body?.cancel();
  if (put.status !== 201) throw new Error(`blob upload answered ${put.status}`);
  return digest;
}

/** Puts a manifest or index under `reference` (a tag or digest); resolves to its digest. */
export async function pushManifest(
  host: string,
  repo: string,
  reference: string,
  mediaType: string,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<string> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": mediaType },
    body: bytes,
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`manifest put answered ${res.status}: ${text}`);
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** GETs a manifest (any kind) from the auth-less registry `host`: its bytes and media type. */
export async function getManifest(
  host: string,
  repo: string,
  reference: string,
): Promise<{ bytes: Uint8Array; mediaType: string }> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${reference}`, {
    headers: {
      accept: [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
      ].join(", "),
    },
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (!res.ok) throw new Error(`manifest get answered ${res.status}: ${decoder.decode(bytes)}`);
  return { bytes, mediaType: (res.headers.get("content-type") ?? "").split(";")[0] };
}
