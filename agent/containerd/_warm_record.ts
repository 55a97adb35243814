/**
 * What a claim writes into the container's record in containerd: the labels
 * that make it a sandbox, and the OCI spec the cold path would have made for
 * the request (which execs start from, and a restart reads). Private to the
 * warm pool.
 *
 * @module
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import type { UpdateContainerRequestSchema } from "../../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import { LABELS } from "./labels.ts";
import { WARM_LABELS, type WarmEntry } from "./_warm_container.ts";
import type { Fit } from "./_warm_fit.ts";

/** One claim, as its record shows it. */
export interface ClaimRecord {
  readonly sandboxId: string;
  readonly fit: Fit;
  /** Where the container's log is now. */
  readonly logPath: string;
  /** Labels and extensions the caller adds (e.g. the runtime's `fsb.io/*`). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly extensions?: Readonly<Record<string, Any>>;
  /** Whether the container runs under runsc, whose limits a claim never changes. */
  readonly runsc: boolean;
}

const OCI_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const CPU_PERIOD_US = 100_000;
const encoder = new TextEncoder();

/**
 * The containers Update request that records `claim` on warm container
 * `entry`: its warm labels removed (a label named in the mask but absent
 * from the request is deleted), the claim's set, and its OCI spec with the
 * request's process and limits.
 */
export function claimRecord(
  entry: WarmEntry,
  claim: ClaimRecord,
): MessageInitShape<typeof UpdateContainerRequestSchema> {
  const labels: Record<string, string> = {
    ...claim.labels,
    [WARM_LABELS.claimed]: claim.sandboxId,
    [LABELS.log]: claim.logPath,
  };
  const gone = [WARM_LABELS.image, WARM_LABELS.config, WARM_LABELS.limits];
  const extensions = { ...claim.extensions };
  const paths = [
    "spec",
    ...[...Object.keys(labels), ...gone].map((k) => `labels.${k}`),
    ...Object.keys(extensions).map((k) => `extensions.${k}`),
  ];
  const oci = claimedOci(entry.oci, claim);
  return {
    container: {
      id: entry.id,
      labels,
      extensions,
      spec: { typeUrl: OCI_SPEC_TYPE_URL, value: encoder.encode(JSON.stringify(oci)) },
    },
    updateMask: { paths },
  };
}

/** `oci` with the claim's process (argv, env, dir) and limits, as the cold path makes them. */
function claimedOci(oci: Record<string, unknown>, claim: ClaimRecord): Record<string, unknown> {
  const { fit } = claim;
  const linux = oci.linux as Record<string, unknown>;
  const resources = { ...linux.resources as Record<string, unknown> };
  // runsc keeps its scaled pids limit as made: a claim never changes its limits.
  if (!claim.runsc) {
    resources.pids = { limit: fit.limits.pids };
    if (fit.limits.memoryBytes === undefined) delete resources.memory;
    else resources.memory = { limit: fit.limits.memoryBytes };
    if (fit.limits.cpuMillis === undefined) delete resources.cpu;
    else {
      resources.cpu = {
        quota: fit.limits.cpuMillis * (CPU_PERIOD_US / 1000),
        period: CPU_PERIOD_US,
      };
    }
  }
  return {
    ...oci,
    process: { ...oci.process as object, args: fit.argv, env: fit.env, cwd: fit.cwd },
    linux: { ...linux, resources },
  };
}
