/**
 * The tests' busybox image: the same builder `fsb up` uses.
 *
 * @module
 */
export { type BusyboxImageOptions, buildBusyboxImage } from "../../agent/containerd/busybox_image.ts";
