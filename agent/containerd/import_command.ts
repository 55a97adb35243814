/**
 * `fsb image import FILE.tar`: an OCI archive into the local containerd
 * (namespace `fsb`), unpacked, so that creates never pull.
 *
 * @module
 */
import { parseFlags } from "../../cli/flags.ts";
import { UsageError } from "../../cli/usage_error.ts";
import { importImage } from "./import_image.ts";

/** The usage line of `fsb image import`. */
export const IMAGE_IMPORT_USAGE =
  "Usage: fsb image import FILE.tar [--containerd-socket PATH] [-v N]";

/** The flags of `fsb image import`. */
export const IMAGE_IMPORT_FLAGS = { "containerd-socket": { type: "string" } } as const;

/** Where the command writes. */
export interface ImageImportIo {
  stdout(s: string): void;
}

const DEFAULT_SOCKET = "/run/containerd/containerd.sock";

/**
 * Runs `fsb image import` with `args` (what follows `image import`); prints
 * `imported NAME` per image and resolves to 0. Bad flags are a UsageError
 * carrying the usage line; a failed import throws the import's error.
 */
export async function imageImport(args: string[], io: ImageImportIo): Promise<number> {
  let f;
  try {
    f = parseFlags(args, IMAGE_IMPORT_FLAGS);
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(err.message, { usage: IMAGE_IMPORT_USAGE });
    throw err;
  }
  if (f.help) {
    io.stdout(`${IMAGE_IMPORT_USAGE}\n`);
    return 0;
  }
  if (f.positionals.length !== 1) {
    throw new UsageError("Expected one FILE.tar", { usage: IMAGE_IMPORT_USAGE });
  }
  const names = await importImage(f.positionals[0], {
    socket: f.values["containerd-socket"] ?? DEFAULT_SOCKET,
    namespace: "fsb",
  });
  for (const name of names) io.stdout(`imported ${name}\n`);
  return 0;
}
