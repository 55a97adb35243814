/**
 * What makes a containerd container a sandbox's: its identity labels and
 * the sandbox spec it carries (a label, or an extension when too big), read
 * back after an agent restart. Private to the folder.
 *
 * @module
 */
import { fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import type { Container } from "../../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import { LABELS, SPEC_EXTENSION } from "./labels.ts";
import { WARM_LABELS } from "./_warm_container.ts";

const SPEC_TYPE_URL = "type.googleapis.com/fsb.agent.v1.SandboxSpec";
// containerd refuses a label whose key and value together exceed 4096 bytes.
const MAX_LABEL_BYTES = 4096;
const encoder = new TextEncoder();

/** The labels and extensions that make a container sandbox `spec`'s, its log at `logPath`. */
export function identityOf(
  spec: SandboxSpec,
  logPath: string,
): { labels: Record<string, string>; extensions: Container["extensions"] } {
  const labels: Record<string, string> = {
    [LABELS.name]: spec.name,
    [LABELS.namespace]: spec.namespace,
    [LABELS.pool]: spec.pool,
    [LABELS.log]: logPath,
  };
  const extensions: Container["extensions"] = {};
  keepSpec(spec, { labels, extensions });
  return { labels, extensions };
}

/**
 * Puts `spec` into a container's `labels` (protobuf JSON, when it fits a
 * label and `inExtension` is not set) or else its `extensions` (binary),
 * where {@linkcode specOf} reads it.
 */
export function keepSpec(
  spec: SandboxSpec,
  into: { labels: Record<string, string>; extensions: Container["extensions"] },
  inExtension = false,
): void {
  const json = inExtension ? "" : toJsonString(SandboxSpecSchema, spec);
  if (!inExtension && encoder.encode(LABELS.spec + json).byteLength <= MAX_LABEL_BYTES) {
    into.labels[LABELS.spec] = json;
  } else {
    into.extensions[SPEC_EXTENSION] = {
      $typeName: "google.protobuf.Any",
      typeUrl: SPEC_TYPE_URL,
      value: toBinary(SandboxSpecSchema, spec),
    };
  }
}

/** The sandbox spec a container carries, or undefined when it has none (or a broken one). */
export function specOf(container: Container): SandboxSpec | undefined {
  let spec: SandboxSpec;
  try {
    const label = container.labels[LABELS.spec];
    const ext = container.extensions[SPEC_EXTENSION];
    if (label !== undefined) {
      spec = fromJsonString(SandboxSpecSchema, label, { ignoreUnknownFields: true });
    } else if (ext?.typeUrl === SPEC_TYPE_URL) {
      spec = fromBinary(SandboxSpecSchema, ext.value);
    } else {
      return undefined;
    }
  } catch {
    return undefined;
  }
  return spec.sandboxId === container.id ||
      spec.sandboxId === container.labels[WARM_LABELS.claimed]
    ? spec
    : undefined;
}
