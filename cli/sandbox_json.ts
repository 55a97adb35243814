/**
 * The JSON scripts read: the proto3 JSON mapping of SandboxInfo.
 *
 * @module
 */
import type { JsonValue } from "@bufbuild/protobuf";
import { sandboxInfoToJson } from "../proto/fastpath_lite.ts";
import type { SandboxInfo } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";

/**
 * Formats one sandbox as a JSON object, or several as a JSON array, indented,
 * ending with a newline. Field names are lowerCamelCase (`sandboxId`,
 * `exposedPorts`). Every field is present even when it holds its default
 * (`"message": ""`, `"endpoints": []`), so that scripts never have to guess
 * whether an absent key means empty. As the proto3 JSON mapping requires,
 * 64-bit integers (`createdAt`, `expireTime`) are strings of decimal digits and
 * enums are their full names (`"FAILURE_POLICY_MANUAL"`). The text is the same,
 * byte for byte, as protobuf-es's `toJson` with `alwaysEmitImplicit` would give,
 * without loading protobuf-es.
 */
export function sandboxJson(value: SandboxInfo | readonly SandboxInfo[]): string {
  const json: JsonValue = isList(value) ? value.map(sandboxInfoToJson) : sandboxInfoToJson(value);
  return JSON.stringify(json, null, 2) + "\n";
}

function isList(value: SandboxInfo | readonly SandboxInfo[]): value is readonly SandboxInfo[] {
  return Array.isArray(value);
}
