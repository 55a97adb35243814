/**
 * The FastPath messages encoded and decoded by hand, on protobuf-es's wire
 * primitives alone, for the CLI: loading protobuf-es's reflection and the
 * generated schemas costs 25 to 45 ms of every `fsb sandbox` and `fsb token`
 * command's start, the wire primitives a few. Values have the very shapes of
 * the generated types (imported as types only, so nothing of them loads at
 * run time).
 *
 * This file restates `fsb/fastpath/v1/fastpath.proto` by hand. What keeps it
 * honest is `tests/proto/fastpath_lite_test.ts`: it fails when the generated
 * descriptor has a message, field, enum value or method that
 * {@linkcode fastPathLiteSchema} does not list, and cross-checks every codec
 * here against protobuf-es on seeded random messages. When the .proto changes,
 * change this file until that test passes again. The exec and file calls'
 * codecs live in `fastpath_lite_exec.ts` and `fastpath_lite_files.ts`; this
 * module re-exports them.
 *
 * @module
 */
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  putBool,
  putEnum,
  putInt64,
  putMap,
  putOptionalInt64,
  putOptionalUint32,
  putString,
  putStrings,
  putUint32,
  putUint32s,
  readInt64,
  readMapEntry,
  readUint32s,
} from "./_lite_wire.ts";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import type {
  CreateSandboxRequestSchema,
  CreateTokenRequestSchema,
  CreateTokenResponse,
  DeleteSandboxRequestSchema,
  Egress,
  FailurePolicy,
  GetSandboxRequestSchema,
  ListSandboxesRequestSchema,
  ListSandboxesResponse,
  ListTokensRequestSchema,
  ListTokensResponse,
  LogChunk,
  NetworkMode,
  NetworkPolicy,
  NetworkPolicySchema,
  ProfileChunk,
  ProfileRequestSchema,
  Resources,
  ResourcesSchema,
  RevokeTokenRequestSchema,
  SandboxInfo,
  StreamLogsRequestSchema,
  TokenInfo,
  UpdateSandboxRequestSchema,
} from "./gen/fsb/fastpath/v1/fastpath_pb.ts";
import type { LiteClient, LiteMethod, LiteService } from "./lite_service.ts";
import { execLiteMethods, execLiteSchema } from "./fastpath_lite_exec.ts";
import { filesLiteMethods, filesLiteSchema } from "./fastpath_lite_files.ts";

export * from "./fastpath_lite_exec.ts";
export * from "./fastpath_lite_files.ts";

/** A CreateSandbox request as protobuf-es's `create()` accepts it: every field optional. */
export type CreateSandboxRequestInit = MessageInitShape<typeof CreateSandboxRequestSchema>;
/** A GetSandbox request, every field optional. */
export type GetSandboxRequestInit = MessageInitShape<typeof GetSandboxRequestSchema>;
/** A ListSandboxes request, every field optional. */
export type ListSandboxesRequestInit = MessageInitShape<typeof ListSandboxesRequestSchema>;
/** A DeleteSandbox request, every field optional. */
export type DeleteSandboxRequestInit = MessageInitShape<typeof DeleteSandboxRequestSchema>;
/** An UpdateSandbox request, every field optional; an absent `expireTime` is not sent. */
export type UpdateSandboxRequestInit = MessageInitShape<typeof UpdateSandboxRequestSchema>;
/** A StreamLogs request, every field optional. */
export type StreamLogsRequestInit = MessageInitShape<typeof StreamLogsRequestSchema>;
/** A NetworkPolicy inside a request, every field optional. */
export type NetworkPolicyInit = MessageInitShape<typeof NetworkPolicySchema>;
/** Resources inside a request; an absent limit is not sent (the agent's default applies). */
export type ResourcesInit = MessageInitShape<typeof ResourcesSchema>;
/** A CreateToken request, every field optional; an absent `quota` is not sent. */
export type CreateTokenRequestInit = MessageInitShape<typeof CreateTokenRequestSchema>;
/** A ListTokens request (it has no fields). */
export type ListTokensRequestInit = MessageInitShape<typeof ListTokensRequestSchema>;
/** A RevokeToken request, every field optional. */
export type RevokeTokenRequestInit = MessageInitShape<typeof RevokeTokenRequestSchema>;
/** A Profile request, every field optional (`seconds` 0: the controller's 30). */
export type ProfileRequestInit = MessageInitShape<typeof ProfileRequestSchema>;

