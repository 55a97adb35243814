/**
 * The tests' busybox image: the same builder `fsb up` uses.
 *
 * @module
 */
export {
  buildBusyboxImage,
  type BusyboxImageOptions,
} from "../../agent/containerd/busybox_image.ts";
