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
  NetworkPolicySchema,
  type Resources,
  ResourcesSchema,
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

// Input bounds (shared/DESIGN.md section 12). Each sandbox's spec travels in
// every heartbeat of its agent, so everything a client puts in it is bounded;
// MAX_SPEC_BYTES below adds them up.

/** The most labels on a sandbox, on create and after an update's merge. */
export const MAX_LABELS = 64;
/** The most env entries. */
export const MAX_ENV_ENTRIES = 256;
/** The most bytes of env names and values together (UTF-8): 128 KiB. */
export const MAX_ENV_BYTES = 128 * 1024;
/** The most command and args entries together. */
export const MAX_ARGV_ENTRIES = 256;
/** The most bytes of command and args together (UTF-8): 128 KiB. */
export const MAX_ARGV_BYTES = 128 * 1024;
/** The longest image reference (the grammar is ASCII, so characters are bytes). */
export const MAX_IMAGE_CHARS = 512;
/** The longest working directory, in UTF-8 bytes (Linux's PATH_MAX). */
export const MAX_WORKING_DIR_BYTES = 4096;
/** The most exposed ports. */
export const MAX_PORTS = 64;
/** The most CIDRs in each of allow_cidrs and deny_cidrs. */
const MAX_CIDRS = 64;
/** The longest label key: a 253-character DNS prefix, '/', a 63-character name. */
const MAX_LABEL_KEY_CHARS = 253 + 1 + 63;
/** The longest label value. */
const MAX_LABEL_VALUE_CHARS = 63;
/** The longest CIDR parseCidr accepts: "255.255.255.255/32". */
const MAX_CIDR_CHARS = 18;

/**
 * An upper bound on the protobuf encoding of one SandboxSpec that passed
 * validateCreate and any number of updates (checkMergedLabels), in bytes:
 * 298,811 (about 292 KiB). Size an agent's heartbeat limit as its capacity
 * times this, plus each SandboxStatus's own fields and the report's.
 *
 * Each field is its tag (1 byte; 2 for field 16), its length as a varint
 * (1 byte below 128, 2 below 16 Ki, 3 below 2 Mi) and its bytes; every
 * string below is ASCII by its rule unless it says UTF-8:
 *
 * | field                   | worst case                                              |   bytes |
 * | ----------------------- | ------------------------------------------------------- | ------: |
 * | sandbox_id              | 1 + 1 + 32 hex                                          |      34 |
 * | name, namespace, pool   | 3 × (1 + 1 + 63)                                        |     195 |
 * | image                   | 1 + 2 + 512                                             |     515 |
 * | command + args          | 256 × (1 + 3) + 131,072 UTF-8                           | 132,096 |
 * | envs (map entries)      | 256 × (1 + 3 + key 1 + 3 + value 1 + 3) + 131,072 UTF-8 | 134,144 |
 * | working_dir             | 1 + 2 + 4,096 UTF-8                                     |   4,099 |
 * | exposed_ports           | 64 × (1 + 3), even unpacked                             |     256 |
 * | expire_time, created_at | 2 × (1 + 10)                                            |      22 |
 * | failure_policy          | 1 + 1 + "AUTO_RECREATE"                                 |      15 |
 * | labels (map entries)    | 64 × (1 + 2 + key 1 + 2 + 317 + value 1 + 1 + 63)       |  24,832 |
 * | network                 | 1 + 2 + mode 2 + egress 2 + 2 × 64 × (1 + 1 + 18)       |   2,567 |
 * | resources               | 2 + 1 + 3 × (1 + 10)                                    |      36 |
 * | total                   |                                                         | 298,811 |
 *
 * The request's unknown fields are not copied into the spec (see
 * validateCreate), so nothing else can ride along. A test builds a spec at
 * every bound and checks that its encoding is at most this and within 4 KiB
 * of it.
 */
