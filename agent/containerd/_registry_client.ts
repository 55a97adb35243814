/**
 * A small OCI distribution (Docker registry v2) client over `fetch`: image
 * references, manifests and blobs with their digests and sizes checked, and
 * the registry's auth (anonymous first; on a 401, a bearer token from the
 * challenge's realm, or Basic credentials).
 *
 * @module
 */
import { createHash } from "node:crypto";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
} from "../../registry/errors.ts";
import { normalizeImage } from "../../registry/normalize_image.ts";
import { type RegistryCredentials, registryKey } from "./_docker_auth.ts";
import type { OciDescriptor } from "./image.ts";

/** A parsed image reference. */
export interface ImageReference {
  /** The normalized reference: the name of containerd's image record. */
  readonly name: string;
  /** The registry as written (`host[:port]`; `docker.io` for Docker Hub). */
  readonly registry: string;
  /** The repository path, e.g. `library/busybox`. */
  readonly repository: string;
  /** The tag, when the reference has one. */
  readonly tag?: string;
  /** The manifest digest, when the reference pins one (it wins over the tag). */
  readonly digest?: string;
}

/** A blob or manifest whose bytes are not what its descriptor says. */
export class DigestMismatchError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "DATA_LOSS";
  /** The digest that was asked for. */
  readonly digest: string;

  /** Creates the error for `digest`; the message says what was wrong. */
  constructor(digest: string, message: string) {
    super(message);
    this.name = "DigestMismatchError";
    this.digest = digest;
  }
}

/** Manifest media types, index kinds first. */
export const MEDIA_TYPES = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
} as const;

const ACCEPT = Object.values(MEDIA_TYPES).join(", ");
const KNOWN_MANIFEST_TYPES = new Set<string>(Object.values(MEDIA_TYPES));
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const HEADERS_TIMEOUT_MS = 30_000;
const BODY_IDLE_TIMEOUT_MS = 60_000;
const TOKEN_DEFAULT_TTL_S = 60;
const REPOSITORY =
  /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const SHA256 = /^sha256:[a-f0-9]{64}$/;

/**
 * Parses and normalizes an image reference (`busybox`, `host:5000/a/b:tag`,
 * `name@sha256:...`). Throws InvalidArgumentError (field `image`) for one
 * that is malformed or pins a digest other than sha256.
 */
export function parseReference(ref: string): ImageReference {
  const bad = (why: string) => new InvalidArgumentError("image", `"${ref}" ${why}`);
  if (ref.trim() === "" || /\s/.test(ref.trim())) throw bad("is not an image reference");
  const name = normalizeImage(ref.trim());
  let rest = name;
  let digest: string | undefined;
  let tag: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!SHA256.test(digest)) throw bad("pins a digest that is not sha256:<64 hex digits>");
  }
  const slash = rest.indexOf("/");
  const registry = rest.slice(0, slash);
  let repository = rest.slice(slash + 1);
  const colon = repository.lastIndexOf(":");
  if (colon >= 0) {
    tag = repository.slice(colon + 1);
    repository = repository.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`has an invalid tag "${tag}"`);
  }
  if (!REPOSITORY.test(repository)) throw bad(`has an invalid repository "${repository}"`);
  if (!/^[A-Za-z0-9.-]+(?::\d+)?$|^\[[0-9a-fA-F:.]+\](?::\d+)?$/.test(registry)) {
    throw bad(`has an invalid registry "${registry}"`);
  }
  return { name, registry, repository, tag, digest };
}

/** What {@linkcode RegistryClient} needs to know. */
export interface RegistryClientOptions {
  /** `HOST:PORT` registries spoken to over plain HTTP; all others over HTTPS. */
  readonly insecure?: Iterable<string>;
  /** Credentials for a registry (by {@linkcode registryKey}), asked for only when it challenges. */
  readonly credentials?: (registry: string) => Promise<RegistryCredentials | undefined>;
  /** The fetch to use; the global one unless told. */
  readonly fetch?: typeof fetch;
}

