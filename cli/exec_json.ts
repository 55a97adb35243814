/**
 * `fsb sandbox ps -o json`: the proto3 JSON mapping of ExecInfo.
 *
 * @module
 */
import type { ExecInfo } from "./client.ts";

/**
 * Formats execs as an indented JSON array ending with a newline, as protobuf-es's
 * `toJson` with `alwaysEmitImplicit` would (without loading it): lowerCamelCase
 * names, every field present but an unset `exit` (while the exec runs), 64-bit
 * integers (`startedAt`, `endedAt`: unix milliseconds) as strings of digits.
 */
export function execJson(infos: readonly ExecInfo[]): string {
  const json = infos.map((info) => ({
    execId: info.execId,
    command: info.command.slice(),
    tty: info.tty,
    detached: info.detached,
    running: info.running,
    ...(info.exit === undefined ? {} : {
      exit: {
        exitCode: info.exit.exitCode,
        signal: info.exit.signal,
        message: info.exit.message,
      },
    }),
    startedAt: String(info.startedAt),
    endedAt: String(info.endedAt),
  }));
  return JSON.stringify(json, null, 2) + "\n";
}