export const MAX_SPEC_BYTES = (1 + 1 + 32) + // sandbox_id
  3 * (1 + 1 + 63) + // name, namespace, pool
  (1 + 2 + MAX_IMAGE_CHARS) + // image
  MAX_ARGV_ENTRIES * (1 + 3) + MAX_ARGV_BYTES + // command, args
  MAX_ENV_ENTRIES * (1 + 3 + 1 + 3 + 1 + 3) + MAX_ENV_BYTES + // envs
  (1 + 2 + MAX_WORKING_DIR_BYTES) + // working_dir
  MAX_PORTS * (1 + 3) + // exposed_ports
  2 * (1 + 10) + // expire_time, created_at
  (1 + 1 + "AUTO_RECREATE".length) + // failure_policy
  MAX_LABELS * (1 + 2 + (1 + 2 + MAX_LABEL_KEY_CHARS) + (1 + 1 + MAX_LABEL_VALUE_CHARS)) + // labels
  (1 + 2 + 2 + 2 + 2 * MAX_CIDRS * (1 + 1 + MAX_CIDR_CHARS)) + // network
  (2 + 1 + 3 * (1 + 10)); // resources
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

/** What a client sent, as quoted in an error: at most 64 characters, so the status stays small. */
function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}...` : text;
}

/** The length of `text` in UTF-8, as protobuf encodes it (a lone surrogate becomes U+FFFD). */
export function utf8Bytes(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      n += 1;
    } else if (
      c >= 0xd800 && c <= 0xdbff && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      n += 2; // a surrogate pair: two UTF-16 units, four bytes
      i++;
    } else {
      n += 2;
    }
  }
  return n;
}

/** Checks that a label map holds at most MAX_LABELS labels; `field` names it in the error. */
export function checkLabelCount(field: string, count: number): void {
  if (count > MAX_LABELS) {
    throw new InvalidArgumentError(field, `must hold at most ${MAX_LABELS} labels, got ${count}`);
  }
}

/**
 * Checks that upserting `update` into a sandbox's `current` labels leaves at
 * most MAX_LABELS; call it before merging. Throws InvalidArgumentError naming `labels`.
 */
export function checkMergedLabels(
  current: Readonly<Record<string, string>>,
  update: Readonly<Record<string, string>>,
): void {
  const kept = Object.keys(current).length;
  let count = kept;
  for (const key of Object.keys(update)) if (!Object.hasOwn(current, key)) count++;
  if (count > MAX_LABELS) {
    throw new InvalidArgumentError(
      "labels",
      `must hold at most ${MAX_LABELS} labels, got ${count} once merged with the sandbox's ${kept}`,
    );
  }
}

/** Checks the count and total UTF-8 size of command and args together. */
function checkArgv(command: readonly string[], args: readonly string[]): void {
  const field = "command and args";
  const count = command.length + args.length;
  if (count > MAX_ARGV_ENTRIES) {
    throw new InvalidArgumentError(
      field,
      `must hold at most ${MAX_ARGV_ENTRIES} entries in all, got ${count}`,
    );
  }
  let bytes = 0;
  for (const arg of command) bytes += utf8Bytes(arg);
  for (const arg of args) bytes += utf8Bytes(arg);
  if (bytes > MAX_ARGV_BYTES) {
    throw new InvalidArgumentError(
      field,
      `must total at most ${MAX_ARGV_BYTES} bytes (128 KiB) in all, got ${bytes}`,
    );
  }
  for (let i = 0; i < command.length; i++) checkNoNul(`command[${i}]`, command[i]);
  for (let i = 0; i < args.length; i++) checkNoNul(`args[${i}]`, args[i]);
}