/** A manifest or index as the registry served it, checked against its digest. */
export interface FetchedManifest {
  readonly descriptor: OciDescriptor;
  readonly bytes: Uint8Array;
}

interface Challenge {
  readonly scheme: string;
  readonly params: Record<string, string>;
}

interface CachedAuth {
  readonly header: string;
  readonly expiresAt: number;
  /** The user the header speaks for; undefined for an anonymous token. */
  readonly user: string | undefined;
  /** `basic`: the registry checks the credentials on every request. */
  readonly scheme: "bearer" | "basic";
}

/**
 * Talks to registries for pulls. It remembers, per registry and repository,
 * the Authorization header last earned (until a token expires), so a pull
 * pays the auth round trip once; concurrent requests share one token fetch.
 */
export class RegistryClient {
  readonly #insecure: Set<string>;
  readonly #credentials: (registry: string) => Promise<RegistryCredentials | undefined>;
  readonly #fetch: typeof fetch;
  readonly #auth = new Map<string, CachedAuth>();
  readonly #authorizing = new Map<string, Promise<CachedAuth>>();

  /** Creates the client; it holds no connection of its own. */
  constructor(opts: RegistryClientOptions = {}) {
    this.#insecure = new Set([...opts.insecure ?? []].map((h) => h.toLowerCase()));
    this.#credentials = opts.credentials ?? (() => Promise.resolve(undefined));
    this.#fetch = opts.fetch ?? fetch;
  }

  /** The base URL of `registry`'s API: https unless it is listed insecure; Docker Hub's real host. */
  baseUrl(registry: string): string {
    const host = registry === "docker.io" ? "registry-1.docker.io" : registry;
    const scheme = this.#insecure.has(registry.toLowerCase()) ? "http" : "https";
    return `${scheme}://${host}/v2`;
  }

  /**
   * Fetches the manifest (or index) `ref` names, or the one `at` describes
   * (a digest or a child descriptor of an index), and checks it: its digest
   * against the reference's or descriptor's digest and the registry's
   * `Docker-Content-Digest`, its size against the descriptor's.
   */
  async manifest(
    ref: ImageReference,
    opts: { at?: OciDescriptor; signal?: AbortSignal } = {},
  ): Promise<FetchedManifest> {
    const wanted = opts.at?.digest ?? ref.digest;
    const selector = wanted ?? ref.tag ?? "latest";
    const url = `${this.baseUrl(ref.registry)}/${ref.repository}/manifests/${selector}`;
    const res = await this.#get(ref, url, { accept: ACCEPT }, opts.signal);
    if (res.status === 404) {
      const code = await errorCode(res);
      const what = code === "NAME_UNKNOWN"
        ? `has no repository ${ref.repository}`
        : wanted !== undefined
        ? `has no manifest ${wanted}`
        : `has no tag ${selector} in ${ref.repository}`;
      throw new NotFoundError(`Cannot pull ${ref.name} as registry ${ref.registry} ${what}`);
    }
    await expectOk(res, ref, `manifest ${selector}`);
    const bytes = await readLimited(res, MAX_MANIFEST_BYTES, `manifest of ${ref.name}`);
    const digest = sha256Hex(bytes);
    if (wanted !== undefined && digest !== wanted) {
      throw new DigestMismatchError(
        wanted,
        `Cannot pull ${ref.name} as registry ${ref.registry} served manifest ${wanted} with digest ${digest}`,
      );
    }
    const served = res.headers.get("docker-content-digest");
    if (served !== null && served.startsWith("sha256:") && served !== digest) {
      throw new DigestMismatchError(
        served,
        `Cannot pull ${ref.name} as registry ${ref.registry} says manifest ${served} but served bytes with digest ${digest}`,
      );
    }
    if (opts.at !== undefined && opts.at.size !== bytes.byteLength) {
      throw new DigestMismatchError(
        opts.at.digest,
        `Cannot pull ${ref.name} as manifest ${opts.at.digest} is ${bytes.byteLength} bytes, not ${opts.at.size}`,
      );
    }
    const mediaType = manifestMediaType(res.headers.get("content-type"), bytes, opts.at);
    if (!KNOWN_MANIFEST_TYPES.has(mediaType)) {
      throw new FailedPreconditionError(
        `Cannot pull ${ref.name} as its manifest has media type ${
          mediaType || "(none)"
        }, which fsb does not read (it reads OCI and Docker v2 manifests and indexes)`,
      );
    }
    return { descriptor: { mediaType, digest, size: bytes.byteLength }, bytes };
  }