/**
 * Everything of fastpath.proto this file knows, written as in the .proto
 * (`repeated uint32 exposed_ports = 9`). Enum values are listed by number,
 * from 0 without gaps; the JSON mapping takes their names from here.
 */
export const fastPathLiteSchema = {
  messages: {
    "fsb.fastpath.v1.CreateSandboxRequest": [
      "string name = 1",
      "string namespace = 2",
      "string image = 3",
      "string pool = 4",
      "repeated string command = 5",
      "repeated string args = 6",
      "map<string, string> envs = 7",
      "string working_dir = 8",
      "repeated uint32 exposed_ports = 9",
      "fsb.fastpath.v1.ConsistencyMode consistency_mode = 10",
      "int64 expire_time = 11",
      "fsb.fastpath.v1.FailurePolicy failure_policy = 12",
      "map<string, string> labels = 13",
      "fsb.fastpath.v1.NetworkPolicy network = 14",
      "fsb.fastpath.v1.Resources resources = 15",
    ],
    "fsb.fastpath.v1.NetworkPolicy": [
      "fsb.fastpath.v1.NetworkMode mode = 1",
      "fsb.fastpath.v1.Egress egress = 2",
      "repeated string allow_cidrs = 3",
      "repeated string deny_cidrs = 4",
    ],
    "fsb.fastpath.v1.Resources": [
      "optional int64 cpu_millis = 1",
      "optional int64 memory_bytes = 2",
      "optional int64 pids = 3",
    ],
    "fsb.fastpath.v1.SandboxInfo": [
      "string sandbox_id = 1",
      "string name = 2",
      "string namespace = 3",
      "string phase = 4",
      "string agent = 5",
      "repeated string endpoints = 6",
      "string image = 7",
      "string pool = 8",
      "repeated string command = 9",
      "repeated string args = 10",
      "int64 created_at = 11",
      "int64 expire_time = 12",
      "fsb.fastpath.v1.FailurePolicy failure_policy = 13",
      "map<string, string> labels = 14",
      "string message = 15",
      "map<string, string> envs = 16",
      "string working_dir = 17",
      "repeated uint32 exposed_ports = 18",
      "string ip = 19",
      "string runtime = 20",
      "fsb.fastpath.v1.NetworkPolicy network = 21",
      "fsb.fastpath.v1.Resources resources = 22",
      "string path = 23",
    ],
    "fsb.fastpath.v1.GetSandboxRequest": ["string name = 1", "string namespace = 2"],
    "fsb.fastpath.v1.ListSandboxesRequest": ["string namespace = 1", "bool all_namespaces = 2"],
    "fsb.fastpath.v1.ListSandboxesResponse": ["repeated fsb.fastpath.v1.SandboxInfo sandboxes = 1"],
    "fsb.fastpath.v1.DeleteSandboxRequest": ["string name = 1", "string namespace = 2"],
    "fsb.fastpath.v1.UpdateSandboxRequest": [
      "string name = 1",
      "string namespace = 2",
      "optional int64 expire_time = 3",
      "fsb.fastpath.v1.FailurePolicy failure_policy = 4",
      "map<string, string> labels = 5",
      "bool reset = 6",
    ],
    "fsb.fastpath.v1.StreamLogsRequest": [
      "string name = 1",
      "string namespace = 2",
      "bool follow = 3",
    ],
    "fsb.fastpath.v1.LogChunk": ["bytes data = 1", "bool end = 2"],
    "fsb.fastpath.v1.CreateTokenRequest": [
      "repeated string namespaces = 1",
      "bool admin = 2",
      "int64 ttl_seconds = 3",
      "optional uint32 quota = 4",
    ],
    "fsb.fastpath.v1.TokenInfo": [
      "string id = 1",
      "repeated string namespaces = 2",
      "bool admin = 3",
      "int64 expire_time = 4",
      "int64 created_at = 5",
    ],
    "fsb.fastpath.v1.CreateTokenResponse": [
      "fsb.fastpath.v1.TokenInfo token = 1",
      "string secret = 2",
    ],
    "fsb.fastpath.v1.ListTokensRequest": [],
    "fsb.fastpath.v1.ListTokensResponse": ["repeated fsb.fastpath.v1.TokenInfo tokens = 1"],
    "fsb.fastpath.v1.RevokeTokenRequest": ["string id = 1"],
    "fsb.fastpath.v1.ProfileRequest": [
      "string kind = 1",
      "uint32 seconds = 2",
      "string agent_id = 3",
    ],
    "fsb.fastpath.v1.ProfileChunk": ["bytes data = 1"],
    ...execLiteSchema,
    ...filesLiteSchema,
  },
  enums: {
    "fsb.fastpath.v1.ConsistencyMode": [
      "CONSISTENCY_MODE_UNSPECIFIED",
      "CONSISTENCY_MODE_FAST",
      "CONSISTENCY_MODE_STRONG",
    ],
    "fsb.fastpath.v1.FailurePolicy": [
      "FAILURE_POLICY_UNSPECIFIED",
      "FAILURE_POLICY_MANUAL",
      "FAILURE_POLICY_AUTO_RECREATE",
    ],
    "fsb.fastpath.v1.NetworkMode": [
      "NETWORK_MODE_UNSPECIFIED",
      "NETWORK_MODE_PRIVATE",
      "NETWORK_MODE_NONE",
    ],
    "fsb.fastpath.v1.Egress": ["EGRESS_UNSPECIFIED", "EGRESS_ALLOW", "EGRESS_DENY"],
  },
} as const;

