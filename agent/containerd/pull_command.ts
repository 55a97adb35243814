/**
 * `fsb image pull REF`: pulls an image from a registry into the local
 * containerd (namespace `fsb`), unpacked, as `fsb image import` does for an
 * archive.
 *
 * @module
 */
import { parseFlags } from "../../cli/flags.ts";
import { UsageError } from "../../cli/usage_error.ts";
import { pullImage } from "./pull.ts";

/** The usage line of `fsb image pull`. */
export const IMAGE_PULL_USAGE =
  "Usage: fsb image pull REF [--containerd-socket PATH] [--insecure-registry HOST:PORT]... [--registry-auth FILE] [-v N]";

/** The flags of `fsb image pull`. */
export const IMAGE_PULL_FLAGS = {
  "containerd-socket": { type: "string" },
  "insecure-registry": { type: "string", multiple: true },
  "registry-auth": { type: "string" },
} as const;

/** Where the command writes. */
export interface ImagePullIo {
  stdout(s: string): void;
}

const DEFAULT_SOCKET = "/run/containerd/containerd.sock";

/**
 * Runs `fsb image pull` with `args` (what follows `image pull`); prints
 * `pulled REF (DIGEST)` and resolves to 0. Bad flags are a UsageError
 * carrying the usage line; a failed pull throws the pull's error (see
 * `ImagePuller.pull`).
 */
export async function imagePull(args: string[], io: ImagePullIo = defaultIo()): Promise<number> {
  let f;
  try {
    f = parseFlags(args, IMAGE_PULL_FLAGS);
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(err.message, { usage: IMAGE_PULL_USAGE });
    throw err;
  }
  if (f.help) {
    io.stdout(`${IMAGE_PULL_USAGE}\n`);
    return 0;
  }
  if (f.positionals.length !== 1) {
    throw new UsageError("Expected one image reference REF", { usage: IMAGE_PULL_USAGE });
  }
  for (const host of f.values["insecure-registry"]) {
    if (!/^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:.]+\](:\d+)?$/.test(host)) {
      throw new UsageError(`Flag --insecure-registry needs HOST:PORT, got "${host}"`, {
        usage: IMAGE_PULL_USAGE,
      });
    }
  }
  const result = await pullImage(f.positionals[0], {
    socket: f.values["containerd-socket"] ?? DEFAULT_SOCKET,
    namespace: "fsb",
    insecure: f.values["insecure-registry"],
    authFile: f.values["registry-auth"],
  });
  io.stdout(`pulled ${result.name} (${result.target.digest})\n`);
  return 0;
}

function defaultIo(): ImagePullIo {
  const encoder = new TextEncoder();
  return {
    stdout: (s) => {
      const bytes = encoder.encode(s);
      let off = 0;
      while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
    },
  };
}