/** Checks the count and total UTF-8 size of the env, then each name and value. */
function checkEnvs(envs: Readonly<Record<string, string>>): void {
  const entries = Object.entries(envs);
  if (entries.length > MAX_ENV_ENTRIES) {
    throw new InvalidArgumentError(
      "envs",
      `must hold at most ${MAX_ENV_ENTRIES} entries, got ${entries.length}`,
    );
  }
  let bytes = 0;
  for (const [key, value] of entries) bytes += utf8Bytes(key) + utf8Bytes(value);
  if (bytes > MAX_ENV_BYTES) {
    throw new InvalidArgumentError(
      "envs",
      `must total at most ${MAX_ENV_BYTES} bytes (128 KiB) of names and values, got ${bytes}`,
    );
  }
  for (const [key, value] of entries) {
    if (!ENV_KEY.test(key)) {
      throw new InvalidArgumentError(
        `envs["${clip(key)}"]`,
        "name must match [A-Za-z_][A-Za-z0-9_]*",
      );
    }
    checkNoNul(`envs["${clip(key)}"]`, value);
  }
}

/** Checks the working directory: bounded, absolute, no NUL. */
function checkWorkingDir(dir: string): void {
  const bytes = utf8Bytes(dir);
  if (bytes > MAX_WORKING_DIR_BYTES) {
    throw new InvalidArgumentError(
      "working_dir",
      `must be at most ${MAX_WORKING_DIR_BYTES} bytes, got ${bytes}`,
    );
  }
  if (dir !== "" && !dir.startsWith("/")) {
    throw new InvalidArgumentError("working_dir", `must be an absolute path, got "${clip(dir)}"`);
  }
  checkNoNul("working_dir", dir);
}

/**
 * Checks a label map: at most MAX_LABELS labels (counted first, so a huge map
 * costs nothing more), then keys and values the way Kubernetes does
 * (optional DNS prefix, 63-character names).
 */
export function checkLabels(labels: Readonly<Record<string, string>>): void {
  const entries = Object.entries(labels);
  checkLabelCount("labels", entries.length);
  for (const [key, value] of entries) {
    const field = `labels["${clip(key)}"]`;
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
  // The kernel refuses a CFS quota under 1 ms of a 100 ms period: 10 millicpus.
  if (r.cpuMillis !== undefined && r.cpuMillis < 10n) {
    throw new InvalidArgumentError(
      "resources.cpu_millis",
      `must be at least 10 (1000 = one CPU), got ${r.cpuMillis}`,
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
  if (req.image.length > MAX_IMAGE_CHARS) {
    throw new InvalidArgumentError(
      "image",
      `must be at most ${MAX_IMAGE_CHARS} characters, got ${req.image.length}`,
    );
  }
  if (!IMAGE_REF.test(req.image)) {
    throw new InvalidArgumentError(
      "image",
      `must be an image reference like busybox:1.36, got "${req.image}"`,
    );
  }
  checkArgv(req.command, req.args);
  checkEnvs(req.envs);
  checkWorkingDir(req.workingDir);
  if (req.exposedPorts.length > MAX_PORTS) {
    throw new InvalidArgumentError(
      "exposed_ports",
      `must hold at most ${MAX_PORTS} ports, got ${req.exposedPorts.length}`,
    );
  }
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
  if (req.network?.mode === NetworkMode.NONE && req.exposedPorts.length > 0) {
    throw new InvalidArgumentError(
      "exposed_ports",
      "must be empty when network.mode is NONE: nothing could reach them",
    );
  }
  checkResources(req.resources);
  // The network policy and limits are copied field by field: the request's own
  // messages may carry unknown fields, which would be encoded again in every
  // Register that reports this spec, past every bound above.
  const network = req.network === undefined ? undefined : create(NetworkPolicySchema, {
    mode: req.network.mode,
    egress: req.network.egress,
    allowCidrs: req.network.allowCidrs,
    denyCidrs: req.network.denyCidrs,
  });
  const resources = req.resources === undefined ? undefined : create(ResourcesSchema, {
    cpuMillis: req.resources.cpuMillis,
    memoryBytes: req.resources.memoryBytes,
    pids: req.resources.pids,
  });
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
    network,
    resources,
    generation: 1,
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

/**
 * Validates an UpdateSandboxRequest. Its labels are checked alone (at most
 * MAX_LABELS of them); the caller checks the merge with the sandbox's own
 * labels with checkMergedLabels before applying it.
 */
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
