/**
 * Builds a busybox image from the host's static busybox (`/usr/bin/busybox`,
 * Debian's busybox-static): how `fsb up` and the tests get an image without
 * any registry.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { join } from "node:path";

/** Options for {@linkcode buildBusyboxImage}. */
export interface BusyboxImageOptions {
  /** The `org.opencontainers.image.ref.name` annotation; `docker.io/library/busybox:latest` unless told. */
  readonly ref?: string;
  /** Gzip the layers, as registries serve them, instead of storing plain tars. */
  readonly gzip?: boolean;
  /** Files (path in the image to text) for a second layer on top of busybox's. */
  readonly extraLayer?: Record<string, string>;
}

const BUSYBOX = "/usr/bin/busybox";
const APPLETS = [
  "sh",
  "ash",
  "echo",
  "sleep",
  "cat",
  "ls",
  "env",
  "true",
  "false",
  "printf",
  "id",
  "pwd",
  "mkdir",
  "rm",
  "touch",
  "wc",
  "head",
  "tail",
  "grep",
  "sed",
  "ps",
  "kill",
  "date",
  "hostname",
  "uname",
  "test",
  "[",
  "seq",
  "yes",
  "stat",
  "whoami",
  "mount",
  "nc",
];
const PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar";

/**
 * Writes `DIR/busybox.tar`, an OCI image layout archive (`oci-layout`,
 * `index.json`, `blobs/sha256/...`) of one layer holding `/bin/busybox`,
 * symlinks for common applets, `/etc/passwd`, `/etc/group` and `/tmp` (and
 * optionally a second layer), with config `Cmd ["sh"]` and a `PATH`.
 * Resolves to the archive's path.
 */
export async function buildBusyboxImage(
  dir: string,
  opts: BusyboxImageOptions = {},
): Promise<string> {
  const rootfs = join(dir, "busybox-rootfs");
  const layout = join(dir, "busybox-layout");
  for (const sub of ["bin", "etc", "tmp", "root", "proc", "sys", "dev"]) {
    await Deno.mkdir(join(rootfs, sub), { recursive: true });
  }
  await Deno.chmod(join(rootfs, "tmp"), 0o1777);
  await Deno.copyFile(BUSYBOX, join(rootfs, "bin", "busybox"));
  await Deno.chmod(join(rootfs, "bin", "busybox"), 0o755);
  for (const applet of APPLETS) await Deno.symlink("busybox", join(rootfs, "bin", applet));
  await Deno.writeTextFile(
    join(rootfs, "etc", "passwd"),
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
  );
  await Deno.writeTextFile(join(rootfs, "etc", "group"), "root:x:0:\nnogroup:x:65534:\n");

  const blobs = join(layout, "blobs", "sha256");
  await Deno.mkdir(blobs, { recursive: true });
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  const addLayer = async (from: string) => {
    const layerTar = join(dir, `busybox-layer-${layers.length}.tar`);
    await tar([
      "--sort=name",
      "--numeric-owner",
      "--owner=0",
      "--group=0",
      "-C",
      from,
      "-cf",
      layerTar,
      ".",
    ]);
    const plain = await Deno.readFile(layerTar);
    diffIds.push(sha256(plain));
    const bytes = opts.gzip ? gzipSync(plain) : plain;
    layers.push(
      await writeBlob(blobs, { bytes, mediaType: opts.gzip ? `${OCI_LAYER}+gzip` : OCI_LAYER }),
    );
  };
  await addLayer(rootfs);
  if (opts.extraLayer !== undefined) {
    const extra = join(dir, "busybox-extra");
    for (const [path, text] of Object.entries(opts.extraLayer)) {
      const file = join(extra, path);
      await Deno.mkdir(join(file, ".."), { recursive: true });
      await Deno.writeTextFile(file, text);
    }
    await addLayer(extra);
  }

  const config = await writeBlob(blobs, {
    bytes: json({
      architecture: "amd64",
      os: "linux",
      config: { Env: [PATH], Cmd: ["sh"] },
      rootfs: { type: "layers", diff_ids: diffIds },
    }),
    mediaType: OCI_CONFIG,
  });
  const manifest = await writeBlob(blobs, {
    bytes: json({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers }),
    mediaType: OCI_MANIFEST,
  });
  await Deno.writeFile(
    join(layout, "index.json"),
    json({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{
        ...manifest,
        annotations: {
          "org.opencontainers.image.ref.name": opts.ref ?? "docker.io/library/busybox:latest",
        },
        platform: { architecture: "amd64", os: "linux" },
      }],
    }),
  );
  await Deno.writeTextFile(
    join(layout, "oci-layout"),
    JSON.stringify({ imageLayoutVersion: "1.0.0" }),
  );
  const out = join(dir, "busybox.tar");
  await tar([
    "--numeric-owner",
    "--owner=0",
    "--group=0",
    "-C",
    layout,
    "-cf",
    out,
    "oci-layout",
    "index.json",
    "blobs",
  ]);
  return out;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

async function writeBlob(
  blobs: string,
  { bytes, mediaType }: { bytes: Uint8Array; mediaType: string },
): Promise<Descriptor> {
  const digest = sha256(bytes);
  await Deno.writeFile(join(blobs, digest.slice("sha256:".length)), bytes);
  return { mediaType, digest, size: bytes.byteLength };
}

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

function json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

async function tar(args: string[]): Promise<void> {
  const out = await new Deno.Command("tar", { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`tar ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}
