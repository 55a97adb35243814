/**
 * Image reference normalization, so that `busybox`, `docker.io/library/busybox`
 * and `docker.io/library/busybox:latest` compare equal.
 *
 * @module
 */

/**
 * Returns the fully qualified form of an image reference: registry host,
 * repository path (Docker Hub's one-part names under `library/`) and a tag
 * (`latest` when neither tag nor digest is given).
 *
 * @example
 * ```ts
 * normalizeImage("busybox"); // "docker.io/library/busybox:latest"
 * normalizeImage("ghcr.io/a/b@sha256:00"); // unchanged
 * ```
 */
export function normalizeImage(ref: string): string {
  let name = ref;
  let suffix = "";
  const at = name.indexOf("@");
  if (at >= 0) {
    suffix = name.slice(at);
    name = name.slice(0, at);
  }
  const lastSlash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  if (colon > lastSlash) {
    suffix = name.slice(colon) + suffix;
    name = name.slice(0, colon);
  } else if (suffix === "") {
    suffix = ":latest";
  }
  const slash = name.indexOf("/");
  const first = slash < 0 ? "" : name.slice(0, slash);
  const hasHost = first !== "" &&
    (first.includes(".") || first.includes(":") || first === "localhost");
  let host = "docker.io";
  let path = name;
  if (hasHost) {
    host = first === "index.docker.io" ? "docker.io" : first;
    path = name.slice(slash + 1);
  }
  if (host === "docker.io" && !path.includes("/")) path = `library/${path}`;
  return `${host}/${path}${suffix}`;
}