const FAILURE_POLICY_NAMES: readonly string[] =
  fastPathLiteSchema.enums["fsb.fastpath.v1.FailurePolicy"];
const NETWORK_MODE_NAMES: readonly string[] =
  fastPathLiteSchema.enums["fsb.fastpath.v1.NetworkMode"];
const EGRESS_NAMES: readonly string[] = fastPathLiteSchema.enums["fsb.fastpath.v1.Egress"];

// --- writing (the rules are in _lite_wire.ts) -------------------------------

function putNetworkPolicy(
  w: BinaryWriter,
  no: number,
  policy: NetworkPolicyInit | undefined,
): void {
  if (policy === undefined) return;
  w.tag(no, WireType.LengthDelimited).fork();
  putEnum(w, 1, policy.mode);
  putEnum(w, 2, policy.egress);
  putStrings(w, 3, policy.allowCidrs);
  putStrings(w, 4, policy.denyCidrs);
  w.join();
}

function putResources(w: BinaryWriter, no: number, resources: ResourcesInit | undefined): void {
  if (resources === undefined) return;
  w.tag(no, WireType.LengthDelimited).fork();
  putOptionalInt64(w, 1, resources.cpuMillis);
  putOptionalInt64(w, 2, resources.memoryBytes);
  putOptionalInt64(w, 3, resources.pids);
  w.join();
}

/**
 * Serializes a `fsb.fastpath.v1.CreateSandboxRequest`. Like every encoder
 * here, throws when a value does not fit its wire type (a port outside uint32,
 * an expiry outside int64).
 */
