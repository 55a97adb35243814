/**
 * Whether a create request can be served by a warm container of its image,
 * and what the claim then hands the container. Private to the warm pool.
 *
 * @module
 */
import type { SandboxSpec } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { type NetworkRequest, networkRequestOf } from "../network/mod.ts";
import {
  type HostCapacity,
  type ResolvedResources,
  resolveResources,
  type ResourceDefaults,
} from "../resources.ts";
import type { ImageRunConfig } from "./image.ts";
import { processArgs, processEnv } from "./oci_spec.ts";
import type { LinuxResources } from "./_warm_update.ts";
import { envProblem } from "./_warm_script.ts";

/**
 * Why a claim missed, for metrics:
 * - `not-warm`: the pool keeps no containers of the image;
 * - `empty`: it does, but none is ready now;
 * - `network`: the request's network is one no warm container has (no
 *   network at all, or a private one or egress rules on a host-network
 *   agent), or its egress rules and ports could not be applied at claim
 *   (e.g. a port the host already uses: the cold path then says so);
 * - `resources`: limits that cannot be applied at claim (invalid ones, or
 *   any change under runsc, which has no `update`), or the update failed;
 * - `command`: no command (neither the request nor the image gives one);
 * - `env`: an env name the warm shell cannot pass on (see `envProblem`);
 * - `user`: a user other than the image's;
 * - `log`: the log cannot be moved where the caller wants it;
 * - `record`: containerd refused the claim's record update;
 * - `closed`: the pool is closed.
 */
export type MissReason =
  | "not-warm"
  | "empty"
  | "network"
  | "resources"
  | "command"
  | "env"
  | "user"
  | "log"
  | "record"
  | "closed";

/** What a claim hands the container: the cold path's process, and the limits to apply. */
export interface Fit {
  readonly argv: string[];
  readonly env: string[];
  readonly cwd: string;
  readonly limits: ResolvedResources;
  /** The update to apply at claim when `limits` differ from the warm container's; else undefined. */
  readonly update?: LinuxResources;
  /**
   * The egress rules and published ports to apply to the warm container's
   * network at claim, before the command runs, when they differ from the
   * default (allow, no CIDRs, no ports); else undefined. Its `sandboxId` is
   * the request's: the claim names the container instead.
   */
  readonly network?: NetworkRequest;
}

/** A request the warm shape cannot serve. */
export interface Misfit {
  readonly reason: MissReason;
  readonly detail: string;
}

/** What {@linkcode fitClaim} weighs a request against. */
export interface WarmShape {
  readonly config: ImageRunConfig;
  /** The warm containers' limits. */
  readonly limits: ResolvedResources;
  readonly defaults: ResourceDefaults;
  readonly host: HostCapacity;
  readonly networkKind: "private" | "host";
  readonly ociRuntime: "runc" | "runsc";
  /** The image's user, which every warm container of it runs as. */
  readonly user: { readonly uid: number; readonly gid: number };
}

const CPU_PERIOD_US = 100_000;

/**
 * The claim for `spec` on a warm container of `shape`, or why there is none.
 * `opts.user`, when given, is the user the request must run as.
 */
export function fitClaim(
  spec: SandboxSpec,
  shape: WarmShape,
  opts: { readonly user?: { readonly uid: number; readonly gid: number } } = {},
): Fit | Misfit {
  const user = opts.user;
  let net;
  try {
    net = networkRequestOf(spec, shape.networkKind);
  } catch (err) {
    return { reason: "network", detail: (err as Error).message };
  }
  if (net.mode !== "private") {
    return { reason: "network", detail: "no network, which every warm container has" };
  }
  // On a host-network agent the request asked for nothing to apply (or networkRequestOf threw).
  const plain = shape.networkKind === "host" || (net.egress === "allow" &&
    net.allowCidrs.length === 0 && net.denyCidrs.length === 0 && net.ports.length === 0);
  let limits: ResolvedResources;
  try {
    limits = resolveResources(spec, shape.defaults, shape.host);
  } catch (err) {
    return { reason: "resources", detail: (err as Error).message };
  }
  const same = limits.cpuMillis === shape.limits.cpuMillis &&
    limits.memoryBytes === shape.limits.memoryBytes && limits.pids === shape.limits.pids;
  if (!same && shape.ociRuntime === "runsc") {
    return { reason: "resources", detail: "runsc cannot change a running sandbox's limits" };
  }
  if (user !== undefined && (user.uid !== shape.user.uid || user.gid !== shape.user.gid)) {
    return { reason: "user", detail: `uid ${user.uid}:${user.gid} is not the image's` };
  }
  const argv = processArgs(spec, shape.config);
  if (argv.length === 0 || argv[0] === "") {
    return { reason: "command", detail: "no command to run" };
  }
  const env = processEnv(spec, shape.config);
  const problem = envProblem(env);
  if (problem !== undefined) return { reason: "env", detail: problem };
  const cwd = spec.workingDir || shape.config.WorkingDir || "/";
  return {
    argv,
    env,
    cwd,
    limits,
    ...(same ? {} : { update: updateOf(limits) }),
    ...(plain ? {} : { network: net }),
  };
}

/** The `runc update` resources that set exactly `limits` (-1: no limit). */
function updateOf(limits: ResolvedResources): LinuxResources {
  return {
    memory: { limit: limits.memoryBytes ?? -1 },
    cpu: limits.cpuMillis === undefined
      ? { quota: -1, period: CPU_PERIOD_US }
      : { quota: limits.cpuMillis * (CPU_PERIOD_US / 1000), period: CPU_PERIOD_US },
    pids: { limit: limits.pids },
  };
}
