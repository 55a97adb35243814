/**
 * Registry credentials from a file in Docker's `config.json` format:
 * `{"auths": {"HOST[:PORT]": {"auth": base64("user:pass")}}}` (or
 * `username` and `password` fields instead of `auth`).
 *
 * @module
 */
import { InvalidArgumentError } from "../../registry/errors.ts";

/** A user name and password for one registry. */
export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
}

/** Credentials by registry host (`host[:port]`, Docker Hub as `docker.io`). */
export type DockerAuth = ReadonlyMap<string, RegistryCredentials>;

// Docker keeps Docker Hub's entry under its old index address.
const DOCKER_HUB_ALIASES = new Set(["index.docker.io", "registry-1.docker.io", "docker.io"]);

/** The key a registry's credentials are found under: scheme and path dropped, Docker Hub as `docker.io`. */
export function registryKey(address: string): string {
  let host = address.trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, "");
  const slash = host.indexOf("/");
  if (slash >= 0) host = host.slice(0, slash);
  host = host.toLowerCase();
  return DOCKER_HUB_ALIASES.has(host) ? "docker.io" : host;
}

/**
 * Parses a Docker `config.json` text. Entries with neither `auth` nor
 * `username` (e.g. only an `identitytoken`) are left out; a malformed file
 * or entry is an InvalidArgumentError naming `source`.
 */
export function parseDockerAuth(text: string, source = "registry auth file"): DockerAuth {
  const bad = (why: string) => new InvalidArgumentError("registry-auth", `${source} ${why}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw bad(`is not JSON: ${(err as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw bad(`must be a JSON object with "auths"`);
  }
  const auths = (json as { auths?: unknown }).auths ?? {};
  if (typeof auths !== "object" || auths === null || Array.isArray(auths)) {
    throw bad(`has an "auths" that is not an object`);
  }
  const out = new Map<string, RegistryCredentials>();
  for (const [address, entry] of Object.entries(auths as Record<string, unknown>)) {
    if (typeof entry !== "object" || entry === null) throw bad(`has a bad entry for ${address}`);
    const e = entry as { auth?: unknown; username?: unknown; password?: unknown };
    let creds: RegistryCredentials | undefined;
    if (typeof e.auth === "string" && e.auth !== "") {
      let decoded: string;
      try {
        decoded = new TextDecoder().decode(Uint8Array.from(atob(e.auth), (c) => c.charCodeAt(0)));
      } catch {
        throw bad(`has an "auth" for ${address} that is not base64`);
      }
      const colon = decoded.indexOf(":");
      if (colon < 0) throw bad(`has an "auth" for ${address} that is not base64("user:password")`);
      creds = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    } else if (typeof e.username === "string" && e.username !== "") {
      creds = { username: e.username, password: typeof e.password === "string" ? e.password : "" };
    }
    if (creds !== undefined) out.set(registryKey(address), creds);
  }
  return out;
}

/** Reads and parses the Docker `config.json` at `path`; a missing or bad file is an InvalidArgumentError. */
export async function readDockerAuth(path: string): Promise<DockerAuth> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new InvalidArgumentError(
      "registry-auth",
      `cannot read ${path}: ${(err as Error).message}`,
    );
  }
  return parseDockerAuth(text, path);
}