  /**
   * Streams blob `desc` of `ref`'s repository in chunks of at least
   * `chunkBytes` (the last may be smaller), counting each chunk's bytes into
   * `onBytes` as it arrives. The stream throws a DigestMismatchError naming
   * the digest, before its last chunk, when the bytes are not `desc.size`
   * long or do not hash to `desc.digest`.
   */
  async *blob(
    ref: ImageReference,
    desc: OciDescriptor,
    opts: { chunkBytes: number; onBytes?: (n: number) => void; signal?: AbortSignal },
  ): AsyncIterable<Uint8Array> {
    if (!SHA256.test(desc.digest)) {
      throw new FailedPreconditionError(
        `Cannot pull ${ref.name} as blob ${desc.digest} is not named by a sha256 digest`,
      );
    }
    const url = `${this.baseUrl(ref.registry)}/${ref.repository}/blobs/${desc.digest}`;
    const idle = new AbortController();
    const signal = opts.signal === undefined
      ? idle.signal
      : AbortSignal.any([opts.signal, idle.signal]);
    const res = await this.#get(ref, url, {}, signal);
    if (res.status === 404) {
      await res.body?.cancel();
      throw new NotFoundError(
        `Cannot pull ${ref.name} as registry ${ref.registry} has no blob ${desc.digest}`,
      );
    }
    await expectOk(res, ref, `blob ${desc.digest}`);
    const mismatch = (why: string) =>
      new DigestMismatchError(
        desc.digest,
        `Cannot pull ${ref.name} as blob ${desc.digest} from registry ${ref.registry} ${why}`,
      );
    const length = res.headers.get("content-length");
    if (length !== null && Number(length) !== desc.size) {
      await res.body?.cancel();
      throw mismatch(`is ${length} bytes, not ${desc.size}`);
    }
    const hash = createHash("sha256");
    let size = 0;
    let parts: Uint8Array[] = [];
    let held = 0;
    // Aborts a download that stalls; the time the consumer takes with a chunk does not count.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => timer = setTimeout(() => idle.abort(), BODY_IDLE_TIMEOUT_MS);
    arm();
    try {
      for await (const chunk of res.body ?? new ReadableStream<Uint8Array>()) {
        clearTimeout(timer);
        size += chunk.byteLength;
        if (size > desc.size) throw mismatch(`is more than ${desc.size} bytes`);
        hash.update(chunk);
        opts.onBytes?.(chunk.byteLength);
        parts.push(chunk);
        held += chunk.byteLength;
        if (held >= opts.chunkBytes) {
          yield concat(parts, held);
          parts = [];
          held = 0;
        }
        arm();
      }
    } catch (err) {
      if (err instanceof DigestMismatchError || opts.signal?.aborted) throw err;
      const why = idle.signal.aborted
        ? `sent nothing for ${BODY_IDLE_TIMEOUT_MS / 1000} s`
        : `broke off: ${(err as Error).message}`;
      throw new UnavailableError(
        `Cannot pull ${ref.name} as the download of blob ${desc.digest} from registry ${ref.registry} ${why}`,
      );
    } finally {
      clearTimeout(timer);
    }
    if (size !== desc.size) throw mismatch(`is ${size} bytes, not ${desc.size}`);
    const digest = `sha256:${hash.digest("hex")}`;
    if (digest !== desc.digest) throw mismatch(`has digest ${digest}`);
    if (held > 0) yield concat(parts, held);
  }

