/**
 * A sandbox's limits: the request's, else the agent's defaults, checked
 * against what the host has.
 *
 * @module
 */
import type { SandboxSpec } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { InvalidArgumentError } from "../registry/mod.ts";

/** The agent's defaults (`--default-cpus`, `--default-memory`, `--default-pids`). */
export interface ResourceDefaults {
  /** Thousandths of a CPU; undefined for no limit. */
  readonly cpuMillis?: number;
  /** Bytes; undefined for no limit. */
  readonly memoryBytes?: number;
  /** Most processes and threads at once. */
  readonly pids: number;
}

/** What the host has, to bound requests by. */
export interface HostCapacity {
  readonly memoryBytes: number;
  readonly cpus: number;
}

/** Limits to enforce, every field decided. */
export interface ResolvedResources {
  readonly cpuMillis?: number;
  readonly memoryBytes?: number;
  readonly pids: number;
}

/** The smallest memory limit a sandbox may have: below it runc itself cannot start. */
export const MIN_MEMORY_BYTES = 4 * 1024 * 1024;

/** What this host has: total memory and CPU count. */
export function hostCapacity(): HostCapacity {
  return { memoryBytes: Deno.systemMemoryInfo().total, cpus: navigator.hardwareConcurrency };
}

/** Whether a spec asks for any limit of its own. */
export function asksForResources(spec: SandboxSpec): boolean {
  const r = spec.resources;
  return r !== undefined &&
    (r.cpuMillis !== undefined || r.memoryBytes !== undefined || r.pids !== undefined);
}

/**
 * The limits for `spec`: each requested one, else the default. Throws
 * InvalidArgumentError naming the field for a value the host cannot give
 * (more memory or CPUs than it has) or that makes no sense (zero, negative).
 */
export function resolveResources(
  spec: SandboxSpec,
  defaults: ResourceDefaults,
  host: HostCapacity,
): ResolvedResources {
  const r = spec.resources;
  const cpuMillis = r?.cpuMillis === undefined ? defaults.cpuMillis : Number(r.cpuMillis);
  const memoryBytes = r?.memoryBytes === undefined ? defaults.memoryBytes : Number(r.memoryBytes);
  const pids = r?.pids === undefined ? defaults.pids : Number(r.pids);
  if (cpuMillis !== undefined && (cpuMillis < 10 || cpuMillis > host.cpus * 1000)) {
    throw new InvalidArgumentError(
      "resources.cpu_millis",
      `must be from 10 to ${host.cpus * 1000} (the agent's ${host.cpus} CPUs), got ${cpuMillis}`,
    );
  }
  if (
    memoryBytes !== undefined && (memoryBytes < MIN_MEMORY_BYTES || memoryBytes > host.memoryBytes)
  ) {
    throw new InvalidArgumentError(
      "resources.memory_bytes",
      `must be from ${MIN_MEMORY_BYTES} (4 MiB) to ${host.memoryBytes} (the agent's memory), got ${memoryBytes}`,
    );
  }
  if (pids <= 0) {
    throw new InvalidArgumentError("resources.pids", `must be at least 1, got ${pids}`);
  }
  return { cpuMillis, memoryBytes, pids };
}
