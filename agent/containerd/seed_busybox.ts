/**
 * No registry is needed to try fsb: when containerd lacks busybox, `fsb up`
 * builds the image from the host's static busybox and imports it.
 *
 * @module
 */
import { buildBusyboxImage } from "./busybox_image.ts";
import { importImage } from "./import_image.ts";

const BUSYBOX = "docker.io/library/busybox:latest";

/**
 * Imports busybox into containerd's `fsb` namespace on `socket` unless
 * `runtime` already has it. Resolves to a line for the operator: what was
 * imported, why nothing could be, or "" when busybox was there.
 */
export async function seedBusybox(
  runtime: { images(): Promise<string[]> },
  socket: string,
): Promise<string> {
  if ((await runtime.images()).includes(BUSYBOX)) return "";
  try {
    await Deno.stat("/usr/bin/busybox");
  } catch {
    return `note: containerd has no busybox image and /usr/bin/busybox is missing; import one with fsb image import\n`;
  }
  const dir = await Deno.makeTempDir({ prefix: "fsb-busybox-" });
  try {
    await importImage(await buildBusyboxImage(dir), { socket, namespace: "fsb" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return `imported ${BUSYBOX}, built from /usr/bin/busybox\n`;
}