  /** Reads a whole (small) blob, checked like {@linkcode blob}. */
  async blobBytes(
    ref: ImageReference,
    desc: OciDescriptor,
    opts: { onBytes?: (n: number) => void; signal?: AbortSignal } = {},
  ): Promise<Uint8Array> {
    if (desc.size > MAX_MANIFEST_BYTES) {
      throw new FailedPreconditionError(
        `Cannot pull ${ref.name} as its blob ${desc.digest} is ${desc.size} bytes, more than the ${MAX_MANIFEST_BYTES} a config may be`,
      );
    }
    const parts: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of this.blob(ref, desc, { ...opts, chunkBytes: desc.size + 1 })) {
      parts.push(chunk);
      total += chunk.byteLength;
    }
    return concat(parts, total);
  }

  /**
   * GETs `url` with the Authorization earned for the repository (if any);
   * on a 401 answers the challenge and tries once more. 401 and 403 that
   * remain become UnauthenticatedError and PermissionDeniedError naming the
   * registry; a registry that cannot be reached is an UnavailableError.
   */
  async #get(
    ref: ImageReference,
    url: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const key = `${registryKey(ref.registry)} ${ref.repository}`;
    let auth = this.#auth.get(key);
    if (auth !== undefined && auth.expiresAt <= Date.now()) {
      this.#auth.delete(key);
      auth = undefined;
    }
    let res = await this.#send(ref, url, headers, auth?.header, signal);
    if (res.status === 401) {
      const challenge = res.headers.get("www-authenticate") ?? "";
      await res.body?.cancel();
      auth = await this.#authorize(ref, key, challenge, auth, signal);
      res = await this.#send(ref, url, headers, auth.header, signal);
      if (res.status === 401) {
        await res.body?.cancel();
        this.#auth.delete(key);
        throw auth.user === undefined
          ? new UnauthenticatedError(
            `Cannot pull ${ref.name} as registry ${ref.registry} requires credentials and none are configured for it (--registry-auth)`,
          )
          : auth.scheme === "basic"
          ? new UnauthenticatedError(
            `Cannot pull ${ref.name} as registry ${ref.registry} refused the credentials of user "${auth.user}"`,
          )
          : new PermissionDeniedError(
            `Cannot pull ${ref.name} as registry ${ref.registry} denies user "${auth.user}" access to ${ref.repository}`,
          );
      }
    }
    if (res.status === 403) {
      await res.body?.cancel();
      throw new PermissionDeniedError(
        `Cannot pull ${ref.name} as registry ${ref.registry} denies access to ${ref.repository}${
          auth?.user === undefined ? "" : ` for user "${auth.user}"`
        }`,
      );
    }
    return res;
  }

  async #send(
    ref: ImageReference,
    url: string,
    headers: Record<string, string>,
    authorization: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const h: Record<string, string> = { ...headers };
    if (authorization !== undefined) h.authorization = authorization;
    return await this.#fetchOrUnavailable(url, { headers: h }, signal, `registry ${ref.registry}`);
  }

  async #fetchOrUnavailable(
    url: string,
    init: RequestInit,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<Response> {
    // Bounds the wait for the response's headers only: the body may take as long as it takes.
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), HEADERS_TIMEOUT_MS);
    const combined = signal === undefined
      ? timeout.signal
      : AbortSignal.any([signal, timeout.signal]);
    try {
      return await this.#fetch(url, { ...init, signal: combined });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const why = timeout.signal.aborted
        ? `no answer within ${HEADERS_TIMEOUT_MS / 1000} s`
        : (err as Error).message;
      throw new UnavailableError(`Cannot reach ${what} at ${new URL(url).origin}: ${why}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Answers a 401's challenge; concurrent requests for one repository share the answer. */
  #authorize(
    ref: ImageReference,
    key: string,
    header: string,
    failed: CachedAuth | undefined,
    signal: AbortSignal | undefined,
  ): Promise<CachedAuth> {
    // A request that failed with an older header than the one now cached can use the new one.
    const current = this.#auth.get(key);
    if (current !== undefined && current !== failed && current.expiresAt > Date.now()) {
      return Promise.resolve(current);
    }
    let pending = this.#authorizing.get(key);
    if (pending === undefined) {
      pending = this.#answer(ref, header, signal).then((auth) => {
        this.#auth.set(key, auth);
        return auth;
      }).finally(() => this.#authorizing.delete(key));
      this.#authorizing.set(key, pending);
    }
    return pending;
  }

  async #answer(
    ref: ImageReference,
    header: string,
    signal: AbortSignal | undefined,
  ): Promise<CachedAuth> {
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const basic = challenges.find((c) => c.scheme === "basic");
    const creds = await this.#credentials(registryKey(ref.registry));
    if (bearer !== undefined) return await this.#token(ref, bearer, creds, signal);
    if (basic !== undefined) {
      if (creds === undefined) {
        throw new UnauthenticatedError(
          `Cannot pull ${ref.name} as registry ${ref.registry} requires credentials and none are configured for it (--registry-auth)`,
        );
      }
      return {
        header: `Basic ${basicAuth(creds)}`,
        expiresAt: Number.POSITIVE_INFINITY,
        user: creds.username,
        scheme: "basic",
      };
    }
    throw new UnauthenticatedError(
      `Cannot pull ${ref.name} as registry ${ref.registry} asks for authentication fsb cannot give (WWW-Authenticate: ${
        header || "(none)"
      })`,
    );
  }

  /** Fetches a bearer token from the challenge's realm (with Basic credentials when there are some). */
  async #token(
    ref: ImageReference,
    challenge: Challenge,
    creds: RegistryCredentials | undefined,
    signal: AbortSignal | undefined,
  ): Promise<CachedAuth> {
    const { realm, service, scope } = challenge.params;
    let url: URL;
    try {
      url = new URL(realm ?? "");
    } catch {
      throw new UnauthenticatedError(
        `Cannot pull ${ref.name} as registry ${ref.registry} names no usable token realm (${
          realm ?? "none"
        })`,
      );
    }
    const plainOk = this.#insecure.has(url.host.toLowerCase()) || isLoopback(url.hostname);
    if (url.protocol !== "https:" && !(url.protocol === "http:" && plainOk)) {
      throw new UnauthenticatedError(
        `Cannot pull ${ref.name} as registry ${ref.registry} sends fsb for a token to ${url.origin} over plain HTTP (allow with --insecure-registry ${url.host})`,
      );
    }
    if (service !== undefined) url.searchParams.set("service", service);
    url.searchParams.set("scope", scope ?? `repository:${ref.repository}:pull`);
    const headers: Record<string, string> = {};
    if (creds !== undefined) headers.authorization = `Basic ${basicAuth(creds)}`;
    const res = await this.#fetchOrUnavailable(
      url.href,
      { headers },
      signal,
      `the token service of registry ${ref.registry}`,
    );
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw creds === undefined
        ? new UnauthenticatedError(
          `Cannot pull ${ref.name} as registry ${ref.registry} requires credentials and none are configured for it (--registry-auth)`,
        )
        : new UnauthenticatedError(
          `Cannot pull ${ref.name} as registry ${ref.registry} refused the credentials of user "${creds.username}"`,
        );
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new UnavailableError(
        `Cannot pull ${ref.name} as the token service of registry ${ref.registry} answered ${res.status}`,
      );
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = await res.json();
    } catch {
      body = {};
    }
    const token = typeof body.token === "string" && body.token !== ""
      ? body.token
      : typeof body.access_token === "string"
      ? body.access_token
      : "";
    if (token === "") {
      throw new UnauthenticatedError(
        `Cannot pull ${ref.name} as the token service of registry ${ref.registry} gave no token`,
      );
    }
    const ttl = typeof body.expires_in === "number" && body.expires_in > 0
      ? body.expires_in
      : TOKEN_DEFAULT_TTL_S;
    return {
      header: `Bearer ${token}`,
      // Renewed a little early, so a token never expires between check and use.
      expiresAt: Date.now() + Math.max(ttl - 10, ttl / 2) * 1000,
      user: creds?.username,
      scheme: "bearer",
    };
  }
}

/**
 * Parses a `WWW-Authenticate` header into its challenges, e.g.
 * `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`.
 * Schemes are lowercased; parameter names too.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: { scheme: string; params: Record<string, string> }[] = [];
  let i = 0;
  const n = header.length;
  const skip = (re: RegExp) => {
    while (i < n && re.test(header[i])) i++;
  };
  const token = () => {
    const start = i;
    skip(/[!#$%&'*+.^_`|~0-9A-Za-z-]/);
    return header.slice(start, i);
  };
  while (i < n) {
    skip(/[\s,]/);
    const scheme = token();
    if (scheme === "") {
      i++;
      continue;
    }
    const current = { scheme: scheme.toLowerCase(), params: {} as Record<string, string> };
    out.push(current);
    for (;;) {
      skip(/[\s,]/);
      const save = i;
      const name = token();
      skip(/\s/);
      if (name === "" || header[i] !== "=") {
        // The next challenge's scheme (or the end).
        i = save;
        break;
      }
      i++;
      skip(/\s/);
      let value = "";
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === "\\" && i + 1 < n) i++;
          value += header[i++];
        }
        i++;
      } else {
        const start = i;
        skip(/[^,\s]/);
        value = header.slice(start, i);
      }
      current.params[name.toLowerCase()] = value;
    }
  }
  return out;
}

