/**
 * Every rule on request values lives here, so every client gets the same answer.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { InvalidArgumentError, parseCidr, validatePorts } from "../registry/mod.ts";
import { type SandboxSpec, SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import {
  ConsistencyMode,
  type CreateSandboxRequest,
  Egress,
  FailurePolicy,
  NetworkMode,
  type NetworkPolicy,
  type Resources,
  type UpdateSandboxRequest,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";

/** The namespace used when a request names none. */
export const DEFAULT_NAMESPACE = "default";
/** The pool used when a request names none. */
export const DEFAULT_POOL = "default-pool";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// The distribution reference grammar: [host[:port]/]path[:tag][@algorithm:hex].
const REF_HOST =
  "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?";
const REF_PATH = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const IMAGE_REF = new RegExp(
  `^(?:${REF_HOST}/)?${REF_PATH}(?:/${REF_PATH})*` +
    "(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,})?$",
);
const HEX = "0123456789abcdef";
const NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789";

function randomString(alphabet: string, length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = "";
  for (let i = 0; i < length; i++) out += alphabet[bytes[i] % alphabet.length];
  return out;
}

/** A fresh sandbox id: 32 random hex characters (also the container id). */
export function newSandboxId(): string {
  return randomString(HEX, 32);
}

/** Checks a DNS-1123 label (names, namespaces, pools). */
export function checkDnsLabel(field: string, value: string): void {
  if (value.length > 63) {
    throw new InvalidArgumentError(field, `must be at most 63 characters, got ${value.length}`);
  }
  if (!DNS_LABEL.test(value)) {
    throw new InvalidArgumentError(
      field,
      `must be a DNS-1123 label (lowercase a-z, 0-9 and '-', starting and ending alphanumeric), got "${value}"`,
    );
  }
}

function checkNoNul(field: string, value: string): void {
  if (value.includes("\0")) throw new InvalidArgumentError(field, "must not contain NUL bytes");
}

/** Checks label keys and values the way Kubernetes does (optional DNS prefix, 63-character names). */
export function checkLabels(labels: Readonly<Record<string, string>>): void {
  for (const [key, value] of Object.entries(labels)) {
    const field = `labels["${key}"]`;
    const slash = key.indexOf("/");
    const prefix = slash >= 0 ? key.slice(0, slash) : "";
    const name = slash >= 0 ? key.slice(slash + 1) : key;
    if (slash >= 0 && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
      throw new InvalidArgumentError(
        field,
        "key prefix must be a DNS subdomain (e.g. example.com)",
      );
    }
    if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) {
      throw new InvalidArgumentError(
        field,
        "key name must be 1-63 characters of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric",
      );
    }
    if (value.length > 63 || (value !== "" && !LABEL_NAME.test(value))) {
      throw new InvalidArgumentError(
        field,
        "value must be at most 63 characters of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric",
      );
    }
  }
}

/** Checks an int64 expiry on the wire value, then returns it as a number. */
function checkExpire(field: string, expireTime: bigint, nowSec: number): number {
  if (expireTime < 0n || expireTime > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidArgumentError(field, `must be unix seconds or 0 for never, got ${expireTime}`);
  }
  const value = Number(expireTime);
  if (value !== 0 && value <= nowSec) {
    throw new InvalidArgumentError(field, `must be in the future (now is ${nowSec}), got ${value}`);
  }
  return value;
}

/** The wire name of a failure policy as kept in specs, or undefined for "unset". */
export function failurePolicyName(policy: FailurePolicy, field: string): string | undefined {
  switch (policy) {
    case FailurePolicy.UNSPECIFIED:
      return undefined;
    case FailurePolicy.MANUAL:
      return "MANUAL";
    case FailurePolicy.AUTO_RECREATE:
      return "AUTO_RECREATE";
    default:
      throw new InvalidArgumentError(field, `must be MANUAL or AUTO_RECREATE, got ${policy}`);
  }
}

/** The smallest memory limit: below it runc itself cannot start a container. */
const MIN_MEMORY_BYTES = 4n * 1024n * 1024n;
/** The most CIDRs in each of allow_cidrs and deny_cidrs. */
const MAX_CIDRS = 64;
/** The most processes a sandbox may ask for (the kernel's pid_max ceiling). */
const MAX_PIDS = 4_194_304n;

