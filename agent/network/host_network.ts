/**
 * The shared host network, for development only: sandboxes see and use the
 * host's interfaces and ports. It isolates nothing.
 *
 * @module
 */
import { FailedPreconditionError } from "../../registry/errors.ts";
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

  /**
   * Checks `req` and changes nothing: a plain request (mode `private`,
   * egress `allow`, no CIDRs) is a no-op, its ports included, as
   * {@linkcode HostNetwork.attach} publishes nothing either: a sandbox on the
   * host's network listens on the host's ports itself. Egress rules and mode
   * `none` are FailedPreconditionError, there being no rules on this network
   * and no namespace to change. Knowing no sandboxes, it takes any id.
   */
  update(req: NetworkRequest): Promise<void> {
    if (req.mode === "none") {
      return Promise.reject(
        new FailedPreconditionError(
          `Cannot update the network of sandbox ${req.sandboxId} to mode none as it shares the host's network and the mode cannot change`,
        ),
      );
    }
    if (req.egress === "deny" || req.allowCidrs.length > 0 || req.denyCidrs.length > 0) {
      return Promise.reject(
        new FailedPreconditionError(
          `Cannot update sandbox ${req.sandboxId} with egress rules as its agent runs with --network host`,
        ),
      );
    }
    return Promise.resolve();
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