export function encodeCreateSandboxRequest(req: CreateSandboxRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  putString(w, 3, req.image);
  putString(w, 4, req.pool);
  putStrings(w, 5, req.command);
  putStrings(w, 6, req.args);
  putMap(w, 7, req.envs);
  putString(w, 8, req.workingDir);
  putUint32s(w, 9, req.exposedPorts);
  putEnum(w, 10, req.consistencyMode);
  putInt64(w, 11, req.expireTime);
  putEnum(w, 12, req.failurePolicy);
  putMap(w, 13, req.labels);
  putNetworkPolicy(w, 14, req.network);
  putResources(w, 15, req.resources);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.GetSandboxRequest`. */
export function encodeGetSandboxRequest(req: GetSandboxRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.ListSandboxesRequest`. */
export function encodeListSandboxesRequest(req: ListSandboxesRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.namespace);
  putBool(w, 2, req.allNamespaces);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.DeleteSandboxRequest`. */
export function encodeDeleteSandboxRequest(req: DeleteSandboxRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.UpdateSandboxRequest`; `expireTime` is sent whenever present, 0 included. */
export function encodeUpdateSandboxRequest(req: UpdateSandboxRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  putOptionalInt64(w, 3, req.expireTime);
  putEnum(w, 4, req.failurePolicy);
  putMap(w, 5, req.labels);
  putBool(w, 6, req.reset);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.StreamLogsRequest`. */
export function encodeStreamLogsRequest(req: StreamLogsRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.name);
  putString(w, 2, req.namespace);
  putBool(w, 3, req.follow);
  return w.finish();
}

/**
 * Serializes a `fsb.fastpath.v1.CreateTokenRequest`; `quota` is sent whenever
 * present, 0 included.
 */
export function encodeCreateTokenRequest(req: CreateTokenRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putStrings(w, 1, req.namespaces);
  putBool(w, 2, req.admin);
  putInt64(w, 3, req.ttlSeconds);
  putOptionalUint32(w, 4, req.quota);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.ListTokensRequest`: always empty. */
export function encodeListTokensRequest(_req: ListTokensRequestInit): Uint8Array {
  return new Uint8Array(0);
}

/** Serializes a `fsb.fastpath.v1.RevokeTokenRequest`. */
export function encodeRevokeTokenRequest(req: RevokeTokenRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.id);
  return w.finish();
}

/** Serializes a `fsb.fastpath.v1.ProfileRequest`. */
export function encodeProfileRequest(req: ProfileRequestInit): Uint8Array {
  const w = new BinaryWriter();
  putString(w, 1, req.kind);
  putUint32(w, 2, req.seconds);
  putString(w, 3, req.agentId);
  return w.finish();
}

// --- reading (the rules are in _lite_wire.ts) -------------------------------

function readNetworkPolicy(r: BinaryReader, into: NetworkPolicy | undefined): NetworkPolicy {
  const policy: NetworkPolicy = into ?? {
    $typeName: "fsb.fastpath.v1.NetworkPolicy",
    mode: 0 as NetworkMode,
    egress: 0 as Egress,
    allowCidrs: [],
    denyCidrs: [],
  };
  const len = r.uint32();
  const end = r.pos + len;
  while (r.pos < end) {
    const [no, wireType] = r.tag();
    switch (no) {
      case 1:
        policy.mode = r.int32();
        break;
      case 2:
        policy.egress = r.int32();
        break;
      case 3:
        policy.allowCidrs.push(r.string(true));
        break;
      case 4:
        policy.denyCidrs.push(r.string(true));
        break;
      default:
        r.skip(wireType, no);
    }
  }
  return policy;
}

// The optional limits get a property only when present, as protobuf-es's do.
function readResources(r: BinaryReader, into: Resources | undefined): Resources {
  const resources: Resources = into ?? { $typeName: "fsb.fastpath.v1.Resources" };
  const len = r.uint32();
  const end = r.pos + len;
  while (r.pos < end) {
    const [no, wireType] = r.tag();
    switch (no) {
      case 1:
        resources.cpuMillis = readInt64(r);
        break;
      case 2:
        resources.memoryBytes = readInt64(r);
        break;
      case 3:
        resources.pids = readInt64(r);
        break;
      default:
        r.skip(wireType, no);
    }
  }
  return resources;
}

// `network` and `resources` get a property only when present, as protobuf-es's do.
function readSandboxInfo(r: BinaryReader, end: number): SandboxInfo {
  const info: SandboxInfo = {
    $typeName: "fsb.fastpath.v1.SandboxInfo",
    sandboxId: "",
    name: "",
    namespace: "",
    phase: "",
    agent: "",
    endpoints: [],
    image: "",
    pool: "",
    command: [],
    args: [],
    createdAt: 0n,
    expireTime: 0n,
    failurePolicy: 0 as FailurePolicy,
    labels: {},
    message: "",
    envs: {},
    workingDir: "",
    exposedPorts: [],
    ip: "",
    runtime: "",
    path: "",
  };
  while (r.pos < end) {
    const [no, wireType] = r.tag();
    switch (no) {
      case 1:
        info.sandboxId = r.string(true);
        break;
      case 2:
        info.name = r.string(true);
        break;
      case 3:
        info.namespace = r.string(true);
        break;
      case 4:
        info.phase = r.string(true);
        break;
      case 5:
        info.agent = r.string(true);
        break;
      case 6:
        info.endpoints.push(r.string(true));
        break;
      case 7:
        info.image = r.string(true);
        break;
      case 8:
        info.pool = r.string(true);
        break;
      case 9:
        info.command.push(r.string(true));
        break;
      case 10:
        info.args.push(r.string(true));
        break;
      case 11:
        info.createdAt = readInt64(r);
        break;
      case 12:
        info.expireTime = readInt64(r);
        break;
      case 13:
        info.failurePolicy = r.int32();
        break;
      case 14:
        readMapEntry(r, info.labels);
        break;
      case 15:
        info.message = r.string(true);
        break;
      case 16:
        readMapEntry(r, info.envs);
        break;
      case 17:
        info.workingDir = r.string(true);
        break;
      case 18:
        readUint32s(r, wireType, info.exposedPorts);
        break;
      case 19:
        info.ip = r.string(true);
        break;
      case 20:
        info.runtime = r.string(true);
        break;
      case 21:
        info.network = readNetworkPolicy(r, info.network);
        break;
      case 22:
        info.resources = readResources(r, info.resources);
        break;
      case 23:
        info.path = r.string(true);
        break;
      default:
        r.skip(wireType, no);
    }
  }
  return info;
}

/** Parses a `fsb.fastpath.v1.SandboxInfo`. Throws on malformed input. */
export function decodeSandboxInfo(bytes: Uint8Array): SandboxInfo {
  const r = new BinaryReader(bytes);
  return readSandboxInfo(r, r.len);
}

/** Parses a `fsb.fastpath.v1.ListSandboxesResponse`. Throws on malformed input. */
export function decodeListSandboxesResponse(bytes: Uint8Array): ListSandboxesResponse {
  const r = new BinaryReader(bytes);
  const res: ListSandboxesResponse = {
    $typeName: "fsb.fastpath.v1.ListSandboxesResponse",
    sandboxes: [],
  };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1) {
      const len = r.uint32();
      res.sandboxes.push(readSandboxInfo(r, r.pos + len));
    } else {
      r.skip(wireType, no);
    }
  }
  return res;
}

