/**
 * Duration syntax for flags such as `--expire` and `--agent-timeout`.
 *
 * @module
 */
import { UsageError } from "./usage_error.ts";

/** Options for {@linkcode parseDuration}. */
export interface ParseDurationOptions {
  /** The flag the value came from, e.g. `--expire`, for the error message. */
  readonly flag?: string;
}

const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

// "ms" is listed before "m" so that 250ms is not read as 250 minutes and an "s".
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;

/**
 * Parses a duration written as numbers with units (`ms`, `s`, `m`, `h`, `d`),
 * e.g. `90s`, `5m`, `1h30m`, `1.5h`, `250ms`, into whole milliseconds. A bare
 * `0` is accepted; any other number needs a unit.
 *
 * @throws {UsageError} when `value` is not such a duration.
 */
export function parseDuration(value: string, opts: ParseDurationOptions = {}): number {
  if (value === "0") return 0;
  let total = 0;
  let at = 0;
  while (at < value.length) {
    PART.lastIndex = at;
    const match = PART.exec(value);
    if (match === null) break;
    total += Number(match[1]) * UNIT_MS[match[2]];
    at = PART.lastIndex;
  }
  if (value.length === 0 || at < value.length || !(total <= Number.MAX_SAFE_INTEGER)) {
    const where = opts.flag === undefined ? "" : ` for ${opts.flag}`;
    throw new UsageError(
      `Invalid duration "${value}"${where}: use numbers with units, e.g. 90s, 5m, 1h30m or 250ms`,
    );
  }
  return Math.round(total);
}
