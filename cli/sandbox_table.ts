/**
 * The table people read: one aligned row per sandbox.
 *
 * @module
 */
import type { SandboxInfo } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";

const HEADER = ["NAME", "NAMESPACE", "PHASE", "AGENT", "IP", "IMAGE", "ENDPOINTS", "AGE"];
const GAP = "   ";

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
  const rows: string[][] = [withMessage ? [...HEADER, "MESSAGE"] : HEADER];
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
    if (withMessage) row.push(cell(info.message));
    rows.push(row);
  }
  const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => row[col].length)));
  const last = widths.length - 1;
  let out = "";
  for (const row of rows) {
    for (let col = 0; col < last; col++) out += row[col].padEnd(widths[col]) + GAP;
    out += row[last] + "\n";
  }
  return out;
}

function cell(value: string): string {
  return value === "" ? "-" : value;
}

/**
 * A compact age: `45s`, `3m20s` under ten minutes, `42m`, `2h5m` under ten
 * hours, `15h`, `3d4h` under ten days, then `12d`.
 */
function age(createdAt: bigint, nowSec: number): string {
  if (createdAt <= 0n) return "-";
  const s = Math.max(0, Math.floor(nowSec) - Number(createdAt));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 10) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 24) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 10) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  return `${d}d`;
}