/** Parses a `fsb.fastpath.v1.LogChunk`; `data` is a view into `bytes`, not a copy. */
export function decodeLogChunk(bytes: Uint8Array): LogChunk {
  const r = new BinaryReader(bytes);
  const chunk: LogChunk = {
    $typeName: "fsb.fastpath.v1.LogChunk",
    data: new Uint8Array(0),
    end: false,
  };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1) chunk.data = r.bytes();
    else if (no === 2) chunk.end = r.bool();
    else r.skip(wireType, no);
  }
  return chunk;
}

/** Parses a `fsb.fastpath.v1.ProfileChunk`; `data` is a view into `bytes`, not a copy. */
export function decodeProfileChunk(bytes: Uint8Array): ProfileChunk {
  const r = new BinaryReader(bytes);
  const chunk: ProfileChunk = {
    $typeName: "fsb.fastpath.v1.ProfileChunk",
    data: new Uint8Array(0),
  };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1) chunk.data = r.bytes();
    else r.skip(wireType, no);
  }
  return chunk;
}

// A TokenInfo that comes more than once inside a CreateTokenResponse is merged into.
function readTokenInfo(r: BinaryReader, end: number, into?: TokenInfo): TokenInfo {
  const token: TokenInfo = into ?? {
    $typeName: "fsb.fastpath.v1.TokenInfo",
    id: "",
    namespaces: [],
    admin: false,
    expireTime: 0n,
    createdAt: 0n,
  };
  while (r.pos < end) {
    const [no, wireType] = r.tag();
    switch (no) {
      case 1:
        token.id = r.string(true);
        break;
      case 2:
        token.namespaces.push(r.string(true));
        break;
      case 3:
        token.admin = r.bool();
        break;
      case 4:
        token.expireTime = readInt64(r);
        break;
      case 5:
        token.createdAt = readInt64(r);
        break;
      default:
        r.skip(wireType, no);
    }
  }
  return token;
}