/** Checks a network policy: known enums, IPv4 CIDRs, no rules on a sandbox without a network. */
function checkNetwork(n: NetworkPolicy | undefined): void {
  if (n === undefined) return;
  if (
    n.mode !== NetworkMode.UNSPECIFIED && n.mode !== NetworkMode.PRIVATE &&
    n.mode !== NetworkMode.NONE
  ) {
    throw new InvalidArgumentError("network.mode", `must be PRIVATE or NONE, got ${n.mode}`);
  }
  if (n.egress !== Egress.UNSPECIFIED && n.egress !== Egress.ALLOW && n.egress !== Egress.DENY) {
    throw new InvalidArgumentError("network.egress", `must be ALLOW or DENY, got ${n.egress}`);
  }
  for (const field of ["allow_cidrs", "deny_cidrs"] as const) {
    const list = field === "allow_cidrs" ? n.allowCidrs : n.denyCidrs;
    if (list.length > MAX_CIDRS) {
      throw new InvalidArgumentError(
        `network.${field}`,
        `must hold at most ${MAX_CIDRS} CIDRs, got ${list.length}`,
      );
    }
    for (let i = 0; i < list.length; i++) parseCidr(`network.${field}[${i}]`, list[i]);
  }
  if (
    n.mode === NetworkMode.NONE &&
    (n.egress !== Egress.UNSPECIFIED || n.allowCidrs.length > 0 || n.denyCidrs.length > 0)
  ) {
    throw new InvalidArgumentError(
      "network.mode",
      "NONE gives only loopback, so it takes no egress, allow_cidrs or deny_cidrs",
    );
  }
}

/** Checks the limits a request asks for; the agent checks them against its host. */
function checkResources(r: Resources | undefined): void {
  if (r === undefined) return;
  if (r.cpuMillis !== undefined && r.cpuMillis <= 0n) {
    throw new InvalidArgumentError(
      "resources.cpu_millis",
      `must be positive (1000 = one CPU), got ${r.cpuMillis}`,
    );
  }
  if (r.memoryBytes !== undefined && r.memoryBytes < MIN_MEMORY_BYTES) {
    throw new InvalidArgumentError(
      "resources.memory_bytes",
      `must be at least ${MIN_MEMORY_BYTES} (4 MiB), got ${r.memoryBytes}`,
    );
  }
  if (r.pids !== undefined && (r.pids <= 0n || r.pids > MAX_PIDS)) {
    throw new InvalidArgumentError(
      "resources.pids",
      `must be from 1 to ${MAX_PIDS}, got ${r.pids}`,
    );
  }
}

/** A validated create: the spec to run and the consistency mode to run it in. */
export interface ValidCreate {
  readonly spec: SandboxSpec;
  readonly mode: "fast" | "strong";
}

/**
 * Validates a CreateSandboxRequest and turns it into a spec with defaults
 * filled in and a fresh sandbox id. Throws InvalidArgumentError naming the field.
 */
export function validateCreate(
  req: CreateSandboxRequest,
  opts: { nowMs: number; defaultMode: "fast" | "strong" },
): ValidCreate {
  const name = req.name === "" ? `sb-${randomString(NAME_CHARS, 8)}` : req.name;
  checkDnsLabel("name", name);
  const namespace = req.namespace === "" ? DEFAULT_NAMESPACE : req.namespace;
  checkDnsLabel("namespace", namespace);
  const pool = req.pool === "" ? DEFAULT_POOL : req.pool;
  checkDnsLabel("pool", pool);
  if (req.image === "") throw new InvalidArgumentError("image", "is required");
  if (req.image.length > 512 || !IMAGE_REF.test(req.image)) {
    throw new InvalidArgumentError(
      "image",
      `must be an image reference like busybox:1.36, got "${req.image}"`,
    );
  }
  for (let i = 0; i < req.command.length; i++) checkNoNul(`command[${i}]`, req.command[i]);
  for (let i = 0; i < req.args.length; i++) checkNoNul(`args[${i}]`, req.args[i]);
  for (const [key, value] of Object.entries(req.envs)) {
    if (!ENV_KEY.test(key)) {
      throw new InvalidArgumentError(`envs["${key}"]`, "name must match [A-Za-z_][A-Za-z0-9_]*");
    }
    checkNoNul(`envs["${key}"]`, value);
  }
  if (req.workingDir !== "" && !req.workingDir.startsWith("/")) {
    throw new InvalidArgumentError(
      "working_dir",
      `must be an absolute path, got "${req.workingDir}"`,
    );
  }
  checkNoNul("working_dir", req.workingDir);
  validatePorts(req.exposedPorts);
  let mode = opts.defaultMode;
  switch (req.consistencyMode) {
    case ConsistencyMode.UNSPECIFIED:
      break;
    case ConsistencyMode.FAST:
      mode = "fast";
      break;
    case ConsistencyMode.STRONG:
      mode = "strong";
      break;
    default:
      throw new InvalidArgumentError(
        "consistency_mode",
        `must be FAST or STRONG, got ${req.consistencyMode}`,
      );
  }
  const nowSec = Math.floor(opts.nowMs / 1000);
  const expireTime = checkExpire("expire_time", req.expireTime, nowSec);
  const failurePolicy = failurePolicyName(req.failurePolicy, "failure_policy") ?? "MANUAL";
  checkLabels(req.labels);
  checkNetwork(req.network);
  checkResources(req.resources);
  const spec = create(SandboxSpecSchema, {
    sandboxId: newSandboxId(),
    name,
    namespace,
    pool,
    image: req.image,
    command: req.command,
    args: req.args,
    envs: req.envs,
    workingDir: req.workingDir,
    exposedPorts: req.exposedPorts,
    expireTime: BigInt(expireTime),
    failurePolicy,
    labels: req.labels,
    createdAt: BigInt(nowSec),
    network: req.network,
    resources: req.resources,
  });
  return { spec, mode };
}

