/**
 * Aligned text tables, as the CLI prints them.
 *
 * @module
 */

const GAP = "   ";

/**
 * Formats rows (the header first) with each column padded to its widest cell,
 * three spaces apart; the last column is not padded. Every line ends with a
 * newline.
 */
export function alignedTable(rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return "";
  const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => row[col].length)));
  const last = widths.length - 1;
  let out = "";
  for (const row of rows) {
    for (let col = 0; col < last; col++) out += row[col].padEnd(widths[col]) + GAP;
    out += row[last] + "\n";
  }
  return out;
}