/** Parses a `fsb.fastpath.v1.TokenInfo`. Throws on malformed input. */
export function decodeTokenInfo(bytes: Uint8Array): TokenInfo {
  const r = new BinaryReader(bytes);
  return readTokenInfo(r, r.len);
}

/**
 * Parses a `fsb.fastpath.v1.CreateTokenResponse`; `token` gets a property only
 * when present, as protobuf-es's does. Throws on malformed input.
 */
export function decodeCreateTokenResponse(bytes: Uint8Array): CreateTokenResponse {
  const r = new BinaryReader(bytes);
  const res: CreateTokenResponse = { $typeName: "fsb.fastpath.v1.CreateTokenResponse", secret: "" };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1) {
      const len = r.uint32();
      res.token = readTokenInfo(r, r.pos + len, res.token);
    } else if (no === 2) {
      res.secret = r.string(true);
    } else {
      r.skip(wireType, no);
    }
  }
  return res;
}

/** Parses a `fsb.fastpath.v1.ListTokensResponse`. Throws on malformed input. */
export function decodeListTokensResponse(bytes: Uint8Array): ListTokensResponse {
  const r = new BinaryReader(bytes);
  const res: ListTokensResponse = { $typeName: "fsb.fastpath.v1.ListTokensResponse", tokens: [] };
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (no === 1) {
      const len = r.uint32();
      res.tokens.push(readTokenInfo(r, r.pos + len));
    } else {
      r.skip(wireType, no);
    }
  }
  return res;
}

// --- JSON ------------------------------------------------------------------

function jsonMap(map: Readonly<Record<string, string>>): JsonObject {
  return { ...map };
}

function enumJson(names: readonly string[], value: number): string | number {
  return names[value] ?? value;
}

function networkPolicyToJson(policy: NetworkPolicy): JsonObject {
  return {
    mode: enumJson(NETWORK_MODE_NAMES, policy.mode),
    egress: enumJson(EGRESS_NAMES, policy.egress),
    allowCidrs: policy.allowCidrs.slice(),
    denyCidrs: policy.denyCidrs.slice(),
  };
}

// Absent limits are left out: they have explicit presence, so
// alwaysEmitImplicit does not print them.
function resourcesToJson(resources: Resources): JsonObject {
  const json: JsonObject = {};
  if (resources.cpuMillis !== undefined) json.cpuMillis = resources.cpuMillis.toString();
  if (resources.memoryBytes !== undefined) json.memoryBytes = resources.memoryBytes.toString();
  if (resources.pids !== undefined) json.pids = resources.pids.toString();
  return json;
}

/**
 * The proto3 JSON mapping of a SandboxInfo with every field present, exactly
 * as protobuf-es's `toJson(SandboxInfoSchema, info, { alwaysEmitImplicit: true })`
 * builds it (same keys in the same order): lowerCamelCase names, 64-bit
 * integers as decimal strings, enums by their full names (an unknown number
 * stays a number). Fields with explicit presence are the exception: `network`
 * and `resources` appear only when set, and so does each limit of `resources`.
 */
