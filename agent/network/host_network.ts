/**
 * The shared host network, for development only: sandboxes see and use the
 * host's interfaces and ports. It isolates nothing.
 *
 * @module
 */
import type { NetworkAttachment, NetworkRequest, SandboxNetwork } from "./sandbox_network.ts";

/**
 * `--network host`: every sandbox joins the host's network namespace, except
 * one that asks for none (it gets an empty namespace of its own).
 */
export class HostNetwork implements SandboxNetwork {
  /** Always `host`. */
  readonly kind = "host";

  start(): Promise<void> {
    return Promise.resolve();
  }

  attach(req: NetworkRequest): Promise<NetworkAttachment> {
    return Promise.resolve({ netns: { kind: req.mode === "none" ? "new" : "host" }, ip: "" });
  }

  ipOf(_sandboxId: string): string {
    return "";
  }

  detach(_sandboxId: string): Promise<void> {
    return Promise.resolve();
  }

  reconcile(_live: ReadonlySet<string>): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
