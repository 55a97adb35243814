/**
 * Whether the kernel's OOM killer ended a container: read from its memory
 * cgroup, which stays until the task is deleted.
 *
 * @module
 */

/**
 * Whether the container whose cgroup path is `cgroupsPath` (e.g.
 * `/fsb/ID`) had a process killed by the OOM killer. Reads cgroup v2's
 * `memory.events` or cgroup v1's `memory.oom_control` (both count
 * `oom_kill`); false when neither can be read.
 */
export function oomKilled(cgroupsPath: string, root = "/sys/fs/cgroup"): boolean {
  for (
    const file of [
      `${root}${cgroupsPath}/memory.events`,
      `${root}/memory${cgroupsPath}/memory.oom_control`,
    ]
  ) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    const m = /^oom_kill (\d+)$/m.exec(text);
    return m !== null && Number(m[1]) > 0;
  }
  return false;
}