function basicAuth(creds: RegistryCredentials): string {
  const bytes = new TextEncoder().encode(`${creds.username}:${creds.password}`);
  return btoa(String.fromCharCode(...bytes));
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

function sha256Hex(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** The media type: the descriptor's, else the response's Content-Type, else the JSON's own. */
function manifestMediaType(
  contentType: string | null,
  bytes: Uint8Array,
  at: OciDescriptor | undefined,
): string {
  if (at?.mediaType && KNOWN_MANIFEST_TYPES.has(at.mediaType)) return at.mediaType;
  const header = (contentType ?? "").split(";")[0].trim().toLowerCase();
  if (KNOWN_MANIFEST_TYPES.has(header)) return header;
  let json: { mediaType?: unknown; manifests?: unknown; layers?: unknown; schemaVersion?: unknown };
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return header;
  }
  if (typeof json.mediaType === "string" && json.mediaType !== "") return json.mediaType;
  if (json.schemaVersion === 2 && Array.isArray(json.manifests)) return MEDIA_TYPES.ociIndex;
  if (json.schemaVersion === 2 && Array.isArray(json.layers)) return MEDIA_TYPES.ociManifest;
  return header;
}

async function expectOk(res: Response, ref: ImageReference, what: string): Promise<void> {
  if (res.ok) return;
  const detail = (await res.text().catch(() => "")).slice(0, 300).trim();
  const message =
    `Cannot pull ${ref.name} as registry ${ref.registry} answered ${res.status} for ${what}${
      detail === "" ? "" : `: ${detail}`
    }`;
  if (res.status >= 500 || res.status === 429) throw new UnavailableError(message);
  throw new FailedPreconditionError(message);
}

/** The first error code of a registry error body (`{"errors":[{"code":...}]}`), if any. */
async function errorCode(res: Response): Promise<string | undefined> {
  try {
    const body = await res.json() as { errors?: { code?: string }[] };
    return body.errors?.[0]?.code;
  } catch {
    return undefined;
  }
}

async function readLimited(res: Response, max: number, what: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body ?? new ReadableStream<Uint8Array>()) {
    total += chunk.byteLength;
    if (total > max) {
      throw new FailedPreconditionError(`Cannot pull as the ${what} is more than ${max} bytes`);
    }
    parts.push(chunk);
  }
  return concat(parts, total);
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}
