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
export {
  ImagePuller,
  pullImage,
  type PullOptions,
  type PullResult,
  type RegistryOptions,
} from "./pull.ts";
export { IMAGE_PULL_USAGE, imagePull, type ImagePullIo } from "./pull_command.ts";
export { DigestMismatchError, type ImageReference, parseReference } from "./_registry_client.ts";
export { type DockerAuth, parseDockerAuth, type RegistryCredentials } from "./_docker_auth.ts";
