/**
 * The JSON scripts read: the proto3 JSON mapping of SandboxInfo.
 *
 * @module
 */
import { toJson } from "@bufbuild/protobuf";
import type { JsonValue } from "@bufbuild/protobuf";
import { type SandboxInfo, SandboxInfoSchema } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";

/**
 * Formats one sandbox as a JSON object, or several as a JSON array, indented,
 * ending with a newline. Field names are lowerCamelCase (`sandboxId`,
 * `exposedPorts`). Every field is present even when it holds its default
 * (`"message": ""`, `"endpoints": []`), so that scripts never have to guess
 * whether an absent key means empty. As the proto3 JSON mapping requires,
 * 64-bit integers (`createdAt`, `expireTime`) are strings of decimal digits and
 * enums are their full names (`"FAILURE_POLICY_MANUAL"`).
 */
export function sandboxJson(value: SandboxInfo | readonly SandboxInfo[]): string {
  const json: JsonValue = isList(value) ? value.map(one) : one(value);
  return JSON.stringify(json, null, 2) + "\n";
}

function isList(value: SandboxInfo | readonly SandboxInfo[]): value is readonly SandboxInfo[] {
  return Array.isArray(value);
}

function one(info: SandboxInfo): JsonValue {
  return toJson(SandboxInfoSchema, info, { alwaysEmitImplicit: true });
}