export function sandboxInfoToJson(info: SandboxInfo): JsonObject {
  const json: JsonObject = {
    sandboxId: info.sandboxId,
    name: info.name,
    namespace: info.namespace,
    phase: info.phase,
    agent: info.agent,
    endpoints: info.endpoints.slice(),
    image: info.image,
    pool: info.pool,
    command: info.command.slice(),
    args: info.args.slice(),
    createdAt: info.createdAt.toString(),
    expireTime: info.expireTime.toString(),
    failurePolicy: enumJson(FAILURE_POLICY_NAMES, info.failurePolicy),
    labels: jsonMap(info.labels),
    message: info.message,
    envs: jsonMap(info.envs),
    workingDir: info.workingDir,
    exposedPorts: info.exposedPorts.slice(),
    ip: info.ip,
    runtime: info.runtime,
  };
  if (info.network !== undefined) json.network = networkPolicyToJson(info.network);
  if (info.resources !== undefined) json.resources = resourcesToJson(info.resources);
  // After network and resources, in field order, as protobuf-es prints it.
  json.path = info.path;
  return json;
}

/**
 * The proto3 JSON mapping of a TokenInfo with every field present, exactly as
 * protobuf-es's `toJson(TokenInfoSchema, token, { alwaysEmitImplicit: true })`
 * builds it: `id`, `namespaces`, `admin`, then `expireTime` and `createdAt` as
 * decimal strings of unix seconds.
 */
export function tokenInfoToJson(token: TokenInfo): JsonObject {
  return {
    id: token.id,
    namespaces: token.namespaces.slice(),
    admin: token.admin,
    expireTime: token.expireTime.toString(),
    createdAt: token.createdAt.toString(),
  };
}

// --- the service -------------------------------------------------------------

function unary<I, O>(
  name: string,
  encode: (req: I) => Uint8Array,
  decode: (bytes: Uint8Array) => O,
): LiteMethod<I, O, "unary"> {
  return { name, kind: "unary", encode, decode };
}

/**
 * `fsb.fastpath.v1.FastPath` with the codecs of this file, for
 * `FetchChannel.client()`: the same calls, requests and responses as the
 * generated `FastPath`, without loading protobuf-es.
 */
export const FastPathLite = {
  typeName: "fsb.fastpath.v1.FastPath",
  methods: {
    createSandbox: unary("CreateSandbox", encodeCreateSandboxRequest, decodeSandboxInfo),
    getSandbox: unary("GetSandbox", encodeGetSandboxRequest, decodeSandboxInfo),
    listSandboxes: unary(
      "ListSandboxes",
      encodeListSandboxesRequest,
      decodeListSandboxesResponse,
    ),
    deleteSandbox: unary("DeleteSandbox", encodeDeleteSandboxRequest, decodeSandboxInfo),
    updateSandbox: unary("UpdateSandbox", encodeUpdateSandboxRequest, decodeSandboxInfo),
    streamLogs: {
      name: "StreamLogs",
      kind: "server_streaming",
      encode: encodeStreamLogsRequest,
      decode: decodeLogChunk,
    } satisfies LiteMethod<StreamLogsRequestInit, LogChunk, "server_streaming">,
    createToken: unary("CreateToken", encodeCreateTokenRequest, decodeCreateTokenResponse),
    listTokens: unary("ListTokens", encodeListTokensRequest, decodeListTokensResponse),
    revokeToken: unary("RevokeToken", encodeRevokeTokenRequest, decodeTokenInfo),
    profile: {
      name: "Profile",
      kind: "server_streaming",
      encode: encodeProfileRequest,
      decode: decodeProfileChunk,
    } satisfies LiteMethod<ProfileRequestInit, ProfileChunk, "server_streaming">,
    ...execLiteMethods,
    ...filesLiteMethods,
  },
} as const satisfies LiteService;

/** A FastPath client made from {@linkcode FastPathLite}. */
export type FastPathLiteClient = LiteClient<typeof FastPathLite>;
