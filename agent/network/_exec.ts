/**
 * Runs the host's network tools (`ip`, `nft`) and fails with what they said.
 *
 * @module
 */

const decoder = new TextDecoder();

/**
 * Runs `cmd args...`, feeding `input` on stdin when given; resolves on exit
 * status 0, otherwise rejects with the tool's stderr. The tools' own
 * messages are the most precise account of what the kernel refused.
 */
export async function runTool(
  cmd: string,
  args: readonly string[],
  input?: string,
): Promise<void> {
  const child = new Deno.Command(cmd, {
    args: [...args],
    stdin: input === undefined ? "null" : "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
  }
  const { code, stderr } = await child.output();
  if (code !== 0) {
    const said = decoder.decode(stderr).trim().split("\n").slice(0, 6).join("; ");
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${code}): ${said}`);
  }
}

/** Writes a sysctl through /proc, e.g. `net/ipv4/ip_forward`. */
export async function writeSysctl(key: string, value: string): Promise<void> {
  await Deno.writeTextFile(`/proc/sys/${key}`, value);
}
