/**
 * One sandbox as the controller holds it, and its forms for the store and
 * for clients.
 *
 * @module
 */
import { create, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import {
  FailurePolicy,
  type SandboxInfo,
  SandboxInfoSchema,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";

/** Sandbox phases (shared/DESIGN.md section 5). */
export type Phase =
  | "Pending"
  | "Creating"
  | "Running"
  | "Exited"
  | "Failed"
  | "Terminating"
  | "Expired"
  | "Lost";

/** What the store keeps per sandbox, as JSON. */
export interface SandboxRecord {
  /** The spec in protobuf JSON form. */
  spec: JsonValue;
  phase: Phase;
  agentId: string;
  endpoints: string[];
  message: string;
  /** The sandbox's address on its agent's bridge ("" or absent without one). */
  ip?: string;
  /** What ran it: runc, runsc or process (absent in records of older versions). */
  runtime?: string;
  /** Which path served its create: warm, prepared or cold (absent: unknown, e.g. adopted). */
  path?: string;
}

/** A sandbox in the controller's table. */
export interface Entry {
  readonly key: string;
  spec: SandboxSpec;
  phase: Phase;
  /** The agent it runs on (or last ran on), "" when never placed. */
  agentId: string;
  endpoints: string[];
  message: string;
  ip: string;
  runtime: string;
  /** Which path served its create (warm, prepared, cold); "" when unknown (adopted). */
  path: string;
  /** Holds a registry slot on agentId; such entries are in #byAgent. */
  placed: boolean;
  /** A create, delete or reset in progress; others wait for it. */
  busy: Promise<void> | undefined;
  /** Clock time before which a failed auto-recreate is not tried again. */
  retryAt: number;
}

/** An entry as it starts: not placed, not busy, empty but for what `fields` say. */
export function newEntry(
  key: string,
  spec: SandboxSpec,
  fields:
    & Pick<Entry, "phase">
    & Partial<Pick<Entry, "agentId" | "endpoints" | "message" | "ip" | "runtime" | "path">>,
): Entry {
  return {
    key,
    spec,
    agentId: "",
    endpoints: [],
    message: "",
    ip: "",
    runtime: "",
    path: "",
    placed: false,
    busy: undefined,
    retryAt: 0,
    ...fields,
  };
}

/** The store prefix of sandbox records. */
export const SANDBOX_PREFIX = "sandboxes/";

/** The table and store key of sandbox `namespace/name`. */
export function keyOf(namespace: string, name: string): string {
  return `${SANDBOX_PREFIX}${namespace}/${name}`;
}

function failurePolicyEnum(name: string): FailurePolicy {
  return name === "AUTO_RECREATE" ? FailurePolicy.AUTO_RECREATE : FailurePolicy.MANUAL;
}

/** Whether a sandbox in this phase has a container on its agent (and so holds a slot). */
export function occupiesSlot(phase: Phase): boolean {
  return phase === "Creating" || phase === "Running" || phase === "Exited" ||
    phase === "Terminating";
}

/** The store's record of `entry`, with `spec` in place of its own. */
export function recordOf(entry: Entry, spec: SandboxSpec = entry.spec): SandboxRecord {
  return {
    spec: toJson(SandboxSpecSchema, spec),
    phase: entry.phase,
    agentId: entry.agentId,
    endpoints: entry.endpoints,
    message: entry.message,
    ip: entry.ip,
    runtime: entry.runtime,
    path: entry.path,
  };
}

/** What clients are told of `entry`. */
export function infoOf(entry: Entry): SandboxInfo {
  const s = entry.spec;
  return create(SandboxInfoSchema, {
    sandboxId: s.sandboxId,
    name: s.name,
    namespace: s.namespace,
    phase: entry.phase,
    agent: entry.agentId,
    endpoints: entry.endpoints,
    image: s.image,
    pool: s.pool,
    command: s.command,
    args: s.args,
    createdAt: s.createdAt,
    expireTime: s.expireTime,
    failurePolicy: failurePolicyEnum(s.failurePolicy),
    labels: s.labels,
    message: entry.message,
    envs: s.envs,
    workingDir: s.workingDir,
    exposedPorts: s.exposedPorts,
    ip: entry.ip,
    runtime: entry.runtime,
    path: entry.path,
    network: s.network,
    resources: s.resources,
  });
}
