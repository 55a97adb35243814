/**
 * The interface between a runtime and the host's networking: each sandbox
 * gets a network namespace to join, and its rules (shared/DESIGN.md section 11).
 *
 * @module
 */
import type { SandboxSpec } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Egress, NetworkMode } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { FailedPreconditionError } from "../../registry/errors.ts";

/** What a sandbox asks of the network. */
export interface NetworkRequest {
  readonly sandboxId: string;
  /** `private`: an address of its own on the bridge; `none`: loopback only. */
  readonly mode: "private" | "none";
  readonly egress: "allow" | "deny";
  readonly allowCidrs: readonly string[];
  readonly denyCidrs: readonly string[];
  /** Ports published on the host to the same port inside. */
  readonly ports: readonly number[];
}

/** Which network namespace a sandbox's container joins. */
export type NetnsChoice =
  /** A namespace made ready by the network, joined by its path. */
  | { readonly kind: "path"; readonly path: string }
  /** A new, empty namespace (only `lo`), made by the OCI runtime. */
  | { readonly kind: "new" }
  /** The host's own: isolates nothing. */
  | { readonly kind: "host" };

/** What a sandbox got from the network. */
export interface NetworkAttachment {
  readonly netns: NetnsChoice;
  /** Its address on the bridge, or "" without one. */
  readonly ip: string;
}

/** Gives sandboxes their networks; one per agent. */
export interface SandboxNetwork {
  /** `private` (a bridge, namespaces, rules) or `host` (shared, for development). */
  readonly kind: "private" | "host";
  /** Prepares the host (bridge, rules, what a previous run left) and starts filling the pool. */
  start(): Promise<void>;
  /**
   * Gives sandbox `req.sandboxId` its network. Throws FailedPreconditionError
   * for what this network cannot do (e.g. a published port the host already uses).
   */
  attach(req: NetworkRequest): Promise<NetworkAttachment>;
  /**
   * Gives sandbox `req.sandboxId`, attached earlier (e.g. a warm container
   * attached with the default request long before a create claims it), the
   * egress (`egress`, `allowCidrs`, `denyCidrs`) and published `ports` of
   * `req` in place of those it had, keeping its namespace and address.
   *
   * - The mode cannot change: `req.mode` other than the sandbox's is
   *   FailedPreconditionError. So is, on a network that keeps track of its
   *   sandboxes, one it does not know, a `none` sandbox included as none
   *   is ever attached (`Cannot update the network of sandbox X as it is
   *   not attached`); the host network tracks nothing and takes any id.
   * - CIDRs are checked as by {@linkcode SandboxNetwork.attach}
   *   (InvalidArgumentError naming `network.allow_cidrs[i]` or
   *   `network.deny_cidrs[i]`), and ports too: one the host already uses is
   *   FailedPreconditionError.
   * - All or nothing: on any error the sandbox keeps its previous rules and
   *   ports. Once it resolves, the new rules hold, also after a restart.
   * - Calls for one sandbox (update, attach, detach) take effect one after
   *   the other, in the order they were made.
   */
  update(req: NetworkRequest): Promise<void>;
  /** The address of a sandbox attached earlier (also before a restart), or "". */
  ipOf(sandboxId: string): string;
  /** Releases everything the sandbox held; a sandbox it does not know is a no-op. */
  detach(sandboxId: string): Promise<void>;
  /** Releases what sandboxes not in `live` hold (e.g. after a crash between create and record). */
  reconcile(live: ReadonlySet<string>): Promise<void>;
  /** Stops refilling; what sandboxes hold stays, for the next run. */
  close(): Promise<void>;
}

/**
 * The network request in a spec, with the defaults applied. Throws
 * FailedPreconditionError when `network` cannot give what the spec asks
 * (e.g. a private network on an agent running with `--network host`).
 */
export function networkRequestOf(spec: SandboxSpec, kind: "private" | "host"): NetworkRequest {
  const n = spec.network;
  const mode = n?.mode === NetworkMode.NONE ? "none" : "private";
  const egress = n?.egress === Egress.DENY ? "deny" : "allow";
  const req: NetworkRequest = {
    sandboxId: spec.sandboxId,
    mode,
    egress,
    allowCidrs: n?.allowCidrs ?? [],
    denyCidrs: n?.denyCidrs ?? [],
    ports: spec.exposedPorts,
  };
  if (kind === "host") {
    const asked = n?.mode === NetworkMode.PRIVATE || egress === "deny" ||
      req.allowCidrs.length > 0 || req.denyCidrs.length > 0;
    if (asked) {
      throw new FailedPreconditionError(
        `Cannot create sandbox ${spec.sandboxId} with a private network or egress rules as its agent runs with --network host`,
      );
    }
  }
  return req;
}