/** A validated update. Fields left undefined are unchanged. */
export interface ValidUpdate {
  readonly name: string;
  readonly namespace: string;
  readonly expireTime: number | undefined;
  readonly failurePolicy: string | undefined;
  readonly labels: Readonly<Record<string, string>>;
  readonly reset: boolean;
}

/** Validates an UpdateSandboxRequest. */
export function validateUpdate(req: UpdateSandboxRequest, opts: { nowMs: number }): ValidUpdate {
  if (req.name === "") throw new InvalidArgumentError("name", "is required");
  checkDnsLabel("name", req.name);
  const namespace = req.namespace === "" ? DEFAULT_NAMESPACE : req.namespace;
  checkDnsLabel("namespace", namespace);
  const expireTime = req.expireTime === undefined
    ? undefined
    : checkExpire("expire_time", req.expireTime, Math.floor(opts.nowMs / 1000));
  const failurePolicy = failurePolicyName(req.failurePolicy, "failure_policy");
  checkLabels(req.labels);
  return {
    name: req.name,
    namespace,
    expireTime,
    failurePolicy,
    labels: req.labels,
    reset: req.reset,
  };
}

/** Validates the (namespace, name) of get, delete and logs. */
export function validateName(
  req: { name: string; namespace: string },
): { name: string; namespace: string } {
  if (req.name === "") throw new InvalidArgumentError("name", "is required");
  checkDnsLabel("name", req.name);
  const namespace = req.namespace === "" ? DEFAULT_NAMESPACE : req.namespace;
  checkDnsLabel("namespace", namespace);
  return { name: req.name, namespace };
}

/**
 * Whether two specs ask for the same sandbox (ignoring id and creation time):
 * the test for idempotent create.
 */
export function sameRequest(a: SandboxSpec, b: SandboxSpec): boolean {
  return a.image === b.image && a.pool === b.pool && a.workingDir === b.workingDir &&
    a.expireTime === b.expireTime && a.failurePolicy === b.failurePolicy &&
    sameList(a.command, b.command) && sameList(a.args, b.args) &&
    sameList(a.exposedPorts, b.exposedPorts) && sameMap(a.envs, b.envs) &&
    sameMap(a.labels, b.labels) && sameNetwork(a.network, b.network) &&
    sameResources(a.resources, b.resources);
}

function sameNetwork(a: NetworkPolicy | undefined, b: NetworkPolicy | undefined): boolean {
  return (a?.mode ?? 0) === (b?.mode ?? 0) && (a?.egress ?? 0) === (b?.egress ?? 0) &&
    sameList(a?.allowCidrs ?? [], b?.allowCidrs ?? []) &&
    sameList(a?.denyCidrs ?? [], b?.denyCidrs ?? []);
}

function sameResources(a: Resources | undefined, b: Resources | undefined): boolean {
  return a?.cpuMillis === b?.cpuMillis && a?.memoryBytes === b?.memoryBytes &&
    a?.pids === b?.pids;
}

function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameMap(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}
