/**
 * Tests that drive real containerd or etcd run wherever those are installed
 * (containerd also needs root). Elsewhere they are ignored, and say why,
 * unless FSB_REQUIRE_REAL=1 (set by .ci/run): then they run and fail loudly.
 *
 * @module
 */

function onPath(bin: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${bin}`).isFile) return true;
    } catch {
      // Not in this directory.
    }
  }
  return false;
}

const reported = new Set<string>();

/**
 * Whether tests needing `parts` should be ignored here: true when one is
 * missing and real parts are not required. Prints the reason once.
 */
export function ignoreWithout(
  ...parts:
    ("containerd" | "etcd" | "root" | "chromium" | "docker-registry" | "skopeo" | "promtool")[]
): boolean {
  const missing = parts.filter((p) => p === "root" ? Deno.uid() !== 0 : !onPath(p));
  if (missing.length === 0 || Deno.env.get("FSB_REQUIRE_REAL") === "1") return false;
  const key = missing.join(",");
  if (!reported.has(key)) {
    reported.add(key);
    console.warn(
      `ignoring tests that need ${missing.join(" and ")}: not available here ` +
        `(install containerd, runc, etcd-server, busybox-static, chromium, docker-registry, skopeo and prometheus (promtool) and run as root, as .ci/run does)`,
    );
  }
  return true;
}
