/**
 * `fsb sandbox ps`: one aligned row per exec.
 *
 * @module
 */
import type { ExecInfo } from "./client.ts";
import { compactDuration } from "./compact_duration.ts";
import { alignedTable } from "./text_table.ts";

const HEADER = ["EXEC ID", "COMMAND", "STATE", "EXIT CODE", "STARTED"];

// Longer commands are cut (with "...") so that they do not push the other
// columns apart; `-o json` has them whole.
const COMMAND_WIDTH = 40;

/**
 * Formats execs as a table with a header row: the exec's id, its command
 * (words quoted as a shell would need them), `Running` or `Exited`, the exit
 * code (with the signal that ended it, `137 (KILL)`; `-` while it runs) and
 * how long ago it started. Ends with a newline.
 *
 * @param nowMs the current time in unix milliseconds, for STARTED.
 */
export function execTable(infos: readonly ExecInfo[], nowMs: number): string {
  const rows: string[][] = [HEADER];
  for (const info of infos) {
    const exit = info.exit;
    rows.push([
      info.execId,
      command(info.command),
      info.running ? "Running" : "Exited",
      info.running || exit === undefined
        ? "-"
        : exit.signal === ""
        ? String(exit.exitCode)
        : `${exit.exitCode} (${exit.signal})`,
      info.startedAt <= 0n
        ? "-"
        : `${compactDuration((nowMs - Number(info.startedAt)) / 1000)} ago`,
    ]);
  }
  return alignedTable(rows);
}

function command(argv: readonly string[]): string {
  const text = argv.map(quote).join(" ");
  return text.length <= COMMAND_WIDTH ? text : `${text.slice(0, COMMAND_WIDTH - 3)}...`;
}

function quote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
