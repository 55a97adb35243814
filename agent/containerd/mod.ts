/**
 * The containerd runtime: sandboxes as real containers started through the
 * host's containerd (shared/DESIGN.md section 8), and the image import that
 * makes creates pull-free.
 *
 * @module
 */
export {
  type ClientOf,
  ContainerdClient,
  type ContainerdClientOptions,
  DEFAULT_NAMESPACE,
  isNotFound,
  socketAddress,
} from "./client.ts";
export {
  type ContainerdLogger,
  ContainerdRuntime,
  type ContainerdRuntimeOptions,
  LABELS,
  SPEC_EXTENSION,
} from "./containerd_runtime.ts";
export { importImage, type ImportImageOptions } from "./import_image.ts";
export { buildBusyboxImage, type BusyboxImageOptions } from "./busybox_image.ts";
export { DEFAULT_CAPABILITIES } from "./oci_spec.ts";
