/**
 * The `--expire` syntax shared by `sandbox create` and `sandbox update`.
 *
 * @module
 */
import { parseDuration } from "./parse_duration.ts";
import { UsageError } from "./usage_error.ts";

/** Options for {@linkcode parseExpire}. */
export interface ParseExpireOptions {
  /** The flag the value came from; `--expire` unless told. */
  readonly flag?: string;
}

/**
 * Turns an expiry into unix seconds: a duration (`90s`, `1h30m`) counts from
 * `nowSec` and is rounded up to whole seconds, a plain integer is taken as unix
 * seconds, and `0` means never. Only the syntax is checked; whether the time is
 * in the past is for the controller to say.
 *
 * @throws {UsageError} when `value` is neither a duration nor an integer.
 */
export function parseExpire(value: string, nowSec: number, opts: ParseExpireOptions = {}): number {
  const flag = opts.flag ?? "--expire";
  if (/^\d+$/.test(value)) {
    const sec = Number(value);
    if (Number.isSafeInteger(sec)) return sec;
  } else {
    let ms: number | undefined;
    try {
      ms = parseDuration(value);
    } catch {
      // Reported below with the syntax of --expire, which is wider than a duration's.
    }
    if (ms !== undefined) return Math.floor(nowSec) + Math.ceil(ms / 1000);
  }
  throw new UsageError(
    `Invalid ${flag} "${value}": use a duration such as 90s or 1h30m, unix seconds, or 0 for never`,
  );
}
