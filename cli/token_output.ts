/**
 * How tokens are printed: a table for people, JSON for scripts. Secrets appear
 * only in what `fsb token create` prints, once.
 *
 * @module
 */
import type { JsonValue } from "@bufbuild/protobuf";
import { tokenInfoToJson } from "../proto/fastpath_lite.ts";
import type { CreateTokenResponse, TokenInfo } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { compactDuration } from "./compact_duration.ts";
import { alignedTable } from "./text_table.ts";

const HEADER = ["ID", "NAMESPACES", "ADMIN", "EXPIRES", "CREATED"];

/**
 * Formats tokens as an aligned table: ID, NAMESPACES (comma-separated; `*` for
 * an admin token, which may use every namespace), ADMIN (`yes` or `no`),
 * EXPIRES (`in 59m`, `expired`, or `never`), CREATED (`3d4h ago`). Empty cells
 * show `-`. Ends with a newline.
 *
 * @param nowSec the current unix time in seconds.
 */
export function tokenTable(tokens: readonly TokenInfo[], nowSec: number): string {
  const rows = [HEADER];
  for (const token of tokens) {
    rows.push([
      token.id === "" ? "-" : token.id,
      token.admin ? "*" : token.namespaces.length === 0 ? "-" : token.namespaces.join(","),
      token.admin ? "yes" : "no",
      expires(token.expireTime, nowSec),
      token.createdAt <= 0n ? "-" : `${compactDuration(nowSec - Number(token.createdAt))} ago`,
    ]);
  }
  return alignedTable(rows);
}

function expires(expireTime: bigint, nowSec: number): string {
  if (expireTime === 0n) return "never";
  const left = Number(expireTime) - Math.floor(nowSec);
  return left <= 0 ? "expired" : `in ${compactDuration(left)}`;
}

/**
 * One token, or several as an array, as indented JSON ending with a newline:
 * the proto3 JSON mapping of TokenInfo with every field present (`id`,
 * `namespaces`, `admin`, and `expireTime`, `createdAt` as strings of unix
 * seconds; `"0"` expires never). Never a secret: TokenInfo has none.
 */
export function tokenJson(value: TokenInfo | readonly TokenInfo[]): string {
  const json: JsonValue = isList(value) ? value.map(tokenInfoToJson) : tokenInfoToJson(value);
  return JSON.stringify(json, null, 2) + "\n";
}

/**
 * What `fsb token create -o json` prints: `{"id", "secret", "namespaces",
 * "admin", "expireTime"}`, with `expireTime` a string of unix seconds as in
 * {@linkcode tokenJson} (`"0"`: never). Indented, ending with a newline.
 */
export function createdTokenJson(res: CreateTokenResponse): string {
  const token = res.token;
  return JSON.stringify(
    {
      id: token?.id ?? "",
      secret: res.secret,
      namespaces: token?.namespaces.slice() ?? [],
      admin: token?.admin ?? false,
      expireTime: (token?.expireTime ?? 0n).toString(),
    },
    null,
    2,
  ) + "\n";
}

function isList(value: TokenInfo | readonly TokenInfo[]): value is readonly TokenInfo[] {
  return Array.isArray(value);
}
