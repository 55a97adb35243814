/**
 * The table people read: one aligned row per sandbox.
 *
 * @module
 */
import type { SandboxInfo } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { compactDuration } from "./compact_duration.ts";
import { alignedTable } from "./text_table.ts";

const HEADER = ["NAME", "NAMESPACE", "PHASE", "AGENT", "IP", "IMAGE", "ENDPOINTS", "AGE"];

/**
 * Formats sandboxes as a table with a header row, columns padded to their
 * widest cell. Empty cells show `-`, an IP among them: a sandbox has none
 * before it is placed, nor without a private network of its own. A MESSAGE
 * column is added at the end only when some sandbox has a message (why it
 * exited or failed), so that long messages never push the other columns
 * apart. Ends with a newline.
 *
 * @param nowSec the current unix time in seconds, for the AGE column.
 */
export function sandboxTable(infos: readonly SandboxInfo[], nowSec: number): string {
  const withMessage = infos.some((info) => info.message !== "");
  // Which path served each create (warm, prepared, cold): shown once a server says.
  const withPath = infos.some((info) => info.path !== "");
  const header = withPath ? [...HEADER, "PATH"] : [...HEADER];
  const rows: string[][] = [withMessage ? [...header, "MESSAGE"] : header];
  for (const info of infos) {
    const row = [
      cell(info.name),
      cell(info.namespace),
      cell(info.phase),
      cell(info.agent),
      cell(info.ip),
      cell(info.image),
      cell(info.endpoints.join(",")),
      age(info.createdAt, nowSec),
    ];
    if (withPath) row.push(cell(info.path));
    if (withMessage) row.push(cell(info.message));
    rows.push(row);
  }
  return alignedTable(rows);
}

function cell(value: string): string {
  return value === "" ? "-" : value;
}

// How long ago `createdAt` was, or "-" when it is unset.
function age(createdAt: bigint, nowSec: number): string {
  if (createdAt <= 0n) return "-";
  return compactDuration(Math.floor(nowSec) - Number(createdAt));
}
